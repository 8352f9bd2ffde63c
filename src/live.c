/*
 * Live queries in the server: wires the pure registry (src/live/livequery.c)
 * and the SQLite layer (src/live/sqldb.c) to the event loop.
 *
 * Two connections to the database file:
 * - `check` belongs to the loop thread and only prepares statements, to
 *   refuse a bad query at once and learn the tables it reads. In WAL mode
 *   preparing reads the schema without waiting for writers.
 * - `db` belongs to the worker: one job at a time runs on the libuv thread
 *   pool, so the connection is never used by two threads at once. A job
 *   first polls for other processes' commits (PRAGMA data_version, then the
 *   trigger log), then evaluates the instances it was given (new ones, and
 *   the ones a previous poll marked dirty). Its results are applied on the
 *   loop thread (rt_lq_apply computes and pushes the diffs); the instances
 *   its poll marked dirty are evaluated by one job started at once, so a
 *   commit is pushed within about one poll interval plus the evaluation, and
 *   a burst costs one evaluation per query per interval.
 * A slow query therefore never delays message delivery; it only delays the
 * next refresh.
 *
 * With several workers, all of this stays on worker 0's loop (the timer,
 * uv_queue_work and its completions); subscriptions come from any worker
 * under the server lock, a job they need is started through a wake-up of
 * worker 0, and pushes to connections of other workers go through
 * rt_conn_send, which copies them to the owner's inbox.
 */
#include <jansson.h>
#include <string.h>

#include "alloc.h"
#include "live.h"
#include "livequery.h"
#include "log.h"
#include "perm.h"
#include "security.h"
#include "server_internal.h"
#include "sqldb.h"
#include "worker.h"

typedef struct {
  rt_lq_instance_t *inst; /* pinned for this job */
  char *key;              /* configured key column, or NULL */
  int rc;                 /* outcome of the evaluation */
  rt_errbuf_t err;        /* its message */
  rt_sqldb_result_t *res; /* the rows, when rc == 0 */
  int key_index;          /* result column holding the key, or -1 */
} eval_t;

typedef struct {
  uv_work_t req;    /* the thread-pool request */
  rt_live_t *live;  /* owner */
  int poll;         /* poll for commits first (timer jobs); evaluation-only jobs do not */
  eval_t *evals;    /* instances to evaluate */
  size_t n;         /* entries in evals */
  char **changed;   /* tables the poll found changed (rt_malloc'd names) */
  size_t nchanged;  /* entries in changed */
  size_t cchanged;  /* capacity of changed */
} job_t;

struct rt_live_s {
  rt_server_t *srv;       /* owner */
  rt_sqldb_t *db;         /* worker's connection */
  rt_sqldb_t *check;      /* loop thread's connection (prepare only) */
  rt_lq_t *reg;           /* subscriptions and instances */
  uv_timer_t timer;       /* poll interval */
  job_t *job;             /* the job in flight, or NULL */
  eval_t *pending;        /* new instances waiting for their first evaluation */
  size_t npending;        /* entries in pending */
  size_t cpending;        /* capacity of pending */
  rt_query_config_t *queries; /* owned copy of the named queries */
  size_t nqueries;        /* entries in queries */
};

static char *dup_opt(const char *s) { return s != NULL ? rt_strdup(s) : NULL; }

/* The configured key column of `sql`, when it is a named query's SQL. */
static const char *key_of(const rt_live_t *live, const char *sql) {
  for (size_t i = 0; i < live->nqueries; i++)
    if (strcmp(live->queries[i].sql, sql) == 0) return live->queries[i].key;
  return NULL;
}

/* --------------------------------------------------------------- worker */

static void note_changed(const char *table, void *ud) {
  job_t *j = ud;
  if (j->nchanged == j->cchanged) {
    size_t cap = j->cchanged ? j->cchanged * 2 : 8;
    char **p = rt_realloc(j->changed, cap * sizeof(*p));
    if (p == NULL) return; /* the table is re-reported by no one: mark all dirty below */
    j->changed = p;
    j->cchanged = cap;
  }
  char *name = rt_strdup(table);
  if (name != NULL) j->changed[j->nchanged++] = name;
}

