/*
 * Live-query registry tests: a recording push callback (plain malloc, so the
 * OOM loops only fail the registry's allocations), results built from string
 * lists, and exact frame texts. Every test frees what it made, so ASan's leak
 * check covers the registry's bookkeeping, pinned and orphaned instances
 * included.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "live/livequery.h"
#include "proto.h"

#define RECS_MAX 512
#define ROWS_MAX 64

/* ------------------------------------------------------------ recorder */

typedef struct {
  rt_lq_push_kind_t kind;    /* push->kind */
  void *owner;               /* push->owner */
  uint64_t owner_id;         /* push->owner_id */
  char sub_id[RT_LQ_ID_MAX]; /* push->sub_id */
  char *json;                /* the frame payload, NUL-terminated (malloc); NULL if no frame */
} rec_t;

typedef void (*action_fn)(const rt_lq_push_t *push);

static rt_lq_t *reg;
static rec_t recs[RECS_MAX];
static size_t nrecs;
static action_fn action; /* run inside the callback after recording */

static void on_push(const rt_lq_push_t *push, void *user_data) {
  assert_ptr_equal(user_data, &recs);
  assert_true(nrecs < RECS_MAX);
  rec_t *r = &recs[nrecs++];
  r->kind = push->kind;
  r->owner = push->owner;
  r->owner_id = push->owner_id;
  snprintf(r->sub_id, sizeof(r->sub_id), "%s", push->sub_id);
  r->json = NULL;
  if (push->frame != NULL) {
    size_t n = push->frame->len;
    r->json = malloc(n + 1);
    memcpy(r->json, rt_frame_payload(push->frame), n);
    r->json[n] = '\0';
    assert_int_equal(rt_json_validate(r->json, n, 1000, NULL, NULL, NULL), 0);
    assert_int_equal(rt_frame_wire(push->frame)[0], 0x81); /* FIN + text */
  }
  if (action != NULL) action(push);
}

static void clear_recs(void) {
  for (size_t i = 0; i < nrecs; i++) free(recs[i].json);
  nrecs = 0;
}

static int setup(void **state) {
  reg = rt_lq_new(on_push, &recs);
  action = NULL;
  return reg == NULL;
}

static int teardown(void **state) {
  rt_lq_free(reg);
  reg = NULL;
  clear_recs();
  rt_alloc_fail_after(-1);
  return 0;
}

/* The recorded frame sent to sub_id (the only one expected), or NULL. */
static const char *frame_for(const char *sub_id) {
  const char *found = NULL;
  for (size_t i = 0; i < nrecs; i++) {
    if (strcmp(recs[i].sub_id, sub_id) != 0) continue;
    assert_null(found);
    found = recs[i].json;
  }
  return found;
}

/* ------------------------------------------------------------ helpers */

#define TABLES(...) ((const char *const[]){__VA_ARGS__, NULL})
#define ROWS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NOROWS ((const char *const[]){NULL})

static size_t count_list(const char *const *list) {
  size_t n = 0;
  while (list != NULL && list[n] != NULL) n++;
  return n;
}

static int sub_full(void *owner, uint64_t owner_id, const char *sql, const char *params,
                    const char *const *tables, int has_id, int64_t id, rt_lq_sub_out_t *out) {
  rt_lq_sub_req_t req = {owner, owner_id, sql, params, tables, count_list(tables), has_id, id};
  return rt_lq_subscribe(reg, &req, out);
}

/* Subscribes with request id 1 and asserts success. */
static rt_lq_sub_out_t sub(void *owner, const char *sql, const char *params,
                           const char *const *tables) {
  rt_lq_sub_out_t out;
  assert_int_equal(sub_full(owner, (uint64_t)(uintptr_t)owner, sql, params, tables, 1, 1, &out),
                   0);
  return out;
}

/* A result for apply: rows as given; keys aligned with rows (NULL list = unkeyed). */
typedef struct {
  rt_lq_result_t r;             /* what apply reads */
  size_t row_lens[ROWS_MAX];    /* lengths of the rows */
  size_t key_lens[ROWS_MAX];    /* lengths of the keys */
  const char *keys[ROWS_MAX];   /* the keys, NULL entries allowed */
} res_t;

static const rt_lq_result_t *mk(res_t *b, const char *cols, const char *const *rows,
                                const char *const *keys, size_t nkeys) {
  memset(b, 0, sizeof(*b));
  b->r.columns = cols;
  b->r.columns_len = strlen(cols);
  b->r.nrows = count_list(rows);
  b->r.rows = rows;
  b->r.row_lens = b->row_lens;
  for (size_t i = 0; i < b->r.nrows; i++) b->row_lens[i] = strlen(rows[i]);
  b->r.keyed = keys != NULL;
  b->r.keys = b->keys;
  b->r.key_lens = b->key_lens;
  for (size_t i = 0; keys != NULL && i < nkeys; i++) {
    b->keys[i] = keys[i];
    b->key_lens[i] = keys[i] != NULL ? strlen(keys[i]) : 0;
  }
  return &b->r;
}

/*
 * Rows are padded so that diffs of a row or two are smaller than the full
 * result (a diff frame has ~50 bytes of fixed overhead, see the threshold test).
 */
#define PAD "0123456789012345678901234567890123456789012345678901234567"
#define ROW(id, v) "{\"id\":" #id ",\"v\":\"" v "\",\"pad\":\"" PAD "\"}"
#define COLS "[\"id\",\"v\",\"pad\"]"
#define R1 ROW(1, "a")
#define R1B ROW(1, "A")
#define R2 ROW(2, "b")
#define R2B ROW(2, "B")
#define R3 ROW(3, "c")
#define R4 ROW(4, "d")
#define R5 ROW(5, "e")
#define R6 ROW(6, "f")
#define SQL "SELECT id, v FROM t"

static int64_t apply_keyed(rt_lq_instance_t *inst, const char *const *rows,
                           const char *const *keys) {
  res_t b;
  return rt_lq_apply(reg, inst, mk(&b, COLS, rows, keys, count_list(keys)));
}

static int64_t apply_unkeyed(rt_lq_instance_t *inst, const char *const *rows) {
  res_t b;
  return rt_lq_apply(reg, inst, mk(&b, COLS, rows, NULL, 0));
}

static rt_lq_stats_t stats(void) {
  rt_lq_stats_t s;
  rt_lq_stats(reg, &s);
  return s;
}

/* One keyed instance with subscribers a and b (ids q1, q2), first result applied and cleared. */
static rt_lq_instance_t *keyed_pair(int *a, int *b) {
  rt_lq_sub_out_t o1 = sub(a, SQL, "[]", TABLES("t"));
  rt_lq_sub_out_t o2 = sub(b, SQL, "[]", TABLES("t"));
  assert_non_null(o1.evaluate);
  assert_null(o2.evaluate);
  assert_int_equal(apply_keyed(o1.evaluate, ROWS(R1, R2, R3), ROWS("1", "2", "3")), 2);
  clear_recs();
  assert_int_equal(rt_lq_mark_table_changed(reg, "t"), 1);
  rt_lq_instance_t *inst = rt_lq_next_dirty(reg);
  assert_ptr_equal(inst, o1.evaluate);
  return inst;
}

/* ------------------------------------------------------------ sharing */

