/*
 * The hub: channels in an open-addressing hash table, each with a dense
 * array of subscriptions for the fan-out, and each peer with a list of its
 * own subscriptions for disconnects.
 *
 * Lifetime rules, in one place:
 * - A channel is in the table exactly while it has live subscribers. When the
 *   last one leaves it is unlinked at once (lookups, counts and stats no
 *   longer see it); it is freed at once unless a fan-out on it is running, in
 *   which case the outermost fan-out frees it when it ends.
 * - A subscription is freed the moment it is removed. If a fan-out is running
 *   on its channel, its slot is set to NULL instead of being filled by the last
 *   one (swap-remove), so the indices the fan-out walks stay stable; the
 *   outermost fan-out compacts the array when it ends.
 * - A fan-out visits the slots that existed when it started: subscriptions
 *   appended during it (which may also move the array) are left for later
 *   messages, and the array is re-read at every step.
 */
#include "hash.h"
#include "hub.h"
#include "strmap.h"

#include <string.h>
#include <time.h>

#include "alloc.h"
#include "proto.h"

#define TABLE_MIN_CAP 16 /* power of two; the table keeps at most half its slots used */
#define SUBS_MIN_CAP 4   /* first allocated subscriber array (after the inline slot) */

/* Message rate: a minute in 12 buckets of 5 s, so the rate costs 56 bytes a published channel. */
#define RATE_BUCKETS 12
#define RATE_BUCKET_MS 5000

/*
 * Batch frames (see rt_hub_close_batches): a channel's first batch of an
 * iteration is sized by what its last busy iteration encoded (an isolated
 * publish gets an exact frame, no slack); when one fills up, the next has
 * twice its capacity, at least BATCH_MIN, at most BATCH_MAX. A message
 * bigger than that gets a frame of its own. At most OPEN_MAX batches are
 * open at once: past it (a hub used without a loop that closes them) all
 * are closed, which costs batching, never correctness.
 */
#define BATCH_MIN 1024
#define BATCH_MAX 16384
#define OPEN_MAX 1024
/* Slices count in 32 bits: a message's frame stays far below (publishes are capped far lower). */
#define MESSAGE_MAX (UINT32_MAX / 2)

/*
 * Publish statistics, allocated at a channel's first publish: many channels
 * (one per user, per document) are subscribed to and never published on, and
 * for them these 88 bytes would be most of the channel. Until then every
 * figure here is zero.
 */
typedef struct {
  uint64_t published;          /* publishes that reached this channel */
  uint64_t delivered;          /* accepted deliveries */
  uint64_t bytes_published;    /* sum of published data sizes */
  uint64_t bytes_delivered;    /* sum of data sizes over accepted deliveries */
  uint32_t rate[RATE_BUCKETS]; /* publishes per RATE_BUCKET_MS bucket, ring over the last minute */
  int64_t rate_bucket;         /* absolute index (clock / RATE_BUCKET_MS) of the newest bucket */
} channel_stats_t;

/*
 * A channel's batch state, allocated at its first publish or delivery. It
 * is the hub's own, never in a shared record (below): batch frames, like
 * all frames, belong to one worker's thread, so each worker's hub batches
 * its own deliveries of the channel.
 */
typedef struct {
  rt_frame_t *frame; /* the open batch frame while gen == hub->gen, NULL when this generation's
                        last message went out in a frame of its own (the hub's open list owns
                        the reference) */
  uint64_t gen;      /* batch generation of `frame` and of the two counts below */
  size_t gen_bytes;  /* wire bytes of the messages of that generation */
  size_t gen_msgs;   /* messages of that generation */
} batch_t;

/*
 * With several workers, each has a hub with the subscriptions of its own
 * connections, and a channel's figures must read as if one hub held them
 * all: they are one record per channel name in a table shared by the hubs
 * (rt_hub_stats_t, serialised by the server lock), alive while any hub has
 * the channel. A shared channel's `stats` points at its record's.
 */
typedef struct shared_rec_s {
  channel_stats_t stats;        /* first member: what a shared channel's `stats` points at */
  int64_t created_at;           /* when the first hub got the channel */
  int64_t last_activity;        /* the last subscribe, unsubscribe or publish on any hub */
  struct rt_hub_stats_s *table; /* the table it is in */
  size_t refs;                  /* hubs that have the channel */
  size_t len;                   /* bytes of name */
  char name[];                  /* the channel name (the table's key) */
} shared_rec_t;

struct rt_hub_stats_s {
  rt_strmap_t map; /* channel name -> shared_rec_t */
};

/*
 * A channel is one allocation while it has one subscriber (most channels of
 * a chat or per-user server): its name follows the struct, and its first
 * subscriber slot is inline (`first`); the array moves to the heap when a
 * second subscriber arrives. Fan-out reads subs[] the same way either way.
 */
