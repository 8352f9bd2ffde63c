/*
 * Live queries over SQLite (sqldb.h): checking and running queries, and
 * noticing commits of other processes. Binding the params is in
 * sqldb_params.c, encoding the rows and the result accessors in
 * sqldb_encode.c.
 *
 * Reads are found by an authorizer installed once for the connection's
 * lifetime (installing one expires every prepared statement, so it is never
 * swapped). It only acts while `db->collect` points at a collector, that is
 * while a client's query is being prepared or, during the first step of a run,
 * re-prepared after a schema change: then it records every SQLITE_READ and
 * refuses every action that is not part of reading. The module's own
 * statements and rt_sqldb_exec run with no collector and are not restricted.
 *
 * Change tracking: persistent triggers on each watched table append the
 * table's name to a log table; a poll first compares PRAGMA data_version
 * (which moves only when another connection commits) and this connection's
 * total_changes with what it saw last, so an idle poll costs one tiny
 * statement, and reads the log only when one of them moved.
 */
#include "sqldb.h"

#include <assert.h>
#include <limits.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "alloc.h"
#include "sqldb_encode.h"
#include "sqldb_params.h"

#define LOG_TABLE "_realtime_changes"
#define PROGRESS_OPS 1000    /* VM instructions between two clock reads of the time budget */

/* What the authorizer records while a client query is (re-)prepared. */
struct collector {
  char **tables;  /* rt_strdup'd names read, distinct (case-insensitive), in first-read order */
  size_t ntables; /* names used */
  size_t cap;     /* names allocated */
  int denied;     /* the action code first refused, 0 if none */
  int vtab_init;  /* SQLite is registering a table-valued function (see authorize) */
  int stepping;   /* collecting during a run's first step, not a check */
  int oom;        /* a name could not be stored */
};

struct rt_sqldb_s {
  sqlite3 *h;                  /* the connection */
  struct collector *collect;   /* non-NULL while a client query is being (re-)prepared */
  sqlite3_stmt *version_stmt;  /* PRAGMA data_version */
  sqlite3_stmt *log_read;      /* distinct tables logged after a seq; NULL until the first watch */
  sqlite3_stmt *log_trim;      /* deletes log rows up to a seq */
  int64_t seen_version;        /* data_version at the last poll */
  int64_t seen_changes;        /* sqlite3_total_changes64 at the last poll, after its cleanup */
  int64_t seen_seq;            /* highest log seq reported */
  int64_t deadline_ns;         /* end of the running query's time budget */
  int timed_out;               /* the progress handler interrupted the run */
  uint32_t busy_timeout_ms;    /* restored after the lock-free log cleanup */
  size_t nqueries;             /* queries not yet freed */
};

struct rt_sqldb_query_s {
  rt_sqldb_t *db;       /* the connection the statement belongs to */
  sqlite3_stmt *stmt;   /* prepared and bound once, reset after every run */
  char **tables;        /* base tables read, rt_strdup'd */
  size_t ntables;       /* their count */
  char *key_name;       /* configured key column, or NULL for the automatic rule */
  int key_col;          /* result column of the key, -1 for none */
  int reprepares;       /* SQLITE_STMTSTATUS_REPREPARE seen at the last check */
};

/* ------------------------------------------------------------------ errors */

/* SQLite's code as ours: out of memory and locks have their own, the rest is `other`. */
static int map_rc(int rc, int other) {
  switch (rc & 0xFF) {
    case SQLITE_NOMEM: return RT_ENOMEM;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return RT_EBUSY;
    default: return other;
  }
}

static int sqlite_error(rt_sqldb_t *db, int rc, int other, rt_errbuf_t *err) {
  return rt_errbuf_set(err, map_rc(rc, other), "%s", sqlite3_errmsg(db->h));
}

static int prepare(rt_sqldb_t *db, const char *sql, sqlite3_stmt **out, rt_errbuf_t *err) {
  int rc = sqlite3_prepare_v2(db->h, sql, -1, out, NULL);
  return rc == SQLITE_OK ? 0 : sqlite_error(db, rc, RT_EQUERY, err);
}