/* Runs on the thread pool: the only code that touches live->db. */
static void evaluate(eval_t *e, rt_sqldb_t *db, const rt_config_t *cfg) {
  rt_sqldb_query_t *q = NULL;
  const char *sql = rt_lq_instance_sql(e->inst), *params = rt_lq_instance_params(e->inst);
  e->rc = rt_sqldb_query_new(db, sql, params, strlen(params), e->key, &q, &e->err);
  for (size_t i = 0; e->rc == 0 && i < rt_sqldb_query_table_count(q); i++) {
    int w = rt_sqldb_watch(db, rt_sqldb_query_table(q, i), NULL);
    if (w == RT_ENOMEM || w == RT_EBUSY) e->rc = rt_errbuf_set(&e->err, w, "%s", rt_strerror(w));
  }
  if (e->rc == 0) {
    rt_sqldb_limits_t lim = {cfg->live_timeout_ms, cfg->live_max_rows, cfg->live_max_bytes};
    e->rc = rt_sqldb_query_run(q, &lim, &e->res, &e->err);
    e->key_index = rt_sqldb_query_key_column(q); /* after the run: it may have re-prepared */
  }
  rt_sqldb_query_free(q);
}

static void work(uv_work_t *req) {
  job_t *j = req->data;
  rt_live_t *live = j->live;
  if (j->poll) rt_sqldb_poll(live->db, note_changed, j, NULL);
  for (size_t i = 0; i < j->n; i++) evaluate(&j->evals[i], live->db, &live->srv->cfg);
}

/* ------------------------------------------------------------ loop side */

/* Hands an evaluated result to the registry, which pushes what changed. */
static void apply(rt_live_t *live, eval_t *e) {
  if (e->rc != 0) {
    rt_lq_fail(live->reg, e->inst, e->rc, e->err.msg[0] ? e->err.msg : NULL);
    return;
  }
  size_t n = rt_sqldb_result_row_count(e->res), clen = 0;
  char *cols = rt_sqldb_result_columns_json(e->res, &clen);
  const char **rows = rt_calloc(n ? n : 1, sizeof(*rows));
  const char **keys = rt_calloc(n ? n : 1, sizeof(*keys));
  size_t *lens = rt_calloc(n ? n : 1, sizeof(*lens)), *klens = rt_calloc(n ? n : 1, sizeof(*klens));
  int keyed = rt_sqldb_result_has_keys(e->res);
  if (cols == NULL || rows == NULL || keys == NULL || lens == NULL || klens == NULL) {
    rt_lq_fail(live->reg, e->inst, RT_ENOMEM, NULL);
  } else {
    for (size_t i = 0; i < n; i++) {
      rows[i] = rt_sqldb_result_row(e->res, i, &lens[i]);
      if (keyed) keys[i] = rt_sqldb_result_key(e->res, i, &klens[i]);
    }
    const char *key_col = keyed && e->key_index >= 0
                              ? rt_sqldb_result_column(e->res, (size_t)e->key_index)
                              : NULL;
    rt_lq_result_t r = {cols, clen, n, rows, lens, keyed, keyed ? keys : NULL,
                        keyed ? klens : NULL, key_col};
    rt_lq_apply(live->reg, e->inst, &r);
  }
  rt_free(cols);
  rt_free(rows);
  rt_free(keys);
  rt_free(lens);
  rt_free(klens);
}

static void free_job(job_t *j) {
  for (size_t i = 0; i < j->n; i++) {
    rt_sqldb_result_free(j->evals[i].res);
    rt_free(j->evals[i].key);
  }
  for (size_t i = 0; i < j->nchanged; i++) rt_free(j->changed[i]);
  rt_free(j->changed);
  rt_free(j->evals);
  rt_free(j);
}

static void kick(rt_live_t *live, int poll);

/*
 * A poll job's changes are evaluated by one evaluation-only job started at
 * once; further commits wait for the next tick's poll. So a burst of commits
 * costs at most one evaluation per query per poll interval, and a change is
 * pushed within about one interval plus the evaluation.
 */
static void after_work(uv_work_t *req, int status) {
  job_t *j = req->data;
  rt_live_t *live = j->live;
  rt_srv_enter(live->srv);
  int polled = j->poll;
  live->job = NULL;
  if (live->srv->state == SRV_RUNNING) {
    for (size_t i = 0; i < j->n; i++) apply(live, &j->evals[i]);
    for (size_t i = 0; i < j->nchanged; i++) rt_lq_mark_table_changed(live->reg, j->changed[i]);
  } else {
    for (size_t i = 0; i < j->n; i++) rt_lq_release(live->reg, j->evals[i].inst);
  }
  free_job(j);
  rt_lq_stats_t st;
  rt_lq_stats(live->reg, &st);
  if (live->srv->state == SRV_RUNNING && ((polled && st.dirty > 0) || live->npending > 0))
    kick(live, 0);
  rt_srv_unlock(live->srv);
}

