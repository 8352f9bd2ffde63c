/*
 * Live-query registry: four hash indexes (core/strmap.c: subscriptions by id,
 * instances by key, tables by name, owners by pointer), a FIFO of dirty instances, and the
 * fan-out of pushes. The results, the diffing that turns two evaluations into
 * a push, and the frames are in livequery_diff.c.
 *
 * Lifetime rules, in one place:
 * - An instance is in the key index exactly while it has subscribers. When
 *   the last one leaves it is detached at once (key and table indexes, dirty
 *   queue), so a new subscribe with the same key creates a fresh instance; it
 *   is freed at once unless it is pinned by an evaluation or held by a call
 *   of ours that is running callbacks on it, in which case it waits on the
 *   orphan list and the last of those frees it.
 * - A subscription is freed the moment it is removed. While an instance is
 *   held (a fan-out is delivering), its slot becomes a NULL hole instead of
 *   being swap-filled, so the indices the fan-out walks stay stable; the
 *   outermost hold compacts the array when it ends.
 * - An instance is on the dirty queue iff it is dirty, not pinned and not
 *   detached.
 */
#include "livequery_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "proto.h"
#include "strmap.h"

#define SUBS_MIN_CAP 2    /* first subscriber array of an instance */
#define REFS_MIN_CAP 2    /* first instance array of a table */
#define NOTIFY_MAX_DEPTH 1024

/* ---------------------------------------------------------------- types */

typedef struct table_s table_t;
typedef struct owner_s owner_t;
typedef struct sub_s sub_t;

typedef struct {
  rt_lq_instance_t *inst; /* an instance reading the table */
  size_t link;            /* index of this table in inst->links */
} ref_t;

struct table_s {
  ref_t *refs; /* instances reading this table, dense, unordered */
  size_t n;    /* entries in refs */
  size_t cap;  /* slots allocated in refs */
  size_t len;  /* strlen(name) */
  char name[]; /* the name as first given, NUL-terminated */
};

typedef struct {
  table_t *table; /* a table the instance reads */
  size_t pos;     /* the instance's index in table->refs */
} link_t;

struct rt_lq_instance_s {
  char *key;               /* sql, NUL, params, NUL: the index key (without the last NUL) */
  size_t key_len;          /* strlen(sql) + 1 + strlen(params) */
  const char *params;      /* points into key */
  link_t *links;           /* tables read, distinct */
  size_t nlinks;           /* entries in links */
  sub_t **subs;            /* subscriptions; NULL holes only while held */
  size_t nslots;           /* slots used in subs, holes included */
  size_t cap;              /* slots allocated in subs */
  size_t live;             /* non-NULL slots: the subscriber count */
  unsigned holds;          /* our calls running callbacks on it */
  int holes;               /* a slot was nulled while held; compact at the end */
  int pinned;              /* an evaluation is in flight */
  int dirty;               /* a table it reads changed since it was last handed out */
  int queued;              /* on the dirty queue */
  int detached;            /* no subscribers left; freed when neither pinned nor held */
  int has_result;          /* res is valid */
  rt_lq_cached_t res;            /* the last result */
  uint64_t evaluations;    /* results applied */
  rt_lq_instance_t *prev;  /* dirty queue or orphan list */
  rt_lq_instance_t *next;  /* dirty queue or orphan list */
};

struct sub_s {
  char id[RT_LQ_ID_MAX];   /* "q<n>", the index key */
  size_t id_len;           /* strlen(id) */
  uint64_t owner_id;       /* reported in pushes */
  int has_req_id;          /* the subscribe had an id */
  int64_t req_id;          /* echoed in the deferred ack or error */
  rt_lq_instance_t *inst;  /* the shared instance */
  size_t slot;             /* index in inst->subs */
  owner_t *own;            /* the owner record */
  sub_t *oprev;            /* owner's list */
  sub_t *onext;            /* owner's list */
};

struct owner_s {
  void *owner;  /* the caller's pointer; its bytes are the index key */
  sub_t *head;  /* subscriptions of this owner */
  size_t count; /* entries in the list */
};