typedef struct channel_s {
  size_t len;               /* strlen(name) */
  uint64_t hash;            /* rt_hash_bytes(hub->seed, name, len), kept for probing and growth */
  rt_sub_t **subs;          /* dense array of subscriptions (&first while cap is 1); NULL holes
                               only during fan-out */
  size_t nslots;            /* slots in use in subs, holes included */
  size_t cap;               /* slots allocated in subs */
  size_t live;              /* non-NULL slots: the subscriber count */
  unsigned depth;           /* fan-outs on this channel currently running (nested publishes) */
  unsigned holes : 1;       /* a slot was nulled during a fan-out; compact when it ends */
  unsigned unlinked : 1;    /* left the table during a fan-out; the outermost one frees it */
  unsigned shared : 1;      /* stats is a shared record's (a hub of several workers) */
  int64_t created_at;       /* clock at creation */
  int64_t last_activity;    /* clock at the last subscribe, unsubscribe or publish */
  channel_stats_t *stats;   /* NULL until the first publish */
  batch_t *batch;           /* NULL until the first publish or delivery */
  rt_sub_t *first;          /* the one-slot array subs points at until a second subscriber */
  char name[];              /* NUL-terminated channel name, allocated with the struct */
} channel_t;

struct rt_sub_s {
  channel_t *chan;  /* the channel subscribed to */
  rt_peer_t *peer;  /* the subscriber */
  size_t index;     /* this subscription's slot in chan->subs */
  rt_sub_t *next;   /* next in the peer's list; NULL at the tail */
  rt_sub_t *prev;   /* previous in the peer's list; the head's prev is the tail */
};

struct rt_hub_s {
  channel_t **slots;   /* open-addressing table, linear probing, NULL = empty */
  size_t cap;          /* slots, a power of two */
  size_t count;        /* channels in the table */
  uint64_t seed;       /* per-hub hash seed */
  rt_clock_fn clock;   /* ms since the epoch */
  void *clock_data;    /* passed to clock */
  uint64_t published;  /* publishes that reached a channel, since creation */
  uint64_t delivered;  /* accepted deliveries, since creation */
  rt_hub_stats_t *shared; /* per-channel figures shared with other hubs, or NULL */
  uint64_t gen;        /* batch generation, advanced by rt_hub_close_batches; starts at 1 */
  rt_frame_t **open;   /* batch frames opened in this generation, one reference each */
  size_t nopen;        /* entries in open */
  size_t open_cap;     /* slots allocated in open (at most OPEN_MAX) */
};

static int64_t wall_clock(void *unused) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_ms(const rt_hub_t *hub) { return hub->clock(hub->clock_data); }

/* ------------------------------------------------------------ hash table */

static channel_t *find_hashed(const rt_hub_t *hub, const char *name, size_t len, uint64_t h) {
  size_t mask = hub->cap - 1;
  for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
    channel_t *c = hub->slots[i];
    if (c == NULL) return NULL;
    if (c->hash == h && c->len == len && memcmp(c->name, name, len) == 0) return c;
  }
}

static channel_t *find_channel(const rt_hub_t *hub, const char *name, size_t len) {
  return find_hashed(hub, name, len, rt_hash_bytes(hub->seed, name, len));
}

static void place(channel_t **slots, size_t cap, channel_t *c) {
  size_t i = (size_t)c->hash & (cap - 1);
  while (slots[i] != NULL) i = (i + 1) & (cap - 1);
  slots[i] = c;
}

/*
 * Makes room for one more channel, doubling the table when it would pass half
 * full (linear probing stays short below that). Stored hashes mean growth
 * never rereads names. On RT_ENOMEM the table is unchanged.
 */
static int reserve_channel(rt_hub_t *hub) {
  if ((hub->count + 1) * 2 <= hub->cap) return 0;
  size_t ncap = hub->cap * 2;
  channel_t **ns = rt_calloc(ncap, sizeof(*ns));
  if (ns == NULL) return RT_ENOMEM;
  for (size_t i = 0; i < hub->cap; i++)
    if (hub->slots[i] != NULL) place(ns, ncap, hub->slots[i]);
  rt_free(hub->slots);
  hub->slots = ns;
  hub->cap = ncap;
  return 0;
}

/*
 * Removes c by backward-shift deletion: every entry after the hole whose probe
 * path crosses the hole moves back into it, so no tombstones accumulate and
 * lookups stay as short as they were before the insertions.
 */
