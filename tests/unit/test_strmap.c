/*
 * The string-keyed index (src/core/strmap.h), checked against a plain array
 * model through thousands of random inserts and removals, so that
 * backward-shift deletion is exercised on long probe runs; case folding;
 * borrowed keys; growth failing without changing the map.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "core/strmap.h"

#define NKEYS 2000

typedef struct {
  char key[16]; /* the map borrows this */
  size_t len;
  int present;
} item_t;

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static void check_model(const rt_strmap_t *m, item_t *items, size_t n) {
  size_t present = 0;
  for (size_t i = 0; i < n; i++) {
    void *got = rt_strmap_find(m, items[i].key, items[i].len);
    if (items[i].present) {
      assert_ptr_equal(got, &items[i]);
      present++;
    } else {
      assert_null(got);
    }
  }
  assert_int_equal(m->count, present);
  size_t seen = 0;
  for (size_t i = 0; i < m->cap; i++) seen += m->slots[i].val != NULL;
  assert_int_equal(seen, present);
  assert_true(m->cap == 0 || m->count * 2 <= m->cap);
}

static void test_random_against_model(void **state) {
  (void)state;
  static item_t items[NKEYS];
  for (size_t i = 0; i < NKEYS; i++) {
    items[i].len = (size_t)snprintf(items[i].key, sizeof(items[i].key), "k%zu", i);
    items[i].present = 0;
  }
  rt_strmap_t m;
  rt_strmap_init(&m, 42, 0);
  for (int round = 0; round < 20000; round++) {
    item_t *it = &items[next_rand() % NKEYS];
    if (it->present) {
      rt_strmap_remove(&m, it->key, it->len);
      it->present = 0;
    } else {
      assert_int_equal(rt_strmap_reserve(&m), 0);
      rt_strmap_insert(&m, it->key, it->len, it);
      it->present = 1;
    }
    if (round % 1000 == 0) check_model(&m, items, NKEYS);
  }
  check_model(&m, items, NKEYS);
  for (size_t i = 0; i < NKEYS; i++)
    if (items[i].present) {
      rt_strmap_remove(&m, items[i].key, items[i].len);
      items[i].present = 0;
    }
  check_model(&m, items, NKEYS);
  rt_strmap_destroy(&m);
}

static void test_fold_and_binary_keys(void **state) {
  (void)state;
  rt_strmap_t folded, exact;
  rt_strmap_init(&folded, 7, 1);
  rt_strmap_init(&exact, 7, 0);
  static char orders[] = "Orders", bin[] = {'a', '\0', 'b'};
  int v1 = 1, v2 = 2;
  assert_int_equal(rt_strmap_reserve(&folded), 0);
  rt_strmap_insert(&folded, orders, 6, &v1);
  assert_ptr_equal(rt_strmap_find(&folded, "ORDERS", 6), &v1);
  assert_ptr_equal(rt_strmap_find(&folded, "orders", 6), &v1);
  assert_null(rt_strmap_find(&folded, "order", 5));
  assert_int_equal(rt_strmap_reserve(&exact), 0);
  rt_strmap_insert(&exact, orders, 6, &v1);
  assert_null(rt_strmap_find(&exact, "orders", 6));
  assert_int_equal(rt_strmap_reserve(&exact), 0);
  rt_strmap_insert(&exact, bin, 3, &v2); /* embedded NUL: the length is the key's bound */
  assert_ptr_equal(rt_strmap_find(&exact, "a\0b", 3), &v2);
  assert_null(rt_strmap_find(&exact, "a", 1));
  rt_strmap_remove(&folded, "oRdErS", 6);
  assert_null(rt_strmap_find(&folded, "Orders", 6));
  rt_strmap_remove(&folded, "Orders", 6); /* absent (and empty): no effect */
  assert_int_equal(folded.count, 0);
  assert_int_equal(rt_strmap_hash(3, "AbC", 3, 1), rt_strmap_hash(3, "abc", 3, 1));
  assert_int_not_equal(rt_strmap_hash(3, "abc", 3, 0), rt_strmap_hash(4, "abc", 3, 0));
  rt_strmap_destroy(&folded);
  rt_strmap_destroy(&exact);
}

static void test_grow_failure_leaves_map_intact(void **state) {
  (void)state;
  static item_t items[4];
  rt_strmap_t m;
  rt_strmap_init(&m, 1, 0);
  for (size_t i = 0; i < 4; i++) {
    items[i].len = (size_t)snprintf(items[i].key, sizeof(items[i].key), "x%zu", i);
    assert_int_equal(rt_strmap_reserve(&m), 0);
    rt_strmap_insert(&m, items[i].key, items[i].len, &items[i]);
    items[i].present = 1;
  }
  size_t cap = m.cap; /* 8 slots, 4 used: the next reserve must grow */
  rt_alloc_fail_after(0);
  assert_int_equal(rt_strmap_reserve(&m), RT_ENOMEM);
  rt_alloc_fail_after(-1);
  assert_int_equal(m.cap, cap);
  check_model(&m, items, 4);
  assert_int_equal(rt_strmap_reserve(&m), 0);
  assert_true(m.cap > cap);
  check_model(&m, items, 4);
  rt_strmap_destroy(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_random_against_model),
      cmocka_unit_test(test_fold_and_binary_keys),
      cmocka_unit_test(test_grow_failure_leaves_map_intact),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
