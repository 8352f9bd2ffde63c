/*
 * The live-query side of SQLite: everything that touches sqlite3 lives here.
 *
 * One rt_sqldb_t is one connection to one database file. A client's query is
 * checked once (read-only, one statement, parameters bound, the base tables it
 * reads found with the authorizer) into an rt_sqldb_query_t that keeps its
 * prepared statement, and is then run as often as its tables change into an
 * rt_sqldb_result_t of JSON rows (docs/protocol.md: row encoding). Commits by
 * other processes are found with triggers that log the changed table's name
 * and a cheap `PRAGMA data_version` check (rt_sqldb_watch, rt_sqldb_poll).
 *
 * Threads: the module starts none and takes no locks. A connection, its
 * queries and the polls on it belong to one thread at a time (the server's
 * worker); the connection is opened SQLITE_OPEN_NOMUTEX, so it may move
 * between threads as long as two calls never overlap. A result owns plain
 * memory and no reference to the connection: it may be handed to another
 * thread and read or freed there.
 *
 * Errors: 0 or a negative RT_E*, with a human message (SQLite's own text for
 * SQL errors) in the rt_errbuf_t when one is given:
 *   RT_EQUERY     SQL error, bad or mismatched parameters, bad key column
 *   RT_EQREADONLY not a single read-only SELECT (writes, ATTACH, PRAGMA,
 *                 transactions, a second statement)
 *   RT_EQTIMEOUT  a run went over limits.timeout_ms
 *   RT_EQLIMIT    a result went over limits.max_rows or limits.max_bytes
 *   RT_EBUSY      the database stayed locked past the busy timeout
 *   RT_ENOMEM     out of memory (ours or SQLite's)
 */
#ifndef RT_LIVE_SQLDB_H
#define RT_LIVE_SQLDB_H

#include <stddef.h>
#include <stdint.h>

#include "errors.h"

typedef struct rt_sqldb_s rt_sqldb_t;               /* one connection (opaque) */
typedef struct rt_sqldb_query_s rt_sqldb_query_t;   /* a checked, bound query (opaque) */
typedef struct rt_sqldb_result_s rt_sqldb_result_t; /* the rows of one run (opaque) */

/* Limits of one run; 0 in a field means "no limit". */
typedef struct {
  uint32_t timeout_ms; /* wall-clock budget of the run, enforced by a progress handler */
  size_t max_rows;     /* more rows than this: RT_EQLIMIT */
  size_t max_bytes;    /* more bytes of row JSON (summed over rows) than this: RT_EQLIMIT */
} rt_sqldb_limits_t;

/* Receives one changed table's name, borrowed for the call. */
typedef void (*rt_sqldb_change_cb)(const char *table, void *user_data);

/* ------------------------------------------------------------- connection */

/*
 * Opens (creating if missing) the database file at `path` (borrowed) in WAL
 * mode, so readers never block the writers of other processes, with a busy
 * timeout of busy_timeout_ms for locks and synchronous=NORMAL for this
 * connection's own (log cleanup, rt_sqldb_exec) writes. On success *out is a new connection
 * to close with rt_sqldb_close. Returns 0, RT_EIO (cannot open or not a
 * database, with SQLite's message) or RT_ENOMEM.
 */
int rt_sqldb_open(const char *path, uint32_t busy_timeout_ms, rt_sqldb_t **out, rt_errbuf_t *err);

/*
 * Closes the connection. Every query made on it must have been freed first;
 * results may outlive it. NULL is a no-op.
 */
void rt_sqldb_close(rt_sqldb_t *db);

/*
 * Runs trusted SQL (`sql` borrowed, NUL-terminated; several statements
 * allowed), such as the demo schema created at startup. No read-only check.
 * Rows its statements change in watched tables are reported by the next
 * rt_sqldb_poll like any other commit. Returns 0, RT_EQUERY (SQLite's
 * message), RT_EBUSY or RT_ENOMEM.
 */
int rt_sqldb_exec(rt_sqldb_t *db, const char *sql, rt_errbuf_t *err);

/* ----------------------------------------------------------------- queries */