static void unlink_channel(rt_hub_t *hub, channel_t *c) {
  size_t mask = hub->cap - 1;
  size_t hole = (size_t)c->hash & mask;
  while (hub->slots[hole] != c) hole = (hole + 1) & mask;
  for (size_t j = (hole + 1) & mask; hub->slots[j] != NULL; j = (j + 1) & mask) {
    size_t home = (size_t)hub->slots[j]->hash & mask;
    if (((j - home) & mask) >= ((j - hole) & mask)) {
      hub->slots[hole] = hub->slots[j];
      hole = j;
    }
  }
  hub->slots[hole] = NULL;
  hub->count--;
}

/* -------------------------------------------------------------- channels */

static channel_t *channel_new(const char *name, size_t len, uint64_t h, int64_t now) {
  channel_t *c = rt_calloc(1, sizeof(*c) + len + 1);
  if (c == NULL) return NULL;
  memcpy(c->name, name, len);
  c->len = len;
  c->hash = h;
  c->subs = &c->first;
  c->cap = 1;
  c->created_at = now;
  c->last_activity = now;
  return c;
}

static shared_rec_t *rec_of(channel_t *c) { return (shared_rec_t *)(void *)c->stats; }

/* A subscribe, unsubscribe or publish on c. */
static void touch(channel_t *c, int64_t now) {
  c->last_activity = now;
  if (c->shared) rec_of(c)->last_activity = now;
}

/* The shared record of a channel, created when new; NULL on OOM. */
static shared_rec_t *shared_acquire(rt_hub_stats_t *t, const char *name, size_t len, int64_t now) {
  shared_rec_t *r = rt_strmap_find(&t->map, name, len);
  if (r == NULL) {
    if (rt_strmap_reserve(&t->map) != 0 || (r = rt_calloc(1, sizeof(*r) + len + 1)) == NULL)
      return NULL;
    r->stats.rate_bucket = now / RATE_BUCKET_MS;
    r->created_at = r->last_activity = now;
    r->table = t;
    r->len = len;
    memcpy(r->name, name, len);
    rt_strmap_insert(&t->map, r->name, len, r);
  }
  r->refs++;
  return r;
}

static void shared_release(shared_rec_t *r) {
  if (--r->refs > 0) return;
  rt_strmap_remove(&r->table->map, r->name, r->len);
  rt_free(r);
}

static void channel_free(channel_t *c) {
  if (c->subs != &c->first) rt_free(c->subs);
  rt_free(c->batch); /* its frame, if open, is the hub's open list's */
  if (c->shared)
    shared_release(rec_of(c));
  else
    rt_free(c->stats);
  rt_free(c);
}

/*
 * Creates the channel (with room for its first subscriber) and links it into
 * the table. On RT_ENOMEM nothing changed: the table may have grown, which
 * is harmless.
 */
static int create_channel(rt_hub_t *hub, const char *name, size_t len, uint64_t h, int64_t now,
                          channel_t **out) {
  if (reserve_channel(hub) != 0) return RT_ENOMEM;
  channel_t *c = channel_new(name, len, h, now);
  if (c == NULL) return RT_ENOMEM;
  if (hub->shared != NULL) {
    shared_rec_t *r = shared_acquire(hub->shared, name, len, now);
    if (r == NULL) {
      channel_free(c);
      return RT_ENOMEM;
    }
    c->stats = &r->stats;
    c->shared = 1;
  }
  place(hub->slots, hub->cap, c);
  hub->count++;
  *out = c;
  return 0;
}

/* Unlinks an empty channel; frees it now, or lets the running fan-out free it. */
static void drop_channel(rt_hub_t *hub, channel_t *c) {
  unlink_channel(hub, c);
  if (c->depth > 0)
    c->unlinked = 1;
  else
    channel_free(c);
}

/*
 * Room for one more slot: the inline slot moves to a heap array of
 * SUBS_MIN_CAP, which then doubles. On failure the old array stays valid.
 */
static int reserve_slot(channel_t *c) {
  if (c->nslots < c->cap) return 0;
  rt_sub_t **ns;
  size_t ncap;
  if (c->subs == &c->first) {
    ncap = SUBS_MIN_CAP;
    if ((ns = rt_malloc(ncap * sizeof(*ns))) != NULL) memcpy(ns, c->subs, c->nslots * sizeof(*ns));
  } else {
    ncap = c->cap * 2;
    ns = rt_realloc(c->subs, ncap * sizeof(*ns));
  }
  if (ns == NULL) return RT_ENOMEM;
  c->subs = ns;
  c->cap = ncap;
  return 0;
}

/* Squeezes out the holes left by removals during a fan-out, keeping order. */
static void compact(channel_t *c) {
  size_t j = 0;
  for (size_t i = 0; i < c->nslots; i++) {
    rt_sub_t *s = c->subs[i];
    if (s == NULL) continue;
    s->index = j;
    c->subs[j++] = s;
  }
  c->nslots = j;
  c->holes = 0;
}