static void test_new_free(void **state) {
  rt_lq_free(NULL);
  rt_lq_stats_t s = stats();
  assert_int_equal(s.instances, 0);
  assert_int_equal(s.subscriptions, 0);
  assert_null(rt_lq_next_dirty(reg));
  assert_int_equal(rt_lq_mark_table_changed(reg, "t"), 0);
  assert_int_equal(rt_lq_unsubscribe_owner(reg, NULL), 0);
}

static void test_share_same_key(void **state) {
  int a, b, c;
  rt_lq_sub_out_t o1 = sub(&a, SQL, "[1]", TABLES("t"));
  rt_lq_sub_out_t o2 = sub(&b, SQL, "[1]", TABLES("t"));
  assert_string_equal(o1.sub_id, "q1");
  assert_string_equal(o2.sub_id, "q2");
  assert_non_null(o1.evaluate);
  assert_null(o1.ack);
  assert_null(o2.evaluate); /* first evaluation in flight: the ack comes with it */
  assert_null(o2.ack);
  assert_string_equal(rt_lq_instance_sql(o1.evaluate), SQL);
  assert_string_equal(rt_lq_instance_params(o1.evaluate), "[1]");
  assert_int_equal(stats().instances, 1);
  assert_int_equal(stats().subscriptions, 2);

  assert_int_equal(apply_keyed(o1.evaluate, ROWS(R1), ROWS("1")), 2);
  assert_int_equal(nrecs, 2);
  assert_int_equal(recs[0].kind, RT_LQ_PUSH_ACK);
  assert_ptr_equal(recs[0].owner, &a);
  assert_int_equal(recs[0].owner_id, (uint64_t)(uintptr_t)&a);
  assert_string_equal(frame_for("q1"),
                      "{\"type\":\"ack\",\"id\":1,\"subscription\":\"q1\",\"columns\":" COLS
                      ",\"rows\":[" R1 "]}");
  assert_string_equal(frame_for("q2"),
                      "{\"type\":\"ack\",\"id\":1,\"subscription\":\"q2\",\"columns\":" COLS
                      ",\"rows\":[" R1 "]}");

  /* A late subscriber is acked at once from the cached result. */
  rt_lq_sub_out_t o3;
  assert_int_equal(sub_full(&c, 3, SQL, "[1]", TABLES("t"), 1, -7, &o3), 0);
  assert_null(o3.evaluate);
  assert_non_null(o3.ack);
  char *ack = strndup((const char *)rt_frame_payload(o3.ack), o3.ack->len);
  assert_string_equal(ack, "{\"type\":\"ack\",\"id\":-7,\"subscription\":\"q3\",\"columns\":" COLS
                           ",\"rows\":[" R1 "]}");
  free(ack);
  rt_frame_unref(o3.ack);

  /* Other params: another instance; same owner twice: two subscriptions. */
  rt_lq_sub_out_t o4 = sub(&a, SQL, "[2]", TABLES("t"));
  rt_lq_sub_out_t o5 = sub(&a, SQL, "[2]", TABLES("t"));
  assert_non_null(o4.evaluate);
  assert_ptr_not_equal(o4.evaluate, o1.evaluate);
  assert_null(o5.evaluate);
  assert_int_equal(stats().instances, 2);
  assert_int_equal(stats().subscriptions, 5);
  assert_int_equal(rt_lq_owner_count(reg, &a), 3);
  rt_lq_release(reg, o4.evaluate);
}

static void test_ack_without_id_and_empty_result(void **state) {
  int a;
  rt_lq_sub_out_t o;
  assert_int_equal(sub_full(&a, 9, SQL, "[]", NULL, 0, 0, &o), 0);
  assert_int_equal(apply_unkeyed(o.evaluate, NOROWS), 1);
  assert_string_equal(frame_for("q1"), "{\"type\":\"ack\",\"subscription\":\"q1\",\"columns\":" COLS
                                       ",\"rows\":[]}");
  assert_int_equal(recs[0].owner_id, 9);
}

static void test_subscribe_invalid(void **state) {
  int a;
  rt_lq_sub_out_t o;
  assert_int_equal(sub_full(&a, 1, NULL, "[]", NULL, 0, 0, &o), RT_EINVAL);
  assert_int_equal(sub_full(&a, 1, SQL, NULL, NULL, 0, 0, &o), RT_EINVAL);
  rt_lq_sub_req_t req = {&a, 1, SQL, "[]", NULL, 2, 0, 0};
  assert_int_equal(rt_lq_subscribe(reg, &req, &o), RT_EINVAL);
  assert_int_equal(stats().subscriptions, 0);
}

/* ------------------------------------------------------------ unsubscribe */

static void test_unsubscribe(void **state) {
  int a, b;
  rt_lq_sub_out_t o1 = sub(&a, SQL, "[]", TABLES("t", "u"));
  rt_lq_sub_out_t o2 = sub(&b, SQL, "[]", TABLES("t", "u"));
  assert_int_equal(apply_unkeyed(o1.evaluate, ROWS(R1)), 2);
  assert_int_equal(rt_lq_unsubscribe(reg, &a, "q99"), RT_ENOENT);
  assert_int_equal(rt_lq_unsubscribe(reg, &b, "q1"), RT_ENOENT); /* not b's */
  assert_int_equal(rt_lq_unsubscribe(reg, &a, "q1"), 0);
  assert_int_equal(rt_lq_unsubscribe(reg, &a, "q1"), RT_ENOENT);
  assert_int_equal(stats().instances, 1);
  assert_int_equal(rt_lq_owner_count(reg, &a), 0);
  assert_int_equal(rt_lq_mark_table_changed(reg, "u"), 1);
  assert_int_equal(stats().dirty, 1);
  assert_int_equal(rt_lq_unsubscribe(reg, &b, o2.sub_id), 0);
  rt_lq_stats_t s = stats();
  assert_int_equal(s.instances, 0);
  assert_int_equal(s.subscriptions, 0);
  assert_int_equal(s.dirty, 0);
  assert_null(rt_lq_next_dirty(reg));
  assert_int_equal(rt_lq_mark_table_changed(reg, "t"), 0);
}

static void test_unsubscribe_owner(void **state) {
  int a, b;
  sub(&a, SQL, "[1]", TABLES("t"));
  sub(&b, SQL, "[1]", TABLES("t"));
  sub(&a, SQL, "[2]", TABLES("t"));
  sub(&a, SQL, "[2]", TABLES("t"));
  assert_int_equal(rt_lq_owner_count(reg, &a), 3);
  void *owner = NULL;
  uint64_t oid = 0;
  assert_int_equal(rt_lq_lookup(reg, "q3", &owner, &oid), 0);
  assert_ptr_equal(owner, &a);
  assert_int_equal(oid, (uint64_t)(uintptr_t)&a);
  assert_int_equal(rt_lq_lookup(reg, "q7", NULL, NULL), RT_ENOENT);

  assert_int_equal(rt_lq_unsubscribe_owner(reg, &a), 3);
  assert_int_equal(rt_lq_unsubscribe_owner(reg, &a), 0);
  assert_int_equal(rt_lq_owner_count(reg, &a), 0);
  assert_int_equal(rt_lq_lookup(reg, "q3", NULL, NULL), RT_ENOENT);
  assert_int_equal(rt_lq_lookup(reg, "q2", NULL, NULL), 0);
  rt_lq_stats_t s = stats();
  assert_int_equal(s.subscriptions, 1);
  assert_int_equal(s.instances, 1); /* [2]'s instance is detached (still pinned): not counted */
}

