/*
 * Live queries: the registry of subscriptions, their sharing, change marking
 * and the pushes computed from successive results. Pure bookkeeping: no
 * sqlite3, no libuv, no clock. The caller evaluates queries (sqldb, on a
 * worker thread) and hands the results back here on the loop thread.
 *
 * Model:
 * - A subscription has an id ("q1", "q2", ... never reused in a registry's
 *   life), a subscriber (an opaque `owner` pointer the caller maps to its
 *   connection, plus a numeric owner id) and a query key, the pair (SQL
 *   text, canonical params JSON text). The caller canonicalises the params
 *   (same values -> same bytes); the registry compares keys byte for byte.
 * - Subscriptions with the same key share one query instance: one
 *   evaluation per change however many subscribers, one cached result, one
 *   dirty flag, one list of the tables it reads.
 * - A table -> instances index makes rt_lq_mark_table_changed() cost
 *   O(instances reading the table); a table nobody reads costs one lookup.
 *   Table names compare ASCII-case-insensitively, as SQLite's do.
 * - An instance is evaluated by one holder at a time: rt_lq_subscribe() or
 *   rt_lq_next_dirty() hands it out "pinned", and the holder returns the pin
 *   with exactly one of rt_lq_apply(), rt_lq_fail() or rt_lq_release(). A
 *   pinned instance stays allocated (its SQL and params readable from any
 *   thread) even if every subscriber leaves meanwhile. Changes marked while
 *   it is pinned make it dirty again, so it is refreshed once more after the
 *   pin returns: results are applied in evaluation order, never two at once.
 *
 * Pushes (frames of docs/protocol.md) go through one callback given to
 * rt_lq_new(). Each push names its subscription, so frames differ per
 * subscriber: the body (rows, diff) is encoded once per instance and change,
 * then copied after a per-subscriber prefix into one frame per subscriber.
 * Cost: one allocation and (prefix + body) bytes copied per subscriber per
 * push, counted in rt_lq_stats_t.frame_bytes. This is the per-subscriber copy
 * the hub avoids for channel messages; it is accepted here because pushes
 * happen per commit per query (not per message), diffs are usually small, and
 * a full result is bounded by the result byte limit. Frames are built for all
 * subscribers of an instance before any is delivered, so a push reaches all
 * of them or (on RT_ENOMEM) none.
 *
 * Diff rules (rt_lq_apply):
 * - No previous result (first evaluation): every subscriber is waiting for
 *   its ack; each gets {"type":"ack","id":N,"subscription":"<id>",
 *   "columns":[...],"key":"<column>","rows":[...]} ("id" only when the
 *   subscribe had one, "key" only for a keyed result with a key column).
 * - Keyed: both the previous and the new result have keys (every row one,
 *   all distinct) and the same columns: inserted = rows whose key is new,
 *   updated = rows whose key existed with different JSON, deleted = keys
 *   that are gone. {"type":"query_diff","subscription":"<id>","inserted":[
 *   rows],"updated":[rows],"deleted":[keys]}: inserted and updated in the new
 *   result's order, deleted in the previous result's order, keys as their
 *   JSON values. Keyed results have set semantics: a change of row order only
 *   pushes nothing (clients that need the order sort, or use an unkeyed
 *   query). Nothing inserted, updated or deleted: no push. When the diff
 *   frame would be larger than the full result frame, the full result is
 *   sent instead.
 * - Otherwise {"type":"query_result","subscription":"<id>","rows":[...]},
 *   unless the columns and the rows (in order) are byte-identical to the
 *   previous result: then no push.
 * The new result always replaces the cached one (a late subscriber's ack
 * shows the latest rows in the latest order).
 *
 * Threads: every call belongs to the loop thread, except reading
 * rt_lq_instance_sql()/rt_lq_instance_params() of a pinned instance, which
 * any thread may do (those strings are immutable while pinned).
 *
 * Pointer parameters are borrowed for the call and must be non-NULL unless
 * their description says otherwise.
 */
#ifndef RT_LIVE_LIVEQUERY_H
#define RT_LIVE_LIVEQUERY_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "errors.h"

/* Bytes of a subscription id with its NUL: "q" + up to 20 digits. */
#define RT_LQ_ID_MAX 24

typedef struct rt_lq_s rt_lq_t;
typedef struct rt_lq_instance_s rt_lq_instance_t;

typedef enum {
  RT_LQ_PUSH_ACK = 1, /* the deferred ack of a subscribe (first result of its instance) */
  RT_LQ_PUSH_RESULT,  /* {"type":"query_result",...}: a full result */
  RT_LQ_PUSH_DIFF,    /* {"type":"query_diff",...}: a keyed diff */
  RT_LQ_PUSH_ERROR,   /* {"type":"error","id":N,...}: the first evaluation failed (rt_lq_fail) */
} rt_lq_push_kind_t;

