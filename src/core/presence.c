/*
 * Presence bookkeeping: three indexes over one set of entries.
 *
 * - channels: open-addressing table by name; each channel holds a table of
 *   its entries by client id (O(1) average lookup) and a list in join order
 *   (for presence_get and foreach);
 * - clients: open-addressing table by id; each client holds a list of its
 *   entries, so a disconnect or a keep-alive costs O(entries of the client);
 * - expiry: one list of every entry ordered by last refresh. The timeout is
 *   the same for all entries, so the order of refreshes is the order of
 *   expiries: a refresh moves the entry to the back, and a sweep pops from
 *   the front until the first live entry.
 *
 * All lists are circular with a sentinel, so linking and unlinking have no
 * special cases. Tables use linear probing at most half full, stored hashes
 * and backward-shift deletion, like the hub's channel table. The tables
 * never shrink (their size follows the peak), but a channel or client record
 * is freed with its last entry.
 *
 * A set that creates records allocates everything first (table growth,
 * channel, client, entry, payload) and links only when nothing can fail, so
 * RT_ENOMEM leaves the state as it was (a grown table holds the same items).
 */
#include "hash.h"
#include "presence.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"

#define TABLE_MIN_CAP 8 /* power of two; a table keeps at most half its slots used */

#define CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

typedef struct link_s {
  struct link_s *prev; /* previous node; the sentinel's prev is the tail */
  struct link_s *next; /* next node; the sentinel's next is the head */
} link_t;

typedef struct {
  const char *key; /* the item's key, owned by the item (or its client) */
  size_t len;      /* bytes in key */
  uint64_t hash;   /* rt_hash_bytes(p->seed, key, len), kept for probing and growth */
} hnode_t;

typedef struct {
  hnode_t **slots; /* linear probing, NULL = empty; NULL array while cap is 0 */
  size_t cap;      /* slots, 0 or a power of two */
  size_t count;    /* items in the table */
} table_t;

typedef struct {
  hnode_t node;  /* key = name, in p->channels */
  table_t table; /* entry_t by client id; table.count is the entry count */
  link_t order;  /* entry_t.chan_link, in join order */
  char name[];   /* NUL-terminated channel name */
} channel_t;

typedef struct {
  hnode_t node;   /* key = id, in p->clients */
  link_t entries; /* entry_t.client_link, in join order */
  char id[];      /* NUL-terminated client id */
} client_t;

typedef struct {
  hnode_t node;        /* key = client->id, in chan->table */
  channel_t *chan;     /* the channel this entry is in */
  client_t *client;    /* the client this entry belongs to */
  link_t chan_link;    /* in chan->order */
  link_t client_link;  /* in client->entries */
  link_t expiry_link;  /* in p->expiry */
  char *payload;       /* data bytes, NUL, then user_id and NUL when there is one */
  size_t data_len;     /* bytes of data at the start of payload */
  const char *user_id; /* inside payload, or NULL */
  int64_t joined_at;   /* wall ms of the join */
  int64_t updated_at;  /* wall ms of the last set */
  int64_t stamp;       /* mono ms of the last refresh */
  uint64_t seq;        /* join number: later joins have larger ones */
} entry_t;

struct rt_presence_s {
  rt_presence_limits_t limits; /* copied at creation */
  table_t channels;            /* channel_t by name */
  table_t clients;             /* client_t by id */
  link_t expiry;               /* every entry_t.expiry_link, oldest refresh first */
  uint64_t seed;               /* hash seed of this object */
  int64_t newest_stamp;        /* largest mono_ms seen; stamps never go below it */
  uint64_t next_seq;           /* seq of the next join */
  size_t total;                /* entries in all channels */
  size_t last_visited;         /* entries examined by the last sweep */
};

/* Everything rt_presence_set was given, with the lengths and hashes worked out once. */
typedef struct {
  const char *channel;   /* borrowed name, channel_len bytes */
  size_t channel_len;    /* bytes in channel */
  uint64_t channel_hash; /* hash_key of channel */
  const char *client_id; /* borrowed, NUL-terminated */
  size_t id_len;         /* strlen(client_id) */
  uint64_t id_hash;      /* hash_key of client_id, the key in both tables that hold it */
  const char *user_id;   /* borrowed, NUL-terminated, or NULL */
  const char *data;      /* borrowed JSON bytes */
  size_t data_len;       /* bytes in data */
  int64_t wall_ms;       /* the set's wall time */
} set_args_t;