/* ------------------------------------------------------------ dirty marking */

static void test_mark_by_table(void **state) {
  int a;
  rt_lq_sub_out_t o1 = sub(&a, "SELECT * FROM orders JOIN customers", "[]",
                           TABLES("orders", "customers", "Orders"));
  rt_lq_sub_out_t o2 = sub(&a, "SELECT * FROM items", "[]", TABLES("items"));
  assert_int_equal(apply_unkeyed(o1.evaluate, NOROWS), 1);
  assert_int_equal(apply_unkeyed(o2.evaluate, NOROWS), 1);

  assert_int_equal(rt_lq_mark_table_changed(reg, "payments"), 0);
  assert_null(rt_lq_next_dirty(reg));
  assert_int_equal(rt_lq_mark_table_changed(reg, "ORDERS"), 1); /* ASCII case ignored */
  assert_int_equal(rt_lq_mark_table_changed(reg, "customers"), 0); /* already dirty */
  assert_int_equal(stats().dirty, 1);
  assert_ptr_equal(rt_lq_next_dirty(reg), o1.evaluate);
  assert_null(rt_lq_next_dirty(reg));
  rt_lq_release(reg, o1.evaluate);

  /* A burst of marks is one evaluation per instance per round. */
  for (int i = 0; i < 5; i++) {
    rt_lq_mark_table_changed(reg, "orders");
    rt_lq_mark_table_changed(reg, "items");
  }
  rt_lq_instance_t *first = rt_lq_next_dirty(reg);
  rt_lq_instance_t *second = rt_lq_next_dirty(reg);
  assert_ptr_equal(first, o1.evaluate);
  assert_ptr_equal(second, o2.evaluate);
  assert_null(rt_lq_next_dirty(reg));
  assert_int_equal(stats().dirty, 0);
  rt_lq_release(reg, first);
  rt_lq_release(reg, second);
  assert_null(rt_lq_next_dirty(reg));
}

static void test_mark_while_pinned(void **state) {
  int a;
  rt_lq_sub_out_t o = sub(&a, SQL, "[]", TABLES("t"));
  /* Changes during the first evaluation: refreshed once more after it. */
  assert_int_equal(rt_lq_mark_table_changed(reg, "t"), 1);
  assert_int_equal(rt_lq_mark_table_changed(reg, "t"), 0);
  assert_null(rt_lq_next_dirty(reg));
  assert_int_equal(apply_unkeyed(o.evaluate, ROWS(R1)), 1);
  rt_lq_instance_t *inst = rt_lq_next_dirty(reg);
  assert_ptr_equal(inst, o.evaluate);
  assert_null(rt_lq_next_dirty(reg));
  assert_int_equal(rt_lq_mark_table_changed(reg, "t"), 1);
  assert_null(rt_lq_next_dirty(reg));
  rt_lq_release(reg, inst);
  assert_ptr_equal(rt_lq_next_dirty(reg), inst);
  rt_lq_release(reg, inst);
  assert_null(rt_lq_next_dirty(reg));
}

static void test_no_tables_never_dirty(void **state) {
  int a;
  rt_lq_sub_out_t o = sub(&a, "SELECT 1", "[]", NULL);
  assert_int_equal(apply_unkeyed(o.evaluate, ROWS("{\"1\":1}")), 1);
  assert_int_equal(rt_lq_mark_table_changed(reg, "t"), 0);
  assert_null(rt_lq_next_dirty(reg));
}

/* ------------------------------------------------------------ diffs */

static void test_diff_mix(void **state) {
  int a, b;
  rt_lq_instance_t *inst = keyed_pair(&a, &b);
  /* 1 same, 2 updated, 3 deleted, 4 and 5 inserted (in the new result's order). */
  assert_int_equal(apply_keyed(inst, ROWS(R4, R1, R2B, R5), ROWS("4", "1", "2", "5")), 2);
  assert_int_equal(recs[0].kind, RT_LQ_PUSH_DIFF);
  assert_string_equal(frame_for("q1"), "{\"type\":\"query_diff\",\"subscription\":\"q1\","
                                       "\"inserted\":[" R4 "," R5 "],"
                                       "\"updated\":[" R2B "],\"deleted\":[3]}");
  assert_string_equal(frame_for("q2"), "{\"type\":\"query_diff\",\"subscription\":\"q2\","
                                       "\"inserted\":[" R4 "," R5 "],"
                                       "\"updated\":[" R2B "],\"deleted\":[3]}");
  clear_recs();

  /* Deletes only, in the previous result's order. */
  rt_lq_mark_table_changed(reg, "t");
  inst = rt_lq_next_dirty(reg);
  assert_int_equal(apply_keyed(inst, ROWS(R2B, R1), ROWS("2", "1")), 2);
  assert_string_equal(frame_for("q1"), "{\"type\":\"query_diff\",\"subscription\":\"q1\","
                                       "\"inserted\":[],\"updated\":[],\"deleted\":[4,5]}");
  clear_recs();

  /* Updates only; a late subscriber is acked with the latest rows. */
  rt_lq_mark_table_changed(reg, "t");
  inst = rt_lq_next_dirty(reg);
  assert_int_equal(apply_keyed(inst, ROWS(R2B, R1B), ROWS("2", "1")), 2);
  assert_string_equal(frame_for("q2"), "{\"type\":\"query_diff\",\"subscription\":\"q2\","
                                       "\"inserted\":[],\"updated\":[" R1B "],\"deleted\":[]}");
  rt_lq_sub_out_t late = sub(&a, SQL, "[]", TABLES("t"));
  char *ack = strndup((const char *)rt_frame_payload(late.ack), late.ack->len);
  assert_string_equal(ack, "{\"type\":\"ack\",\"id\":1,\"subscription\":\"q3\",\"columns\":" COLS
                           ",\"rows\":[" R2B "," R1B "]}");
  free(ack);
  rt_frame_unref(late.ack);
  assert_int_equal(stats().diffs, 6);
}

static void test_string_keys(void **state) {
  int a;
  rt_lq_sub_out_t o = sub(&a, SQL, "[]", TABLES("t"));
  assert_int_equal(apply_keyed(o.evaluate, ROWS(R1, R2), ROWS("\"a\"", "\"b\"")), 1);
  clear_recs();
  rt_lq_mark_table_changed(reg, "t");
  rt_lq_instance_t *inst = rt_lq_next_dirty(reg);
  assert_int_equal(apply_keyed(inst, ROWS(R1, R2, R3), ROWS("\"a\"", "\"c\"", "\"d\"")), 1);
  assert_string_equal(frame_for("q1"), "{\"type\":\"query_diff\",\"subscription\":\"q1\","
                                       "\"inserted\":[" R2 "," R3 "],\"updated\":[],"
                                       "\"deleted\":[\"b\"]}");
}

static void test_keyed_reorder_and_identical_no_push(void **state) {
  int a, b;
  rt_lq_instance_t *inst = keyed_pair(&a, &b);
  assert_int_equal(apply_keyed(inst, ROWS(R3, R1, R2), ROWS("3", "1", "2")), 0);
  assert_int_equal(nrecs, 0);
  rt_lq_mark_table_changed(reg, "t");
  inst = rt_lq_next_dirty(reg);
  assert_int_equal(apply_keyed(inst, ROWS(R3, R1, R2), ROWS("3", "1", "2")), 0);
  assert_int_equal(nrecs, 0);
  rt_lq_stats_t s = stats();
  assert_int_equal(s.unchanged, 2);
  assert_int_equal(s.evaluations, 3);
  /* The cache took the new order: a late ack shows it. */
  rt_lq_sub_out_t late = sub(&a, SQL, "[]", TABLES("t"));
  char *ack = strndup((const char *)rt_frame_payload(late.ack), late.ack->len);
  assert_non_null(strstr(ack, "\"rows\":[" R3 "," R1 "," R2 "]}"));
  free(ack);
  rt_frame_unref(late.ack);
}