/*
 * Starts a job with every waiting first evaluation and every dirty instance,
 * polling first when `poll`. One job at a time: a kick while one runs is a
 * no-op (the job's completion, or the next tick, picks up the work).
 */
static void kick(rt_live_t *live, int poll) {
  rt_worker_t *w0 = live->srv->workers[0];
  if (!rt_worker_is_current(w0)) { /* uv_queue_work belongs to worker 0's loop */
    rt_worker_wake(w0, RT_WAKE_LIVE);
    return;
  }
  if (live->job != NULL || live->srv->state != SRV_RUNNING) return;
  job_t *j = rt_calloc(1, sizeof(*j));
  if (j == NULL) return; /* the next tick retries */
  rt_lq_stats_t st;
  rt_lq_stats(live->reg, &st);
  size_t cap = live->npending + st.dirty;
  j->evals = rt_calloc(cap ? cap : 1, sizeof(eval_t));
  if (j->evals == NULL) {
    rt_free(j);
    return;
  }
  for (size_t i = 0; i < live->npending; i++) j->evals[j->n++] = live->pending[i];
  live->npending = 0;
  rt_lq_instance_t *inst;
  while (j->n < cap && (inst = rt_lq_next_dirty(live->reg)) != NULL) {
    eval_t *e = &j->evals[j->n++];
    e->inst = inst;
    e->key = dup_opt(key_of(live, rt_lq_instance_sql(inst)));
  }
  j->live = live;
  j->poll = poll;
  j->req.data = j;
  live->job = j;
  if (uv_queue_work(live->srv->loop, &j->req, work, after_work) != 0) {
    live->job = NULL;
    for (size_t i = 0; i < j->n; i++) rt_lq_release(live->reg, j->evals[i].inst);
    free_job(j);
  }
}

static void on_tick(uv_timer_t *t) {
  rt_live_t *live = t->data;
  rt_srv_enter(live->srv);
  kick(live, 1);
  rt_srv_unlock(live->srv);
}

void rt_live_kick(rt_live_t *live) {
  if (live != NULL) kick(live, 0);
}

/* Delivers a registry push to the connection that owns the subscription. */
static void on_push(const rt_lq_push_t *p, void *ud) {
  rt_conn_t *c = p->owner;
  if (p->frame != NULL && c != NULL) rt_conn_send(c, rt_frame_ref(p->frame));
}

/* ------------------------------------------------------------- lifecycle */

static int copy_queries(rt_live_t *live, const rt_config_t *cfg) {
  if (cfg->query_count == 0) return 0;
  live->queries = rt_calloc(cfg->query_count, sizeof(*live->queries));
  if (live->queries == NULL) return RT_ENOMEM;
  live->nqueries = cfg->query_count;
  for (size_t i = 0; i < cfg->query_count; i++) {
    const rt_query_config_t *q = &cfg->queries[i];
    rt_query_config_t *d = &live->queries[i];
    d->name = rt_strdup(q->name);
    d->sql = rt_strdup(q->sql);
    d->permission = dup_opt(q->permission);
    d->key = dup_opt(q->key);
    if (d->name == NULL || d->sql == NULL || (q->permission && !d->permission) || (q->key && !d->key))
      return RT_ENOMEM;
  }
  return 0;
}

int rt_live_new(rt_server_t *srv, rt_live_t **out, rt_errbuf_t *err) {
  const rt_config_t *cfg = &srv->cfg;
  *out = NULL;
  if (cfg->query_count == 0 && cfg->database_setup == NULL && !cfg->live_allow_raw_sql) return 0;
  rt_live_t *live = rt_calloc(1, sizeof(*live));
  if (live == NULL) return RT_ENOMEM;
  live->srv = srv;
  int r = copy_queries(live, cfg);
  if (r == 0 && (live->reg = rt_lq_new(on_push, live)) == NULL) r = RT_ENOMEM;
  if (r == 0) r = rt_sqldb_open(cfg->database_path, 5000, &live->db, err);
  if (r == 0) r = rt_sqldb_open(cfg->database_path, 0, &live->check, err);
  if (r == 0 && cfg->database_setup != NULL) r = rt_sqldb_exec(live->db, cfg->database_setup, err);
  for (size_t i = 0; r == 0 && i < live->nqueries; i++) { /* refuse a bad named query at start */
    rt_sqldb_query_t *q = NULL;
    r = rt_sqldb_query_new(live->check, live->queries[i].sql, NULL, 0, NULL, &q, err);
    if (r == RT_EQUERY && strstr(err->msg, "parameter") != NULL) r = 0; /* needs params: fine */
    if (r != 0)
      rt_errbuf_set(err, RT_ECONFIG, "queries.%s: %s", live->queries[i].name, err->msg);
    rt_sqldb_query_free(q);
  }
  if (r != 0) {
    rt_live_free(live);
    return r;
  }
  *out = live;
  return 0;
}