/*
 * Checks and prepares one query. `sql` (borrowed, NUL-terminated) must be
 * exactly one read-only statement (trailing whitespace, comments and `;` are
 * fine); only reading is authorized while it is prepared, so writes, ATTACH,
 * DETACH, PRAGMA statements, transaction statements and VACUUM are
 * RT_EQREADONLY (reading pragma table functions such as pragma_table_info
 * is allowed: SQLite offers them only for pragmas without side effects).
 *
 * `params[0..params_len)` (borrowed; NULL or empty for none) is a JSON array
 * or object of strings, numbers, booleans (bound as 1/0) and nulls. Values
 * are bound, never spliced into the SQL. Integers that fit 64 bits bind as
 * INTEGER, other numbers as REAL. The SQL's placeholders pick the shape:
 *   $1..$N    an array; $k takes params[k-1]; its length must be the highest N
 *   ? / ?NNN  an array; its length must be the number of parameters (the
 *             highest ?NNN)
 *   :name @name $name  an object with exactly those names as keys (written
 *             without the prefix, or with it)
 * Mixing $N, positional and named placeholders in one query is RT_EQUERY,
 * and so is any count or name mismatch (the message says which).
 *
 * `key_column` (borrowed; NULL for the automatic rule) names the result
 * column whose value identifies a row; it must be a column of the result.
 * Without it the key is the column that selects the primary key (a single
 * column) or the rowid of the one table the query reads, when it reads
 * exactly one table; otherwise the query has no key. See
 * rt_sqldb_result_has_keys for what a run does with it.
 *
 * On success *out is a new query to free with rt_sqldb_query_free before the
 * connection is closed. Returns 0, RT_EQUERY, RT_EQREADONLY, RT_EINVAL (NULL
 * sql) or RT_ENOMEM.
 */
int rt_sqldb_query_new(rt_sqldb_t *db, const char *sql, const char *params, size_t params_len,
                       const char *key_column, rt_sqldb_query_t **out, rt_errbuf_t *err);

/* Finalizes the statement and frees the query. NULL is a no-op. */
void rt_sqldb_query_free(rt_sqldb_query_t *q);

/*
 * The base tables the query reads, each once, in the order SQLite first
 * reported them: tables read through views, joins, subqueries and CTEs are
 * listed, views and table-valued functions (json_each...) are not. SQLite's
 * own schema tables appear by name (sqlite_master) but cannot be watched.
 * The strings stay valid until the query is freed or, when a run reports
 * rt_sqldb_result_schema_changed, until that run returns (re-read them then).
 */
size_t rt_sqldb_query_table_count(const rt_sqldb_query_t *q);
const char *rt_sqldb_query_table(const rt_sqldb_query_t *q, size_t i);
/* 1 when the query reads `table` (compared case-insensitively, like SQLite). */
int rt_sqldb_query_reads(const rt_sqldb_query_t *q, const char *table);
/* Index of the key column chosen at check time, or -1 when the query has no key. */
int rt_sqldb_query_key_column(const rt_sqldb_query_t *q);

/*
 * Runs the query once on a fresh read snapshot, within `limits` (borrowed;
 * NULL for none), and on success sets *out to a new result to free with
 * rt_sqldb_result_free. The statement is reset before returning, so no read
 * transaction stays open between runs. If another process changed the schema
 * since the last run, SQLite prepares the statement again: the tables, column
 * names and key are recomputed and the result says so. Returns 0, RT_EQUERY,
 * RT_EQREADONLY (a redefined view now needs more than reading),
 * RT_EQTIMEOUT, RT_EQLIMIT, RT_EBUSY or RT_ENOMEM.
 */
int rt_sqldb_query_run(rt_sqldb_query_t *q, const rt_sqldb_limits_t *limits,
                       rt_sqldb_result_t **out, rt_errbuf_t *err);

/* ----------------------------------------------------------------- results */

/* Frees the result. NULL is a no-op. */
void rt_sqldb_result_free(rt_sqldb_result_t *r);

/*
 * Column names as SQLite reports them, made unique for JSON: a column whose
 * name an earlier column already has takes the smallest suffix ":2", ":3"...
 * that is free. Borrowed, NUL-terminated, valid while the result lives.
 */
size_t rt_sqldb_result_column_count(const rt_sqldb_result_t *r);
const char *rt_sqldb_result_column(const rt_sqldb_result_t *r, size_t i);