/*
 * Ends one fan-out on c. The outermost one frees a channel that lost all its
 * subscribers meanwhile, or compacts the holes they left.
 */
static void end_fanout(channel_t *c) {
  if (--c->depth > 0) return;
  if (c->unlinked)
    channel_free(c);
  else if (c->holes)
    compact(c);
}

/* --------------------------------------------------------- subscriptions */

/* Appends s to the tail of its peer's list (the head's prev is the tail). */
static void peer_link(rt_peer_t *p, rt_sub_t *s) {
  s->next = NULL;
  if (p->_subs == NULL) {
    s->prev = s;
    p->_subs = s;
  } else {
    rt_sub_t *tail = p->_subs->prev;
    tail->next = s;
    s->prev = tail;
    p->_subs->prev = s;
  }
  p->_nsubs++;
}

static void peer_unlink(rt_peer_t *p, rt_sub_t *s) {
  if (s == p->_subs) {
    p->_subs = s->next;
    if (s->next != NULL) s->next->prev = s->prev;
  } else {
    s->prev->next = s->next;
    if (s->next != NULL)
      s->next->prev = s->prev;
    else
      p->_subs->prev = s->prev;
  }
  p->_nsubs--;
}

/*
 * The peer's subscription to c, or NULL, found in O(min(peer's subscriptions,
 * channel's slots)) by walking the shorter side, with no extra index to keep
 * up to date. A client's side is bounded by its subscription cap (1024 by
 * default) while a channel may have tens of thousands of subscribers, so a
 * client joining a crowded channel walks its own short list; a peer holding
 * many channels joining a small one walks the channel. A per-channel set would
 * make this O(1) but would cost an entry and an allocation failure path on
 * every subscribe to buy nothing at those sizes.
 */
static rt_sub_t *find_sub(const channel_t *c, const rt_peer_t *peer) {
  if (peer->_nsubs <= c->nslots) {
    for (rt_sub_t *s = peer->_subs; s != NULL; s = s->next)
      if (s->chan == c) return s;
    return NULL;
  }
  for (size_t i = 0; i < c->nslots; i++) {
    rt_sub_t *s = c->subs[i];
    if (s != NULL && s->peer == peer) return s;
  }
  return NULL;
}

/*
 * Takes s out of its channel's array: swap-remove when no fan-out runs, a
 * NULL hole (compacted later) when one does, so its indices stay valid.
 */
static void slot_remove(channel_t *c, rt_sub_t *s) {
  if (c->depth > 0) {
    c->subs[s->index] = NULL;
    c->holes = 1;
    return;
  }
  rt_sub_t *last = c->subs[--c->nslots];
  c->subs[s->index] = last;
  last->index = s->index;
}

/* Removes and frees one subscription, dropping its channel if it was the last. */
static void remove_sub(rt_hub_t *hub, rt_sub_t *s, int64_t now) {
  channel_t *c = s->chan;
  peer_unlink(s->peer, s);
  slot_remove(c, s);
  rt_free(s);
  c->live--;
  touch(c, now);
  if (c->live == 0) drop_channel(hub, c);
}

/* ------------------------------------------------------------------- API */

rt_hub_t *rt_hub_new(rt_clock_fn clock, void *clock_data) {
  rt_hub_t *hub = rt_calloc(1, sizeof(*hub));
  if (hub == NULL) return NULL;
  hub->slots = rt_calloc(TABLE_MIN_CAP, sizeof(*hub->slots));
  if (hub->slots == NULL) {
    rt_free(hub);
    return NULL;
  }
  hub->cap = TABLE_MIN_CAP;
  hub->gen = 1;
  hub->clock = clock != NULL ? clock : wall_clock;
  hub->clock_data = clock_data;
  uint64_t entropy[2] = {(uint64_t)(uintptr_t)hub ^ (uint64_t)(uintptr_t)hub->slots,
                         (uint64_t)wall_clock(NULL)};
  hub->seed = rt_hash_bytes(0, (const char *)entropy, sizeof(entropy));
  return hub;
}

/*
 * Frees every channel and subscription. A subscribed peer is alive by
 * contract (the hub could deliver to it), so its list is reset to empty
 * rather than left pointing at freed subscriptions. Must not be called from
 * inside deliver().
 */
void rt_hub_free(rt_hub_t *hub) {
  if (hub == NULL) return;
  for (size_t i = 0; i < hub->cap; i++) {
    channel_t *c = hub->slots[i];
    if (c == NULL) continue;
    for (size_t k = 0; k < c->nslots; k++) {
      rt_sub_t *s = c->subs[k];
      if (s == NULL) continue;
      s->peer->_subs = NULL;
      s->peer->_nsubs = 0;
      rt_free(s);
    }
    channel_free(c);
  }
  rt_hub_close_batches(hub);
  rt_free(hub->open);
  rt_free(hub->slots);
  rt_free(hub);
}

