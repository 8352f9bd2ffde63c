/*
 * Internal to the sqldb module: encoding the rows of one run of a query
 * into an rt_sqldb_result_t (sqldb.h: rt_sqldb_result_row). sqldb.c steps
 * the statement and calls these between steps; the result's layout stays in
 * sqldb_encode.c. Not part of the library's API.
 */
#ifndef RT_LIVE_SQLDB_ENCODE_H
#define RT_LIVE_SQLDB_ENCODE_H

#include <stddef.h>

#include <sqlite3.h>

#include "errors.h"
#include "proto.h"
#include "sqldb.h"

/* State of one run while it encodes rows; the caller reads lim, the rest is the encoder's. */
typedef struct {
  rt_sqldb_result_t *r;   /* the result being filled, owned by the run until rt_sqldb_run_finish */
  sqlite3_stmt *stmt;     /* the statement the caller steps, borrowed */
  int key_col;            /* result column of the key, -1 for none (set by rt_sqldb_run_columns) */
  rt_sqldb_limits_t lim;  /* limits (zeros: none) */
  rt_strbuf_t prefixes;   /* `"name":` per column, JSON-escaped once per run */
  size_t *prefix_off;     /* ncols + 1 offsets into prefixes */
  size_t bytes;           /* row JSON bytes of the finished rows */
} rt_sqldb_run_t;

/*
 * Starts a run of `stmt` (borrowed) within `limits` (copied; NULL for none)
 * with a new empty result. Returns 0 or RT_ENOMEM (then nothing to finish).
 */
int rt_sqldb_run_init(rt_sqldb_run_t *run, sqlite3_stmt *stmt, const rt_sqldb_limits_t *limits);

/* Records in the result that SQLite re-prepared the statement during this run. */
void rt_sqldb_run_mark_schema_changed(rt_sqldb_run_t *run);

/*
 * Reads the column names of the statement as prepared now (after the first
 * step, which may have re-prepared it), makes them unique and escapes their
 * prefixes once; `key_col` (-1 for none) is the key column for every row of
 * the run. Returns 0 or RT_ENOMEM.
 */
int rt_sqldb_run_columns(rt_sqldb_run_t *run, int key_col);

/*
 * Appends the statement's current row (and its key) to the result. Returns
 * 0, RT_EQLIMIT (max_rows or max_bytes passed, message in err) or RT_ENOMEM.
 */
int rt_sqldb_run_row(rt_sqldb_run_t *run, rt_errbuf_t *err);

/*
 * After the last row of a keyed run: the result has keys only when they are
 * all distinct, otherwise they are dropped (sqldb.h: rt_sqldb_result_has_keys).
 * Returns 0 or RT_ENOMEM.
 */
int rt_sqldb_run_check_keys(rt_sqldb_run_t *run);

/*
 * Ends the run, freeing its scratch state: returns the result (a new one the
 * caller frees with rt_sqldb_result_free) when `keep`, otherwise frees it and
 * returns NULL.
 */
rt_sqldb_result_t *rt_sqldb_run_finish(rt_sqldb_run_t *run, int keep);

#endif