/* Runs trusted SQL with no collector; SQLite's message goes to err. */
static int exec_sql(rt_sqldb_t *db, const char *sql, int other, rt_errbuf_t *err) {
  char *msg = NULL;
  int rc = sqlite3_exec(db->h, sql, NULL, NULL, &msg);
  int code = 0;
  if (rc != SQLITE_OK)
    code = rt_errbuf_set(err, map_rc(rc, other), "%s", msg != NULL ? msg : sqlite3_errstr(rc));
  sqlite3_free(msg);
  return code;
}

static void free_names(char **v, size_t n) {
  for (size_t i = 0; i < n; i++) rt_free(v[i]);
  rt_free(v);
}

/* ------------------------------------------------------------- authorizer */

static int push_name(char ***v, size_t *n, size_t *cap, const char *name) {
  if (*n == *cap) {
    size_t ncap = *cap ? *cap * 2 : 4;
    char **nv = rt_realloc(*v, ncap * sizeof(*nv));
    if (nv == NULL) return RT_ENOMEM;
    *v = nv;
    *cap = ncap;
  }
  char *copy = rt_strdup(name);
  if (copy == NULL) return RT_ENOMEM;
  (*v)[(*n)++] = copy;
  return 0;
}

static int record_read(struct collector *c, const char *table) {
  if (table == NULL) return 0;
  for (size_t i = 0; i < c->ntables; i++)
    if (sqlite3_stricmp(c->tables[i], table) == 0) return 0;
  if (push_name(&c->tables, &c->ntables, &c->cap, table) == 0) return 0;
  c->oom = 1;
  return RT_ENOMEM;
}

/*
 * An allowlist, not a denylist: sqlite3_stmt_readonly() is true for ATTACH,
 * DETACH, BEGIN, SAVEPOINT and many PRAGMAs, none of which a live query may
 * run. The first use of a table-valued function (json_each) on a connection
 * makes SQLite register it, which it reports as an UPDATE of sqlite_master
 * followed by a read of its ROWID: both are let through and the read is not
 * recorded (a real UPDATE of sqlite_master is still refused as not read-only).
 * A PRAGMA is refused when checking; while stepping it can only be the
 * internal statement of a pragma table function (pragma_table_info), which
 * SQLite offers only for pragmas without side effects.
 */
static int authorize(void *ud, int action, const char *a1, const char *a2, const char *a3,
                     const char *a4) {
  rt_sqldb_t *db = ud;
  struct collector *c = db->collect;
  if (c == NULL) return SQLITE_OK;
  int schema = a1 != NULL && sqlite3_stricmp(a1, "sqlite_master") == 0;
  switch (action) {
    case SQLITE_SELECT:
    case SQLITE_FUNCTION:
    case SQLITE_RECURSIVE: return SQLITE_OK;
    case SQLITE_READ:
      if (schema && c->vtab_init && a2 != NULL && sqlite3_stricmp(a2, "rowid") == 0)
        return SQLITE_OK;
      return record_read(c, a1) == 0 ? SQLITE_OK : SQLITE_DENY;
    case SQLITE_PRAGMA:
      if (c->stepping) return SQLITE_OK;
      break;
    case SQLITE_UPDATE:
      c->vtab_init |= schema;
      if (schema) return SQLITE_OK;
      break;
    default: break;
  }
  if (c->denied == 0) c->denied = action;
  return SQLITE_DENY;
}

static const char *action_name(int action) {
  switch (action) {
    case SQLITE_INSERT: return "INSERT";
    case SQLITE_UPDATE: return "UPDATE";
    case SQLITE_DELETE: return "DELETE";
    case SQLITE_ATTACH: return "ATTACH";
    case SQLITE_DETACH: return "DETACH";
    case SQLITE_PRAGMA: return "PRAGMA";
    case SQLITE_TRANSACTION: return "a transaction statement";
    case SQLITE_SAVEPOINT: return "SAVEPOINT";
    default: return "a statement that changes the database or the connection";
  }
}

static int refuse(int action, rt_errbuf_t *err) {
  return rt_errbuf_set(err, RT_EQREADONLY, "Only one read-only SELECT is allowed, not %s",
                       action_name(action));
}