/* ------------------------------------------------------------------ lists */

static void link_init(link_t *l) { l->prev = l->next = l; }

static int list_empty(const link_t *head) { return head->next == head; }

static void list_push_back(link_t *head, link_t *n) {
  n->prev = head->prev;
  n->next = head;
  head->prev->next = n;
  head->prev = n;
}

/* Unlinks n and leaves it linked to itself, so unlinking twice is harmless. */
static void list_unlink(link_t *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  link_init(n);
}

/* ----------------------------------------------------------------- tables */

static hnode_t *table_find(const table_t *t, const char *key, size_t len, uint64_t h) {
  if (t->cap == 0) return NULL;
  size_t mask = t->cap - 1;
  for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
    hnode_t *n = t->slots[i];
    if (n == NULL) return NULL;
    if (n->hash == h && n->len == len && memcmp(n->key, key, len) == 0) return n;
  }
}

static void place(hnode_t **slots, size_t cap, hnode_t *n) {
  size_t i = (size_t)n->hash & (cap - 1);
  while (slots[i] != NULL) i = (i + 1) & (cap - 1);
  slots[i] = n;
}

/*
 * Makes room for one more item: allocates the first slots or doubles the
 * table when it would pass half full. On RT_ENOMEM the table is unchanged;
 * on success it holds the same items, so a later failure needs no undo.
 */
static int table_reserve(table_t *t) {
  if ((t->count + 1) * 2 <= t->cap) return 0;
  size_t ncap = t->cap != 0 ? t->cap * 2 : TABLE_MIN_CAP;
  hnode_t **ns = rt_calloc(ncap, sizeof(*ns));
  if (ns == NULL) return RT_ENOMEM;
  for (size_t i = 0; i < t->cap; i++)
    if (t->slots[i] != NULL) place(ns, ncap, t->slots[i]);
  rt_free(t->slots);
  t->slots = ns;
  t->cap = ncap;
  return 0;
}

/* Adds n to a table that table_reserve made room in. */
static void table_insert(table_t *t, hnode_t *n) {
  place(t->slots, t->cap, n);
  t->count++;
}

/*
 * Removes n by backward-shift deletion: every item after the hole whose probe
 * path crosses it moves back, so no tombstones build up under churn.
 */
static void table_delete(table_t *t, hnode_t *n) {
  size_t mask = t->cap - 1;
  size_t hole = (size_t)n->hash & mask;
  while (t->slots[hole] != n) hole = (hole + 1) & mask;
  for (size_t j = (hole + 1) & mask; t->slots[j] != NULL; j = (j + 1) & mask) {
    size_t home = (size_t)t->slots[j]->hash & mask;
    if (((j - home) & mask) >= ((j - hole) & mask)) {
      t->slots[hole] = t->slots[j];
      hole = j;
    }
  }
  t->slots[hole] = NULL;
  t->count--;
}

/* -------------------------------------------------------------- records */

static channel_t *channel_new(const set_args_t *a) {
  channel_t *ch = rt_malloc(sizeof(*ch) + a->channel_len + 1);
  if (ch == NULL) return NULL;
  memcpy(ch->name, a->channel, a->channel_len);
  ch->name[a->channel_len] = '\0';
  ch->node = (hnode_t){ch->name, a->channel_len, a->channel_hash};
  ch->table = (table_t){NULL, 0, 0};
  link_init(&ch->order);
  return ch;
}

static void channel_free(channel_t *ch) {
  if (ch == NULL) return;
  rt_free(ch->table.slots);
  rt_free(ch);
}

static client_t *client_new(const set_args_t *a) {
  client_t *cl = rt_malloc(sizeof(*cl) + a->id_len + 1);
  if (cl == NULL) return NULL;
  memcpy(cl->id, a->client_id, a->id_len + 1);
  cl->node = (hnode_t){cl->id, a->id_len, a->id_hash};
  link_init(&cl->entries);
  return cl;
}