void rt_peer_init(rt_peer_t *peer, const rt_peer_ops_t *ops, uint64_t id) {
  peer->ops = ops;
  peer->id = id;
  peer->_subs = NULL;
  peer->_nsubs = 0;
}

/*
 * Allocates the subscription first, then either makes room in the existing
 * channel's array or creates the channel (which starts with room), so no
 * failure leaves anything to undo and the hub is unchanged on RT_ENOMEM.
 */
int rt_hub_subscribe(rt_hub_t *hub, rt_peer_t *peer, const char *channel, size_t len) {
  uint64_t h = rt_hash_bytes(hub->seed, channel, len);
  channel_t *c = find_hashed(hub, channel, len, h);
  if (c != NULL && find_sub(c, peer) != NULL) return RT_EEXIST;
  rt_sub_t *s = rt_malloc(sizeof(*s));
  if (s == NULL) return RT_ENOMEM;
  int64_t now = now_ms(hub);
  int rc = c != NULL ? reserve_slot(c) : create_channel(hub, channel, len, h, now, &c);
  if (rc != 0) {
    rt_free(s);
    return RT_ENOMEM;
  }
  s->chan = c;
  s->peer = peer;
  s->index = c->nslots;
  c->subs[c->nslots++] = s;
  c->live++;
  touch(c, now);
  peer_link(peer, s);
  return 0;
}

int rt_hub_unsubscribe(rt_hub_t *hub, rt_peer_t *peer, const char *channel, size_t len) {
  channel_t *c = find_channel(hub, channel, len);
  rt_sub_t *s = c != NULL ? find_sub(c, peer) : NULL;
  if (s == NULL) return RT_ENOENT;
  remove_sub(hub, s, now_ms(hub));
  return 0;
}

/* O(peer's subscriptions): each removal is a list pop, a slot swap and maybe a table delete. */
void rt_hub_unsubscribe_all(rt_hub_t *hub, rt_peer_t *peer) {
  if (peer->_subs == NULL) return;
  int64_t now = now_ms(hub);
  while (peer->_subs != NULL) remove_sub(hub, peer->_subs, now);
}

int rt_hub_is_subscribed(rt_hub_t *hub, const rt_peer_t *peer, const char *channel, size_t len) {
  channel_t *c = find_channel(hub, channel, len);
  return c != NULL && find_sub(c, peer) != NULL;
}

/*
 * Calls deliver() for every subscription present when the fan-out started.
 * The array is re-read at each step because deliver() may grow (move) it, and
 * a slot is NULL when its subscription was removed meanwhile. Nothing is
 * allocated here: the per-delivery cost is the deliver() call itself.
 */
static int64_t fan_out(channel_t *c, const rt_slice_t *wire, const rt_hub_msg_t *msg) {
  size_t n = c->nslots;
  int64_t delivered = 0;
  for (size_t i = 0; i < n; i++) {
    rt_sub_t *s = c->subs[i];
    if (s == NULL) continue;
    rt_peer_t *p = s->peer;
    if (p->ops->deliver(p, wire, msg) == 0) delivered++;
  }
  return delivered;
}

/* Advances the ring to `now`, zeroing the buckets that went by without traffic. */
static void rate_advance(channel_stats_t *st, int64_t now) {
  int64_t b = now / RATE_BUCKET_MS;
  if (b <= st->rate_bucket) return;
  int64_t gap = b - st->rate_bucket;
  for (int64_t i = 1; i <= gap && i <= RATE_BUCKETS; i++)
    st->rate[(st->rate_bucket + i) % RATE_BUCKETS] = 0;
  st->rate_bucket = b;
}

/* Publishes per second over the last minute (the current bucket counts as a whole one). */
static double rate_of(channel_stats_t *st, int64_t now) {
  rate_advance(st, now);
  uint64_t sum = 0;
  for (int i = 0; i < RATE_BUCKETS; i++) sum += st->rate[i];
  return (double)sum / (RATE_BUCKETS * RATE_BUCKET_MS / 1000.0);
}

/* The channel's statistics, allocated (all zero, ring at `now`) on its first publish. */
static channel_stats_t *stats_for_publish(channel_t *c, int64_t now) {
  if (c->stats != NULL) return c->stats;
  c->stats = rt_calloc(1, sizeof(*c->stats));
  if (c->stats != NULL) c->stats->rate_bucket = now / RATE_BUCKET_MS;
  return c->stats;
}

