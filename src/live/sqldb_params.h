/*
 * Internal to the sqldb module (sqldb.c): binding a query's JSON params to
 * its prepared statement. Not part of the library's API.
 */
#ifndef RT_LIVE_SQLDB_PARAMS_H
#define RT_LIVE_SQLDB_PARAMS_H

#include <stddef.h>

#include <sqlite3.h>

#include "errors.h"

/*
 * Binds params[0..len) (borrowed; a JSON array or object, or NULL/empty for
 * none) to the placeholders of `s` by the rules of rt_sqldb_query_new
 * (sqldb.h). Returns 0, RT_EQUERY (bad JSON, wrong shape, count or name,
 * mixed placeholder styles) or RT_ENOMEM. On error the statement may be
 * partly bound: the caller discards it.
 */
int rt_sqldb_bind_params(sqlite3_stmt *s, const char *params, size_t len, rt_errbuf_t *err);

#endif