/*
 * One allocation holding the data bytes, a NUL, and the user id with its NUL
 * when there is one: an update swaps a single block, so it either fully
 * happens or (on RT_ENOMEM) does not happen at all.
 */
static char *payload_new(const set_args_t *a, const char **user_id_out) {
  size_t user_len = a->user_id != NULL ? strlen(a->user_id) : 0;
  size_t user_size = a->user_id != NULL ? user_len + 1 : 0;
  if (a->data_len > SIZE_MAX - 1 - user_size) return NULL;
  char *pl = rt_malloc(a->data_len + 1 + user_size);
  if (pl == NULL) return NULL;
  memcpy(pl, a->data, a->data_len);
  pl[a->data_len] = '\0';
  *user_id_out = NULL;
  if (a->user_id != NULL) {
    memcpy(pl + a->data_len + 1, a->user_id, user_size);
    *user_id_out = pl + a->data_len + 1;
  }
  return pl;
}

static entry_t *entry_new(const set_args_t *a) {
  entry_t *e = rt_malloc(sizeof(*e));
  if (e == NULL) return NULL;
  e->payload = payload_new(a, &e->user_id);
  if (e->payload == NULL) {
    rt_free(e);
    return NULL;
  }
  e->data_len = a->data_len;
  link_init(&e->chan_link);
  link_init(&e->client_link);
  link_init(&e->expiry_link);
  return e;
}

static void entry_free(entry_t *e) {
  rt_free(e->payload);
  rt_free(e);
}

static void view_of(const entry_t *e, rt_presence_entry_t *v) {
  v->channel = e->chan->name;
  v->channel_len = e->chan->node.len;
  v->client_id = e->client->id;
  v->user_id = e->user_id;
  v->data = e->payload;
  v->data_len = e->data_len;
  v->joined_at_ms = e->joined_at;
  v->updated_at_ms = e->updated_at;
}

/* ----------------------------------------------------------- operations */

static channel_t *find_channel_hashed(const rt_presence_t *p, const char *name, size_t len,
                                      uint64_t h) {
  hnode_t *n = table_find(&p->channels, name, len, h);
  return n != NULL ? CONTAINER_OF(n, channel_t, node) : NULL;
}

static channel_t *find_channel(const rt_presence_t *p, const char *name, size_t len) {
  return find_channel_hashed(p, name, len, rt_hash_bytes(p->seed, name, len));
}

static client_t *find_client(const rt_presence_t *p, const char *id, size_t len, uint64_t h) {
  hnode_t *n = table_find(&p->clients, id, len, h);
  return n != NULL ? CONTAINER_OF(n, client_t, node) : NULL;
}

static entry_t *find_entry(const channel_t *ch, const char *id, size_t len, uint64_t h) {
  hnode_t *n = table_find(&ch->table, id, len, h);
  return n != NULL ? CONTAINER_OF(n, entry_t, node) : NULL;
}

/*
 * Moves e to the back of the expiry list with a new stamp. The stamp is
 * never below the newest one recorded, which keeps the list sorted by stamp
 * even if a caller's clock steps back: that is what lets the sweep stop at
 * the first live entry.
 */
static void refresh(rt_presence_t *p, entry_t *e, int64_t mono_ms) {
  if (mono_ms > p->newest_stamp) p->newest_stamp = mono_ms;
  e->stamp = p->newest_stamp;
  list_unlink(&e->expiry_link);
  list_push_back(&p->expiry, &e->expiry_link);
}

static int expired(const entry_t *e, int64_t mono_ms, uint32_t timeout_ms) {
  return mono_ms >= e->stamp && (uint64_t)mono_ms - (uint64_t)e->stamp >= timeout_ms;
}

/* Replaces data and user id in one swap; on RT_ENOMEM the entry is untouched. */
static int update_entry(entry_t *e, const set_args_t *a, rt_errbuf_t *err) {
  const char *user_id;
  char *pl = payload_new(a, &user_id);
  if (pl == NULL) return rt_errbuf_set(err, RT_ENOMEM, "Out of memory");
  rt_free(e->payload);
  e->payload = pl;
  e->data_len = a->data_len;
  e->user_id = user_id;
  e->updated_at = a->wall_ms;
  return 0;
}

