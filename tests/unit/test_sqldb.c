/*
 * SQLite side of live queries (src/live/sqldb.h), against real database
 * files under /tmp: which tables a query reads (through joins, subqueries,
 * views and CTEs), what is refused as not read-only, the three placeholder
 * styles, the JSON encoding of every SQLite type, unique column names, keys,
 * row/byte/time limits, and change tracking with a second connection opened
 * here the way another process would write to the file. The OOM loops fail
 * each of our allocations in turn (SQLite's own are not injected).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "live/sqldb.h"
#include "proto.h"

#define BUSY_MS 600 /* our busy timeout; "did not wait" means under half of it */

/* One database file per test, removed with its -wal and -shm files afterwards. */
struct fx {
  char path[64];     /* the file */
  rt_sqldb_t *db;    /* our connection */
  sqlite3 *other;    /* "another process": a plain second connection, opened on demand */
  rt_sqldb_query_t *live[8]; /* queries made by query_p, freed by drop or by teardown */
  size_t nlive;      /* entries in live */
};

static const char schema[] =
    "CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, n INTEGER);"
    "CREATE TABLE u(x TEXT PRIMARY KEY, y INTEGER);"
    "CREATE TABLE w(p TEXT, q INTEGER);"
    "CREATE TABLE pk2(a INTEGER, b INTEGER, c TEXT, PRIMARY KEY (a, b));"
    "CREATE TABLE nr(k TEXT PRIMARY KEY, v INTEGER) WITHOUT ROWID;"
    "CREATE VIEW v AS SELECT t.id, t.a, u.y FROM t JOIN u ON u.x = t.a;"
    "INSERT INTO t VALUES (1, 'k1', 10), (2, 'k2', 20), (3, 'k1', 30);"
    "INSERT INTO u VALUES ('k1', 100), ('k2', 200);"
    "INSERT INTO w VALUES ('p1', 1), ('p2', 2);"
    "INSERT INTO pk2 VALUES (1, 1, 'a'), (1, 2, 'b');"
    "INSERT INTO nr VALUES ('n1', 1), ('n2', 2);";

static void remove_files(const char *path) {
  char side[80];
  unlink(path);
  snprintf(side, sizeof(side), "%s-wal", path);
  unlink(side);
  snprintf(side, sizeof(side), "%s-shm", path);
  unlink(side);
}