static void test_diff_larger_than_full(void **state) {
  int a, b;
  rt_lq_instance_t *inst = keyed_pair(&a, &b);
  /* Everything replaced: inserted rows + deleted keys is always more than the rows. */
  assert_int_equal(apply_keyed(inst, ROWS(R4, R5, R6), ROWS("4", "5", "6")), 2);
  assert_int_equal(recs[0].kind, RT_LQ_PUSH_RESULT);
  assert_string_equal(frame_for("q1"), "{\"type\":\"query_result\",\"subscription\":\"q1\","
                                       "\"rows\":[" R4 "," R5 "," R6 "]}");
  clear_recs();
  /* The next change diffs against the full result that was sent. */
  rt_lq_mark_table_changed(reg, "t");
  inst = rt_lq_next_dirty(reg);
  assert_int_equal(apply_keyed(inst, ROWS(R4, R5), ROWS("4", "5")), 2);
  assert_string_equal(frame_for("q2"), "{\"type\":\"query_diff\",\"subscription\":\"q2\","
                                       "\"inserted\":[],\"updated\":[],\"deleted\":[6]}");
}

/*
 * The rule is "larger", so a diff frame exactly as long as the full one stays
 * a diff. Old: [A] (key 1); new: [A, B] (keys 1, 2). The frames differ after
 * the common "subscription" member: the diff has "query_diff" (10) and
 * "inserted":[B],"updated":[],"deleted":[]} (40 + |B|), the full result has
 * "query_result" (12) and "rows":[A,B]} (7 + |A| + |B| + 3 + 1). Equal when
 * |A| = 27, so |A| = 27 gives a diff and |A| = 26 a full result.
 */
static void test_diff_size_threshold(void **state) {
  int a;
  const char *a27 = "{\"x\":\"0123456789012345678\"}", *a26 = "{\"x\":\"012345678901234567\"}";
  assert_int_equal(strlen(a27), 27);
  assert_int_equal(strlen(a26), 26);
  rt_lq_sub_out_t o1 = sub(&a, SQL, "[27]", TABLES("t"));
  rt_lq_sub_out_t o2 = sub(&a, SQL, "[26]", TABLES("t"));
  assert_int_equal(apply_keyed(o1.evaluate, ROWS(a27), ROWS("1")), 1);
  assert_int_equal(apply_keyed(o2.evaluate, ROWS(a26), ROWS("1")), 1);
  clear_recs();
  rt_lq_mark_table_changed(reg, "t");
  rt_lq_instance_t *i1 = rt_lq_next_dirty(reg), *i2 = rt_lq_next_dirty(reg);
  assert_int_equal(apply_keyed(i1, ROWS(a27, "{}"), ROWS("1", "2")), 1);
  assert_int_equal(apply_keyed(i2, ROWS(a26, "{}"), ROWS("1", "2")), 1);
  assert_int_equal(recs[0].kind, RT_LQ_PUSH_DIFF);
  assert_int_equal(recs[1].kind, RT_LQ_PUSH_RESULT);
  assert_int_equal(strlen(recs[0].json), strlen(recs[1].json) + 1); /* + 1: the longer A */
}

static void test_unkeyed_full(void **state) {
  int a;
  rt_lq_sub_out_t o = sub(&a, SQL, "[]", TABLES("t"));
  assert_int_equal(apply_unkeyed(o.evaluate, ROWS(R1, R2)), 1);
  clear_recs();
  rt_lq_instance_t *inst;
  /* Identical: nothing. */
  rt_lq_mark_table_changed(reg, "t");
  inst = rt_lq_next_dirty(reg);
  assert_int_equal(apply_unkeyed(inst, ROWS(R1, R2)), 0);
  /* Reordered: order matters for full results. */
  rt_lq_mark_table_changed(reg, "t");
  inst = rt_lq_next_dirty(reg);
  assert_int_equal(apply_unkeyed(inst, ROWS(R2, R1)), 1);
  assert_string_equal(frame_for("q1"), "{\"type\":\"query_result\",\"subscription\":\"q1\","
                                       "\"rows\":[" R2 "," R1 "]}");
  clear_recs();
  /* Emptied. */
  rt_lq_mark_table_changed(reg, "t");
  inst = rt_lq_next_dirty(reg);
  assert_int_equal(apply_unkeyed(inst, NOROWS), 1);
  assert_string_equal(frame_for("q1"),
                      "{\"type\":\"query_result\",\"subscription\":\"q1\",\"rows\":[]}");
  assert_int_equal(stats().results, 2);
}

static void test_keys_unusable_full(void **state) {
  int a, b;
  rt_lq_instance_t *inst = keyed_pair(&a, &b);
  /* Duplicate keys: full result. */
  assert_int_equal(apply_keyed(inst, ROWS(R1, R2), ROWS("1", "1")), 2);
  assert_int_equal(recs[0].kind, RT_LQ_PUSH_RESULT);
  clear_recs();
  /* Previous unkeyed (duplicates), new keyed: full. */
  rt_lq_mark_table_changed(reg, "t");
  inst = rt_lq_next_dirty(reg);
  assert_int_equal(apply_keyed(inst, ROWS(R1), ROWS("1")), 2);
  assert_int_equal(recs[0].kind, RT_LQ_PUSH_RESULT);
  clear_recs();
  /* A row without a key: full. */
  rt_lq_mark_table_changed(reg, "t");
  inst = rt_lq_next_dirty(reg);
  res_t rb;
  const char *keys[2] = {"1", NULL};
  assert_int_equal(rt_lq_apply(reg, inst, mk(&rb, COLS, ROWS(R1, R2), keys, 2)), 2);
  assert_int_equal(recs[0].kind, RT_LQ_PUSH_RESULT);
  assert_string_equal(frame_for("q1"), "{\"type\":\"query_result\",\"subscription\":\"q1\","
                                       "\"rows\":[" R1 "," R2 "]}");
  clear_recs();
  /* Keyed again, but the previous result was not: full, even though rows are the same. */
  rt_lq_mark_table_changed(reg, "t");
  inst = rt_lq_next_dirty(reg);
  assert_int_equal(apply_keyed(inst, ROWS(R1, R2), ROWS("1", "2")), 0);
  assert_int_equal(nrecs, 0); /* byte-identical full result: no push */
  rt_lq_mark_table_changed(reg, "t");
  inst = rt_lq_next_dirty(reg);
  assert_int_equal(apply_keyed(inst, ROWS(R1), ROWS("1")), 2);
  assert_int_equal(recs[0].kind, RT_LQ_PUSH_DIFF);
}