/* Counts one publish of data_len bytes (rate, totals). */
static void count_publish(channel_stats_t *st, size_t data_len, int64_t now) {
  rate_advance(st, now);
  st->rate[st->rate_bucket % RATE_BUCKETS]++;
  st->published++;
  st->bytes_published += data_len;
}

/*
 * A fan-out's accounting. With a shared table the publish itself is counted
 * once by the publisher (rt_hub_stats_publish) and each hub adds only its
 * deliveries.
 */
static void account(rt_hub_t *hub, channel_t *c, size_t data_len, int64_t delivered, int64_t now) {
  channel_stats_t *st = c->stats;
  if (hub->shared == NULL) {
    count_publish(st, data_len, now);
    hub->published++;
  }
  st->delivered += (uint64_t)delivered;
  st->bytes_delivered += (uint64_t)data_len * (uint64_t)delivered;
  touch(c, now);
  hub->delivered += (uint64_t)delivered;
}

/* One fan-out of a message's wire bytes on c (statistics allocated), with its accounting. */
static int64_t deliver_on(rt_hub_t *hub, channel_t *c, const rt_slice_t *wire,
                          const rt_hub_msg_t *msg, int64_t now) {
  c->depth++;
  int64_t delivered = fan_out(c, wire, msg);
  account(hub, c, msg->data_len, delivered, now);
  end_fanout(c);
  return delivered;
}

/* -------------------------------------------------------------- batches */

void rt_hub_close_batches(rt_hub_t *hub) {
  if (hub->nopen == 0) return;
  for (size_t i = 0; i < hub->nopen; i++) rt_frame_unref(hub->open[i]);
  hub->nopen = 0;
  hub->gen++;
}

/* Adds f (its creation reference) to the open list. 0 or RT_ENOMEM (nothing changed). */
static int register_batch(rt_hub_t *hub, rt_frame_t *f) {
  if (hub->nopen == hub->open_cap) {
    size_t ncap = hub->open_cap ? hub->open_cap * 2 : 16;
    rt_frame_t **no = rt_realloc(hub->open, ncap * sizeof(*no));
    if (no == NULL) return RT_ENOMEM;
    hub->open = no;
    hub->open_cap = ncap;
  }
  hub->open[hub->nopen++] = f;
  return 0;
}

/*
 * Capacity of the channel's next batch, which must take a message of n wire
 * bytes; n itself means no batch (the message keeps a frame of its own).
 */
static size_t batch_capacity(const rt_hub_t *hub, const batch_t *b, size_t n) {
  size_t cap;
  if (b->gen == hub->gen) /* this iteration's batch is full (or was an own frame): grow */
    cap = b->frame == NULL || b->frame->cap < BATCH_MIN / 2 ? BATCH_MIN : b->frame->cap * 2;
  else /* the first of the iteration: what the last iteration with several messages took */
    cap = b->gen_msgs > 1 ? b->gen_bytes : 0;
  if (cap > BATCH_MAX) cap = BATCH_MAX;
  return cap > n ? cap : n;
}

/*
 * Where the next message of c (n wire bytes) goes: the end of the channel's
 * open batch, or of a new one when it has no room, returned with a
 * reference for the caller (who writes the n bytes there and drops the
 * reference after the fan-out: a nested publish may close the batches
 * meanwhile). NULL when no batch applies: an isolated message on a cold
 * channel, one bigger than a batch, or no memory for the batch state; the
 * message then goes out in a frame of its own. Counts the message either
 * way (the next iteration's sizing).
 */
static rt_frame_t *batch_reserve(rt_hub_t *hub, channel_t *c, size_t n) {
  batch_t *b = c->batch;
  if (b == NULL && (b = c->batch = rt_calloc(1, sizeof(*b))) == NULL) return NULL;
  if (b->gen == hub->gen && b->frame != NULL && b->frame->cap - b->frame->len >= n) {
    b->gen_bytes += n;
    b->gen_msgs++;
    return rt_frame_ref(b->frame);
  }
  if (hub->nopen == OPEN_MAX) rt_hub_close_batches(hub);
  size_t cap = batch_capacity(hub, b, n);
  if (b->gen != hub->gen) {
    b->gen = hub->gen;
    b->gen_bytes = 0;
    b->gen_msgs = 0;
  }
  b->gen_bytes += n;
  b->gen_msgs++;
  b->frame = NULL;
  if (cap == n) return NULL;
  rt_frame_t *f = rt_frame_new(cap);
  if (f == NULL) return NULL; /* the smaller frame of its own may still fit */
  if (register_batch(hub, f) != 0) return f; /* serves this message alone */
  b->frame = f;
  return rt_frame_ref(f);
}