static int setup(void **state) {
  struct fx *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  strcpy(f->path, "/tmp/test_sqldb_XXXXXX");
  int fd = mkstemp(f->path);
  assert_true(fd >= 0);
  close(fd);
  rt_errbuf_t err = {""};
  assert_int_equal(rt_sqldb_open(f->path, BUSY_MS, &f->db, &err), 0);
  assert_int_equal(rt_sqldb_exec(f->db, schema, &err), 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fx *f = *state;
  rt_alloc_fail_after(-1);
  for (size_t i = 0; i < f->nlive; i++) rt_sqldb_query_free(f->live[i]);
  rt_sqldb_close(f->db);
  sqlite3_close(f->other);
  remove_files(f->path);
  free(f);
  return 0;
}

/* The writer of another process: its own connection, autocommit, each call one commit. */
static void other_exec(struct fx *f, const char *sql) {
  if (f->other == NULL) {
    assert_int_equal(sqlite3_open(f->path, &f->other), SQLITE_OK);
    sqlite3_busy_timeout(f->other, BUSY_MS);
  }
  char *msg = NULL;
  int rc = sqlite3_exec(f->other, sql, NULL, NULL, &msg);
  if (rc != SQLITE_OK) fail_msg("other_exec(%s): %s", sql, msg);
}

static int64_t other_count(struct fx *f, const char *sql) {
  sqlite3_stmt *s;
  other_exec(f, "SELECT 1");
  assert_int_equal(sqlite3_prepare_v2(f->other, sql, -1, &s, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(s), SQLITE_ROW);
  int64_t n = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  return n;
}

static rt_sqldb_query_t *query_p(struct fx *f, const char *sql, const char *params,
                                 const char *key) {
  rt_sqldb_query_t *q = NULL;
  rt_errbuf_t err = {""};
  int rc = rt_sqldb_query_new(f->db, sql, params, params ? strlen(params) : 0, key, &q, &err);
  if (rc != 0) fail_msg("query_new(%s): %s %s", sql, rt_err_name(rc), err.msg);
  assert_true(f->nlive < 8);
  f->live[f->nlive++] = q;
  return q;
}

/* Frees a query made by query_p (a failed assertion leaves the rest to teardown). */
static void drop(struct fx *f, rt_sqldb_query_t *q) {
  for (size_t i = 0; i < f->nlive; i++)
    if (f->live[i] == q) f->live[i] = f->live[--f->nlive];
  rt_sqldb_query_free(q);
}

static rt_sqldb_query_t *query(struct fx *f, const char *sql) {
  return query_p(f, sql, NULL, NULL);
}

/* Expects the check to fail with `code` and a message containing `part`. */
static void expect_refused(struct fx *f, const char *sql, const char *params, const char *key,
                           int code, const char *part) {
  rt_sqldb_query_t *q = (rt_sqldb_query_t *)1;
  rt_errbuf_t err = {""};
  int rc = rt_sqldb_query_new(f->db, sql, params, params ? strlen(params) : 0, key, &q, &err);
  if (rc == 0) rt_sqldb_query_free(q);
  if (rc != code || strstr(err.msg, part) == NULL)
    fail_msg("query_new(%s, %s): got %s \"%s\", want %s \"...%s...\"", sql, params ? params : "-",
             rt_err_name(rc), err.msg, rt_err_name(code), part);
  assert_null(q);
}

static rt_sqldb_result_t *run(rt_sqldb_query_t *q, const rt_sqldb_limits_t *lim) {
  rt_sqldb_result_t *r = NULL;
  rt_errbuf_t err = {""};
  int rc = rt_sqldb_query_run(q, lim, &r, &err);
  if (rc != 0) fail_msg("run: %s %s", rt_err_name(rc), err.msg);
  return r;
}

/* The rows of one run as "[row,row]", checked to be valid JSON; free with rt_free. */
static char *run_json(rt_sqldb_query_t *q) {
  rt_sqldb_result_t *r = run(q, NULL);
  size_t len;
  char *json = rt_sqldb_result_rows_json(r, &len);
  assert_non_null(json);
  assert_int_equal(len, strlen(json));
  assert_int_equal(rt_json_validate(json, len, 8, NULL, NULL, NULL), 0);
  rt_sqldb_result_free(r);
  return json;
}

static void expect_rows(struct fx *f, const char *sql, const char *params, const char *want) {
  rt_sqldb_query_t *q = query_p(f, sql, params, NULL);
  char *json = run_json(q);
  assert_string_equal(json, want);
  rt_free(json);
  drop(f, q);
}

static int compare_names(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The query's tables, sorted (the order is SQLite's resolution order), joined by ",". */
static void expect_tables(struct fx *f, const char *sql, const char *want) {
  rt_sqldb_query_t *q = query(f, sql);
  const char *names[8];
  size_t n = rt_sqldb_query_table_count(q);
  assert_true(n <= 8);
  for (size_t i = 0; i < n; i++) names[i] = rt_sqldb_query_table(q, i);
  qsort(names, n, sizeof(names[0]), compare_names);
  char got[256] = "";
  for (size_t i = 0; i < n; i++) {
    if (i > 0) strcat(got, ",");
    strcat(got, names[i]);
  }
  if (strcmp(got, want) != 0) fail_msg("tables of %s: got \"%s\", want \"%s\"", sql, got, want);
  drop(f, q);
}

/* --------------------------------------------------------------- opening */

static void test_open_wal_and_errors(void **state) {
  struct fx *f = *state;
  rt_sqldb_t *db = (rt_sqldb_t *)1;
  rt_errbuf_t err = {""};
  other_exec(f, "SELECT 1");
  sqlite3_stmt *s;
  assert_int_equal(sqlite3_prepare_v2(f->other, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(s), SQLITE_ROW);
  assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
  sqlite3_finalize(s);

  assert_int_equal(rt_sqldb_open("/tmp/no-such-dir-sqldb/x.db", 100, &db, &err), RT_EIO);
  assert_null(db);
  assert_non_null(strstr(err.msg, "unable to open"));

  char path[] = "/tmp/test_sqldb_junk_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "this is not a database, just text padding it out....", 52), 52);
  close(fd);
  assert_int_equal(rt_sqldb_open(path, 100, &db, &err), RT_EIO);
  assert_non_null(strstr(err.msg, "not a database"));
  remove_files(path);

  rt_sqldb_close(NULL);
  rt_sqldb_query_free(NULL);
  rt_sqldb_result_free(NULL);
}

static void test_exec_errors(void **state) {
  struct fx *f = *state;
  rt_errbuf_t err = {""};
  assert_int_equal(rt_sqldb_exec(f->db, "CREAT TABLE z(a)", &err), RT_EQUERY);
  assert_non_null(strstr(err.msg, "syntax error"));
  assert_int_equal(rt_sqldb_exec(f->db, "INSERT INTO nope VALUES (1)", &err), RT_EQUERY);
  assert_non_null(strstr(err.msg, "no such table: nope"));
  assert_int_equal(rt_sqldb_exec(f->db, NULL, &err), RT_EINVAL);
  assert_int_equal(rt_sqldb_exec(f->db, "CREATE TABLE z(a); INSERT INTO z VALUES (1)", &err), 0);
  assert_int_equal(other_count(f, "SELECT count(*) FROM z"), 1);
}

/* ---------------------------------------------------------------- tables */

static void test_tables_read(void **state) {
  struct fx *f = *state;
  expect_tables(f, "SELECT id, a FROM t WHERE n > 5", "t");
  expect_tables(f, "SELECT count(*) FROM t", "t");
  expect_tables(f, "SELECT 1", "");
  expect_tables(f, "SELECT t.a, u.y FROM t JOIN u ON u.x = t.a", "t,u");
  expect_tables(f, "SELECT * FROM t LEFT JOIN w ON w.q = t.id, u", "t,u,w");
  expect_tables(f, "SELECT id FROM t WHERE a IN (SELECT x FROM u WHERE y > 1)", "t,u");
  expect_tables(f, "SELECT (SELECT max(q) FROM w) AS m, id FROM t", "t,w");
  expect_tables(f, "SELECT * FROM v", "t,u");
  expect_tables(f, "SELECT v.id FROM v JOIN w ON w.q = v.id", "t,u,w");
  expect_tables(f, "WITH big AS (SELECT * FROM t WHERE n > 15) SELECT big.id, w.p FROM big, w",
                "t,w");
  expect_tables(f,
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3) "
                "SELECT x, (SELECT count(*) FROM nr) FROM c",
                "nr");
  expect_tables(f, "SELECT id FROM t UNION SELECT q FROM w", "t,w");
  expect_tables(f, "SELECT value FROM json_each('[1,2]') JOIN T ON T.id = value", "t");
  expect_tables(f, "SELECT name FROM sqlite_master", "sqlite_master");
  expect_tables(f, "SELECT T.ID FROM T AS x JOIN t ON t.id = x.id", "t");

  rt_sqldb_query_t *q = query(f, "SELECT y FROM U");
  assert_true(rt_sqldb_query_reads(q, "u"));
  assert_true(rt_sqldb_query_reads(q, "U"));
  assert_false(rt_sqldb_query_reads(q, "t"));
  drop(f, q);
}

static void test_refused_statements(void **state) {
  struct fx *f = *state;
  static const char *const writes[] = {
      "INSERT INTO t(a) VALUES ('x')",
      "UPDATE t SET n = 0",
      "DELETE FROM t",
      "REPLACE INTO w VALUES ('a', 1)",
      "CREATE TABLE z(a)",
      "CREATE TEMP TABLE z(a)",
      "DROP TABLE w",
      "ALTER TABLE w ADD COLUMN r",
      "CREATE INDEX i ON w(p)",
      "ATTACH DATABASE ':memory:' AS aux",
      "DETACH DATABASE main",
      "PRAGMA table_info(t)",
      "PRAGMA user_version = 5",
      "BEGIN",
      "COMMIT",
      "SAVEPOINT s",
      "VACUUM",
      "ANALYZE",
      "REINDEX",
      "WITH x AS (SELECT 1) DELETE FROM t",
      "SELECT 1; DELETE FROM t",
      "SELECT 1; SELECT 2",
      "SELECT 1; garbage",
      "SELECT 1 /* fine */ ; -- fine\n SELECT 2",
  };
  for (size_t i = 0; i < sizeof(writes) / sizeof(writes[0]); i++)
    expect_refused(f, writes[i], NULL, NULL, RT_EQREADONLY, "");
  expect_refused(f, "INSERT INTO t(a) VALUES ('x')", NULL, NULL, RT_EQREADONLY, "not INSERT");
  expect_refused(f, "ATTACH ':memory:' AS aux", NULL, NULL, RT_EQREADONLY, "not ATTACH");
  expect_refused(f, "PRAGMA data_version", NULL, NULL, RT_EQREADONLY, "not PRAGMA");
  expect_refused(f, "VACUUM INTO '/tmp/test_sqldb_copy.db'", NULL, NULL, RT_EQREADONLY,
                 "Only one read-only SELECT is allowed");
  expect_refused(f, "EXPLAIN DELETE FROM t", NULL, NULL, RT_EQREADONLY, "not DELETE");
  expect_refused(f, "SELECT 1; DELETE FROM t", NULL, NULL, RT_EQREADONLY,
                 "Only one statement is allowed");

  expect_refused(f, "", NULL, NULL, RT_EQUERY, "Empty query");
  expect_refused(f, "  -- nothing\n", NULL, NULL, RT_EQUERY, "Empty query");
  expect_refused(f, "SELEC 1", NULL, NULL, RT_EQUERY, "syntax error");
  expect_refused(f, "SELECT * FROM nope", NULL, NULL, RT_EQUERY, "no such table: nope");
  expect_refused(f, "SELECT zz FROM t", NULL, NULL, RT_EQUERY, "no such column: zz");
  expect_refused(f, NULL, NULL, NULL, RT_EINVAL, "");
  assert_int_equal(other_count(f, "SELECT count(*) FROM t"), 3);

  expect_rows(f, "SELECT 1 AS one; ", NULL, "[{\"one\":1}]");
  expect_tables(f, "EXPLAIN QUERY PLAN SELECT * FROM t WHERE id = 1", "t");
  expect_rows(f, "SELECT 2 AS two; ;  -- trailing\n/* c */", NULL, "[{\"two\":2}]");
  expect_rows(f, "SELECT name FROM pragma_table_info('u') ORDER BY cid", NULL,
              "[{\"name\":\"x\"},{\"name\":\"y\"}]");
  expect_tables(f, "SELECT name FROM pragma_table_info('u')", "");
  expect_rows(f, "SELECT count(*) AS n FROM sqlite_master WHERE name = 't'", NULL,
              "[{\"n\":1}]");
}

/* ------------------------------------------------------------ parameters */

static void test_params_dollar(void **state) {
  struct fx *f = *state;
  expect_rows(f, "SELECT $1 AS a, $2 AS b", "[\"x\", 5]", "[{\"a\":\"x\",\"b\":5}]");
  expect_rows(f, "SELECT $2 AS b, $1 AS a", "[\"x\", 5]", "[{\"b\":5,\"a\":\"x\"}]");
  expect_rows(f, "SELECT $1 AS a, $1 + 1 AS b", " [ 41 ] ", "[{\"a\":41,\"b\":42}]");
  expect_rows(f, "SELECT id FROM t WHERE a = $1 AND n > $2 ORDER BY id", "[\"k1\", 15]",
              "[{\"id\":3}]");
  expect_rows(f, "SELECT $2 AS b", "[null, 7]", "[{\"b\":7}]");
  expect_rows(f, "SELECT $10 AS j", "[0,0,0,0,0,0,0,0,0,\"ten\"]", "[{\"j\":\"ten\"}]");

  expect_refused(f, "SELECT $1, $2", "[1]", NULL, RT_EQUERY,
                 "The query takes 2 parameters but params has 1");
  expect_refused(f, "SELECT $1", "[1, 2]", NULL, RT_EQUERY,
                 "The query takes 1 parameter but params has 2");
  expect_refused(f, "SELECT $1", NULL, NULL, RT_EQUERY, "takes 1 parameter but params has 0");
  expect_refused(f, "SELECT $1", "{\"1\": 5}", NULL, RT_EQUERY, "params must be a JSON array");
  expect_refused(f, "SELECT $0", "[1]", NULL, RT_EQUERY, "$N counts from $1");
  expect_refused(f, "SELECT $1000001", "[1]", NULL, RT_EQUERY,
                 "Bad parameter $1000001: $N counts from $1 to $1000000");
  expect_refused(f, "SELECT $1", "[[1]]", NULL, RT_EQUERY,
                 "Parameter $1 must be a string, number, boolean or null");
  expect_refused(f, "SELECT $1", "[{\"a\":1}]", NULL, RT_EQUERY, "Parameter $1 must be");
  expect_refused(f, "SELECT $1, $2", "[[\"],[\", {\"}\": [1, {}]}], 2]", NULL, RT_EQUERY,
                 "Parameter $1 must be");
  expect_refused(f, "SELECT $1, $2", "[1, [\"],\", {\"}\": [1, {}]}]]", NULL, RT_EQUERY,
                 "Parameter $2 must be");
  expect_refused(f, "SELECT 1", "[1]", NULL, RT_EQUERY, "takes 0 parameters but params has 1");
  expect_refused(f, "SELECT $1", "[1", NULL, RT_EQUERY, "params: Invalid JSON");
  expect_refused(f, "SELECT $1", "5", NULL, RT_EQUERY, "params must be a JSON array or object");
  expect_refused(f, "SELECT $1, ?", "[1, 2]", NULL, RT_EQUERY, "mixes $1 and ? parameters");
  expect_refused(f, "SELECT :a, $1", "[1, 2]", NULL, RT_EQUERY, "mixes :name and $1");
  expect_rows(f, "SELECT 1 AS a", "[]", "[{\"a\":1}]");
  expect_rows(f, "SELECT 1 AS a", " {} ", "[{\"a\":1}]");
}

static void test_params_positional(void **state) {
  struct fx *f = *state;
  expect_rows(f, "SELECT ? AS a, ? AS b", "[1, \"two\"]", "[{\"a\":1,\"b\":\"two\"}]");
  expect_rows(f, "SELECT ?2 AS b, ?1 AS a", "[1, 2]", "[{\"b\":2,\"a\":1}]");
  expect_rows(f, "SELECT ?1 AS a, ?1 AS b", "[3]", "[{\"a\":3,\"b\":3}]");
  expect_refused(f, "SELECT ?, ?", "[1]", NULL, RT_EQUERY, "takes 2 parameters but params has 1");
  expect_refused(f, "SELECT ?", "[1, 2, 3]", NULL, RT_EQUERY, "takes 1 parameter but params has 3");
  expect_refused(f, "SELECT ?", "{\"a\": 1}", NULL, RT_EQUERY,
                 "numbered parameters (?): params must be a JSON array");
}

static void test_params_named(void **state) {
  struct fx *f = *state;
  expect_rows(f, "SELECT :a AS a, @b AS b, $c AS c", "{\"c\": 3, \"a\": 1, \"b\": 2}",
              "[{\"a\":1,\"b\":2,\"c\":3}]");
  expect_rows(f, "SELECT :a AS x, :a AS y", "{\"a\": \"v\"}", "[{\"x\":\"v\",\"y\":\"v\"}]");
  expect_rows(f, "SELECT :a AS x, @a AS y", "{\"a\": 4}", "[{\"x\":4,\"y\":4}]");
  expect_rows(f, "SELECT :a AS x, @a AS y", "{\":a\": 4, \"@a\": 5}", "[{\"x\":4,\"y\":5}]");
  expect_rows(f, "SELECT :status AS s", "{\"st\\u0061tus\": \"ok\"}", "[{\"s\":\"ok\"}]");
  expect_rows(f, "SELECT id FROM t WHERE a = :key ORDER BY id", "{\"key\":\"k2\"}",
              "[{\"id\":2}]");

  expect_refused(f, "SELECT :a, :b", "{\"a\": 1}", NULL, RT_EQUERY, "Missing parameter :b");
  expect_refused(f, "SELECT :a", "{\"a\": 1, \"zz\": 2}", NULL, RT_EQUERY,
                 "params has \"zz\", which the query does not use");
  expect_refused(f, "SELECT :a", "{\"a\": 1, \"a\": 2}", NULL, RT_EQUERY,
                 "params names \"a\" twice");
  expect_refused(f, "SELECT :a", "[1]", NULL, RT_EQUERY,
                 "named parameters (:name): params must be a JSON object");
  expect_refused(f, "SELECT :a", NULL, NULL, RT_EQUERY, "must be a JSON object");
  expect_refused(f, "SELECT :a", "{\"a\": [1]}", NULL, RT_EQUERY, "Parameter :a must be");
  expect_refused(f, "SELECT :a", "{\"\": 1}", NULL, RT_EQUERY, "Bad parameter name");
  expect_refused(f, "SELECT :a", "{\"a\\u0000b\": 1}", NULL, RT_EQUERY, "Bad parameter name");
  expect_refused(f, "SELECT :a, ?", "{\"a\": 1}", NULL, RT_EQUERY, "mixes :name and ?");
}

/* Each JSON type is bound as the matching SQLite type; typeof() shows which. */
static void test_params_types(void **state) {
  struct fx *f = *state;
  expect_rows(f, "SELECT $1 AS v, typeof($1) AS t", "[true]", "[{\"v\":1,\"t\":\"integer\"}]");
  expect_rows(f, "SELECT $1 AS v, typeof($1) AS t", "[false]", "[{\"v\":0,\"t\":\"integer\"}]");
  expect_rows(f, "SELECT $1 AS v, typeof($1) AS t", "[null]", "[{\"v\":null,\"t\":\"null\"}]");
  expect_rows(f, "SELECT $1 AS v, typeof($1) AS t", "[-3]", "[{\"v\":-3,\"t\":\"integer\"}]");
  expect_rows(f, "SELECT $1 AS v, typeof($1) AS t", "[4611686018427387904]",
              "[{\"v\":4611686018427387904,\"t\":\"integer\"}]");
  expect_rows(f, "SELECT $1 AS v, typeof($1) AS t", "[-9223372036854775808]",
              "[{\"v\":-9223372036854775808,\"t\":\"integer\"}]");
  expect_rows(f, "SELECT $1 AS v, typeof($1) AS t", "[18446744073709551616]",
              "[{\"v\":1.8446744073709552e+19,\"t\":\"real\"}]");
  expect_rows(f, "SELECT $1 AS v, typeof($1) AS t", "[0.1]", "[{\"v\":0.1,\"t\":\"real\"}]");
  expect_rows(f, "SELECT $1 AS v, typeof($1) AS t", "[1e2]", "[{\"v\":100.0,\"t\":\"real\"}]");
  expect_rows(f, "SELECT $1 AS v, typeof($1) AS t", "[\"a\\\"b\\n\\u00e9\\ud83d\\ude00\"]",
              "[{\"v\":\"a\\\"b\\n\xc3\xa9\xf0\x9f\x98\x80\",\"t\":\"text\"}]");
  expect_rows(f, "SELECT length($1) AS n, typeof($1) AS t", "[\"a\\u0000b\"]",
              "[{\"n\":1,\"t\":\"text\"}]");
  expect_rows(f, "SELECT length(CAST($1 AS BLOB)) AS n", "[\"a\\u0000b\"]", "[{\"n\":3}]");
  expect_rows(f, "SELECT $1 = '1' AS eq", "[\"1\"]", "[{\"eq\":1}]");
}

/* -------------------------------------------------------------- encoding */

static void test_encode_types(void **state) {
  struct fx *f = *state;
  expect_rows(f, "SELECT 4611686018427387904 AS big, -4611686018427387904 AS neg, "
                 "9223372036854775807 AS max, -9223372036854775807 - 1 AS min, 0 AS zero",
              NULL,
              "[{\"big\":4611686018427387904,\"neg\":-4611686018427387904,"
              "\"max\":9223372036854775807,\"min\":-9223372036854775808,\"zero\":0}]");
  expect_rows(f, "SELECT 0.1 AS a, 1.5 AS b, 2.0 AS c, -0.0 AS d, 1e300 AS e, 1.0/3 AS f, "
                 "-2.5e-10 AS g, 123456789012345680000.0 AS h",
              NULL,
              "[{\"a\":0.1,\"b\":1.5,\"c\":2.0,\"d\":-0.0,\"e\":1e+300,"
              "\"f\":0.3333333333333333,\"g\":-2.5e-10,\"h\":1.2345678901234568e+20}]");
  expect_rows(f, "SELECT 1e999 AS inf, -1e999 AS ninf", NULL, "[{\"inf\":null,\"ninf\":null}]");
  expect_rows(f, "SELECT NULL AS n", NULL, "[{\"n\":null}]");
  expect_rows(f, "SELECT 'say \"hi\"\n\\ tab\t' AS s", NULL,
              "[{\"s\":\"say \\\"hi\\\"\\n\\\\ tab\\t\"}]");
  expect_rows(f, "SELECT '\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80' AS u, char(1) AS c1", NULL,
              "[{\"u\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\",\"c1\":\"\\u0001\"}]");
  expect_rows(f, "SELECT CAST(x'61ff62' AS TEXT) AS bad", NULL, "[{\"bad\":\"a\\ufffdb\"}]");
  expect_rows(f, "SELECT '' AS empty", NULL, "[{\"empty\":\"\"}]");
  expect_rows(f, "SELECT x'' AS b0, x'00' AS b1, x'00ff' AS b2, x'00ff10' AS b3, "
                 "x'fbff' AS b4",
              NULL,
              "[{\"b0\":{\"$base64\":\"\"},\"b1\":{\"$base64\":\"AA==\"},"
              "\"b2\":{\"$base64\":\"AP8=\"},\"b3\":{\"$base64\":\"AP8Q\"},"
              "\"b4\":{\"$base64\":\"+/8=\"}}]");
  expect_rows(f, "SELECT 1 AS \"we\"\"ird\nname\"", NULL, "[{\"we\\\"ird\\nname\":1}]");
  expect_rows(f, "SELECT id, a FROM t WHERE id > 5", NULL, "[]");
}

static int b64_value(char c) {
  static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  return c == '=' ? 0 : (int)(strchr(digits, c) - digits);
}

/* A blob longer than one encoding chunk, decoded here and compared with SQLite's hex(). */
static void test_encode_long_blob(void **state) {
  struct fx *f = *state;
  rt_sqldb_query_t *q =
      query(f, "WITH r AS MATERIALIZED (SELECT randomblob(1000) AS b) "
               "SELECT b, hex(b) AS h FROM r");
  rt_sqldb_result_t *r = run(q, NULL);
  const char *row = rt_sqldb_result_row(r, 0, NULL);
  assert_memory_equal(row, "{\"b\":{\"$base64\":\"", 17);
  const char *b64 = row + 17;
  assert_memory_equal(b64 + 1334, "==\"},\"h\":\"", 10);
  const char *hex = b64 + 1344;
  for (size_t i = 0, k = 0; i < 1000; i += 3, k += 4) {
    uint32_t v = 0;
    for (int j = 0; j < 4; j++) v = v << 6 | (uint32_t)b64_value(b64[k + j]);
    unsigned char bytes[3] = {(unsigned char)(v >> 16), (unsigned char)(v >> 8), (unsigned char)v};
    for (size_t j = 0; j < 3 && i + j < 1000; j++) {
      char two[3];
      snprintf(two, sizeof(two), "%02X", bytes[j]);
      assert_memory_equal(hex + 2 * (i + j), two, 2);
    }
  }
  assert_string_equal(hex + 2000, "\"}");
  rt_sqldb_result_free(r);
  drop(f, q);
}

static void test_duplicate_columns(void **state) {
  struct fx *f = *state;
  rt_sqldb_query_t *q = query(f, "SELECT 1 AS a, 2 AS a, 3 AS a, 4 AS \"a:2\", 5 AS b, 6 AS A");
  rt_sqldb_result_t *r = run(q, NULL);
  static const char *const want[] = {"a", "a:2", "a:3", "a:2:2", "b", "A"};
  assert_int_equal(rt_sqldb_result_column_count(r), 6);
  for (size_t i = 0; i < 6; i++) assert_string_equal(rt_sqldb_result_column(r, i), want[i]);
  assert_string_equal(rt_sqldb_result_row(r, 0, NULL),
                      "{\"a\":1,\"a:2\":2,\"a:3\":3,\"a:2:2\":4,\"b\":5,\"A\":6}");
  size_t len;
  char *cols = rt_sqldb_result_columns_json(r, &len);
  assert_string_equal(cols, "[\"a\",\"a:2\",\"a:3\",\"a:2:2\",\"b\",\"A\"]");
  assert_int_equal(len, strlen(cols));
  rt_free(cols);
  rt_sqldb_result_free(r);
  drop(f, q);

  expect_rows(f, "SELECT * FROM t JOIN u ON u.x = t.a WHERE t.id = 2", NULL,
              "[{\"id\":2,\"a\":\"k2\",\"n\":20,\"x\":\"k2\",\"y\":200}]");
  expect_rows(f, "SELECT t.id, w.q AS id, t.id FROM t, w WHERE t.id = 1 AND w.q = 2", NULL,
              "[{\"id\":1,\"id:2\":2,\"id:3\":1}]");
}

static void test_result_accessors(void **state) {
  struct fx *f = *state;
  rt_sqldb_query_t *q = query(f, "SELECT id, a FROM t ORDER BY id");
  rt_sqldb_result_t *r = run(q, NULL);
  assert_int_equal(rt_sqldb_result_row_count(r), 3);
  size_t len;
  const char *row = rt_sqldb_result_row(r, 1, &len);
  assert_string_equal(row, "{\"id\":2,\"a\":\"k2\"}");
  assert_int_equal(len, strlen(row));
  char *all = rt_sqldb_result_rows_json(r, &len);
  assert_string_equal(all,
                      "[{\"id\":1,\"a\":\"k1\"},{\"id\":2,\"a\":\"k2\"},{\"id\":3,\"a\":\"k1\"}]");
  assert_int_equal(len, strlen(all));
  rt_free(all);
  assert_false(rt_sqldb_result_schema_changed(r));
  rt_sqldb_result_free(r);

  other_exec(f, "INSERT INTO t VALUES (4, 'k4', 40)");
  r = run(q, NULL);
  assert_int_equal(rt_sqldb_result_row_count(r), 4);
  assert_string_equal(rt_sqldb_result_row(r, 3, NULL), "{\"id\":4,\"a\":\"k4\"}");
  rt_sqldb_result_free(r);
  drop(f, q);

  q = query(f, "SELECT id FROM t WHERE 0");
  r = run(q, NULL);
  all = rt_sqldb_result_rows_json(r, &len);
  assert_string_equal(all, "[]");
  assert_int_equal(len, 2);
  rt_free(all);
  char *cols = rt_sqldb_result_columns_json(r, NULL);
  assert_string_equal(cols, "[\"id\"]");
  rt_free(cols);
  rt_sqldb_result_free(r);
  drop(f, q);
}

/* ------------------------------------------------------------------ keys */

/* Runs and compares the key column and the keys joined by "|" ("" when none). */
static void expect_keys(struct fx *f, const char *sql, const char *key, int col, const char *want) {
  rt_sqldb_query_t *q = query_p(f, sql, NULL, key);
  assert_int_equal(rt_sqldb_query_key_column(q), col);
  rt_sqldb_result_t *r = run(q, NULL);
  char got[256] = "";
  int has = rt_sqldb_result_has_keys(r);
  for (size_t i = 0; has && i < rt_sqldb_result_row_count(r); i++) {
    size_t len;
    const char *k = rt_sqldb_result_key(r, i, &len);
    assert_int_equal(len, strlen(k));
    if (i > 0) strcat(got, "|");
    strcat(got, k);
  }
  if (!has) {
    for (size_t i = 0; i < rt_sqldb_result_row_count(r); i++)
      assert_null(rt_sqldb_result_key(r, i, NULL));
    strcpy(got, "-");
  }
  if (strcmp(got, want) != 0) fail_msg("keys of %s: got \"%s\", want \"%s\"", sql, got, want);
  rt_sqldb_result_free(r);
  drop(f, q);
}

static void test_keys(void **state) {
  struct fx *f = *state;
  expect_keys(f, "SELECT id, a FROM t ORDER BY id", NULL, 0, "1|2|3");
  expect_keys(f, "SELECT a, id FROM t ORDER BY id DESC", NULL, 1, "3|2|1");
  expect_keys(f, "SELECT a, n FROM t", NULL, -1, "-");
  expect_keys(f, "SELECT t.id AS ident, a FROM t WHERE n > 15 ORDER BY 1", NULL, 0, "2|3");
  expect_keys(f, "SELECT rowid AS r, a FROM t ORDER BY 1", NULL, 0, "1|2|3");
  expect_keys(f, "SELECT x, y FROM u ORDER BY x", NULL, 0, "\"k1\"|\"k2\"");
  expect_keys(f, "SELECT p, q FROM w", NULL, -1, "-");
  expect_keys(f, "SELECT rowid, p FROM w ORDER BY rowid", NULL, 0, "1|2");
  expect_keys(f, "SELECT _rowid_ AS r, p FROM w ORDER BY 1", NULL, 0, "1|2");
  expect_keys(f, "SELECT a, b, c FROM pk2", NULL, -1, "-");
  expect_keys(f, "SELECT k, v FROM nr ORDER BY k", NULL, 0, "\"n1\"|\"n2\"");
  expect_keys(f, "SELECT t.id, u.y FROM t JOIN u ON u.x = t.a ORDER BY t.id", NULL, -1, "-");
  expect_keys(f, "SELECT id FROM t WHERE a IN (SELECT x FROM u) ORDER BY id", NULL, -1, "-");
  expect_keys(f, "SELECT * FROM v ORDER BY id", NULL, -1, "-");
  expect_keys(f, "SELECT t.id, u.y FROM t JOIN u ON u.x = t.a ORDER BY t.id", "id", 0, "1|2|3");
  expect_keys(f, "SELECT p, q FROM w ORDER BY q", "p", 0, "\"p1\"|\"p2\"");
  expect_keys(f, "SELECT c, a FROM pk2 ORDER BY c", "c", 0, "\"a\"|\"b\"");
  expect_keys(f, "SELECT id, a FROM t ORDER BY id", "a", 1, "-");
  expect_keys(f, "SELECT x.id FROM t AS x, t AS y ORDER BY 1", NULL, 0, "-");
  expect_keys(f, "SELECT id FROM t UNION ALL SELECT id FROM t", NULL, 0, "-");
  expect_keys(f, "SELECT id, a FROM t WHERE 0", NULL, 0, "");
  expect_keys(f, "SELECT NULL AS k, 1 AS v UNION ALL SELECT 1, 2", "k", 0, "null|1");
  expect_refused(f, "SELECT id, a FROM t", NULL, "nope", RT_EQUERY,
                 "Key column \"nope\" is not a column of the result");

  rt_sqldb_query_t *q = query_p(f, "SELECT id, a FROM t ORDER BY id", NULL, "a");
  rt_sqldb_result_t *r = run(q, NULL);
  assert_false(rt_sqldb_result_has_keys(r));
  rt_sqldb_result_free(r);
  other_exec(f, "UPDATE t SET a = 'k3' WHERE id = 3");
  r = run(q, NULL);
  assert_true(rt_sqldb_result_has_keys(r));
  assert_string_equal(rt_sqldb_result_key(r, 2, NULL), "\"k3\"");
  rt_sqldb_result_free(r);
  drop(f, q);
}

/* ---------------------------------------------------------------- limits */

static int run_err(rt_sqldb_query_t *q, const rt_sqldb_limits_t *lim, rt_errbuf_t *err) {
  rt_sqldb_result_t *r = (rt_sqldb_result_t *)1;
  int rc = rt_sqldb_query_run(q, lim, &r, err);
  if (rc != 0) assert_null(r);
  rt_sqldb_result_free(r);
  return rc;
}

static void test_limits(void **state) {
  struct fx *f = *state;
  rt_errbuf_t err = {""};
  rt_sqldb_query_t *q = query(f, "SELECT id, a FROM t ORDER BY id");
  rt_sqldb_limits_t lim = {0, 3, 0};
  assert_int_equal(run_err(q, &lim, &err), 0);
  lim.max_rows = 2;
  assert_int_equal(run_err(q, &lim, &err), RT_EQLIMIT);
  assert_string_equal(err.msg, "The result has more than 2 rows");

  size_t total = 3 * strlen("{\"id\":1,\"a\":\"k1\"}");
  lim = (rt_sqldb_limits_t){0, 0, total};
  assert_int_equal(run_err(q, &lim, &err), 0);
  lim.max_bytes = total - 1;
  assert_int_equal(run_err(q, &lim, &err), RT_EQLIMIT);
  char want[64];
  snprintf(want, sizeof(want), "The result is larger than %zu bytes", total - 1);
  assert_string_equal(err.msg, want);
  drop(f, q);

  q = query(f, "SELECT zeroblob(1000000) AS z, printf('%.1000000c', 'x') AS s");
  lim = (rt_sqldb_limits_t){0, 0, 1000};
  assert_int_equal(run_err(q, &lim, &err), RT_EQLIMIT);
  lim.max_bytes = 1000000 + 100;
  assert_int_equal(run_err(q, &lim, &err), RT_EQLIMIT);
  lim.max_bytes = 0;
  assert_int_equal(run_err(q, &lim, &err), 0);
  drop(f, q);
}

static double elapsed_ms(const struct timespec *t0) {
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

static void test_timeout(void **state) {
  struct fx *f = *state;
  rt_errbuf_t err = {""};
  rt_sqldb_query_t *q =
      query(f, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
               "SELECT count(*) FROM c");
  rt_sqldb_limits_t lim = {50, 0, 0};
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  assert_int_equal(run_err(q, &lim, &err), RT_EQTIMEOUT);
  double ms = elapsed_ms(&t0);
  assert_string_equal(err.msg, "The query ran longer than 50 ms");
  print_message("timeout of 50 ms hit after %.1f ms\n", ms);
  assert_true(ms >= 50 && ms < 1000);
  assert_int_equal(run_err(q, &lim, &err), RT_EQTIMEOUT);
  drop(f, q);

  q = query(f, "SELECT count(*) AS n FROM t");
  rt_sqldb_result_t *r = run(q, &lim);
  assert_string_equal(rt_sqldb_result_row(r, 0, NULL), "{\"n\":3}");
  rt_sqldb_result_free(r);
  drop(f, q);

  q = query(f, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000) "
               "SELECT x FROM c");
  lim = (rt_sqldb_limits_t){5000, 0, 0};
  assert_int_equal(run_err(q, &lim, &err), 0);
  drop(f, q);
}

/* WAL: a run never waits for a writer; a write transaction open elsewhere does not block it. */
static void test_run_during_foreign_write(void **state) {
  struct fx *f = *state;
  rt_sqldb_query_t *q = query(f, "SELECT count(*) AS n FROM t");
  other_exec(f, "BEGIN IMMEDIATE; INSERT INTO t VALUES (9, 'k9', 90)");
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  rt_sqldb_result_t *r = run(q, NULL);
  assert_true(elapsed_ms(&t0) < BUSY_MS / 2);
  assert_string_equal(rt_sqldb_result_row(r, 0, NULL), "{\"n\":3}");
  rt_sqldb_result_free(r);
  other_exec(f, "COMMIT");
  r = run(q, NULL);
  assert_string_equal(rt_sqldb_result_row(r, 0, NULL), "{\"n\":4}");
  rt_sqldb_result_free(r);
  drop(f, q);
}

/* Another process redefines a view and adds a column: the statement is prepared again. */
static void test_schema_change(void **state) {
  struct fx *f = *state;
  rt_sqldb_query_t *q = query(f, "SELECT * FROM v ORDER BY id");
  assert_int_equal(rt_sqldb_query_table_count(q), 2);
  rt_sqldb_result_t *r = run(q, NULL);
  assert_false(rt_sqldb_result_schema_changed(r));
  rt_sqldb_result_free(r);
  other_exec(f, "DROP VIEW v; CREATE VIEW v AS SELECT q AS id, p FROM w");
  r = run(q, NULL);
  assert_true(rt_sqldb_result_schema_changed(r));
  assert_int_equal(rt_sqldb_query_table_count(q), 1);
  assert_string_equal(rt_sqldb_query_table(q, 0), "w");
  assert_string_equal(rt_sqldb_result_row(r, 0, NULL), "{\"id\":1,\"p\":\"p1\"}");
  rt_sqldb_result_free(r);
  drop(f, q);

  q = query(f, "SELECT * FROM w ORDER BY q");
  assert_int_equal(rt_sqldb_query_key_column(q), -1);
  other_exec(f, "ALTER TABLE w ADD COLUMN extra DEFAULT 'e'");
  r = run(q, NULL);
  assert_true(rt_sqldb_result_schema_changed(r));
  assert_int_equal(rt_sqldb_result_column_count(r), 3);
  assert_string_equal(rt_sqldb_result_row(r, 1, NULL), "{\"p\":\"p2\",\"q\":2,\"extra\":\"e\"}");
  rt_sqldb_result_free(r);
  r = run(q, NULL);
  assert_false(rt_sqldb_result_schema_changed(r));
  rt_sqldb_result_free(r);
  drop(f, q);

  rt_errbuf_t err = {""};
  q = query(f, "SELECT p FROM w");
  other_exec(f, "DROP TABLE w");
  assert_int_equal(run_err(q, NULL, &err), RT_EQUERY);
  assert_non_null(strstr(err.msg, "no such table: w"));
  drop(f, q);
}

/* ------------------------------------------------------- change tracking */

struct seen {
  char tables[8][32]; /* names reported, in order */
  size_t n;           /* how many */
};

static void on_change(const char *table, void *user_data) {
  struct seen *s = user_data;
  assert_true(s->n < 8);
  snprintf(s->tables[s->n++], sizeof(s->tables[0]), "%s", table);
}

/* Polls once and compares the reported tables, joined by ",". */
static void expect_poll(struct fx *f, const char *want) {
  struct seen s = {0};
  rt_errbuf_t err = {""};
  int n = rt_sqldb_poll(f->db, on_change, &s, &err);
  if (n < 0) fail_msg("poll: %s %s", rt_err_name(n), err.msg);
  assert_int_equal((size_t)n, s.n);
  char got[256] = "";
  for (size_t i = 0; i < s.n; i++) {
    if (i > 0) strcat(got, ",");
    strcat(got, s.tables[i]);
  }
  if (strcmp(got, want) != 0) fail_msg("poll: got \"%s\", want \"%s\"", got, want);
}

static void watch(struct fx *f, const char *table) {
  rt_errbuf_t err = {""};
  int rc = rt_sqldb_watch(f->db, table, &err);
  if (rc != 0) fail_msg("watch(%s): %s %s", table, rt_err_name(rc), err.msg);
}

static void test_poll_other_connection(void **state) {
  struct fx *f = *state;
  expect_poll(f, "");
  other_exec(f, "INSERT INTO t VALUES (10, 'x', 1)");
  expect_poll(f, "");
  watch(f, "t");
  watch(f, "u");
  expect_poll(f, "");

  other_exec(f, "INSERT INTO t VALUES (11, 'x', 1)");
  other_exec(f, "INSERT INTO t VALUES (12, 'x', 1)");
  other_exec(f, "UPDATE t SET n = 2 WHERE id = 11");
  expect_poll(f, "t");
  expect_poll(f, "");
  other_exec(f, "UPDATE t SET n = 3 WHERE id = 11");
  expect_poll(f, "t");
  other_exec(f, "DELETE FROM t WHERE id = 12");
  expect_poll(f, "t");
  other_exec(f, "UPDATE t SET n = 3 WHERE id = 999");
  expect_poll(f, "");

  other_exec(f, "INSERT INTO u VALUES ('k9', 9)");
  expect_poll(f, "u");
  other_exec(f, "INSERT INTO w VALUES ('p9', 9)");
  expect_poll(f, "");
  other_exec(f, "BEGIN; INSERT INTO u VALUES ('k8', 8); UPDATE t SET n = 0; COMMIT");
  expect_poll(f, "u,t");
  other_exec(f, "BEGIN; INSERT INTO t VALUES (13, 'x', 1); ROLLBACK");
  expect_poll(f, "");

  assert_int_equal(other_count(f, "SELECT count(*) FROM _realtime_changes"), 0);
  expect_poll(f, "");
  expect_poll(f, "");
}

static void test_poll_own_writes(void **state) {
  struct fx *f = *state;
  rt_errbuf_t err = {""};
  watch(f, "w");
  assert_int_equal(rt_sqldb_exec(f->db, "INSERT INTO w VALUES ('own', 1)", &err), 0);
  expect_poll(f, "w");
  expect_poll(f, "");
  assert_int_equal(rt_sqldb_exec(f->db, "INSERT INTO t VALUES (20, 'x', 1)", &err), 0);
  expect_poll(f, "");
  expect_poll(f, "");
}

static void test_watch_names(void **state) {
  struct fx *f = *state;
  rt_errbuf_t err = {""};
  assert_int_equal(rt_sqldb_exec(f->db, "CREATE TABLE \"we\"\"ird 'name\"(z)", &err), 0);
  watch(f, "WE\"IRD 'NAME");
  watch(f, "we\"ird 'name");
  watch(f, "T");
  watch(f, "t");
  assert_int_equal(other_count(f, "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' "
                                  "AND name LIKE '\\_realtime\\_%' ESCAPE '\\'"),
                   6);
  assert_int_equal(other_count(f, "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' "
                                  "AND name = '_realtime_we\"ird ''name_upd'"),
                   1);
  other_exec(f, "INSERT INTO \"we\"\"ird 'name\" VALUES (1)");
  other_exec(f, "DELETE FROM T");
  expect_poll(f, "we\"ird 'name,t");

  assert_int_equal(rt_sqldb_watch(f->db, "v", &err), RT_ENOENT);
  assert_non_null(strstr(err.msg, "it is a view"));
  assert_int_equal(rt_sqldb_watch(f->db, "nope", &err), RT_ENOENT);
  assert_string_equal(err.msg, "No table named \"nope\"");
  assert_int_equal(rt_sqldb_watch(f->db, "sqlite_master", &err), RT_EINVAL);
  assert_int_equal(rt_sqldb_watch(f->db, "SQLITE_sequence", &err), RT_EINVAL);
  assert_int_equal(rt_sqldb_watch(f->db, "_realtime_changes", &err), RT_EINVAL);
  assert_int_equal(rt_sqldb_watch(f->db, NULL, &err), RT_EINVAL);
}

/*
 * An idle poll reads nothing but PRAGMA data_version. To see that, the log
 * is dropped behind the module's back by this connection (DROP TABLE counts
 * neither as a commit of another connection nor as a change): polls still
 * return 0, including the one right after the module's own cleanup, until
 * another connection commits and the poll has to read the missing log.
 */
static void test_poll_idle_reads_nothing(void **state) {
  struct fx *f = *state;
  rt_errbuf_t err = {""};
  watch(f, "t");
  other_exec(f, "INSERT INTO t VALUES (60, 'x', 1)");
  expect_poll(f, "t");
  assert_int_equal(rt_sqldb_exec(f->db, "DROP TABLE _realtime_changes", &err), 0);
  expect_poll(f, "");
  expect_poll(f, "");
  other_exec(f, "INSERT INTO w VALUES ('p', 1)");
  struct seen s = {0};
  assert_int_equal(rt_sqldb_poll(f->db, on_change, &s, &err), RT_EQUERY);
  assert_non_null(strstr(err.msg, "no such table: _realtime_changes"));
  assert_int_equal(s.n, 0);
  assert_int_equal(rt_sqldb_poll(f->db, on_change, &s, &err), RT_EQUERY);
}

/* The cleanup never waits for a lock: a writer holding one only defers it. */
static void test_poll_busy_cleanup(void **state) {
  struct fx *f = *state;
  watch(f, "t");
  other_exec(f, "INSERT INTO t VALUES (30, 'x', 1)");
  other_exec(f, "BEGIN IMMEDIATE; INSERT INTO w VALUES ('held', 0)");
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  expect_poll(f, "t");
  assert_true(elapsed_ms(&t0) < BUSY_MS / 2);
  other_exec(f, "COMMIT");
  assert_int_equal(other_count(f, "SELECT count(*) FROM _realtime_changes"), 1);
  expect_poll(f, "");
  other_exec(f, "INSERT INTO t VALUES (31, 'x', 1)");
  expect_poll(f, "t");
  assert_int_equal(other_count(f, "SELECT count(*) FROM _realtime_changes"), 0);
}

/* Watching again only reads: it does not wait for a writer that holds the lock. */
static void test_watch_again_is_read_only(void **state) {
  struct fx *f = *state;
  rt_errbuf_t err = {""};
  watch(f, "t");
  other_exec(f, "BEGIN IMMEDIATE; INSERT INTO w VALUES ('held', 0)");
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  watch(f, "t");
  watch(f, "T");
  assert_true(elapsed_ms(&t0) < BUSY_MS / 2);
  assert_int_equal(rt_sqldb_watch(f->db, "u", &err), RT_EBUSY);
  other_exec(f, "COMMIT");
  watch(f, "u");
  other_exec(f, "DROP TRIGGER _realtime_u_upd");
  watch(f, "u");
  other_exec(f, "UPDATE u SET y = 0");
  expect_poll(f, "u");
}

/* Log rows left by an earlier run are dropped when the next run first watches. */
static void test_restart(void **state) {
  struct fx *f = *state;
  rt_errbuf_t err = {""};
  watch(f, "t");
  rt_sqldb_close(f->db);
  f->db = NULL;
  other_exec(f, "INSERT INTO t VALUES (40, 'x', 1); INSERT INTO t VALUES (41, 'x', 1)");
  assert_int_equal(other_count(f, "SELECT count(*) FROM _realtime_changes"), 2);
  assert_int_equal(rt_sqldb_open(f->path, BUSY_MS, &f->db, &err), 0);
  expect_poll(f, "");
  watch(f, "t");
  assert_int_equal(other_count(f, "SELECT count(*) FROM _realtime_changes"), 0);
  expect_poll(f, "");
  other_exec(f, "DELETE FROM t WHERE id = 40");
  expect_poll(f, "t");
}

/* ------------------------------------------------------------------- OOM */

/* Fails our n-th allocation in `call`, n = 0, 1... until it succeeds; each failure is RT_ENOMEM. */
#define OOM_LOOP(call, cleanup)                                         \
  for (long n_ = 0;; n_++) {                                            \
    rt_alloc_fail_after(n_);                                            \
    int rc_ = (call);                                                   \
    rt_alloc_fail_after(-1);                                            \
    if (rc_ == 0) {                                                     \
      cleanup;                                                          \
      break;                                                            \
    }                                                                   \
    if (rc_ != RT_ENOMEM) fail_msg("step %ld: %s", n_, rt_err_name(rc_)); \
    assert_true(n_ < 100000);                                           \
  }

static void test_oom_run(void **state) {
  struct fx *f = *state;
  rt_errbuf_t err = {""};
  assert_int_equal(rt_sqldb_exec(f->db,
                                 "WITH RECURSIVE c(i) AS (SELECT 100 UNION ALL SELECT i + 1 FROM c "
                                 "WHERE i < 160) INSERT INTO t SELECT i, 'row \"' || i || '\"\n', "
                                 "i * 1.5 FROM c",
                                 &err),
                   0);
  static const char sql[] =
      "SELECT id, a, n, x'0102' AS b, NULL AS z, id AS id, 0.1 AS r FROM t WHERE id >= $1";
  rt_sqldb_query_t *q = query_p(f, sql, "[0]", NULL);
  rt_sqldb_result_t *ref = run(q, NULL);
  char *want = rt_sqldb_result_rows_json(ref, NULL);
  size_t runs = 0;
  rt_sqldb_result_t *r = NULL;
  OOM_LOOP((runs++, rt_sqldb_query_run(q, NULL, &r, &err)), {
    char *got = rt_sqldb_result_rows_json(r, NULL);
    assert_string_equal(got, want);
    assert_true(rt_sqldb_result_has_keys(r));
    assert_string_equal(rt_sqldb_result_key(r, 60, NULL), rt_sqldb_result_key(ref, 60, NULL));
    rt_free(got);
    rt_sqldb_result_free(r);
  });
  print_message("run: %zu allocation failure points\n", runs - 1);
  assert_true(runs > 10);
  char *text = NULL;
  OOM_LOOP((text = rt_sqldb_result_rows_json(ref, NULL)) ? 0 : RT_ENOMEM, rt_free(text));
  OOM_LOOP((text = rt_sqldb_result_columns_json(ref, NULL)) ? 0 : RT_ENOMEM, rt_free(text));
  rt_free(want);
  rt_sqldb_result_free(ref);
  drop(f, q);

  rt_sqldb_query_t *q2 = NULL;
  static const char sql2[] = "SELECT * FROM t JOIN u ON u.x = t.a WHERE a = :a AND n > :n";
  static const char params2[] = "{\"a\":\"k1\",\"n\":1.5}";
  OOM_LOOP(rt_sqldb_query_new(f->db, sql2, params2, strlen(params2), "id", &q2, &err),
           rt_sqldb_query_free(q2));
  OOM_LOOP(rt_sqldb_query_new(f->db, "SELECT id, a FROM t", NULL, 0, NULL, &q2, &err), {
    assert_int_equal(rt_sqldb_query_key_column(q2), 0);
    assert_int_equal(rt_sqldb_query_table_count(q2), 1);
    rt_sqldb_query_free(q2);
  });
}

/* One poll into s; callbacks run only once the poll has succeeded. */
static int poll_into(struct fx *f, struct seen *s, rt_errbuf_t *err) {
  s->n = 0;
  int n = rt_sqldb_poll(f->db, on_change, s, err);
  if (n < 0) assert_int_equal(s->n, 0);
  return n < 0 ? n : 0;
}

static void test_oom_watch_poll(void **state) {
  struct fx *f = *state;
  rt_errbuf_t err = {""};
  OOM_LOOP(rt_sqldb_watch(f->db, "t", &err), (void)0);
  OOM_LOOP(rt_sqldb_watch(f->db, "u", &err), (void)0);
  other_exec(f, "INSERT INTO t VALUES (50, 'x', 1); INSERT INTO u VALUES ('z', 1)");
  struct seen s = {0};
  OOM_LOOP(poll_into(f, &s, &err), (void)0);
  assert_int_equal(s.n, 2);
  assert_string_equal(s.tables[0], "t");
  assert_string_equal(s.tables[1], "u");
  expect_poll(f, "");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_open_wal_and_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_exec_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tables_read, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refused_statements, setup, teardown),
      cmocka_unit_test_setup_teardown(test_params_dollar, setup, teardown),
      cmocka_unit_test_setup_teardown(test_params_positional, setup, teardown),
      cmocka_unit_test_setup_teardown(test_params_named, setup, teardown),
      cmocka_unit_test_setup_teardown(test_params_types, setup, teardown),
      cmocka_unit_test_setup_teardown(test_encode_types, setup, teardown),
      cmocka_unit_test_setup_teardown(test_encode_long_blob, setup, teardown),
      cmocka_unit_test_setup_teardown(test_duplicate_columns, setup, teardown),
      cmocka_unit_test_setup_teardown(test_result_accessors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_keys, setup, teardown),
      cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
      cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_run_during_foreign_write, setup, teardown),
      cmocka_unit_test_setup_teardown(test_schema_change, setup, teardown),
      cmocka_unit_test_setup_teardown(test_poll_other_connection, setup, teardown),
      cmocka_unit_test_setup_teardown(test_poll_own_writes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_watch_names, setup, teardown),
      cmocka_unit_test_setup_teardown(test_poll_idle_reads_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_poll_busy_cleanup, setup, teardown),
      cmocka_unit_test_setup_teardown(test_watch_again_is_read_only, setup, teardown),
      cmocka_unit_test_setup_teardown(test_restart, setup, teardown),
      cmocka_unit_test_setup_teardown(test_oom_run, setup, teardown),
      cmocka_unit_test_setup_teardown(test_oom_watch_poll, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