/* Links a fully allocated new entry (and its new channel or client, if any) everywhere. */
static void link_entry(rt_presence_t *p, entry_t *e, channel_t *ch, channel_t *new_ch,
                       client_t *cl, client_t *new_cl, const set_args_t *a) {
  if (new_ch != NULL) table_insert(&p->channels, &new_ch->node);
  if (new_cl != NULL) table_insert(&p->clients, &new_cl->node);
  e->node = (hnode_t){cl->id, a->id_len, a->id_hash};
  e->chan = ch;
  e->client = cl;
  e->joined_at = e->updated_at = a->wall_ms;
  e->seq = p->next_seq++;
  table_insert(&ch->table, &e->node);
  list_push_back(&ch->order, &e->chan_link);
  list_push_back(&cl->entries, &e->client_link);
  p->total++;
}

/*
 * A join: checks the channel limit, then allocates whatever is missing
 * (channel, client, room in three tables, the entry) before linking anything,
 * so every failure returns with the indexes as they were.
 */
static int join_entry(rt_presence_t *p, channel_t *ch, const set_args_t *a, entry_t **out,
                      rt_errbuf_t *err) {
  uint32_t max = p->limits.max_entries_per_channel;
  if (ch != NULL && max != 0 && ch->table.count >= max)
    return rt_errbuf_set(err, RT_EPRESENCEFULL, "Presence channel full: %zu entries (limit %" PRIu32 ")",
                         ch->table.count, max);
  client_t *cl = find_client(p, a->client_id, a->id_len, a->id_hash);
  channel_t *new_ch = NULL;
  client_t *new_cl = NULL;
  entry_t *e = NULL;
  if (ch == NULL && (table_reserve(&p->channels) != 0 || (ch = new_ch = channel_new(a)) == NULL))
    goto oom;
  if (cl == NULL && (table_reserve(&p->clients) != 0 || (cl = new_cl = client_new(a)) == NULL))
    goto oom;
  if (table_reserve(&ch->table) != 0 || (e = entry_new(a)) == NULL) goto oom;
  link_entry(p, e, ch, new_ch, cl, new_cl, a);
  *out = e;
  return 0;
oom:
  channel_free(new_ch);
  rt_free(new_cl);
  return rt_errbuf_set(err, RT_ENOMEM, "Out of memory");
}

/*
 * Takes e out of every index first (so a callback sees a consistent object
 * and may change it), then reports it, then frees it with the channel and
 * client records it emptied. Those records were unlinked before the callback,
 * so nothing the callback does can reach them.
 */
static void remove_entry(rt_presence_t *p, entry_t *e, rt_presence_cb cb, void *user_data) {
  channel_t *ch = e->chan;
  client_t *cl = e->client;
  table_delete(&ch->table, &e->node);
  list_unlink(&e->chan_link);
  list_unlink(&e->client_link);
  list_unlink(&e->expiry_link);
  p->total--;
  int drop_ch = ch->table.count == 0;
  int drop_cl = list_empty(&cl->entries);
  if (drop_ch) table_delete(&p->channels, &ch->node);
  if (drop_cl) table_delete(&p->clients, &cl->node);
  if (cb != NULL) {
    rt_presence_entry_t v;
    view_of(e, &v);
    cb(&v, RT_PRESENCE_LEAVE, user_data);
  }
  entry_free(e);
  if (drop_ch) channel_free(ch);
  if (drop_cl) rt_free(cl);
}

/* ------------------------------------------------------------ public API */

/*
 * The hash seed comes from addresses (ASLR) rather than a clock, since the
 * core reads no clock; it only makes prepared collisions less portable
 * between processes. The real defence is the caller's limits.
 */
rt_presence_t *rt_presence_new(const rt_presence_limits_t *limits) {
  rt_presence_t *p = rt_calloc(1, sizeof(*p));
  if (p == NULL) return NULL;
  if (limits != NULL) p->limits = *limits;
  link_init(&p->expiry);
  p->newest_stamp = INT64_MIN;
  uintptr_t entropy[2] = {(uintptr_t)p, (uintptr_t)&rt_presence_new};
  p->seed = rt_hash_bytes(0, (const char *)entropy, sizeof(entropy));
  return p;
}