/*
 * Encodes the message once, as a complete text frame: at the end of the
 * channel's batch, or in an exact frame of its own (same layout) when no
 * batch applies. *wire
 * holds a reference the caller drops after the fan-out. The bytes before
 * it in a batch, which subscribers may already have queued, are not touched.
 */
static int encode(rt_hub_t *hub, channel_t *c, const char *data, size_t data_len,
                  rt_slice_t *wire) {
  size_t plen = rt_proto_message_len(c->len, data_len);
  size_t n = rt_frame_header_len(plen) + plen;
  if (plen == 0 || n > MESSAGE_MAX) return RT_ETOOLARGE;
  rt_frame_t *f = batch_reserve(hub, c, n);
  if (f == NULL && (f = rt_frame_new(n)) == NULL) return RT_ENOMEM; /* exact: no slack */
  wire->frame = f;
  wire->off = (uint32_t)(RT_FRAME_HEADROOM + f->len);
  wire->len = (uint32_t)n;
  rt_proto_message_append(f, c->name, c->len, data, data_len);
  return 0;
}

/*
 * Encodes the message once and hands the same bytes to every subscriber.
 * The depth counter keeps the channel (and its slot indices) alive across
 * re-entrant deliver() calls. A channel absent from the table gets nothing
 * counted and is not created. The channel's statistics are allocated before
 * anything is delivered, so an error means nobody got the message.
 */
int64_t rt_hub_publish(rt_hub_t *hub, const char *channel, size_t channel_len, const char *data,
                       size_t data_len, uint64_t publisher_id) {
  channel_t *c = find_channel(hub, channel, channel_len);
  if (c == NULL) return 0;
  int64_t now = now_ms(hub);
  if (stats_for_publish(c, now) == NULL) return RT_ENOMEM;
  rt_slice_t wire;
  int r = encode(hub, c, data, data_len, &wire);
  if (r != 0) return r;
  rt_hub_msg_t msg = {c->name, c->len, data, data_len, {publisher_id, now}};
  int64_t delivered = deliver_on(hub, c, &wire, &msg, now);
  rt_frame_unref(wire.frame);
  return delivered;
}

/*
 * The message is encoded already (frame, shared by the workers as copies):
 * its wire bytes are copied to the end of this hub's batch of the channel,
 * a memcpy once per hub, or, when no batch applies, subscribers get the
 * frame itself.
 */
int64_t rt_hub_deliver(rt_hub_t *hub, rt_frame_t *frame, const rt_hub_msg_t *msg) {
  channel_t *c = find_channel(hub, msg->channel, msg->channel_len);
  if (c == NULL) return 0;
  int64_t now = now_ms(hub);
  if (stats_for_publish(c, now) == NULL) return RT_ENOMEM; /* nobody got it, as in a publish */
  size_t n = rt_frame_wire_len(frame);
  if (n > MESSAGE_MAX) return RT_ETOOLARGE;
  rt_slice_t wire = {NULL, 0, (uint32_t)n};
  if ((wire.frame = batch_reserve(hub, c, n)) != NULL) {
    wire.off = (uint32_t)(RT_FRAME_HEADROOM + wire.frame->len);
    rt_frame_append(wire.frame, rt_frame_wire(frame), n);
  } else {
    wire.frame = rt_frame_ref(frame);
    wire.off = frame->off;
  }
  rt_hub_msg_t m = *msg;
  m.channel = c->name; /* NUL-terminated and alive for the whole fan-out */
  int64_t delivered = deliver_on(hub, c, &wire, &m, now);
  rt_frame_unref(wire.frame);
  return delivered;
}

size_t rt_hub_subscriber_count(const rt_hub_t *hub, const char *channel, size_t len) {
  const channel_t *c = find_channel(hub, channel, len);
  return c != NULL ? c->live : 0;
}

static int64_t push_out(channel_t *c, rt_frame_t *frame) {
  size_t n = c->nslots;
  int64_t taken = 0;
  for (size_t i = 0; i < n; i++) {
    rt_sub_t *s = c->subs[i];
    if (s == NULL || s->peer->ops->push == NULL) continue;
    if (s->peer->ops->push(s->peer, frame) == 0) taken++;
  }
  return taken;
}

int64_t rt_hub_push(rt_hub_t *hub, const char *channel, size_t channel_len, rt_frame_t *frame) {
  channel_t *c = find_channel(hub, channel, channel_len);
  if (c == NULL) return 0;
  c->depth++;
  int64_t taken = push_out(c, frame);
  end_fanout(c);
  return taken;
}

/* -------------------------------------------------------------- queries */