struct rt_lq_s {
  rt_strmap_t subs;         /* id -> sub_t */
  rt_strmap_t insts;        /* sql NUL params -> instance */
  rt_strmap_t tables;       /* name (case-folded) -> table_t */
  rt_strmap_t owners;       /* owner pointer bytes -> owner_t */
  uint64_t seed;            /* hash seed */
  uint64_t last_id;         /* number in the last subscription id issued */
  rt_lq_instance_t *dhead;  /* dirty queue, oldest first */
  rt_lq_instance_t *dtail;  /* dirty queue, newest */
  size_t ndirty;            /* instances queued */
  rt_lq_instance_t *orphans; /* detached instances still pinned or held */
  rt_lq_push_cb cb;         /* push sink */
  void *cb_data;            /* passed to cb */
  size_t nsubs;             /* live subscriptions */
  rt_lq_stats_t stats;      /* the counters of rt_lq_stats (gauges filled on read) */
};

/* ---------------------------------------------------------------- tables */

static int grow_array(void **arr, size_t *cap, size_t need, size_t elem, size_t min_cap) {
  if (need <= *cap) return 0;
  size_t ncap = *cap ? *cap * 2 : min_cap;
  if (ncap < need) ncap = need;
  void *p = rt_realloc(*arr, ncap * elem);
  if (p == NULL) return RT_ENOMEM;
  *arr = p;
  *cap = ncap;
  return 0;
}

static table_t *table_get(rt_lq_t *reg, const char *name, size_t len) {
  table_t *t = rt_strmap_find(&reg->tables, name, len);
  if (t != NULL) return t;
  if (rt_strmap_reserve(&reg->tables) != 0) return NULL;
  t = rt_calloc(1, sizeof(*t) + len + 1);
  if (t == NULL) return NULL;
  memcpy(t->name, name, len);
  t->len = len;
  rt_strmap_insert(&reg->tables, t->name, len, t);
  return t;
}

static void table_drop_if_unused(rt_lq_t *reg, table_t *t) {
  if (t->n > 0) return;
  rt_strmap_remove(&reg->tables, t->name, t->len);
  rt_free(t->refs);
  rt_free(t);
}

/*
 * Adds `name` to the instance's tables (once, however often it is listed)
 * and the instance to the table's refs. On RT_ENOMEM nothing changed.
 */
static int link_table(rt_lq_t *reg, rt_lq_instance_t *inst, const char *name) {
  table_t *t = table_get(reg, name, strlen(name));
  if (t == NULL) return RT_ENOMEM;
  for (size_t j = 0; j < inst->nlinks; j++)
    if (inst->links[j].table == t) return 0;
  if (grow_array((void **)&t->refs, &t->cap, t->n + 1, sizeof(ref_t), REFS_MIN_CAP) != 0) {
    table_drop_if_unused(reg, t);
    return RT_ENOMEM;
  }
  inst->links[inst->nlinks] = (link_t){t, t->n};
  t->refs[t->n++] = (ref_t){inst, inst->nlinks};
  inst->nlinks++;
  return 0;
}

/* Removes the instance from every table's refs (swap-remove, fixing the moved link). */
static void unlink_tables(rt_lq_t *reg, rt_lq_instance_t *inst) {
  while (inst->nlinks > 0) {
    link_t *l = &inst->links[--inst->nlinks];
    table_t *t = l->table;
    ref_t moved = t->refs[--t->n];
    if (l->pos != t->n) {
      t->refs[l->pos] = moved;
      moved.inst->links[moved.link].pos = l->pos;
    }
    table_drop_if_unused(reg, t);
  }
}

/* ---------------------------------------------------------------- lists */

static void dirty_push(rt_lq_t *reg, rt_lq_instance_t *inst) {
  if (inst->queued || !inst->dirty || inst->pinned || inst->detached) return;
  inst->prev = reg->dtail;
  inst->next = NULL;
  if (reg->dtail != NULL) reg->dtail->next = inst;
  else reg->dhead = inst;
  reg->dtail = inst;
  inst->queued = 1;
  reg->ndirty++;
}