int rt_live_start(rt_live_t *live) {
  if (live == NULL) return 0;
  uv_timer_init(live->srv->loop, &live->timer);
  live->timer.data = live;
  uv_timer_start(&live->timer, on_tick, live->srv->cfg.database_poll_ms,
                 live->srv->cfg.database_poll_ms);
  return 0;
}

uv_handle_t *rt_live_handle(rt_live_t *live) {
  return live != NULL ? (uv_handle_t *)&live->timer : NULL;
}

void rt_live_free(rt_live_t *live) {
  if (live == NULL) return;
  rt_lq_free(live->reg);
  for (size_t i = 0; i < live->npending; i++) rt_free(live->pending[i].key);
  rt_free(live->pending);
  rt_sqldb_close(live->db);
  rt_sqldb_close(live->check);
  for (size_t i = 0; i < live->nqueries; i++) {
    rt_free((char *)live->queries[i].name);
    rt_free((char *)live->queries[i].sql);
    rt_free((char *)live->queries[i].permission);
    rt_free((char *)live->queries[i].key);
  }
  rt_free(live->queries);
  rt_free(live);
}

/* ------------------------------------------------------------ commands */

/* Compact JSON with sorted keys, so equal params share one instance. */
static char *canonical_params(const char *p, size_t len) {
  if (p == NULL) return rt_strdup("[]");
  json_t *j = json_loadb(p, len, JSON_DECODE_ANY, NULL);
  char *s = j != NULL ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
  json_decref(j);
  char *out = s != NULL ? rt_strdup(s) : NULL;
  free(s);
  return out;
}

static int queue_first_eval(rt_live_t *live, rt_lq_instance_t *inst, const char *key) {
  if (live->npending == live->cpending) {
    size_t cap = live->cpending ? live->cpending * 2 : 8;
    eval_t *p = rt_realloc(live->pending, cap * sizeof(*p));
    if (p == NULL) return RT_ENOMEM;
    live->pending = p;
    live->cpending = cap;
  }
  eval_t *e = &live->pending[live->npending];
  memset(e, 0, sizeof(*e));
  e->inst = inst;
  e->key = dup_opt(key);
  if (key != NULL && e->key == NULL) return RT_ENOMEM;
  live->npending++;
  kick(live, 0);
  return 0;
}

/*
 * Whether the client holds `perm`: "read:x"/"write:x" as a channel
 * permission would be checked (patterns in the client's grants apply), any
 * other ("query:raw") by exact grant. Everyone holds everything with
 * requireAuth off, as in the seed.
 */
static int holds(const rt_live_t *live, const rt_conn_t *c, const char *perm) {
  if (!live->srv->cfg.require_auth) return 1;
  int read = strncmp(perm, "read:", 5) == 0, write = strncmp(perm, "write:", 6) == 0;
  if (read || write) {
    const char *what = perm + (read ? 5 : 6);
    return rt_security_allows(live->srv, &c->ident, c->authenticated,
                              read ? RT_PERM_READ : RT_PERM_WRITE, what, strlen(what));
  }
  return c->authenticated &&
         rt_perm_has((const char *const *)c->ident.permissions, c->ident.permission_count, perm);
}

/* Resolves a named query and checks its permission. */
static int resolve(rt_live_t *live, rt_conn_t *c, const char *name, const rt_query_config_t **q,
                   rt_errbuf_t *err) {
  for (size_t i = 0; i < live->nqueries; i++) {
    if (strcmp(live->queries[i].name, name) != 0) continue;
    *q = &live->queries[i];
    if ((*q)->permission != NULL && !holds(live, c, (*q)->permission))
      return rt_errbuf_set(err, RT_EFORBIDDEN, "Permission denied: query \"%s\" requires %s",
                           name, (*q)->permission);
    return 0;
  }
  return rt_errbuf_set(err, RT_EQUNKNOWN, "Unknown query \"%s\"", name);
}