static void test_columns_change_full(void **state) {
  int a, b;
  rt_lq_instance_t *inst = keyed_pair(&a, &b);
  res_t rb;
  assert_int_equal(
      rt_lq_apply(reg, inst, mk(&rb, "[\"id\",\"v\",\"w\"]", ROWS(R1, R2, R3),
                                ROWS("1", "2", "3"), 3)),
      2);
  assert_int_equal(recs[0].kind, RT_LQ_PUSH_RESULT);
  clear_recs();
  /* Columns changed with no rows: still a push (the ack would show other columns). */
  rt_lq_mark_table_changed(reg, "t");
  inst = rt_lq_next_dirty(reg);
  assert_int_equal(rt_lq_apply(reg, inst, mk(&rb, "[\"id\"]", NOROWS, NOROWS, 0)), 2);
  rt_lq_mark_table_changed(reg, "t");
  inst = rt_lq_next_dirty(reg);
  assert_int_equal(rt_lq_apply(reg, inst, mk(&rb, "[\"id\"]", NOROWS, NOROWS, 0)), 0);
}

typedef struct {
  size_t calls;               /* instances seen */
  rt_lq_instance_info_t info; /* the last one */
} info_acc_t;

static void collect_info(const rt_lq_instance_info_t *info, void *user_data) {
  info_acc_t *acc = user_data;
  acc->calls++;
  acc->info = *info;
}

/* An empty keyed result is keyed: the next one is diffed against it. */
static void test_keyed_from_empty(void **state) {
  int a;
  rt_lq_sub_out_t o = sub(&a, SQL, "[]", TABLES("t"));
  assert_int_equal(apply_keyed(o.evaluate, NOROWS, NOROWS), 1);
  info_acc_t acc = {0};
  rt_lq_foreach_instance(reg, collect_info, &acc);
  assert_true(acc.info.keyed);
  assert_int_equal(acc.info.rows, 0);
  clear_recs();
  rt_lq_mark_table_changed(reg, "t");
  rt_lq_instance_t *inst = rt_lq_next_dirty(reg);
  /* Inserting everything: the diff is larger than the rows. */
  assert_int_equal(apply_keyed(inst, ROWS(R1), ROWS("1")), 1);
  assert_int_equal(recs[0].kind, RT_LQ_PUSH_RESULT);
  clear_recs();
  rt_lq_mark_table_changed(reg, "t");
  inst = rt_lq_next_dirty(reg);
  assert_int_equal(apply_keyed(inst, ROWS(R1, R2), ROWS("1", "2")), 1);
  assert_string_equal(frame_for("q1"), "{\"type\":\"query_diff\",\"subscription\":\"q1\","
                                       "\"inserted\":[" R2 "],\"updated\":[],\"deleted\":[]}");
}

static void test_apply_invalid(void **state) {
  int a;
  rt_lq_sub_out_t o = sub(&a, SQL, "[]", TABLES("t"));
  rt_lq_result_t bad = {0};
  assert_int_equal(rt_lq_apply(reg, o.evaluate, &bad), RT_EINVAL); /* no columns */
  assert_int_equal(nrecs, 0);
  /* The pin was returned: a change hands the instance out again. */
  rt_lq_mark_table_changed(reg, "t");
  assert_ptr_equal(rt_lq_next_dirty(reg), o.evaluate);
  res_t rb;
  mk(&rb, COLS, ROWS(R1), NULL, 0);
  rb.r.row_lens = NULL;
  assert_int_equal(rt_lq_apply(reg, o.evaluate, &rb.r), RT_EINVAL);
  rt_lq_mark_table_changed(reg, "t");
  assert_ptr_equal(rt_lq_next_dirty(reg), o.evaluate);
  assert_int_equal(apply_unkeyed(o.evaluate, ROWS(R1)), 1);
}

/* ------------------------------------------------------------ fail, release, orphans */

static void test_fail_first_evaluation(void **state) {
  int a, b;
  rt_lq_sub_out_t o1;
  assert_int_equal(sub_full(&a, 1, SQL, "[]", TABLES("t"), 1, 5, &o1), 0);
  rt_lq_sub_out_t o2;
  assert_int_equal(sub_full(&b, 2, SQL, "[]", TABLES("t"), 0, 0, &o2), 0);
  rt_lq_fail(reg, o1.evaluate, RT_EINVAL, "no such table: t");
  assert_int_equal(nrecs, 2);
  assert_int_equal(recs[0].kind, RT_LQ_PUSH_ERROR);
  assert_string_equal(frame_for("q1"), "{\"type\":\"error\",\"id\":5,\"code\":\"invalid_argument\","
                                       "\"message\":\"no such table: t\"}");
  assert_string_equal(frame_for("q2"), "{\"type\":\"error\",\"code\":\"invalid_argument\","
                                       "\"message\":\"no such table: t\"}");
  rt_lq_stats_t s = stats();
  assert_int_equal(s.subscriptions, 0);
  assert_int_equal(s.instances, 0);
  assert_int_equal(s.failures, 1);
  assert_int_equal(rt_lq_owner_count(reg, &a), 0);
  assert_int_equal(rt_lq_mark_table_changed(reg, "t"), 0);
}

static void test_fail_refresh_keeps_result(void **state) {
  int a, b;
  rt_lq_instance_t *inst = keyed_pair(&a, &b);
  rt_lq_fail(reg, inst, RT_EINVAL, NULL);
  assert_int_equal(nrecs, 0);
  assert_int_equal(stats().subscriptions, 2);
  /* The last good result stays the diff base. */
  rt_lq_mark_table_changed(reg, "t");
  inst = rt_lq_next_dirty(reg);
  assert_int_equal(apply_keyed(inst, ROWS(R1, R2), ROWS("1", "2")), 2);
  assert_string_equal(frame_for("q1"), "{\"type\":\"query_diff\",\"subscription\":\"q1\","
                                       "\"inserted\":[],\"updated\":[],\"deleted\":[3]}");
}

static void test_release_keeps_waiting(void **state) {
  int a, b;
  rt_lq_sub_out_t o1 = sub(&a, SQL, "[]", TABLES("t"));
  rt_lq_release(reg, o1.evaluate);
  assert_int_equal(nrecs, 0);
  /* No result and no evaluation in flight: the next subscriber gets the pin. */
  rt_lq_sub_out_t o2 = sub(&b, SQL, "[]", TABLES("t"));
  assert_ptr_equal(o2.evaluate, o1.evaluate);
  rt_lq_release(reg, o2.evaluate);
  rt_lq_mark_table_changed(reg, "t");
  rt_lq_instance_t *inst = rt_lq_next_dirty(reg);
  assert_ptr_equal(inst, o1.evaluate);
  assert_int_equal(apply_unkeyed(inst, ROWS(R1)), 2);
  assert_int_equal(recs[0].kind, RT_LQ_PUSH_ACK);
  assert_int_equal(recs[1].kind, RT_LQ_PUSH_ACK);
}

static void test_orphan_apply(void **state) {
  int a;
  rt_lq_sub_out_t o1 = sub(&a, SQL, "[]", TABLES("t"));
  assert_int_equal(rt_lq_unsubscribe(reg, &a, "q1"), 0);
  assert_int_equal(stats().instances, 0);
  assert_int_equal(rt_lq_mark_table_changed(reg, "t"), 0);
  /* Still pinned: readable; a new subscribe with the same key gets a fresh instance. */
  assert_string_equal(rt_lq_instance_sql(o1.evaluate), SQL);
  rt_lq_sub_out_t o2 = sub(&a, SQL, "[]", TABLES("t"));
  assert_non_null(o2.evaluate);
  assert_ptr_not_equal(o2.evaluate, o1.evaluate);
  assert_int_equal(apply_unkeyed(o1.evaluate, ROWS(R1)), 0);
  assert_int_equal(nrecs, 0);
  assert_int_equal(apply_unkeyed(o2.evaluate, ROWS(R1)), 1);
  assert_int_equal(stats().evaluations, 2);
}