static void dirty_remove(rt_lq_t *reg, rt_lq_instance_t *inst) {
  if (!inst->queued) return;
  if (inst->prev != NULL) inst->prev->next = inst->next;
  else reg->dhead = inst->next;
  if (inst->next != NULL) inst->next->prev = inst->prev;
  else reg->dtail = inst->prev;
  inst->prev = inst->next = NULL;
  inst->queued = 0;
  reg->ndirty--;
}

static void orphan_push(rt_lq_t *reg, rt_lq_instance_t *inst) {
  inst->prev = NULL;
  inst->next = reg->orphans;
  if (reg->orphans != NULL) reg->orphans->prev = inst;
  reg->orphans = inst;
}

static void orphan_remove(rt_lq_t *reg, rt_lq_instance_t *inst) {
  if (inst->prev != NULL) inst->prev->next = inst->next;
  else reg->orphans = inst->next;
  if (inst->next != NULL) inst->next->prev = inst->prev;
}

/* ---------------------------------------------------------------- fan-out */

static void instance_free(rt_lq_instance_t *inst) {
  rt_lq_cached_destroy(&inst->res);
  rt_free(inst->links);
  rt_free(inst->subs);
  rt_free(inst->key);
  rt_free(inst);
}

static void compact_subs(rt_lq_instance_t *inst) {
  size_t w = 0;
  for (size_t r = 0; r < inst->nslots; r++) {
    sub_t *s = inst->subs[r];
    if (s == NULL) continue;
    s->slot = w;
    inst->subs[w++] = s;
  }
  inst->nslots = w;
  inst->holes = 0;
}

/* Frees a detached instance once nothing pins or holds it. */
static void maybe_free(rt_lq_t *reg, rt_lq_instance_t *inst) {
  if (!inst->detached || inst->pinned || inst->holds > 0) return;
  orphan_remove(reg, inst);
  instance_free(inst);
}

static void hold(rt_lq_instance_t *inst) { inst->holds++; }

/* Ends a hold: compacts holes, queues the instance if it became dirty, frees it if detached. */
static void unhold(rt_lq_t *reg, rt_lq_instance_t *inst) {
  if (--inst->holds > 0) return;
  if (inst->holes) compact_subs(inst);
  dirty_push(reg, inst);
  maybe_free(reg, inst);
}

/* Builds one frame per current subscriber, all or none. */
static int build_frames(const rt_lq_instance_t *inst, const rt_lq_body_t *b, rt_frame_t ***out) {
  size_t n = inst->nslots;
  rt_frame_t **frames = rt_calloc(n, sizeof(*frames));
  if (frames == NULL) return RT_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    const sub_t *s = inst->subs[i];
    if (s == NULL) continue;
    frames[i] = rt_lq_frame_build(b, s->id, s->has_req_id, s->req_id);
    if (frames[i] != NULL) continue;
    for (size_t j = 0; j < i; j++) rt_frame_unref(frames[j]);
    rt_free(frames);
    return RT_ENOMEM;
  }
  *out = frames;
  return 0;
}

static void count_push(rt_lq_t *reg, rt_lq_push_kind_t kind, const rt_frame_t *f) {
  if (kind == RT_LQ_PUSH_ACK) reg->stats.acks++;
  else if (kind == RT_LQ_PUSH_DIFF) reg->stats.diffs++;
  else if (kind == RT_LQ_PUSH_RESULT) reg->stats.results++;
  if (f != NULL) reg->stats.frame_bytes += f->len;
}

static void push_one(rt_lq_t *reg, rt_lq_push_kind_t kind, const sub_t *s, rt_frame_t *f) {
  char id[RT_LQ_ID_MAX];
  memcpy(id, s->id, s->id_len + 1);
  rt_lq_push_t push = {kind, s->own->owner, s->owner_id, id, f};
  count_push(reg, kind, f);
  reg->cb(&push, reg->cb_data);
}