int rt_live_subscribe(rt_live_t *live, rt_conn_t *c, const char *name_or_sql, int raw,
                      const char *params, size_t params_len, int has_id, int64_t id,
                      char sub_id[24], rt_errbuf_t *err) {
  if (live == NULL) return rt_errbuf_set(err, RT_EQUNKNOWN, "No live queries are configured");
  const rt_query_config_t *q = NULL;
  const char *sql = name_or_sql, *key = NULL;
  if (raw == RT_LIVE_RAW) {
    if (!live->srv->cfg.live_allow_raw_sql || !holds(live, c, "query:raw"))
      return rt_errbuf_set(err, RT_EQREADONLY,
                           "Raw SQL needs liveQueries.allowRawSql and the query:raw permission");
  } else if (raw == RT_LIVE_NAMED) {
    int r = resolve(live, c, name_or_sql, &q, err);
    if (r != 0) return r;
    sql = q->sql;
    key = q->key;
  }
  if (rt_lq_owner_count(live->reg, c) >= live->srv->cfg.max_subscriptions)
    return rt_errbuf_set(err, RT_ELIMIT, "Too many query subscriptions (limit %u per client)",
                         live->srv->cfg.max_subscriptions);
  char *canon = canonical_params(params, params_len);
  if (canon == NULL) return rt_errbuf_set(err, RT_EQUERY, "Invalid params");
  rt_sqldb_query_t *chk = NULL;
  int r = rt_sqldb_query_new(live->check, sql, canon, strlen(canon), key, &chk, err);
  size_t nt = r == 0 ? rt_sqldb_query_table_count(chk) : 0;
  const char **tables = rt_calloc(nt ? nt : 1, sizeof(*tables));
  if (r == 0 && tables == NULL) r = RT_ENOMEM;
  for (size_t i = 0; r == 0 && i < nt; i++) tables[i] = rt_sqldb_query_table(chk, i);
  rt_lq_sub_out_t out = {0};
  if (r == 0) {
    rt_lq_sub_req_t req = {c, c->peer.id, sql, canon, tables, nt, has_id, id};
    r = rt_lq_subscribe(live->reg, &req, &out);
  }
  rt_free(tables);
  rt_sqldb_query_free(chk);
  rt_free(canon);
  if (r != 0) return r;
  if (sub_id != NULL) memcpy(sub_id, out.sub_id, RT_LQ_ID_MAX < 24 ? RT_LQ_ID_MAX : 24);
  if (out.ack != NULL) rt_conn_send(c, out.ack);
  if (out.evaluate != NULL && queue_first_eval(live, out.evaluate, key) != 0) {
    rt_lq_fail(live->reg, out.evaluate, RT_ENOMEM, NULL);
  }
  return 0;
}

int rt_live_unsubscribe(rt_live_t *live, rt_conn_t *c, const char *sub_id) {
  if (live == NULL || rt_lq_unsubscribe(live->reg, c, sub_id) != 0) return RT_EQUNKNOWN;
  return 0;
}

int rt_live_unsubscribe_id(rt_live_t *live, const char *sub_id) {
  void *owner = NULL;
  if (live == NULL || rt_lq_lookup(live->reg, sub_id, &owner, NULL) != 0) return RT_EQUNKNOWN;
  return rt_lq_unsubscribe(live->reg, owner, sub_id) == 0 ? 0 : RT_EQUNKNOWN;
}

void rt_live_drop_owner(rt_live_t *live, rt_conn_t *c) {
  if (live != NULL) rt_lq_unsubscribe_owner(live->reg, c);
}

void rt_live_stats(const rt_live_t *live, size_t *instances, size_t *subscriptions,
                   uint64_t *evaluations) {
  rt_lq_stats_t st = {0};
  if (live != NULL) rt_lq_stats(live->reg, &st);
  *instances = st.instances;
  *subscriptions = st.subscriptions;
  *evaluations = st.evaluations;
}

int64_t rt_live_notify(rt_live_t *live, const char *sql, const char *rows, size_t len) {
  if (live == NULL) return 0;
  return rt_lq_notify(live->reg, sql, rows, len, NULL);
}