void rt_presence_free(rt_presence_t *p) {
  if (p == NULL) return;
  while (!list_empty(&p->expiry)) {
    entry_t *e = CONTAINER_OF(p->expiry.next, entry_t, expiry_link);
    list_unlink(&e->expiry_link);
    entry_free(e);
  }
  for (size_t i = 0; i < p->channels.cap; i++) {
    hnode_t *n = p->channels.slots[i];
    if (n != NULL) channel_free(CONTAINER_OF(n, channel_t, node));
  }
  for (size_t i = 0; i < p->clients.cap; i++) {
    hnode_t *n = p->clients.slots[i];
    if (n != NULL) rt_free(CONTAINER_OF(n, client_t, node));
  }
  rt_free(p->channels.slots);
  rt_free(p->clients.slots);
  rt_free(p);
}

/*
 * Checks the input before touching anything, then joins or updates, and
 * refreshes the expiry only once the set can no longer fail.
 */
int rt_presence_set(rt_presence_t *p, const char *channel, size_t channel_len,
                    const char *client_id, const char *user_id, const char *data,
                    size_t data_len, int64_t wall_ms, int64_t mono_ms,
                    rt_presence_change_t *change_out, rt_presence_entry_t *entry_out,
                    rt_errbuf_t *err) {
  if (client_id == NULL || data == NULL || data_len == 0)
    return rt_errbuf_set(err, RT_EINVAL, "Presence needs a client id and data");
  size_t max = p->limits.max_data_size;
  if (max != 0 && data_len > max)
    return rt_errbuf_set(err, RT_ETOOLARGE, "Presence data too large: %zu bytes (limit %zu)",
                         data_len, max);
  size_t id_len = strlen(client_id);
  set_args_t a = {channel,  channel_len, rt_hash_bytes(p->seed, channel, channel_len),
                  client_id, id_len,     rt_hash_bytes(p->seed, client_id, id_len),
                  user_id,  data,        data_len, wall_ms};
  channel_t *ch = find_channel_hashed(p, channel, channel_len, a.channel_hash);
  entry_t *e = ch != NULL ? find_entry(ch, client_id, id_len, a.id_hash) : NULL;
  rt_presence_change_t change = e != NULL ? RT_PRESENCE_UPDATE : RT_PRESENCE_JOIN;
  int rc = e != NULL ? update_entry(e, &a, err) : join_entry(p, ch, &a, &e, err);
  if (rc != 0) return rc;
  refresh(p, e, mono_ms);
  if (change_out != NULL) *change_out = change;
  if (entry_out != NULL) view_of(e, entry_out);
  return 0;
}

int rt_presence_get(const rt_presence_t *p, const char *channel, size_t channel_len,
                    const char *client_id, rt_presence_entry_t *entry_out) {
  channel_t *ch = find_channel(p, channel, channel_len);
  size_t id_len = strlen(client_id);
  entry_t *e = ch != NULL ? find_entry(ch, client_id, id_len, rt_hash_bytes(p->seed, client_id, id_len))
                          : NULL;
  if (e == NULL) return RT_ENOENT;
  if (entry_out != NULL) view_of(e, entry_out);
  return 0;
}

int rt_presence_remove(rt_presence_t *p, const char *channel, size_t channel_len,
                       const char *client_id, rt_presence_cb cb, void *user_data) {
  channel_t *ch = find_channel(p, channel, channel_len);
  size_t id_len = strlen(client_id);
  entry_t *e = ch != NULL ? find_entry(ch, client_id, id_len, rt_hash_bytes(p->seed, client_id, id_len))
                          : NULL;
  if (e == NULL) return RT_ENOENT;
  remove_entry(p, e, cb, user_data);
  return 0;
}

/*
 * Removes the client's entries from the head of its list (oldest join
 * first). The client is looked up again after each callback, which may have
 * removed entries or the whole client; entries joined during the call have a
 * seq at or past `before` and sit at the tail, so the walk stops at them.
 */