/*
 * Hands frames[i] to the subscriber in slot i, for the slots that existed
 * when the frames were built. The instance is held by the caller, so a
 * callback that unsubscribes leaves a hole (skipped, its frame dropped) and
 * one that subscribes appends past the walked range.
 */
static int64_t deliver(rt_lq_t *reg, rt_lq_instance_t *inst, rt_lq_push_kind_t kind,
                       rt_frame_t **frames, size_t n) {
  int64_t pushed = 0;
  for (size_t i = 0; i < n; i++) {
    const sub_t *s = inst->subs[i];
    if (s != NULL && frames[i] != NULL) {
      push_one(reg, kind, s, frames[i]);
      pushed++;
    }
    rt_frame_unref(frames[i]);
  }
  rt_free(frames);
  return pushed;
}

/*
 * Installs `next` as the instance's result and pushes `b` (if any) to its
 * subscribers. Frames are built before the install so that RT_ENOMEM leaves
 * the old result and pushes nothing; the install precedes delivery so that a
 * callback subscribing to this instance is acked with the new rows. The
 * caller holds the instance.
 */
static int64_t install_and_push(rt_lq_t *reg, rt_lq_instance_t *inst, rt_lq_cached_t *next,
                                const rt_lq_body_t *b) {
  rt_frame_t **frames = NULL;
  size_t n = inst->nslots;
  if (b != NULL && build_frames(inst, b, &frames) != 0) return RT_ENOMEM;
  rt_lq_cached_destroy(&inst->res);
  inst->res = *next;
  inst->has_result = 1;
  memset(next, 0, sizeof(*next));
  return b != NULL ? deliver(reg, inst, b->kind, frames, n) : 0;
}

/* ---------------------------------------------------------------- instances */

static char *make_key(const char *sql, const char *params, size_t *klen) {
  size_t slen = strlen(sql), plen = strlen(params);
  char *key = rt_malloc(slen + plen + 2);
  if (key == NULL) return NULL;
  memcpy(key, sql, slen + 1);
  memcpy(key + slen + 1, params, plen + 1);
  *klen = slen + 1 + plen;
  return key;
}

/* Creates an instance reading `tables` and indexes it; takes `key`. All or nothing. */
static rt_lq_instance_t *instance_new(rt_lq_t *reg, char *key, size_t klen,
                                      const char *const *tables, size_t ntables) {
  rt_lq_instance_t *inst = NULL;
  if (rt_strmap_reserve(&reg->insts) != 0 || (inst = rt_calloc(1, sizeof(*inst))) == NULL) {
    rt_free(key);
    return NULL;
  }
  inst->key = key;
  inst->key_len = klen;
  inst->params = key + strlen(key) + 1;
  inst->links = rt_calloc(ntables, sizeof(*inst->links));
  for (size_t i = 0; inst->links != NULL && i < ntables; i++) {
    if (link_table(reg, inst, tables[i]) == 0) continue;
    unlink_tables(reg, inst);
    rt_free(inst->links);
    inst->links = NULL;
  }
  if (inst->links == NULL) {
    instance_free(inst);
    return NULL;
  }
  rt_strmap_insert(&reg->insts, inst->key, klen, inst);
  return inst;
}

/* The last subscriber left: unindex the instance, then free it or leave it to its pin/holds. */
static void detach(rt_lq_t *reg, rt_lq_instance_t *inst) {
  rt_strmap_remove(&reg->insts, inst->key, inst->key_len);
  unlink_tables(reg, inst);
  dirty_remove(reg, inst);
  inst->detached = 1;
  if (inst->pinned || inst->holds > 0) orphan_push(reg, inst);
  else instance_free(inst);
}

static void pin(rt_lq_t *reg, rt_lq_instance_t *inst) {
  dirty_remove(reg, inst);
  inst->dirty = 0;
  inst->pinned = 1;
}

/* Returns the pin; a detached instance is freed, a dirty one queued. */
static void unpin(rt_lq_t *reg, rt_lq_instance_t *inst) {
  inst->pinned = 0;
  dirty_push(reg, inst);
  maybe_free(reg, inst);
}