static void test_orphan_fail_and_release(void **state) {
  int a;
  rt_lq_sub_out_t o1 = sub(&a, SQL, "[1]", TABLES("t"));
  rt_lq_sub_out_t o2 = sub(&a, SQL, "[2]", TABLES("t"));
  assert_int_equal(rt_lq_unsubscribe_owner(reg, &a), 2);
  rt_lq_fail(reg, o1.evaluate, RT_EINVAL, NULL);
  rt_lq_release(reg, o2.evaluate);
  assert_int_equal(nrecs, 0);
}

static void test_free_with_pinned_and_orphans(void **state) {
  int a;
  sub(&a, SQL, "[1]", TABLES("t"));
  rt_lq_sub_out_t o2 = sub(&a, SQL, "[2]", TABLES("t", "u"));
  sub(&a, SQL, "[3]", TABLES("u"));
  assert_int_equal(rt_lq_unsubscribe(reg, &a, o2.sub_id), 0); /* [2] orphaned, pinned */
  rt_lq_mark_table_changed(reg, "u");
  /* teardown frees everything: ASan reports any leak. */
}

/* ------------------------------------------------------------ re-entrancy */

static int reentrant_owner;

static void unsubscribe_self_and_q2(const rt_lq_push_t *push) {
  if (strcmp(push->sub_id, "q1") != 0) return;
  assert_int_equal(rt_lq_unsubscribe(reg, push->owner, "q1"), 0);
  assert_int_equal(rt_lq_unsubscribe(reg, &reentrant_owner, "q2"), 0);
}

static void test_callback_unsubscribes(void **state) {
  rt_lq_sub_out_t o1 = sub(&reentrant_owner, SQL, "[]", TABLES("t"));
  sub(&reentrant_owner, SQL, "[]", TABLES("t"));
  sub(&reentrant_owner, SQL, "[]", TABLES("t"));
  action = unsubscribe_self_and_q2;
  assert_int_equal(apply_unkeyed(o1.evaluate, ROWS(R1)), 2); /* q1 and q3 */
  assert_string_equal(recs[0].sub_id, "q1");
  assert_string_equal(recs[1].sub_id, "q3");
  action = NULL;
  assert_int_equal(stats().subscriptions, 1);
  clear_recs();
  /* The holes were compacted: the survivor still gets pushes. */
  rt_lq_mark_table_changed(reg, "t");
  rt_lq_instance_t *inst = rt_lq_next_dirty(reg);
  assert_int_equal(apply_unkeyed(inst, ROWS(R2)), 1);
  assert_string_equal(recs[0].sub_id, "q3");
}

static void drop_owner(const rt_lq_push_t *push) { rt_lq_unsubscribe_owner(reg, push->owner); }

static void test_callback_drops_last_subscriber(void **state) {
  int a;
  rt_lq_sub_out_t o = sub(&a, SQL, "[]", TABLES("t"));
  sub(&a, SQL, "[]", TABLES("t"));
  action = drop_owner;
  assert_int_equal(apply_unkeyed(o.evaluate, ROWS(R1)), 1); /* q2 was removed by q1's callback */
  action = NULL;
  rt_lq_stats_t s = stats();
  assert_int_equal(s.instances, 0);
  assert_int_equal(s.subscriptions, 0);
  assert_int_equal(rt_lq_mark_table_changed(reg, "t"), 0);
}

static void test_callback_drops_during_error(void **state) {
  int a;
  rt_lq_sub_out_t o = sub(&a, SQL, "[]", TABLES("t"));
  sub(&a, SQL, "[]", TABLES("t"));
  action = drop_owner;
  rt_lq_fail(reg, o.evaluate, RT_EINVAL, NULL);
  action = NULL;
  assert_int_equal(nrecs, 1);
  assert_int_equal(stats().instances, 0);
}

static rt_lq_sub_out_t reentrant_out;

static void subscribe_again(const rt_lq_push_t *push) {
  if (strcmp(push->sub_id, "q1") != 0) return;
  reentrant_out = sub(&reentrant_owner, SQL, "[]", TABLES("t"));
}

static void test_callback_subscribes(void **state) {
  int a, b;
  rt_lq_instance_t *inst = keyed_pair(&a, &b);
  action = subscribe_again;
  assert_int_equal(apply_keyed(inst, ROWS(R1), ROWS("1")), 2); /* the new one gets no diff */
  action = NULL;
  assert_non_null(reentrant_out.ack);
  char *ack = strndup((const char *)rt_frame_payload(reentrant_out.ack), reentrant_out.ack->len);
  assert_string_equal(ack, "{\"type\":\"ack\",\"id\":1,\"subscription\":\"q3\",\"columns\":" COLS
                           ",\"rows\":[" R1 "]}");
  free(ack);
  rt_frame_unref(reentrant_out.ack);
  assert_int_equal(stats().subscriptions, 3);
}

/* ------------------------------------------------------------ notify */

static void test_notify(void **state) {
  int a, b, c;
  rt_lq_sub_out_t o1 = sub(&a, SQL, "[1]", TABLES("t"));
  rt_lq_sub_out_t o2 = sub(&b, SQL, "[2]", TABLES("t"));
  sub(&c, SQL, "[2]", TABLES("t"));
  rt_lq_sub_out_t o4 = sub(&c, "SELECT 2", "[]", TABLES("t"));
  assert_int_equal(apply_keyed(o1.evaluate, ROWS(R1), ROWS("1")), 1);
  assert_int_equal(apply_keyed(o2.evaluate, ROWS(R2), ROWS("2")), 2);
  assert_int_equal(apply_unkeyed(o4.evaluate, NOROWS), 1);
  clear_recs();

  const char *rows = " [{\"price\":1.5}] ";
  assert_int_equal(rt_lq_notify(reg, SQL, rows, strlen(rows), NULL), 3);
  assert_string_equal(frame_for("q1"), "{\"type\":\"query_result\",\"subscription\":\"q1\","
                                       "\"rows\":[{\"price\":1.5}]}");
  assert_non_null(frame_for("q2"));
  assert_non_null(frame_for("q3"));
  assert_null(frame_for("q4"));
  clear_recs();
  /* Identical: no push. Other SQL, unknown SQL, prefix of a SQL: nothing. */
  assert_int_equal(rt_lq_notify(reg, SQL, rows, strlen(rows), NULL), 0);
  assert_int_equal(rt_lq_notify(reg, "SELECT", "[]", 2, NULL), 0);
  assert_int_equal(rt_lq_notify(reg, "nope", "[]", 2, NULL), 0);
  rt_errbuf_t err;
  assert_int_equal(rt_lq_notify(reg, SQL, "[1,", 3, &err), RT_EJSON);
  assert_int_equal(rt_lq_notify(reg, SQL, "{}", 2, &err), RT_EJSON);
  assert_string_equal(err.msg, "rows must be a JSON array");
  assert_int_equal(nrecs, 0);

  /* Notified rows carry no keys: the next evaluation pushes a full result. */
  rt_lq_mark_table_changed(reg, "t");
  rt_lq_instance_t *i1 = rt_lq_next_dirty(reg);
  rt_lq_instance_t *i2 = rt_lq_next_dirty(reg);
  rt_lq_instance_t *i3 = rt_lq_next_dirty(reg);
  assert_ptr_equal(i1, o1.evaluate);
  assert_int_equal(apply_keyed(i1, ROWS(R1), ROWS("1")), 1);
  assert_string_equal(frame_for("q1"), "{\"type\":\"query_result\",\"subscription\":\"q1\","
                                       "\"rows\":[" R1 "]}");
  /* Same rows as notified, columns kept: nothing. */
  assert_int_equal(apply_unkeyed(i2, ROWS("{\"price\":1.5}")), 0);
  rt_lq_release(reg, i3);
}