static int fill_stats(rt_channel_stats_t *st, channel_t *c, int64_t now) {
  st->name = rt_strndup(c->name, c->len);
  if (st->name == NULL) return RT_ENOMEM;
  channel_stats_t *cs = c->stats;
  st->subscribers = c->live;
  st->messages_published = cs != NULL ? cs->published : 0;
  st->messages_delivered = cs != NULL ? cs->delivered : 0;
  st->bytes_published = cs != NULL ? cs->bytes_published : 0;
  st->bytes_delivered = cs != NULL ? cs->bytes_delivered : 0;
  st->created_at_ms = c->shared ? rec_of(c)->created_at : c->created_at;
  st->last_activity_ms = c->shared ? rec_of(c)->last_activity : c->last_activity;
  st->message_rate = cs != NULL ? rate_of(cs, now) : 0;
  st->presence = 0;
  return 0;
}

static int stats_one(rt_hub_t *hub, const char *name, rt_channel_stats_t **out, size_t *count) {
  channel_t *c = find_channel(hub, name, strlen(name));
  if (c == NULL) return RT_ENOENT;
  rt_channel_stats_t *st = rt_malloc(sizeof(*st));
  if (st == NULL) return RT_ENOMEM;
  if (fill_stats(st, c, now_ms(hub)) != 0) {
    rt_free(st);
    return RT_ENOMEM;
  }
  *out = st;
  *count = 1;
  return 0;
}

static int stats_all(rt_hub_t *hub, rt_channel_stats_t **out, size_t *count) {
  if (hub->count == 0) return 0;
  rt_channel_stats_t *st = rt_malloc(hub->count * sizeof(*st));
  if (st == NULL) return RT_ENOMEM;
  size_t n = 0;
  for (size_t i = 0; i < hub->cap; i++) {
    if (hub->slots[i] == NULL) continue;
    if (fill_stats(&st[n], hub->slots[i], now_ms(hub)) != 0) {
      rt_channel_stats_free(st, n);
      return RT_ENOMEM;
    }
    n++;
  }
  *out = st;
  *count = n;
  return 0;
}

/* On any error *out is NULL and *count 0; with no channels at all, likewise with 0. */
int rt_hub_channel_stats(rt_hub_t *hub, const char *name, rt_channel_stats_t **out,
                         size_t *count) {
  *out = NULL;
  *count = 0;
  return name != NULL ? stats_one(hub, name, out, count) : stats_all(hub, out, count);
}

void rt_channel_stats_free(rt_channel_stats_t *stats, size_t count) {
  if (stats == NULL) return;
  for (size_t i = 0; i < count; i++) rt_free(stats[i].name);
  rt_free(stats);
}

size_t rt_hub_channel_count(const rt_hub_t *hub) { return hub->count; }

/* Names in subscription order. With no subscriptions *names is NULL and *count 0. */
int rt_hub_peer_channels(const rt_peer_t *peer, char ***names, size_t *count) {
  *names = NULL;
  *count = 0;
  if (peer->_nsubs == 0) return 0;
  char **v = rt_malloc(peer->_nsubs * sizeof(*v));
  if (v == NULL) return RT_ENOMEM;
  size_t n = 0;
  for (const rt_sub_t *s = peer->_subs; s != NULL; s = s->next, n++) {
    v[n] = rt_strndup(s->chan->name, s->chan->len);
    if (v[n] != NULL) continue;
    while (n > 0) rt_free(v[--n]);
    rt_free(v);
    return RT_ENOMEM;
  }
  *names = v;
  *count = n;
  return 0;
}

void rt_hub_totals(const rt_hub_t *hub, uint64_t *published, uint64_t *delivered) {
  if (published != NULL) *published = hub->published;
  if (delivered != NULL) *delivered = hub->delivered;
}

/* ------------------------------------------------------- shared figures */

rt_hub_stats_t *rt_hub_stats_new(void) {
  rt_hub_stats_t *t = rt_calloc(1, sizeof(*t));
  if (t != NULL) rt_strmap_init(&t->map, rt_strmap_hash(0, (const char *)&t, sizeof(t), 0), 0);
  return t;
}

void rt_hub_stats_free(rt_hub_stats_t *t) {
  if (t == NULL) return;
  for (size_t i = 0; i < t->map.cap; i++) rt_free(t->map.slots[i].val);
  rt_strmap_destroy(&t->map);
  rt_free(t);
}

void rt_hub_share_stats(rt_hub_t *hub, rt_hub_stats_t *shared) { hub->shared = shared; }

int rt_hub_stats_publish(rt_hub_stats_t *t, const char *channel, size_t len, size_t data_len,
                         int64_t now) {
  shared_rec_t *r = rt_strmap_find(&t->map, channel, len);
  if (r == NULL) return 0;
  count_publish(&r->stats, data_len, now);
  r->last_activity = now;
  return 1;
}