/* ---------------------------------------------------------------- subscriptions */

static owner_t *owner_find(const rt_lq_t *reg, const void *owner) {
  return rt_strmap_find(&reg->owners, (const char *)&owner, sizeof(owner));
}

static owner_t *owner_get(rt_lq_t *reg, void *owner) {
  owner_t *o = owner_find(reg, owner);
  if (o != NULL) return o;
  if (rt_strmap_reserve(&reg->owners) != 0 || (o = rt_calloc(1, sizeof(*o))) == NULL) return NULL;
  o->owner = owner;
  rt_strmap_insert(&reg->owners, (const char *)&o->owner, sizeof(o->owner), o);
  return o;
}

static void owner_drop_if_empty(rt_lq_t *reg, owner_t *o) {
  if (o->count > 0) return;
  rt_strmap_remove(&reg->owners, (const char *)&o->owner, sizeof(o->owner));
  rt_free(o);
}

/* Creates the subscription and links it everywhere; on RT_ENOMEM nothing changed. */
static int sub_new(rt_lq_t *reg, rt_lq_instance_t *inst, owner_t *o, const rt_lq_sub_req_t *req,
                   const char *id) {
  sub_t *s = NULL;
  if (rt_strmap_reserve(&reg->subs) != 0 ||
      grow_array((void **)&inst->subs, &inst->cap, inst->nslots + 1, sizeof(sub_t *),
                 SUBS_MIN_CAP) != 0 ||
      (s = rt_calloc(1, sizeof(*s))) == NULL)
    return RT_ENOMEM;
  s->id_len = strlen(id);
  memcpy(s->id, id, s->id_len + 1);
  s->owner_id = req->owner_id;
  s->has_req_id = req->has_req_id;
  s->req_id = req->req_id;
  s->inst = inst;
  s->slot = inst->nslots;
  s->own = o;
  s->onext = o->head;
  if (o->head != NULL) o->head->oprev = s;
  o->head = s;
  o->count++;
  inst->subs[inst->nslots++] = s;
  inst->live++;
  rt_strmap_insert(&reg->subs, s->id, s->id_len, s);
  reg->nsubs++;
  return 0;
}

/* Unlinks and frees a subscription; the last one of an instance detaches it. */
static void sub_remove(rt_lq_t *reg, sub_t *s) {
  rt_lq_instance_t *inst = s->inst;
  owner_t *o = s->own;
  rt_strmap_remove(&reg->subs, s->id, s->id_len);
  if (s->oprev != NULL) s->oprev->onext = s->onext;
  else o->head = s->onext;
  if (s->onext != NULL) s->onext->oprev = s->oprev;
  o->count--;
  owner_drop_if_empty(reg, o);
  if (inst->holds > 0) {
    inst->subs[s->slot] = NULL;
    inst->holes = 1;
  } else {
    sub_t *last = inst->subs[--inst->nslots];
    inst->subs[s->slot] = last;
    last->slot = s->slot;
  }
  inst->live--;
  reg->nsubs--;
  rt_free(s);
  if (inst->live == 0) detach(reg, inst);
}

/* The ack for a subscriber joining an instance that has a result; NULL on OOM. */
static rt_frame_t *ack_now(const rt_lq_instance_t *inst, const char *id,
                           const rt_lq_sub_req_t *req) {
  rt_lq_body_t b;
  rt_lq_body_result(&b, RT_LQ_PUSH_ACK, &inst->res);
  return rt_lq_frame_build(&b, id, req->has_req_id, req->req_id);
}

static int check_req(const rt_lq_sub_req_t *req) {
  if (req->sql == NULL || req->params == NULL) return RT_EINVAL;
  if (req->ntables > 0 && req->tables == NULL) return RT_EINVAL;
  for (size_t i = 0; i < req->ntables; i++)
    if (req->tables[i] == NULL) return RT_EINVAL;
  return 0;
}