static void test_notify_acks_waiting(void **state) {
  int a;
  rt_lq_sub_out_t o = sub(&a, "external:prices", "[]", NULL);
  assert_int_equal(rt_lq_notify(reg, "external:prices", "[1,2]", 5, NULL), 1);
  assert_string_equal(frame_for("q1"), "{\"type\":\"ack\",\"id\":1,\"subscription\":\"q1\","
                                       "\"columns\":[],\"rows\":[1,2]}");
  clear_recs();
  rt_lq_release(reg, o.evaluate);
  assert_int_equal(rt_lq_notify(reg, "external:prices", "[3]", 3, NULL), 1);
  assert_string_equal(frame_for("q1"),
                      "{\"type\":\"query_result\",\"subscription\":\"q1\",\"rows\":[3]}");
}

/* ------------------------------------------------------------ ids, stats */

static void test_ids_unique(void **state) {
  enum { N = 1000 };
  static char ids[N][RT_LQ_ID_MAX];
  int owners[4];
  for (int i = 0; i < N; i++) {
    char params[16];
    snprintf(params, sizeof(params), "[%d]", i % 7);
    rt_lq_sub_out_t o = sub(&owners[i % 4], SQL, params, TABLES("t"));
    if (o.evaluate != NULL) assert_int_equal(apply_unkeyed(o.evaluate, NOROWS), 1);
    rt_frame_unref(o.ack);
    clear_recs();
    memcpy(ids[i], o.sub_id, RT_LQ_ID_MAX);
    char want[RT_LQ_ID_MAX];
    snprintf(want, sizeof(want), "q%d", i + 1);
    assert_string_equal(ids[i], want);
    if (i % 3 == 0) assert_int_equal(rt_lq_unsubscribe(reg, &owners[i % 4], o.sub_id), 0);
    if (i % 250 == 249) rt_lq_unsubscribe_owner(reg, &owners[1]);
  }
  for (int i = 0; i < N; i++)
    for (int j = i + 1; j < N; j++) assert_string_not_equal(ids[i], ids[j]);
}

static void test_shared_evaluation_stats(void **state) {
  enum { CLIENTS = 100 };
  int owners[CLIENTS];
  rt_lq_instance_t *inst = NULL;
  for (int i = 0; i < CLIENTS; i++) {
    rt_lq_sub_out_t o = sub(&owners[i], SQL, "[]", TABLES("t"));
    if (i == 0) inst = o.evaluate;
  }
  assert_int_equal(apply_keyed(inst, ROWS(R1), ROWS("1")), CLIENTS);
  clear_recs();
  const char *const rows[3][3] = {{R1, R2, NULL}, {R1B, R2, NULL}, {R2, NULL, NULL}};
  const char *const keys[3][3] = {{"1", "2", NULL}, {"1", "2", NULL}, {"2", NULL, NULL}};
  for (int change = 0; change < 3; change++) {
    for (int commit = 0; commit < 4; commit++) rt_lq_mark_table_changed(reg, "t");
    rt_lq_instance_t *d = rt_lq_next_dirty(reg);
    assert_null(rt_lq_next_dirty(reg));
    assert_int_equal(apply_keyed(d, rows[change], keys[change]), CLIENTS);
    assert_int_equal(recs[0].kind, RT_LQ_PUSH_DIFF);
    clear_recs();
  }
  rt_lq_stats_t s = stats();
  assert_int_equal(s.evaluations, 4);
  assert_int_equal(s.instances, 1);
  assert_int_equal(s.subscriptions, CLIENTS);
  assert_int_equal(s.acks, CLIENTS);
  assert_int_equal(s.diffs, 3 * CLIENTS);
  assert_true(s.frame_bytes > 0);
  info_acc_t acc = {0};
  rt_lq_foreach_instance(reg, collect_info, &acc);
  assert_int_equal(acc.calls, 1);
  assert_int_equal(acc.info.subscribers, CLIENTS);
  assert_int_equal(acc.info.evaluations, 4);
  assert_int_equal(acc.info.rows, 1);
  assert_true(acc.info.keyed);
  assert_true(acc.info.has_result);
  assert_false(acc.info.pinned);
  assert_string_equal(acc.info.sql, SQL);
  assert_string_equal(acc.info.params, "[]");
  clear_recs();
}

/* ------------------------------------------------------------ OOM */

static void test_oom_new(void **state) {
  long n;
  for (n = 0;; n++) {
    rt_alloc_fail_after(n);
    rt_lq_t *r = rt_lq_new(on_push, &recs);
    rt_alloc_fail_after(-1);
    if (r != NULL) {
      rt_lq_free(r);
      break;
    }
  }
  assert_int_equal(n, 1);
}

/* Subscribes under failure injection until it succeeds; each failure leaves no trace. */
static rt_lq_sub_out_t subscribe_under_oom(void *owner, const char *params,
                                           const char *const *tables, long *failures) {
  rt_lq_stats_t before = stats();
  size_t owned = rt_lq_owner_count(reg, owner);
  rt_lq_sub_out_t out;
  for (long n = 0;; n++) {
    rt_alloc_fail_after(n);
    int rc = sub_full(owner, 1, SQL, params, tables, 1, 1, &out);
    rt_alloc_fail_after(-1);
    if (rc == 0) {
      *failures = n;
      return out;
    }
    assert_int_equal(rc, RT_ENOMEM);
    rt_lq_stats_t s = stats();
    assert_int_equal(s.instances, before.instances);
    assert_int_equal(s.subscriptions, before.subscriptions);
    assert_int_equal(rt_lq_owner_count(reg, owner), owned);
    assert_null(out.evaluate);
    assert_null(out.ack);
  }
}

static void test_oom_subscribe(void **state) {
  int a, b;
  long failures;
  rt_lq_sub_out_t o1 = subscribe_under_oom(&a, "[]", TABLES("t", "u", "v"), &failures);
  assert_true(failures >= 6);
  assert_string_equal(o1.sub_id, "q1");
  assert_int_equal(rt_lq_mark_table_changed(reg, "x"), 0);
  assert_int_equal(rt_lq_mark_table_changed(reg, "v"), 1);
  assert_int_equal(apply_keyed(o1.evaluate, ROWS(R1), ROWS("1")), 1);
  rt_lq_instance_t *again = rt_lq_next_dirty(reg); /* marked while pinned */
  assert_ptr_equal(again, o1.evaluate);
  rt_lq_release(reg, again);
  /* Joining an instance with a result (the ack is built) under OOM. */
  rt_lq_sub_out_t o2 = subscribe_under_oom(&b, "[]", TABLES("t"), &failures);
  assert_true(failures >= 2);
  assert_string_equal(o2.sub_id, "q2");
  assert_non_null(o2.ack);
  rt_frame_unref(o2.ack);
  /* Tables shared with an existing instance, new owner and instance. */
  rt_lq_sub_out_t o3 = subscribe_under_oom(&b, "[9]", TABLES("t", "w"), &failures);
  assert_non_null(o3.evaluate);
  rt_lq_release(reg, o3.evaluate);
  assert_int_equal(rt_lq_mark_table_changed(reg, "t"), 2);
}

