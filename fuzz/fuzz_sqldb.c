/*
 * Fuzzes what a client controls in a live query: the params JSON bound into
 * a prepared statement (rt_sqldb_query_new's own params reader and binder)
 * and, for raw SQL, the statement text itself, which must be refused unless
 * it is one read-only statement. The first input byte picks the mode and
 * a query; the rest is the params (or SQL) text. An in-memory database keeps
 * runs independent of the file system.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sqldb.h"

#define CHECK(x) ((x) ? (void)0 : abort())

static rt_sqldb_t *db;

static const char *const queries[] = {
    "SELECT id, name FROM t WHERE id = $1 OR name = $2",
    "SELECT * FROM t WHERE id > ? AND name <> ?",
    "SELECT * FROM t WHERE name = :name AND id = @id",
    "SELECT $1, $2, $3",
};

static void setup(void) {
  if (db != NULL) return;
  CHECK(rt_sqldb_open(":memory:", 0, &db, NULL) == 0);
  CHECK(rt_sqldb_exec(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, b BLOB);"
                          "INSERT INTO t VALUES (1, 'a', x'00ff'), (2, 'b', NULL);", NULL) == 0);
}

static void run(rt_sqldb_query_t *q) {
  rt_sqldb_limits_t lim = {200, 1000, 1 << 20};
  rt_sqldb_result_t *r = NULL;
  rt_errbuf_t err = {{0}};
  int rc = rt_sqldb_query_run(q, &lim, &r, &err);
  CHECK(rc == 0 || rc == RT_EQUERY || rc == RT_EQTIMEOUT || rc == RT_EQLIMIT || rc == RT_ENOMEM ||
        rc == RT_EQREADONLY || rc == RT_EBUSY);
  if (rc == 0) {
    for (size_t i = 0; i < rt_sqldb_result_row_count(r); i++) {
      size_t len = 0;
      const char *row = rt_sqldb_result_row(r, i, &len);
      CHECK(row != NULL && len >= 2 && row[0] == '{' && row[len - 1] == '}');
    }
  }
  rt_sqldb_result_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  setup();
  if (size < 1) return 0;
  rt_sqldb_query_t *q = NULL;
  rt_errbuf_t err = {{0}};
  const char *text = (const char *)data + 1;
  size_t len = size - 1;
  int rc;
  if (data[0] & 0x80) { /* raw SQL from a client: NUL-terminated copy */
    char *sql = malloc(len + 1);
    CHECK(sql != NULL);
    memcpy(sql, text, len);
    sql[len] = '\0';
    rc = rt_sqldb_query_new(db, sql, NULL, 0, NULL, &q, &err);
    free(sql);
  } else {
    rc = rt_sqldb_query_new(db, queries[data[0] % 4], text, len, NULL, &q, &err);
  }
  CHECK(rc == 0 || rc == RT_EQUERY || rc == RT_EQREADONLY || rc == RT_ENOMEM);
  CHECK(rc == 0 || err.msg[0] != '\0');
  if (rc == 0) run(q);
  rt_sqldb_query_free(q);
  return 0;
}