/*
 * Finds or creates the owner record and the instance, builds the ack when a
 * result is cached, then creates the subscription. Each step is undone when a
 * later one fails, so RT_ENOMEM leaves the registry as it was (an index may
 * have grown, which is harmless).
 */
int rt_lq_subscribe(rt_lq_t *reg, const rt_lq_sub_req_t *req, rt_lq_sub_out_t *out) {
  memset(out, 0, sizeof(*out));
  if (check_req(req) != 0) return RT_EINVAL;
  char id[RT_LQ_ID_MAX];
  snprintf(id, sizeof(id), "q%" PRIu64, reg->last_id + 1);
  size_t klen;
  char *key = make_key(req->sql, req->params, &klen);
  owner_t *o = key != NULL ? owner_get(reg, req->owner) : NULL;
  if (o == NULL) {
    rt_free(key);
    return RT_ENOMEM;
  }
  rt_lq_instance_t *inst = rt_strmap_find(&reg->insts, key, klen);
  int created = inst == NULL;
  if (created) inst = instance_new(reg, key, klen, req->tables, req->ntables);
  else rt_free(key);
  rt_frame_t *ack = inst != NULL && inst->has_result ? ack_now(inst, id, req) : NULL;
  int ok = inst != NULL && (ack != NULL || !inst->has_result) &&
           sub_new(reg, inst, o, req, id) == 0;
  if (!ok) {
    rt_frame_unref(ack);
    if (created && inst != NULL) detach(reg, inst);
    owner_drop_if_empty(reg, o);
    return RT_ENOMEM;
  }
  reg->last_id++;
  memcpy(out->sub_id, id, sizeof(id));
  out->ack = ack;
  if (!inst->has_result && !inst->pinned) {
    pin(reg, inst);
    out->evaluate = inst;
  }
  return 0;
}

static sub_t *find_sub(const rt_lq_t *reg, const char *sub_id) {
  return rt_strmap_find(&reg->subs, sub_id, strlen(sub_id));
}

int rt_lq_unsubscribe(rt_lq_t *reg, const void *owner, const char *sub_id) {
  sub_t *s = find_sub(reg, sub_id);
  if (s == NULL || s->own->owner != owner) return RT_ENOENT;
  sub_remove(reg, s);
  return 0;
}

/* Pops the owner's subscriptions; the last removal frees the owner record, so count first. */
size_t rt_lq_unsubscribe_owner(rt_lq_t *reg, const void *owner) {
  owner_t *o = owner_find(reg, owner);
  size_t n = o != NULL ? o->count : 0;
  for (size_t i = 0; i < n; i++) sub_remove(reg, o->head);
  return n;
}

int rt_lq_lookup(const rt_lq_t *reg, const char *sub_id, void **owner, uint64_t *owner_id) {
  const sub_t *s = find_sub(reg, sub_id);
  if (s == NULL) return RT_ENOENT;
  if (owner != NULL) *owner = s->own->owner;
  if (owner_id != NULL) *owner_id = s->owner_id;
  return 0;
}

size_t rt_lq_owner_count(const rt_lq_t *reg, const void *owner) {
  const owner_t *o = owner_find(reg, owner);
  return o != NULL ? o->count : 0;
}

/* ---------------------------------------------------------------- refresh */

size_t rt_lq_mark_table_changed(rt_lq_t *reg, const char *table) {
  table_t *t = rt_strmap_find(&reg->tables, table, strlen(table));
  size_t marked = 0;
  for (size_t i = 0; t != NULL && i < t->n; i++) {
    rt_lq_instance_t *inst = t->refs[i].inst;
    if (inst->dirty) continue;
    inst->dirty = 1;
    dirty_push(reg, inst);
    marked++;
  }
  return marked;
}

rt_lq_instance_t *rt_lq_next_dirty(rt_lq_t *reg) {
  rt_lq_instance_t *inst = reg->dhead;
  if (inst != NULL) pin(reg, inst);
  return inst;
}

const char *rt_lq_instance_sql(const rt_lq_instance_t *inst) { return inst->key; }
const char *rt_lq_instance_params(const rt_lq_instance_t *inst) { return inst->params; }