/* Applies under failure injection: each failure pushes nothing and requeues the instance. */
static int64_t apply_under_oom(rt_lq_instance_t *inst, const char *const *rows,
                               const char *const *keys) {
  for (long n = 0;; n++) {
    rt_alloc_fail_after(n);
    int64_t rc = apply_keyed(inst, rows, keys);
    rt_alloc_fail_after(-1);
    if (rc >= 0) return rc;
    assert_int_equal(rc, RT_ENOMEM);
    assert_int_equal(nrecs, 0);
    assert_ptr_equal(rt_lq_next_dirty(reg), inst);
  }
}

static void test_oom_apply(void **state) {
  int a, b;
  rt_lq_sub_out_t o1 = sub(&a, SQL, "[]", TABLES("t"));
  sub(&b, SQL, "[]", TABLES("t"));
  assert_int_equal(apply_under_oom(o1.evaluate, ROWS(R1, R2, R3), ROWS("1", "2", "3")), 2);
  assert_int_equal(recs[0].kind, RT_LQ_PUSH_ACK);
  clear_recs();
  rt_lq_mark_table_changed(reg, "t");
  rt_lq_instance_t *inst = rt_lq_next_dirty(reg);
  assert_int_equal(apply_under_oom(inst, ROWS(R1, R2B, R4), ROWS("1", "2", "4")), 2);
  assert_string_equal(frame_for("q1"), "{\"type\":\"query_diff\",\"subscription\":\"q1\","
                                       "\"inserted\":[" R4 "],\"updated\":[" R2B "],"
                                       "\"deleted\":[3]}");
  clear_recs();
  rt_lq_mark_table_changed(reg, "t");
  inst = rt_lq_next_dirty(reg);
  assert_int_equal(apply_under_oom(inst, ROWS(R4, R1), NULL), 2);
  assert_int_equal(recs[0].kind, RT_LQ_PUSH_RESULT);
  assert_null(rt_lq_next_dirty(reg));
}

static void test_oom_notify(void **state) {
  int a, b;
  rt_lq_sub_out_t o1 = sub(&a, SQL, "[1]", NULL);
  rt_lq_sub_out_t o2 = sub(&b, SQL, "[2]", NULL);
  assert_int_equal(apply_unkeyed(o1.evaluate, NOROWS), 1);
  assert_int_equal(apply_unkeyed(o2.evaluate, NOROWS), 1);
  clear_recs();
  int64_t rc;
  for (long n = 0;; n++) {
    rt_alloc_fail_after(n);
    rc = rt_lq_notify(reg, SQL, "[1]", 3, NULL);
    rt_alloc_fail_after(-1);
    if (rc >= 0) break;
    assert_int_equal(rc, RT_ENOMEM);
  }
  /* Instances pushed before a failure got "[1]" then; the rest got it now: two in all. */
  assert_int_equal(nrecs, 2);
  assert_true(frame_for("q1") != NULL && frame_for("q2") != NULL);
}


/* The ack names the key column of a keyed result, so clients can apply diffs; not of an unkeyed one. */
static void test_ack_announces_key_column(void **state) {
  int a, b;
  rt_lq_sub_out_t o = sub(&a, SQL, "[7]", TABLES("t"));
  res_t buf;
  rt_lq_result_t *r = (rt_lq_result_t *)mk(&buf, COLS, ROWS(R1), ROWS("1"), 1);
  r->key_column = "i\"d";
  assert_int_equal(rt_lq_apply(reg, o.evaluate, r), 1);
  assert_string_equal(frame_for("q1"), "{\"type\":\"ack\",\"id\":1,\"subscription\":\"q1\",\"columns\":" COLS
                                       ",\"key\":\"i\\\"d\",\"rows\":[" R1 "]}");
  clear_recs();
  rt_lq_sub_out_t u = sub(&b, SQL, "[8]", TABLES("t"));
  r = (rt_lq_result_t *)mk(&buf, COLS, ROWS(R1), NULL, 0);
  r->key_column = "id"; /* ignored: the result is not keyed */
  assert_int_equal(rt_lq_apply(reg, u.evaluate, r), 1);
  assert_string_equal(frame_for("q2"), "{\"type\":\"ack\",\"id\":1,\"subscription\":\"q2\",\"columns\":" COLS
                                       ",\"rows\":[" R1 "]}");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_new_free, setup, teardown),
      cmocka_unit_test_setup_teardown(test_share_same_key, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ack_announces_key_column, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ack_without_id_and_empty_result, setup, teardown),
      cmocka_unit_test_setup_teardown(test_subscribe_invalid, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unsubscribe, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unsubscribe_owner, setup, teardown),
      cmocka_unit_test_setup_teardown(test_mark_by_table, setup, teardown),
      cmocka_unit_test_setup_teardown(test_mark_while_pinned, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_tables_never_dirty, setup, teardown),
      cmocka_unit_test_setup_teardown(test_diff_mix, setup, teardown),
      cmocka_unit_test_setup_teardown(test_string_keys, setup, teardown),
      cmocka_unit_test_setup_teardown(test_keyed_reorder_and_identical_no_push, setup, teardown),
      cmocka_unit_test_setup_teardown(test_diff_larger_than_full, setup, teardown),
      cmocka_unit_test_setup_teardown(test_diff_size_threshold, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unkeyed_full, setup, teardown),
      cmocka_unit_test_setup_teardown(test_keys_unusable_full, setup, teardown),
      cmocka_unit_test_setup_teardown(test_columns_change_full, setup, teardown),
      cmocka_unit_test_setup_teardown(test_keyed_from_empty, setup, teardown),
      cmocka_unit_test_setup_teardown(test_apply_invalid, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fail_first_evaluation, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fail_refresh_keeps_result, setup, teardown),
      cmocka_unit_test_setup_teardown(test_release_keeps_waiting, setup, teardown),
      cmocka_unit_test_setup_teardown(test_orphan_apply, setup, teardown),
      cmocka_unit_test_setup_teardown(test_orphan_fail_and_release, setup, teardown),
      cmocka_unit_test_setup_teardown(test_free_with_pinned_and_orphans, setup, teardown),
      cmocka_unit_test_setup_teardown(test_callback_unsubscribes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_callback_drops_last_subscriber, setup, teardown),
      cmocka_unit_test_setup_teardown(test_callback_drops_during_error, setup, teardown),
      cmocka_unit_test_setup_teardown(test_callback_subscribes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_notify, setup, teardown),
      cmocka_unit_test_setup_teardown(test_notify_acks_waiting, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ids_unique, setup, teardown),
      cmocka_unit_test_setup_teardown(test_shared_evaluation_stats, setup, teardown),
      cmocka_unit_test_setup_teardown(test_oom_new, setup, teardown),
      cmocka_unit_test_setup_teardown(test_oom_subscribe, setup, teardown),
      cmocka_unit_test_setup_teardown(test_oom_apply, setup, teardown),
      cmocka_unit_test_setup_teardown(test_oom_notify, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