/*
 * Row i as a JSON object {"col":value,...} in column order: INTEGER as a
 * JSON integer (exact 64-bit), REAL as the shortest decimal that reads back
 * to the same double, with ".0" added to integral values ("2.0"; infinities
 * and NaN as null), TEXT as a JSON string (malformed UTF-8 bytes become
 * U+FFFD), NULL as null, BLOB as {"$base64":"<standard base64, padded>"}.
 * Borrowed, NUL-terminated, *len (if non-NULL) its length; valid while the
 * result lives.
 */
size_t rt_sqldb_result_row_count(const rt_sqldb_result_t *r);
const char *rt_sqldb_result_row(const rt_sqldb_result_t *r, size_t i, size_t *len);

/*
 * 1 when every row has a key: the query has a key column and its values are
 * distinct across this result. A repeated value (a self-join, UNION ALL, a
 * configured column that is not unique) drops the keys of this run, so the
 * caller falls back to whole results; the next run decides afresh.
 */
int rt_sqldb_result_has_keys(const rt_sqldb_result_t *r);

/*
 * Row i's key: the JSON text of its key column value ("42", "\"a-1\"",
 * "null"), as it appears in the row. Borrowed, NUL-terminated, valid while
 * the result lives; NULL when the result has no keys.
 */
const char *rt_sqldb_result_key(const rt_sqldb_result_t *r, size_t i, size_t *len);

/* 1 when SQLite re-prepared the statement during this run (see query_run). */
int rt_sqldb_result_schema_changed(const rt_sqldb_result_t *r);

/*
 * New rt_malloc'd, NUL-terminated JSON texts for the wire: the rows as an
 * array "[row,row]" and the column names as an array "[\"id\",\"status\"]".
 * *len (if non-NULL) gets the length. The caller frees with rt_free.
 * Return NULL on OOM.
 */
char *rt_sqldb_result_rows_json(const rt_sqldb_result_t *r, size_t *len);
char *rt_sqldb_result_columns_json(const rt_sqldb_result_t *r, size_t *len);

/* -------------------------------------------------------- change tracking */

/*
 * Makes commits to `table` (borrowed; a table of the main database, matched
 * case-insensitively) visible to rt_sqldb_poll, whichever process or
 * connection makes them. The first call creates the log table
 * `_realtime_changes(seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT
 * NULL)` and empties it of rows left from earlier runs; each call creates (if
 * missing) the triggers `_realtime_<table>_ins`, `_upd` and `_del`, which
 * insert the table's name into the log after every INSERT, UPDATE and DELETE.
 * Calling it again for the same table is cheap and harmless: when the
 * triggers exist it only reads the schema, so it takes no write lock and
 * never waits for another process's write. The triggers stay in the file
 * after the server stops.
 *
 * Watch the tables of a query before its first run: a commit between the two
 * then shows up as one extra, harmless refresh instead of being missed.
 * Returns 0, RT_ENOENT (no such table, or a view), RT_EINVAL (SQLite's own
 * tables and the log table cannot be watched), RT_EQUERY, RT_EBUSY or
 * RT_ENOMEM.
 */
int rt_sqldb_watch(rt_sqldb_t *db, const char *table, rt_errbuf_t *err);

/*
 * Reports tables changed since the previous poll: cb(table, user_data) once
 * per distinct watched table with rows logged since, in the order of their
 * first change. When neither another connection committed (PRAGMA
 * data_version, which only other connections move) nor this connection
 * changed rows (rt_sqldb_exec), it returns at once having read nothing else.
 * Log rows it has seen are then deleted, without waiting for a lock (a busy
 * database just defers the cleanup to a later poll), so the log stays small;
 * that cleanup is this connection's own write and is never reported. One
 * server per database file is assumed: a second one would delete rows the
 * first has not seen yet.
 *
 * cb runs after the log has been read, with no statement of this module
 * active; it may run queries on this connection but must not poll again.
 * Returns the number of tables reported (0 when nothing changed) or RT_EQUERY,
 * RT_EBUSY, RT_ENOMEM; on error nothing is marked as seen, so the next poll
 * reports the same changes.
 */
int rt_sqldb_poll(rt_sqldb_t *db, rt_sqldb_change_cb cb, void *user_data, rt_errbuf_t *err);

#endif