/* Plans, installs and pushes a new result for a held instance with subscribers. */
static int64_t apply_result(rt_lq_t *reg, rt_lq_instance_t *inst, const rt_lq_result_t *res) {
  rt_lq_cached_t nw;
  rt_lq_body_t b = {0};
  char *text = NULL;
  int rc = rt_lq_cached_from_result(reg->seed, res, &nw);
  if (rc != 0) return rc;
  rc = rt_lq_plan_push(reg->seed, inst->has_result ? &inst->res : NULL, &nw, &b, &text);
  int64_t pushed = rc == 0 ? install_and_push(reg, inst, &nw, b.kind != 0 ? &b : NULL) : rc;
  if (pushed == 0 && b.kind == 0) reg->stats.unchanged++;
  rt_lq_cached_destroy(&nw);
  rt_free(text);
  return pushed;
}

/*
 * The pin is returned whatever happens. A detached instance (every
 * subscriber left during the evaluation) is freed without diffing. On
 * RT_ENOMEM the instance is marked dirty, so the retry needs no new change.
 */
int64_t rt_lq_apply(rt_lq_t *reg, rt_lq_instance_t *inst, const rt_lq_result_t *res) {
  reg->stats.evaluations++;
  inst->evaluations++;
  hold(inst);
  unpin(reg, inst);
  int64_t pushed = inst->detached ? 0 : apply_result(reg, inst, res);
  if (pushed == RT_ENOMEM) inst->dirty = 1;
  unhold(reg, inst);
  return pushed;
}

/* Sends the error to each waiting subscriber, then removes it (unless a callback already did). */
static void fail_waiting(rt_lq_t *reg, rt_lq_instance_t *inst, int err, const char *message) {
  size_t n = inst->nslots;
  for (size_t i = 0; i < n; i++) {
    sub_t *s = inst->subs[i];
    if (s == NULL) continue;
    rt_frame_t *f = rt_proto_error(s->has_req_id, s->req_id, err, message);
    push_one(reg, RT_LQ_PUSH_ERROR, s, f);
    rt_frame_unref(f);
    if (inst->subs[i] == s) sub_remove(reg, s);
  }
}

void rt_lq_fail(rt_lq_t *reg, rt_lq_instance_t *inst, int err, const char *message) {
  reg->stats.failures++;
  hold(inst);
  unpin(reg, inst);
  if (!inst->detached && !inst->has_result) fail_waiting(reg, inst, err, message);
  unhold(reg, inst);
}

void rt_lq_release(rt_lq_t *reg, rt_lq_instance_t *inst) { unpin(reg, inst); }

/* ---------------------------------------------------------------- notify */

static int64_t notify_instance(rt_lq_t *reg, rt_lq_instance_t *inst, const char *rows,
                               size_t len) {
  if (inst->detached) return 0;
  if (inst->has_result && rt_lq_same_text(inst->res.rows, inst->res.rows_len, rows, len)) return 0;
  rt_lq_cached_t nw;
  rt_lq_body_t b;
  if (rt_lq_cached_from_rows(inst->has_result ? &inst->res : NULL, rows, len, &nw) != 0)
    return RT_ENOMEM;
  rt_lq_body_result(&b, inst->has_result ? RT_LQ_PUSH_RESULT : RT_LQ_PUSH_ACK, &nw);
  int64_t pushed = install_and_push(reg, inst, &nw, &b);
  rt_lq_cached_destroy(&nw);
  return pushed;
}

/* The instances whose SQL is `sql`, held so callbacks cannot free them under us. */
static int collect_by_sql(rt_lq_t *reg, const char *sql, rt_lq_instance_t ***out, size_t *n) {
  size_t slen = strlen(sql), count = 0;
  rt_lq_instance_t **list = rt_malloc(reg->insts.count * sizeof(*list));
  if (list == NULL) return RT_ENOMEM;
  for (size_t i = 0; i < reg->insts.cap; i++) {
    rt_lq_instance_t *inst = reg->insts.slots[i].val;
    if (inst == NULL || inst->params - inst->key != (ptrdiff_t)(slen + 1)) continue;
    if (memcmp(inst->key, sql, slen) != 0) continue;
    hold(inst);
    list[count++] = inst;
  }
  *out = list;
  *n = count;
  return 0;
}

