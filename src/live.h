/*
 * Live queries in the server (src/live.c): the loop-side glue between
 * connections, the registry (src/live/livequery.c) and the worker-side
 * SQLite layer (src/live/sqldb.c). Internal to librealtime. The timer and
 * the jobs run on worker 0's loop; calls come from any worker's thread with
 * the server lock held.
 */
#ifndef RT_LIVE_H
#define RT_LIVE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "errors.h"

struct rt_server_s;
struct rt_conn_s;
typedef struct rt_live_s rt_live_t;

/* What rt_live_subscribe's name_or_sql is. */
enum {
  RT_LIVE_NAMED = 0,   /* a configured query's name */
  RT_LIVE_RAW = 1,     /* SQL from a client: needs allowRawSql and query:raw */
  RT_LIVE_TRUSTED = 2, /* SQL from the embedding program (rt_server_subscribe_query) */
};

/*
 * Opens the database and checks the named queries when the configuration
 * asks for live queries (queries, database.setup or allowRawSql); *out is
 * NULL otherwise. Returns 0, or RT_EIO / RT_ECONFIG / RT_EQUERY / RT_ENOMEM
 * with *err naming the cause.
 */
int rt_live_new(struct rt_server_s *srv, rt_live_t **out, rt_errbuf_t *err);
/*
 * Starts a job for waiting first evaluations and dirty instances. Jobs and
 * the timer belong to worker 0's loop: from another worker's thread this
 * only wakes worker 0 (RT_WAKE_LIVE), which calls it again. NULL is a no-op.
 */
void rt_live_kick(rt_live_t *live);
/* Starts the poll timer (after the server's loop is known). NULL is a no-op. */
int rt_live_start(rt_live_t *live);
/* The timer handle, closed by the server at stop; NULL when live is NULL. */
uv_handle_t *rt_live_handle(rt_live_t *live);
/* Frees everything; the loop must have no job of ours in flight. NULL is a no-op. */
void rt_live_free(rt_live_t *live);

/*
 * query_subscribe for connection c: name_or_sql as `raw` says (RT_LIVE_*), with params JSON (array or object, borrowed; NULL for none).
 * The ack (with the subscription id, columns and rows) goes to c now when
 * the result is cached, else when the first evaluation completes. The new
 * subscription's id is copied to sub_id (may be NULL). Returns 0,
 * or an RT_E* with *err for the error reply.
 */
int rt_live_subscribe(rt_live_t *live, struct rt_conn_s *c, const char *name_or_sql, int raw,
                      const char *params, size_t params_len, int has_id, int64_t id,
                      char sub_id[24], rt_errbuf_t *err);
/* query_unsubscribe: 0, or RT_EQUNKNOWN when c holds no such subscription. */
int rt_live_unsubscribe(rt_live_t *live, struct rt_conn_s *c, const char *sub_id);
/* Ends a subscription by id whoever holds it (the C API): 0 or RT_EQUNKNOWN. */
int rt_live_unsubscribe_id(rt_live_t *live, const char *sub_id);
/* Drops every subscription of c (disconnect). */
void rt_live_drop_owner(rt_live_t *live, struct rt_conn_s *c);
/* Totals for /stats. */
void rt_live_stats(const rt_live_t *live, size_t *instances, size_t *subscriptions,
                   uint64_t *evaluations);
/* notifyQueryUpdate: pushes rows (a JSON array) to every subscriber of `sql`. */
int64_t rt_live_notify(rt_live_t *live, const char *sql, const char *rows, size_t len);

#endif