/* ------------------------------------------------------------- connection */

static int read_version(rt_sqldb_t *db, int64_t *version, rt_errbuf_t *err) {
  int rc = sqlite3_step(db->version_stmt);
  if (rc == SQLITE_ROW) *version = sqlite3_column_int64(db->version_stmt, 0);
  int code = rc == SQLITE_ROW ? 0 : sqlite_error(db, rc, RT_EQUERY, err);
  sqlite3_reset(db->version_stmt);
  return code;
}

/*
 * Everything after sqlite3_open_v2: a failure here means the file is not
 * usable. synchronous=NORMAL (this connection only) is safe in WAL mode and
 * spares the log cleanup an fsync per poll; it only risks losing this
 * connection's last writes on power loss, never corruption.
 */
static int setup_connection(rt_sqldb_t *db, uint32_t busy_timeout_ms, rt_errbuf_t *err) {
  db->busy_timeout_ms = busy_timeout_ms;
  sqlite3_busy_timeout(db->h, (int)(busy_timeout_ms > INT_MAX ? INT_MAX : busy_timeout_ms));
  sqlite3_db_config(db->h, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
  sqlite3_db_config(db->h, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, NULL);
  int rc = exec_sql(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL", RT_EIO, err);
  if (rc == 0) rc = prepare(db, "PRAGMA data_version", &db->version_stmt, err);
  if (rc == 0) rc = read_version(db, &db->seen_version, err);
  if (rc == RT_EQUERY) rc = RT_EIO;
  sqlite3_set_authorizer(db->h, authorize, db);
  return rc;
}

int rt_sqldb_open(const char *path, uint32_t busy_timeout_ms, rt_sqldb_t **out, rt_errbuf_t *err) {
  *out = NULL;
  if (path == NULL) return rt_errbuf_set(err, RT_EINVAL, "No database path");
  rt_sqldb_t *db = rt_calloc(1, sizeof(*db));
  if (db == NULL) return rt_errbuf_set(err, RT_ENOMEM, "Out of memory");
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  int rc = sqlite3_open_v2(path, &db->h, flags, NULL);
  if (rc != SQLITE_OK)
    rc = rt_errbuf_set(err, map_rc(rc, RT_EIO), "Cannot open %s: %s", path,
                       db->h != NULL ? sqlite3_errmsg(db->h) : sqlite3_errstr(rc));
  else
    rc = setup_connection(db, busy_timeout_ms, err);
  if (rc != 0) {
    rt_sqldb_close(db);
    return rc;
  }
  *out = db;
  return 0;
}

void rt_sqldb_close(rt_sqldb_t *db) {
  if (db == NULL) return;
  assert(db->nqueries == 0);
  sqlite3_finalize(db->version_stmt);
  sqlite3_finalize(db->log_read);
  sqlite3_finalize(db->log_trim);
  sqlite3_close_v2(db->h);
  rt_free(db);
}

int rt_sqldb_exec(rt_sqldb_t *db, const char *sql, rt_errbuf_t *err) {
  if (sql == NULL) return rt_errbuf_set(err, RT_EINVAL, "No SQL");
  return exec_sql(db, sql, RT_EQUERY, err);
}

/* ----------------------------------------------------------------- tables */

/*
 * Keeps the names that are tables (main or temp) or SQLite's own, dropping
 * views (SQLite reports a view's columns as reads too) and table-valued
 * functions. Runs with no collector, after preparing.
 */
static int filter_tables(rt_sqldb_t *db, struct collector *c, rt_errbuf_t *err) {
  static const char sql[] =
      "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1 COLLATE NOCASE "
      "UNION ALL "
      "SELECT 1 FROM sqlite_temp_master WHERE type = 'table' AND name = ?1 COLLATE NOCASE";
  sqlite3_stmt *s;
  int rc = prepare(db, sql, &s, err);
  size_t kept = 0;
  for (size_t i = 0; i < c->ntables; i++) {
    int step = SQLITE_ROW;
    if (rc == 0 && sqlite3_strnicmp(c->tables[i], "sqlite_", 7) != 0) {
      sqlite3_bind_text(s, 1, c->tables[i], -1, SQLITE_STATIC);
      step = sqlite3_step(s);
      sqlite3_reset(s);
      if (step != SQLITE_ROW && step != SQLITE_DONE) rc = sqlite_error(db, step, RT_EQUERY, err);
    }
    if (rc != 0 || step == SQLITE_ROW)
      c->tables[kept++] = c->tables[i];
    else
      rt_free(c->tables[i]);
  }
  c->ntables = kept;
  sqlite3_finalize(s);
  return rc;
}

static void adopt_tables(rt_sqldb_query_t *q, struct collector *c) {
  free_names(q->tables, q->ntables);
  q->tables = c->tables;
  q->ntables = c->ntables;
  *c = (struct collector){0};
}

size_t rt_sqldb_query_table_count(const rt_sqldb_query_t *q) { return q->ntables; }

const char *rt_sqldb_query_table(const rt_sqldb_query_t *q, size_t i) {
  assert(i < q->ntables);
  return q->tables[i];
}

int rt_sqldb_query_reads(const rt_sqldb_query_t *q, const char *table) {
  for (size_t i = 0; i < q->ntables; i++)
    if (sqlite3_stricmp(q->tables[i], table) == 0) return 1;
  return 0;
}

int rt_sqldb_query_key_column(const rt_sqldb_query_t *q) { return q->key_col; }

/* -------------------------------------------------------------------- keys */

static int count_pk_columns(rt_sqldb_t *db, const char *schema, const char *table, int *n) {
  sqlite3_stmt *s;
  *n = 0;
  int rc = prepare(db, "SELECT count(*) FROM pragma_table_info(?1, ?2) WHERE pk > 0", &s, NULL);
  if (rc != 0) return rc;
  sqlite3_bind_text(s, 1, table, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 2, schema, -1, SQLITE_STATIC);
  int step = sqlite3_step(s);
  if (step == SQLITE_ROW) *n = sqlite3_column_int(s, 0);
  sqlite3_finalize(s);
  return step == SQLITE_ROW ? 0 : map_rc(step, RT_EQUERY);
}

/*
 * Whether result column i is the row identity of the query's one table: its
 * single-column primary key, or the rowid when the table has no declared
 * primary key (SQLite reports a selected rowid with origin name "rowid").
 */
static int is_identity(rt_sqldb_query_t *q, int i, int *yes) {
  *yes = 0;
  const char *schema = sqlite3_column_database_name(q->stmt, i);
  const char *table = sqlite3_column_table_name(q->stmt, i);
  const char *column = sqlite3_column_origin_name(q->stmt, i);
  if (schema == NULL || table == NULL || column == NULL) return 0;
  if (sqlite3_stricmp(table, q->tables[0]) != 0) return 0;
  int pk = 0, npk = 0;
  if (sqlite3_table_column_metadata(q->db->h, schema, table, column, NULL, NULL, NULL, &pk,
                                    NULL) != SQLITE_OK || !pk)
    return 0;
  int rc = count_pk_columns(q->db, schema, table, &npk);
  *yes = rc == 0 && npk <= 1;
  return rc == RT_ENOMEM ? rc : 0;
}

/* Chooses the key column (sqldb.h: rt_sqldb_query_new) for the statement as now prepared. */
static int find_key_column(rt_sqldb_query_t *q, rt_errbuf_t *err) {
  int n = sqlite3_column_count(q->stmt);
  q->key_col = -1;
  if (q->key_name != NULL) {
    for (int i = 0; i < n; i++) {
      const char *name = sqlite3_column_name(q->stmt, i);
      if (name == NULL) return rt_errbuf_set(err, RT_ENOMEM, "Out of memory");
      if (strcmp(name, q->key_name) == 0) {
        q->key_col = i;
        return 0;
      }
    }
    return rt_errbuf_set(err, RT_EQUERY, "Key column \"%.64s\" is not a column of the result",
                         q->key_name);
  }
  if (q->ntables != 1) return 0;
  for (int i = 0; i < n; i++) {
    int yes, rc = is_identity(q, i, &yes);
    if (rc != 0) return rt_errbuf_set(err, rc, "Out of memory");
    if (yes) {
      q->key_col = i;
      return 0;
    }
  }
  return 0;
}

/* ----------------------------------------------------------------- queries */

/* Nothing but whitespace, comments and `;` after the first statement. */
static int only_one_statement(rt_sqldb_t *db, const char *tail, rt_errbuf_t *err) {
  while (*tail != '\0') {
    sqlite3_stmt *s = NULL;
    const char *next = tail;
    int rc = sqlite3_prepare_v2(db->h, tail, -1, &s, &next);
    sqlite3_finalize(s);
    if ((rc & 0xFF) == SQLITE_NOMEM) return rt_errbuf_set(err, RT_ENOMEM, "Out of memory");
    if (rc != SQLITE_OK || s != NULL || next == tail)
      return rt_errbuf_set(err, RT_EQREADONLY, "Only one statement is allowed");
    tail = next;
  }
  return 0;
}

/*
 * Prepares with the collector on, then judges. The authorizer refuses every
 * statement but SELECT except VACUUM, which has no authorizer action: the
 * read-only check is what refuses it.
 */
static int prepare_checked(rt_sqldb_query_t *q, const char *sql, struct collector *c,
                           rt_errbuf_t *err) {
  rt_sqldb_t *db = q->db;
  const char *tail = NULL;
  db->collect = c;
  int rc = sqlite3_prepare_v2(db->h, sql, -1, &q->stmt, &tail);
  int code = 0;
  if (c->oom || (rc & 0xFF) == SQLITE_NOMEM)
    code = rt_errbuf_set(err, RT_ENOMEM, "Out of memory");
  else if (c->denied != 0)
    code = refuse(c->denied, err);
  else if (rc != SQLITE_OK)
    code = sqlite_error(db, rc, RT_EQUERY, err);
  else if (q->stmt == NULL)
    code = rt_errbuf_set(err, RT_EQUERY, "Empty query");
  else
    code = only_one_statement(db, tail, err);
  db->collect = NULL;
  if (code == 0 && !sqlite3_stmt_readonly(q->stmt))
    code = rt_errbuf_set(err, RT_EQREADONLY, "Only one read-only SELECT is allowed");
  return code;
}

int rt_sqldb_query_new(rt_sqldb_t *db, const char *sql, const char *params, size_t params_len,
                       const char *key_column, rt_sqldb_query_t **out, rt_errbuf_t *err) {
  *out = NULL;
  if (sql == NULL) return rt_errbuf_set(err, RT_EINVAL, "No SQL");
  rt_sqldb_query_t *q = rt_calloc(1, sizeof(*q));
  if (q == NULL) return rt_errbuf_set(err, RT_ENOMEM, "Out of memory");
  q->db = db;
  q->key_col = -1;
  db->nqueries++;
  struct collector c = {0};
  int rc = 0;
  if (key_column != NULL && (q->key_name = rt_strdup(key_column)) == NULL)
    rc = rt_errbuf_set(err, RT_ENOMEM, "Out of memory");
  if (rc == 0) rc = prepare_checked(q, sql, &c, err);
  if (rc == 0) rc = filter_tables(db, &c, err);
  adopt_tables(q, &c);
  if (rc == 0) rc = rt_sqldb_bind_params(q->stmt, params, params_len, err);
  if (rc == 0) rc = find_key_column(q, err);
  if (rc != 0) {
    rt_sqldb_query_free(q);
    return rc;
  }
  q->reprepares = sqlite3_stmt_status(q->stmt, SQLITE_STMTSTATUS_REPREPARE, 0);
  *out = q;
  return 0;
}

void rt_sqldb_query_free(rt_sqldb_query_t *q) {
  if (q == NULL) return;
  sqlite3_finalize(q->stmt);
  free_names(q->tables, q->ntables);
  rt_free(q->key_name);
  q->db->nqueries--;
  rt_free(q);
}

/* ------------------------------------------------------------------- runs */

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int on_progress(void *ud) {
  rt_sqldb_t *db = ud;
  if (now_ns() < db->deadline_ns) return 0;
  db->timed_out = 1;
  return 1;
}

static int step_error(rt_sqldb_query_t *q, int rc, const struct collector *c, uint32_t timeout_ms,
                      rt_errbuf_t *err) {
  if (q->db->timed_out)
    return rt_errbuf_set(err, RT_EQTIMEOUT, "The query ran longer than %u ms", timeout_ms);
  if (c->oom) return rt_errbuf_set(err, RT_ENOMEM, "Out of memory");
  if (c->denied != 0) return refuse(c->denied, err);
  return sqlite_error(q->db, rc, RT_EQUERY, err);
}

/*
 * After the first step: if SQLite re-prepared the statement (another
 * connection changed the schema), the new statement's reads replace the old
 * ones and the key is chosen again, before any row is encoded.
 */
static int after_reprepare(rt_sqldb_query_t *q, struct collector *c, rt_sqldb_run_t *run,
                           rt_errbuf_t *err) {
  int now = sqlite3_stmt_status(q->stmt, SQLITE_STMTSTATUS_REPREPARE, 0);
  if (now == q->reprepares) return 0;
  q->reprepares = now;
  rt_sqldb_run_mark_schema_changed(run);
  int rc = filter_tables(q->db, c, err);
  if (rc != 0) return rc;
  adopt_tables(q, c);
  return find_key_column(q, err);
}

/* The first step runs with a collector, since it is where SQLite re-prepares. */
static int first_step(rt_sqldb_query_t *q, rt_sqldb_run_t *run, rt_errbuf_t *err) {
  struct collector c = {.stepping = 1};
  q->db->collect = &c;
  int rc = sqlite3_step(q->stmt);
  q->db->collect = NULL;
  int code = 0;
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    code = step_error(q, rc, &c, run->lim.timeout_ms, err);
  else
    code = after_reprepare(q, &c, run, err);
  if (code == 0 && rt_sqldb_run_columns(run, q->key_col) != 0)
    code = rt_errbuf_set(err, RT_ENOMEM, "Out of memory");
  free_names(c.tables, c.ntables);
  return code != 0 ? code : rc;
}

static const struct collector no_collector;

static int run_rows(rt_sqldb_query_t *q, rt_sqldb_run_t *run, rt_errbuf_t *err) {
  int rc = first_step(q, run, err);
  while (rc == SQLITE_ROW) {
    int code = rt_sqldb_run_row(run, err);
    if (code != 0) return code;
    rc = sqlite3_step(q->stmt);
  }
  if (rc < 0) return rc;
  if (rc != SQLITE_DONE) return step_error(q, rc, &no_collector, run->lim.timeout_ms, err);
  if (q->key_col < 0) return 0;
  return rt_sqldb_run_check_keys(run) == 0 ? 0 : rt_errbuf_set(err, RT_ENOMEM, "Out of memory");
}

int rt_sqldb_query_run(rt_sqldb_query_t *q, const rt_sqldb_limits_t *limits,
                       rt_sqldb_result_t **out, rt_errbuf_t *err) {
  *out = NULL;
  rt_sqldb_run_t run;
  if (rt_sqldb_run_init(&run, q->stmt, limits) != 0)
    return rt_errbuf_set(err, RT_ENOMEM, "Out of memory");
  rt_sqldb_t *db = q->db;
  db->timed_out = 0;
  if (run.lim.timeout_ms != 0) {
    db->deadline_ns = now_ns() + (int64_t)run.lim.timeout_ms * 1000000;
    sqlite3_progress_handler(db->h, PROGRESS_OPS, on_progress, db);
  }
  int rc = run_rows(q, &run, err);
  sqlite3_progress_handler(db->h, 0, NULL, NULL);
  sqlite3_reset(q->stmt);
  rt_sqldb_result_t *r = rt_sqldb_run_finish(&run, rc == 0);
  if (rc != 0) return rc;
  *out = r;
  return 0;
}

/* -------------------------------------------------------- change tracking */

/*
 * Creates the log once per connection and empties it: rows left by an
 * earlier run were never seen by this one and would only cause a refresh
 * of everything. AUTOINCREMENT keeps later seqs above the deleted ones.
 */
static int ensure_log(rt_sqldb_t *db, rt_errbuf_t *err) {
  if (db->log_read != NULL) return 0;
  int rc = exec_sql(db,
                    "CREATE TABLE IF NOT EXISTS " LOG_TABLE
                    "(seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL);"
                    "DELETE FROM " LOG_TABLE ";",
                    RT_EQUERY, err);
  if (rc == 0) rc = prepare(db, "DELETE FROM " LOG_TABLE " WHERE seq <= ?1", &db->log_trim, err);
  if (rc == 0)
    rc = prepare(db,
                 "SELECT tbl, max(seq) FROM " LOG_TABLE " WHERE seq > ?1 GROUP BY tbl "
                 "ORDER BY min(seq)",
                 &db->log_read, err);
  if (rc != 0) {
    sqlite3_finalize(db->log_trim);
    db->log_trim = NULL;
    return rc;
  }
  db->seen_seq = 0;
  db->seen_changes = sqlite3_total_changes64(db->h);
  return 0;
}

/* The table's name as the schema spells it; RT_ENOENT for a view or a missing table. */
static int canonical_table(rt_sqldb_t *db, const char *table, char **out, rt_errbuf_t *err) {
  sqlite3_stmt *s;
  int rc = prepare(db,
                   "SELECT name, type FROM sqlite_master WHERE name = ?1 COLLATE NOCASE "
                   "AND type IN ('table', 'view')",
                   &s, err);
  if (rc != 0) return rc;
  sqlite3_bind_text(s, 1, table, -1, SQLITE_STATIC);
  int step = sqlite3_step(s);
  const char *type = step == SQLITE_ROW ? (const char *)sqlite3_column_text(s, 1) : "";
  if (type == NULL) {
    rc = rt_errbuf_set(err, RT_ENOMEM, "Out of memory");
  } else if (step == SQLITE_ROW && strcmp(type, "table") == 0) {
    *out = rt_strdup((const char *)sqlite3_column_text(s, 0));
    rc = *out != NULL ? 0 : rt_errbuf_set(err, RT_ENOMEM, "Out of memory");
  } else if (step == SQLITE_ROW || step == SQLITE_DONE) {
    rc = rt_errbuf_set(err, RT_ENOENT, "No table named \"%.64s\"%s", table,
                       step == SQLITE_ROW ? " (it is a view: watch its tables)" : "");
  } else {
    rc = sqlite_error(db, step, RT_EQUERY, err);
  }
  sqlite3_finalize(s);
  return rc;
}

/*
 * Whether the three triggers already exist: a read, so watching a table again
 * (once per evaluation, say) takes no write lock and never waits for writers.
 */
static int has_triggers(rt_sqldb_t *db, const char *name, int *yes, rt_errbuf_t *err) {
  sqlite3_stmt *s;
  int rc = prepare(db,
                   "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?1 "
                   "AND name IN ('_realtime_' || ?1 || '_ins', '_realtime_' || ?1 || '_upd', "
                   "'_realtime_' || ?1 || '_del')",
                   &s, err);
  if (rc != 0) return rc;
  sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
  int step = sqlite3_step(s);
  *yes = step == SQLITE_ROW && sqlite3_column_int(s, 0) == 3;
  if (step != SQLITE_ROW) rc = sqlite_error(db, step, RT_EQUERY, err);
  sqlite3_finalize(s);
  return rc;
}

static int create_triggers(rt_sqldb_t *db, const char *name, rt_errbuf_t *err) {
  static const char fmt[] =
      "BEGIN;"
      "CREATE TRIGGER IF NOT EXISTS \"_realtime_%w_ins\" AFTER INSERT ON \"%w\" "
      "BEGIN INSERT INTO " LOG_TABLE "(tbl) VALUES('%q'); END;"
      "CREATE TRIGGER IF NOT EXISTS \"_realtime_%w_upd\" AFTER UPDATE ON \"%w\" "
      "BEGIN INSERT INTO " LOG_TABLE "(tbl) VALUES('%q'); END;"
      "CREATE TRIGGER IF NOT EXISTS \"_realtime_%w_del\" AFTER DELETE ON \"%w\" "
      "BEGIN INSERT INTO " LOG_TABLE "(tbl) VALUES('%q'); END;"
      "COMMIT;";
  char *sql = sqlite3_mprintf(fmt, name, name, name, name, name, name, name, name, name);
  if (sql == NULL) return rt_errbuf_set(err, RT_ENOMEM, "Out of memory");
  int rc = exec_sql(db, sql, RT_EQUERY, err);
  sqlite3_free(sql);
  if (!sqlite3_get_autocommit(db->h)) sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
  return rc;
}

int rt_sqldb_watch(rt_sqldb_t *db, const char *table, rt_errbuf_t *err) {
  if (table == NULL) return rt_errbuf_set(err, RT_EINVAL, "No table");
  if (sqlite3_strnicmp(table, "sqlite_", 7) == 0 || sqlite3_stricmp(table, LOG_TABLE) == 0)
    return rt_errbuf_set(err, RT_EINVAL, "Table \"%.64s\" cannot be watched", table);
  int rc = ensure_log(db, err);
  char *name = NULL;
  int present = 0;
  if (rc == 0) rc = canonical_table(db, table, &name, err);
  if (rc == 0) rc = has_triggers(db, name, &present, err);
  if (rc == 0 && !present) rc = create_triggers(db, name, err);
  rt_free(name);
  return rc;
}

/* The distinct tables logged after seen_seq, and the highest seq read. */
static int read_log(rt_sqldb_t *db, char ***names, size_t *n, int64_t *max_seq,
                    rt_errbuf_t *err) {
  size_t cap = 0;
  int rc;
  sqlite3_bind_int64(db->log_read, 1, db->seen_seq);
  while ((rc = sqlite3_step(db->log_read)) == SQLITE_ROW) {
    const char *tbl = (const char *)sqlite3_column_text(db->log_read, 0);
    int64_t seq = sqlite3_column_int64(db->log_read, 1);
    if (tbl == NULL || push_name(names, n, &cap, tbl) != 0) {
      rc = SQLITE_NOMEM;
      break;
    }
    if (seq > *max_seq) *max_seq = seq;
  }
  int code = rc == SQLITE_DONE ? 0 : sqlite_error(db, rc, RT_EQUERY, err);
  if (rc == SQLITE_NOMEM) code = rt_errbuf_set(err, RT_ENOMEM, "Out of memory");
  sqlite3_reset(db->log_read);
  return code;
}

/* Deletes seen rows without waiting for a lock; a busy database keeps them for next time. */
static void trim_log(rt_sqldb_t *db) {
  sqlite3_busy_timeout(db->h, 0);
  sqlite3_bind_int64(db->log_trim, 1, db->seen_seq);
  sqlite3_step(db->log_trim);
  sqlite3_reset(db->log_trim);
  sqlite3_busy_timeout(db->h, (int)(db->busy_timeout_ms > INT_MAX ? INT_MAX : db->busy_timeout_ms));
}

int rt_sqldb_poll(rt_sqldb_t *db, rt_sqldb_change_cb cb, void *user_data, rt_errbuf_t *err) {
  int64_t version = 0;
  int rc = read_version(db, &version, err);
  if (rc != 0) return rc;
  int64_t changes = sqlite3_total_changes64(db->h);
  if (version == db->seen_version && changes == db->seen_changes) return 0;
  char **names = NULL;
  size_t n = 0;
  int64_t max_seq = db->seen_seq;
  if (db->log_read != NULL) rc = read_log(db, &names, &n, &max_seq, err);
  if (rc != 0) {
    free_names(names, n);
    return rc;
  }
  db->seen_version = version;
  if (max_seq > db->seen_seq) {
    db->seen_seq = max_seq;
    trim_log(db);
  }
  db->seen_changes = sqlite3_total_changes64(db->h);
  for (size_t i = 0; i < n; i++) cb(names[i], user_data);
  free_names(names, n);
  return (int)n;
}