int64_t rt_lq_notify(rt_lq_t *reg, const char *sql, const char *rows_json, size_t len,
                     rt_errbuf_t *err) {
  size_t start, vlen;
  int rc = rt_json_validate(rows_json, len, NOTIFY_MAX_DEPTH, &start, &vlen, err);
  if (rc != 0) return rc;
  if (rows_json[start] != '[') return rt_errbuf_set(err, RT_EJSON, "rows must be a JSON array");
  rt_lq_instance_t **list;
  size_t n;
  if (collect_by_sql(reg, sql, &list, &n) != 0) return RT_ENOMEM;
  int64_t total = 0;
  for (size_t i = 0; i < n; i++) {
    int64_t r = total >= 0 ? notify_instance(reg, list[i], rows_json + start, vlen) : 0;
    total = r < 0 ? r : total + r;
  }
  for (size_t i = 0; i < n; i++) unhold(reg, list[i]);
  rt_free(list);
  return total;
}

/* ---------------------------------------------------------------- lifecycle */

rt_lq_t *rt_lq_new(rt_lq_push_cb cb, void *user_data) {
  rt_lq_t *reg = rt_calloc(1, sizeof(*reg));
  if (reg == NULL) return NULL;
  reg->cb = cb;
  reg->cb_data = user_data;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t entropy[2] = {(uint64_t)(uintptr_t)reg, (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec};
  reg->seed = rt_strmap_hash(0, (const char *)entropy, sizeof(entropy), 0);
  rt_strmap_init(&reg->subs, reg->seed, 0);
  rt_strmap_init(&reg->insts, reg->seed, 0);
  rt_strmap_init(&reg->tables, reg->seed, 1);
  rt_strmap_init(&reg->owners, reg->seed, 0);
  return reg;
}

static void free_map_values(rt_strmap_t *m, void (*free_fn)(void *)) {
  for (size_t i = 0; i < m->cap; i++)
    if (m->slots[i].val != NULL) free_fn(m->slots[i].val);
  rt_strmap_destroy(m);
}

static void free_table(void *p) {
  table_t *t = p;
  rt_free(t->refs);
  rt_free(t);
}

static void free_instance(void *p) { instance_free(p); }

void rt_lq_free(rt_lq_t *reg) {
  if (reg == NULL) return;
  free_map_values(&reg->subs, rt_free);
  free_map_values(&reg->owners, rt_free);
  free_map_values(&reg->insts, free_instance);
  free_map_values(&reg->tables, free_table);
  while (reg->orphans != NULL) {
    rt_lq_instance_t *inst = reg->orphans;
    reg->orphans = inst->next;
    instance_free(inst);
  }
  rt_free(reg);
}

/* ---------------------------------------------------------------- stats */

void rt_lq_stats(const rt_lq_t *reg, rt_lq_stats_t *out) {
  *out = reg->stats;
  out->instances = reg->insts.count;
  out->subscriptions = reg->nsubs;
  out->dirty = reg->ndirty;
}

void rt_lq_foreach_instance(const rt_lq_t *reg,
                            void (*cb)(const rt_lq_instance_info_t *info, void *user_data),
                            void *user_data) {
  for (size_t i = 0; i < reg->insts.cap; i++) {
    const rt_lq_instance_t *inst = reg->insts.slots[i].val;
    if (inst == NULL) continue;
    rt_lq_instance_info_t info = {
        .sql = inst->key, .params = inst->params, .subscribers = inst->live,
        .evaluations = inst->evaluations, .rows = inst->res.nrows,
        .has_result = inst->has_result, .keyed = inst->res.keyed, .dirty = inst->dirty,
        .pinned = inst->pinned};
    cb(&info, user_data);
  }
}