size_t rt_presence_remove_client(rt_presence_t *p, const char *client_id, rt_presence_cb cb,
                                 void *user_data) {
  size_t id_len = strlen(client_id);
  uint64_t h = rt_hash_bytes(p->seed, client_id, id_len);
  uint64_t before = p->next_seq;
  size_t removed = 0;
  client_t *cl;
  while ((cl = find_client(p, client_id, id_len, h)) != NULL) {
    entry_t *e = CONTAINER_OF(cl->entries.next, entry_t, client_link);
    if (e->seq >= before) break;
    remove_entry(p, e, cb, user_data);
    removed++;
  }
  return removed;
}

void rt_presence_touch_client(rt_presence_t *p, const char *client_id, int64_t mono_ms) {
  size_t id_len = strlen(client_id);
  client_t *cl = find_client(p, client_id, id_len, rt_hash_bytes(p->seed, client_id, id_len));
  if (cl == NULL) return;
  for (link_t *l = cl->entries.next; l != &cl->entries; l = l->next)
    refresh(p, CONTAINER_OF(l, entry_t, client_link), mono_ms);
}

/*
 * Pops expired entries from the front of the expiry list. The list is sorted
 * by stamp and every entry shares the timeout, so the first live entry ends
 * the walk: the cost is the expired entries plus one. The head is read again
 * after each callback, which may have changed the list.
 */
size_t rt_presence_sweep(rt_presence_t *p, int64_t mono_ms, rt_presence_cb cb, void *user_data) {
  size_t removed = 0, visited = 0;
  uint32_t timeout = p->limits.timeout_ms;
  while (timeout != 0 && !list_empty(&p->expiry)) {
    entry_t *e = CONTAINER_OF(p->expiry.next, entry_t, expiry_link);
    visited++;
    if (!expired(e, mono_ms, timeout)) break;
    remove_entry(p, e, cb, user_data);
    removed++;
  }
  p->last_visited = visited;
  return removed;
}

size_t rt_presence_sweep_visited(const rt_presence_t *p) { return p->last_visited; }

size_t rt_presence_count(const rt_presence_t *p, const char *channel, size_t channel_len) {
  channel_t *ch = find_channel(p, channel, channel_len);
  return ch != NULL ? ch->table.count : 0;
}

int rt_presence_foreach(const rt_presence_t *p, const char *channel, size_t channel_len,
                        rt_presence_each_cb cb, void *user_data) {
  channel_t *ch = find_channel(p, channel, channel_len);
  if (ch == NULL) return 0;
  for (link_t *l = ch->order.next; l != &ch->order; l = l->next) {
    rt_presence_entry_t v;
    view_of(CONTAINER_OF(l, entry_t, chan_link), &v);
    int rc = cb(&v, user_data);
    if (rc != 0) return rc;
  }
  return 0;
}

size_t rt_presence_channel_count(const rt_presence_t *p) { return p->channels.count; }

size_t rt_presence_total(const rt_presence_t *p) { return p->total; }

/*
 * Appends piece by piece and, if any piece fails, cuts the buffer back to
 * where it was, so a failed encode leaves no half entry behind.
 */
int rt_presence_entry_json(const rt_presence_entry_t *e, rt_strbuf_t *out) {
  size_t mark = out->len;
  char tail[96];
  int k = snprintf(tail, sizeof(tail), ",\"joinedAt\":%" PRId64 ",\"updatedAt\":%" PRId64 "}",
                   e->joined_at_ms, e->updated_at_ms);
  int ok = rt_strbuf_append(out, "{\"clientId\":", 12) == 0 &&
           rt_strbuf_append_json_string(out, e->client_id, strlen(e->client_id)) == 0;
  if (ok && e->user_id != NULL)
    ok = rt_strbuf_append(out, ",\"userId\":", 10) == 0 &&
         rt_strbuf_append_json_string(out, e->user_id, strlen(e->user_id)) == 0;
  ok = ok && rt_strbuf_append(out, ",\"data\":", 8) == 0 &&
       rt_strbuf_append(out, e->data, e->data_len) == 0 &&
       rt_strbuf_append(out, tail, (size_t)k) == 0;
  if (ok) return 0;
  out->len = mark;
  if (out->p != NULL) out->p[mark] = '\0';
  return RT_ENOMEM;
}