/* One push, borrowed for the callback. */
typedef struct {
  rt_lq_push_kind_t kind; /* what the frame holds */
  void *owner;            /* the subscription's owner, as given to rt_lq_subscribe */
  uint64_t owner_id;      /* the owner id given to rt_lq_subscribe */
  const char *sub_id;     /* the subscription id, NUL-terminated */
  rt_frame_t *frame;      /* sealed text frame; rt_frame_ref it to keep it. NULL only for
                             RT_LQ_PUSH_ERROR when the error frame could not be allocated */
} rt_lq_push_t;

/*
 * Receives one push on the loop thread. It may call rt_lq_subscribe,
 * rt_lq_unsubscribe, rt_lq_unsubscribe_owner, rt_lq_mark_table_changed,
 * rt_lq_next_dirty and rt_lq_notify on the same registry (subscriptions
 * removed during a fan-out get no further frame of it; ones added during it
 * get none), but not rt_lq_free. After an RT_LQ_PUSH_ERROR the subscription
 * is removed by the registry (the client never held it).
 */
typedef void (*rt_lq_push_cb)(const rt_lq_push_t *push, void *user_data);

/* Returns a new empty registry, or NULL on OOM. `cb` receives every push. */
rt_lq_t *rt_lq_new(rt_lq_push_cb cb, void *user_data);
/*
 * Frees the registry with its subscriptions and instances, pinned ones
 * included: every instance pointer handed out becomes invalid, so no worker
 * may still read one. Pushes nothing. NULL is a no-op.
 */
void rt_lq_free(rt_lq_t *reg);

/* A subscribe request; every pointer is borrowed for the call. */
typedef struct {
  void *owner;               /* opaque subscriber (the connection); any value, even NULL */
  uint64_t owner_id;         /* numeric id of the subscriber, reported in pushes */
  const char *sql;           /* SQL text, NUL-terminated */
  const char *params;        /* canonical params JSON text, NUL-terminated ("[]" for none) */
  const char *const *tables; /* names of the tables the query reads (duplicates allowed);
                                used only when a new instance is created */
  size_t ntables;            /* entries in tables; 0 = never marked dirty */
  int has_req_id;            /* the subscribe command carried an "id" */
  int64_t req_id;            /* that id, echoed in the ack or error */
} rt_lq_sub_req_t;

/* What a subscribe asks the caller to do next. */
typedef struct {
  char sub_id[RT_LQ_ID_MAX]; /* the new subscription's id, NUL-terminated */
  rt_lq_instance_t *evaluate; /* non-NULL: the instance has no result and no evaluation in
                                 flight; it is pinned for the caller, who evaluates it and
                                 returns the pin (rt_lq_apply/fail/release) */
  rt_frame_t *ack;            /* non-NULL: the instance already has a result; the ack frame
                                 (columns + cached rows), a new reference the caller owns */
} rt_lq_sub_out_t;

/*
 * Adds a subscription. When neither out->evaluate nor out->ack is set, the
 * instance's first evaluation is in flight and the ack arrives as an
 * RT_LQ_PUSH_ACK (or RT_LQ_PUSH_ERROR) when it completes. Returns 0, RT_EINVAL
 * (sql or params NULL, tables NULL with ntables > 0) or RT_ENOMEM, in which
 * case nothing changed.
 */
int rt_lq_subscribe(rt_lq_t *reg, const rt_lq_sub_req_t *req, rt_lq_sub_out_t *out);

/*
 * Removes subscription `sub_id` of `owner` (the owner must match, so a client
 * cannot drop another client's subscription by guessing its id). The last
 * subscription of an instance frees it (or, if pinned, detaches it until the
 * pin returns). Returns 0, or RT_ENOENT when no such subscription belongs to
 * owner.
 */
int rt_lq_unsubscribe(rt_lq_t *reg, const void *owner, const char *sub_id);

/* Removes every subscription of `owner` (on disconnect); returns how many. */
size_t rt_lq_unsubscribe_owner(rt_lq_t *reg, const void *owner);

/*
 * Finds subscription `sub_id`: sets *owner and *owner_id (each may be NULL)
 * and returns 0, or returns RT_ENOENT. For server-side unsubscribes by id.
 */
int rt_lq_lookup(const rt_lq_t *reg, const char *sub_id, void **owner, uint64_t *owner_id);

/* Number of subscriptions `owner` holds (for a per-client cap). */
size_t rt_lq_owner_count(const rt_lq_t *reg, const void *owner);

/*
 * Marks dirty every instance that reads `table` (NUL-terminated, ASCII case
 * ignored). A dirty instance is queued once however many marks it gets until
 * it is handed out; one marked while pinned is queued when the pin returns.
 * Returns the number of instances that became dirty by this call.
 */
size_t rt_lq_mark_table_changed(rt_lq_t *reg, const char *table);

/*
 * Pops the oldest dirty instance, clears its dirty flag and pins it for the
 * caller (evaluate, then rt_lq_apply/fail/release). Returns NULL when none is
 * waiting (pinned instances are not waiting). Calling it until NULL once per
 * refresh round gives one evaluation per changed instance per round.
 */
rt_lq_instance_t *rt_lq_next_dirty(rt_lq_t *reg);

/* The instance's SQL text and canonical params; valid while it is pinned or subscribed. */
const char *rt_lq_instance_sql(const rt_lq_instance_t *inst);
const char *rt_lq_instance_params(const rt_lq_instance_t *inst);

/*
 * An evaluated result, borrowed for rt_lq_apply (which copies what it keeps).
 * The texts are not validated: they come from the row encoder.
 */
typedef struct {
  const char *columns;        /* JSON array of the column names, e.g. ["id","total"] */
  size_t columns_len;         /* bytes of columns */
  size_t nrows;               /* rows in the result */
  const char *const *rows;    /* rows[i]: one JSON object (may be NULL when nrows is 0) */
  const size_t *row_lens;     /* bytes of rows[i] */
  int keyed;                  /* the query has a key: keys/key_lens are given */
  const char *const *keys;    /* keys[i]: JSON text of row i's key value (e.g. 7 or "a");
                                 NULL = this row has no key, making the result unkeyed */
  const size_t *key_lens;     /* bytes of keys[i] */
  const char *key_column;     /* name of the key column (NUL-terminated), or NULL: announced
                                 in the ack as "key" when the result is keyed, so clients
                                 know which column `deleted` and `updated` refer to */
} rt_lq_result_t;

/*
 * Installs the result of the pinned instance's evaluation and pushes what
 * changed (see the diff rules above), then returns the pin. Returns the
 * number of frames pushed (0 when nothing changed or every subscriber left
 * during the evaluation), RT_EINVAL for an inconsistent `res` (the previous
 * result is kept) or RT_ENOMEM: nothing was pushed, the previous result is
 * kept and the instance is marked dirty so the next round retries it.
 */
int64_t rt_lq_apply(rt_lq_t *reg, rt_lq_instance_t *inst, const rt_lq_result_t *res);

/*
 * Reports that the pinned instance's evaluation failed, and returns the pin.
 * When the instance has no result yet, every subscriber (all are waiting for
 * their ack) gets an RT_LQ_PUSH_ERROR frame (code `err`, `message` or the
 * code's default text when NULL) and is removed. When it has one, nothing is
 * pushed and the last good result stays.
 */
void rt_lq_fail(rt_lq_t *reg, rt_lq_instance_t *inst, int err, const char *message);

/*
 * Returns the pin without a result (evaluation cancelled, or a query whose
 * data arrives by rt_lq_notify): nothing is pushed; waiting subscribers keep
 * waiting, and a dirty instance is queued again.
 */
void rt_lq_release(rt_lq_t *reg, rt_lq_instance_t *inst);

/*
 * The seed's notifyQueryUpdate(query, result): installs `rows_json` (one
 * JSON array of rows, len bytes, validated) as the result of every instance
 * whose SQL text equals `sql`, whatever its params, and pushes it in full
 * (query_result, or the ack to waiting subscribers; the columns stay those
 * of the last evaluation, [] if none). An instance whose cached rows are
 * byte-identical gets no push. The notified rows carry no keys, so the next
 * evaluation of such an instance pushes a full result (unless identical).
 * Costs O(instances). Returns the number of frames pushed, RT_EJSON or
 * RT_EDEPTH (details in *err, which may be NULL) or RT_ENOMEM (instances
 * handled before it keep their push).
 */
int64_t rt_lq_notify(rt_lq_t *reg, const char *sql, const char *rows_json, size_t len,
                     rt_errbuf_t *err);

/* Totals, so the server can show what sharing saves. */
typedef struct {
  size_t instances;      /* distinct (sql, params) with subscribers */
  size_t subscriptions;  /* live subscriptions */
  size_t dirty;          /* instances queued for a refresh */
  uint64_t evaluations;  /* results applied since creation (rt_lq_apply) */
  uint64_t failures;     /* failed evaluations (rt_lq_fail) */
  uint64_t unchanged;    /* applied results that pushed nothing because nothing changed */
  uint64_t acks;         /* RT_LQ_PUSH_ACK frames pushed */
  uint64_t results;      /* RT_LQ_PUSH_RESULT frames pushed (notify included) */
  uint64_t diffs;        /* RT_LQ_PUSH_DIFF frames pushed */
  uint64_t frame_bytes;  /* bytes of all frames built per subscriber (the copy cost) */
} rt_lq_stats_t;

void rt_lq_stats(const rt_lq_t *reg, rt_lq_stats_t *out);

/* One instance, borrowed for rt_lq_foreach_instance's callback. */
typedef struct {
  const char *sql;         /* SQL text */
  const char *params;      /* canonical params */
  size_t subscribers;      /* subscriptions sharing it */
  uint64_t evaluations;    /* results applied to it */
  size_t rows;             /* rows in its cached result (0 when none or notified) */
  int has_result;          /* a result is cached */
  int keyed;               /* the cached result has keys */
  int dirty;               /* waiting for a refresh */
  int pinned;              /* an evaluation is in flight */
} rt_lq_instance_info_t;

/* Calls cb once per instance with subscribers; cb must not modify the registry. */
void rt_lq_foreach_instance(const rt_lq_t *reg,
                            void (*cb)(const rt_lq_instance_info_t *info, void *user_data),
                            void *user_data);

#endif
