/*
 * API-key store (src/core/auth_apikey.h). Keys are passed in exact-size heap
 * copies without a NUL, so ASan proves the store reads only key[0..key_len).
 * Whether the store keeps key bytes cannot be observed portably; the tests
 * show it never needs the caller's buffer again and never hands key text
 * back, and auth_apikey.c has no field that could hold a key.
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
#include "auth_apikey.h"
#include "perm.h"

static char *heap_copy(const char *key, size_t len) {
  char *copy = malloc(len ? len : 1);
  assert_non_null(copy);
  memcpy(copy, key, len);
  return copy;
}

static int add_n(rt_apikey_store_t *s, const char *key, size_t len, const char *name,
                 const char *const *perms, size_t n) {
  char *copy = heap_copy(key, len);
  int rc = rt_apikey_add(s, copy, len, name, perms, n);
  free(copy);
  return rc;
}

static int add(rt_apikey_store_t *s, const char *key, const char *name, const char *const *perms,
               size_t n) {
  return add_n(s, key, strlen(key), name, perms, n);
}

static int lookup_n(const rt_apikey_store_t *s, const char *key, size_t len, rt_identity_t *id,
                    char **name) {
  char *copy = heap_copy(key, len);
  int rc = rt_apikey_lookup(s, copy, len, id, name);
  free(copy);
  return rc;
}

static int lookup(const rt_apikey_store_t *s, const char *key, rt_identity_t *id, char **name) {
  return lookup_n(s, key, strlen(key), id, name);
}

static int revoke(rt_apikey_store_t *s, const char *key) {
  char *copy = heap_copy(key, strlen(key));
  int rc = rt_apikey_revoke(s, copy, strlen(key));
  free(copy);
  return rc;
}

/* Looks `key` up, expects it to be known as `name`, and releases the result. */
static void expect_name(const rt_apikey_store_t *s, const char *key, size_t len, const char *name) {
  rt_identity_t id;
  char *got = NULL;
  assert_int_equal(lookup_n(s, key, len, &id, &got), 0);
  assert_string_equal(got, name);
  rt_free(got);
  rt_identity_destroy(&id);
}

static void expect_unknown(const rt_apikey_store_t *s, const char *key, size_t len) {
  rt_identity_t id;
  char *name = NULL;
  assert_int_equal(lookup_n(s, key, len, &id, &name), RT_ETOKEN);
  assert_null(name);
  assert_null(id.user_id);
}

static void test_new_free(void **state) {
  (void)state;
  rt_apikey_store_t *s = rt_apikey_store_new();
  assert_non_null(s);
  assert_int_equal(rt_apikey_count(s), 0);
  expect_unknown(s, "anything", 8);
  rt_apikey_store_free(s);
  rt_apikey_store_free(NULL);
  assert_int_equal(rt_apikey_count(NULL), 0);
}

static void test_add_lookup(void **state) {
  (void)state;
  rt_apikey_store_t *s = rt_apikey_store_new();
  const char *perms[] = {"read:*", "write:metrics"};
  assert_int_equal(add(s, "k-3f9a1c7e55d0b2", "analytics", perms, 2), 0);
  assert_int_equal(rt_apikey_count(s), 1);

  rt_identity_t id;
  char *name = NULL;
  assert_int_equal(lookup(s, "k-3f9a1c7e55d0b2", &id, &name), 0);
  assert_string_equal(id.user_id, "apikey:analytics");
  assert_int_equal(id.permission_count, 2);
  assert_string_equal(id.permissions[0], "read:*");
  assert_string_equal(id.permissions[1], "write:metrics");
  assert_int_equal(id.expires_at, 0);
  assert_string_equal(name, "analytics");
  rt_free(name);
  rt_identity_destroy(&id);
  assert_null(id.user_id);

  assert_int_equal(lookup(s, "k-3f9a1c7e55d0b2", &id, NULL), 0);
  assert_string_equal(id.user_id, "apikey:analytics");
  rt_identity_destroy(&id);
  rt_apikey_store_free(s);
}

/* A failed lookup zeroes whatever was in the outputs, so destroying them is safe. */
static void test_unknown_key(void **state) {
  (void)state;
  rt_apikey_store_t *s = rt_apikey_store_new();
  assert_int_equal(add(s, "right-key", "svc", NULL, 0), 0);
  rt_identity_t id;
  memset(&id, 0xa5, sizeof(id));
  char *name = (char *)&id;
  assert_int_equal(lookup(s, "wrong-key", &id, &name), RT_ETOKEN);
  assert_null(id.user_id);
  assert_null(id.permissions);
  assert_int_equal(id.permission_count, 0);
  assert_int_equal(id.expires_at, 0);
  assert_null(name);
  rt_identity_destroy(&id);
  assert_int_equal(rt_apikey_lookup(s, NULL, 0, &id, &name), RT_ETOKEN);
  assert_int_equal(rt_apikey_lookup(s, "right-key", 0, &id, &name), RT_ETOKEN);
  assert_int_equal(rt_apikey_lookup(NULL, "right-key", 9, &id, &name), RT_ETOKEN);
  assert_null(name);
  rt_apikey_store_free(s);
}

/* Only the exact bytes match: prefixes, extensions, case, one bit, embedded NULs. */
static void test_exact_bytes(void **state) {
  (void)state;
  rt_apikey_store_t *s = rt_apikey_store_new();
  assert_int_equal(add(s, "secret", "plain", NULL, 0), 0);
  assert_int_equal(add_n(s, "ab\0c", 4, "nul-c", NULL, 0), 0);
  assert_int_equal(add_n(s, "ab\0d", 4, "nul-d", NULL, 0), 0);
  assert_int_equal(rt_apikey_count(s), 3);
  expect_name(s, "secret", 6, "plain");
  expect_name(s, "ab\0c", 4, "nul-c");
  expect_name(s, "ab\0d", 4, "nul-d");
  expect_unknown(s, "secre", 5);
  expect_unknown(s, "secret1", 7);
  expect_unknown(s, "Secret", 6);
  expect_unknown(s, "secres", 6);
  expect_unknown(s, "secret\0", 7);
  expect_unknown(s, "ab", 2);
  expect_unknown(s, "ab\0", 3);
  expect_unknown(s, "ab\0e", 4);
  rt_apikey_store_free(s);
}

static void test_long_key(void **state) {
  (void)state;
  enum { N = 1 << 20 };
  char *key = malloc(N);
  assert_non_null(key);
  for (size_t i = 0; i < N; i++) key[i] = (char)(i * 131 + 7);
  rt_apikey_store_t *s = rt_apikey_store_new();
  assert_int_equal(add_n(s, key, N, "big", NULL, 0), 0);
  expect_name(s, key, N, "big");
  expect_unknown(s, key, N - 1);
  key[N / 2] ^= 1;
  expect_unknown(s, key, N);
  free(key);
  rt_apikey_store_free(s);
}

static void test_duplicate(void **state) {
  (void)state;
  rt_apikey_store_t *s = rt_apikey_store_new();
  const char *perms[] = {"read:a"};
  const char *other[] = {"*"};
  assert_int_equal(add(s, "dup-key", "first", perms, 1), 0);
  assert_int_equal(add(s, "dup-key", "first", perms, 1), RT_EEXIST);
  assert_int_equal(add(s, "dup-key", "second", other, 1), RT_EEXIST);
  assert_int_equal(rt_apikey_count(s), 1);
  rt_identity_t id;
  assert_int_equal(lookup(s, "dup-key", &id, NULL), 0);
  assert_string_equal(id.user_id, "apikey:first");
  assert_int_equal(id.permission_count, 1);
  assert_string_equal(id.permissions[0], "read:a");
  rt_identity_destroy(&id);
  /* Two keys may share a name. */
  assert_int_equal(add(s, "rotated-key", "first", other, 1), 0);
  assert_int_equal(rt_apikey_count(s), 2);
  expect_name(s, "rotated-key", 11, "first");
  rt_apikey_store_free(s);
}

static void test_revoke(void **state) {
  (void)state;
  rt_apikey_store_t *s = rt_apikey_store_new();
  assert_int_equal(add(s, "key-one", "one", NULL, 0), 0);
  assert_int_equal(add(s, "key-two", "two", NULL, 0), 0);
  assert_int_equal(revoke(s, "key-three"), RT_ENOENT);
  assert_int_equal(revoke(s, "key-on"), RT_ENOENT);
  assert_int_equal(rt_apikey_count(s), 2);
  assert_int_equal(revoke(s, "key-one"), 0);
  assert_int_equal(rt_apikey_count(s), 1);
  expect_unknown(s, "key-one", 7);
  expect_name(s, "key-two", 7, "two");
  assert_int_equal(revoke(s, "key-one"), RT_ENOENT);
  assert_int_equal(rt_apikey_revoke(s, NULL, 0), RT_ENOENT);
  assert_int_equal(rt_apikey_revoke(s, "key-two", 0), RT_ENOENT);
  assert_int_equal(rt_apikey_revoke(NULL, "key-two", 7), RT_EINVAL);
  /* A revoked key can be added again, under any name. */
  assert_int_equal(add(s, "key-one", "one-again", NULL, 0), 0);
  expect_name(s, "key-one", 7, "one-again");
  assert_int_equal(revoke(s, "key-two"), 0);
  assert_int_equal(revoke(s, "key-one"), 0);
  assert_int_equal(rt_apikey_count(s), 0);
  rt_apikey_store_free(s);
}

static void test_invalid_add(void **state) {
  (void)state;
  rt_apikey_store_t *s = rt_apikey_store_new();
  const char *ok[] = {"read:*"};
  const char *bad_perm[] = {"read:*", "read:"};
  const char *unknown_action[] = {"admin:*"};
  const char *null_perm[] = {"read:*", NULL};
  char long_name[RT_APIKEY_NAME_MAX + 2];
  memset(long_name, 'n', sizeof(long_name));
  long_name[RT_APIKEY_NAME_MAX + 1] = '\0';

  assert_int_equal(rt_apikey_add(NULL, "k", 1, "n", ok, 1), RT_EINVAL);
  assert_int_equal(rt_apikey_add(s, NULL, 1, "n", ok, 1), RT_EINVAL);
  assert_int_equal(rt_apikey_add(s, "k", 0, "n", ok, 1), RT_EINVAL);
  assert_int_equal(add(s, "k", NULL, ok, 1), RT_EINVAL);
  assert_int_equal(add(s, "k", "", ok, 1), RT_EINVAL);
  assert_int_equal(add(s, "k", "bad\nname", ok, 1), RT_EINVAL);
  assert_int_equal(add(s, "k", "bad\x7fname", ok, 1), RT_EINVAL);
  assert_int_equal(add(s, "k", long_name, ok, 1), RT_EINVAL);
  assert_int_equal(add(s, "k", "n", bad_perm, 2), RT_EINVAL);
  assert_int_equal(add(s, "k", "n", unknown_action, 1), RT_EINVAL);
  assert_int_equal(add(s, "k", "n", null_perm, 2), RT_EINVAL);
  assert_int_equal(add(s, "k", "n", NULL, 1), RT_EINVAL);
  assert_int_equal(rt_apikey_count(s), 0);
  expect_unknown(s, "k", 1);

  long_name[RT_APIKEY_NAME_MAX] = '\0';
  assert_int_equal(add(s, "k1", long_name, ok, 1), 0);
  assert_int_equal(add(s, "k2", "Analytics Service \xc3\xa9", ok, 1), 0);
  assert_int_equal(add(s, "k3", "n", bad_perm, 1), 0);
  expect_name(s, "k2", 2, "Analytics Service \xc3\xa9");
  rt_apikey_store_free(s);
}

static void test_name_valid(void **state) {
  (void)state;
  assert_int_equal(rt_apikey_name_valid("svc"), 1);
  assert_int_equal(rt_apikey_name_valid("a b-c_d.e@f:g/h"), 1);
  assert_int_equal(rt_apikey_name_valid(NULL), 0);
  assert_int_equal(rt_apikey_name_valid(""), 0);
  assert_int_equal(rt_apikey_name_valid("a\tb"), 0);
  assert_int_equal(rt_apikey_name_valid("a\rb"), 0);
  assert_int_equal(rt_apikey_name_valid("\x1b[31m"), 0);
}

/* No permissions is a valid key: it authenticates but grants nothing. */
static void test_no_permissions(void **state) {
  (void)state;
  rt_apikey_store_t *s = rt_apikey_store_new();
  const char *unused[] = {"read:*"};
  assert_int_equal(add(s, "k-none", "none", NULL, 0), 0);
  assert_int_equal(add(s, "k-zero", "zero", unused, 0), 0);
  rt_identity_t id;
  assert_int_equal(lookup(s, "k-zero", &id, NULL), 0);
  assert_int_equal(id.permission_count, 0);
  assert_int_equal(rt_perm_allows((const char *const *)id.permissions, id.permission_count,
                                  RT_PERM_READ, "chat", 4, id.user_id),
                   0);
  rt_identity_destroy(&id);
  rt_apikey_store_free(s);
}

/*
 * Results are deep copies: the caller's inputs can go away after add, a
 * caller may scribble on or free what lookup returned, and a revoke does not
 * pull the rug from under an identity already handed out (ASan checks the
 * last read).
 */
static void test_deep_copies(void **state) {
  (void)state;
  rt_apikey_store_t *s = rt_apikey_store_new();
  char *name = strdup("worker");
  char *p0 = strdup("read:jobs:*");
  char *p1 = strdup("write:jobs:{sub}");
  const char *perms[] = {p0, p1};
  assert_int_equal(add(s, "k-worker", name, perms, 2), 0);
  memset(name, 'x', strlen(name));
  memset(p0, 'x', strlen(p0));
  free(name);
  free(p0);
  free(p1);

  rt_identity_t a, b;
  char *na = NULL;
  assert_int_equal(lookup(s, "k-worker", &a, &na), 0);
  a.permissions[0][0] = 'X';
  a.user_id[0] = 'X';
  na[0] = 'X';
  assert_int_equal(lookup(s, "k-worker", &b, NULL), 0);
  assert_string_equal(b.user_id, "apikey:worker");
  assert_string_equal(b.permissions[0], "read:jobs:*");
  assert_string_equal(b.permissions[1], "write:jobs:{sub}");
  assert_ptr_not_equal(a.permissions, b.permissions);
  assert_ptr_not_equal(a.permissions[1], b.permissions[1]);
  rt_identity_destroy(&a);
  rt_free(na);

  assert_int_equal(revoke(s, "k-worker"), 0);
  assert_string_equal(b.user_id, "apikey:worker");
  assert_string_equal(b.permissions[1], "write:jobs:{sub}");
  rt_identity_destroy(&b);
  rt_apikey_store_free(s);
}

/*
 * The store never needs the caller's key buffer again (it is wiped and freed
 * right after add), and nothing a lookup returns contains the key's text.
 */
static void test_key_not_kept_or_returned(void **state) {
  (void)state;
  static const char key[] = "sk_live_9c2f7d41e0b8a63f";
  rt_apikey_store_t *s = rt_apikey_store_new();
  const char *perms[] = {"read:*"};
  char *buf = heap_copy(key, sizeof(key) - 1);
  assert_int_equal(rt_apikey_add(s, buf, sizeof(key) - 1, "billing", perms, 1), 0);
  memset(buf, 0, sizeof(key) - 1);
  free(buf);

  rt_identity_t id;
  char *name = NULL;
  assert_int_equal(lookup(s, key, &id, &name), 0);
  assert_null(strstr(id.user_id, "sk_live"));
  assert_null(strstr(name, "sk_live"));
  for (size_t i = 0; i < id.permission_count; i++) assert_null(strstr(id.permissions[i], "sk_live"));
  rt_free(name);
  rt_identity_destroy(&id);
  rt_apikey_store_free(s);
}

/* The identity feeds the permission checker: {sub} is "apikey:<name>". */
static void test_identity_with_perm(void **state) {
  (void)state;
  rt_apikey_store_t *s = rt_apikey_store_new();
  const char *perms[] = {"read:inbox:{sub}", "write:metrics"};
  assert_int_equal(add(s, "k-bot", "bot", perms, 2), 0);
  rt_identity_t id;
  assert_int_equal(lookup(s, "k-bot", &id, NULL), 0);
  const char *const *p = (const char *const *)id.permissions;
  assert_int_equal(rt_perm_allows(p, id.permission_count, RT_PERM_READ, "inbox:apikey:bot", 16,
                                  id.user_id),
                   1);
  assert_int_equal(rt_perm_allows(p, id.permission_count, RT_PERM_READ, "inbox:bot", 9, id.user_id),
                   0);
  assert_int_equal(rt_perm_allows(p, id.permission_count, RT_PERM_WRITE, "metrics", 7, id.user_id),
                   1);
  rt_identity_destroy(&id);
  rt_apikey_store_free(s);
}

/* Enough keys to double the table several times; every key stays findable. */
static void test_many_keys(void **state) {
  (void)state;
  enum { N = 1000 };
  rt_apikey_store_t *s = rt_apikey_store_new();
  char key[32], name[32];
  for (int i = 0; i < N; i++) {
    snprintf(key, sizeof(key), "key-%d", i);
    snprintf(name, sizeof(name), "name-%d", i);
    assert_int_equal(add(s, key, name, NULL, 0), 0);
  }
  assert_int_equal(rt_apikey_count(s), N);
  for (int i = 0; i < N; i += 2) {
    snprintf(key, sizeof(key), "key-%d", i);
    assert_int_equal(revoke(s, key), 0);
  }
  assert_int_equal(rt_apikey_count(s), N / 2);
  for (int i = 0; i < N; i++) {
    snprintf(key, sizeof(key), "key-%d", i);
    snprintf(name, sizeof(name), "name-%d", i);
    if (i % 2)
      expect_name(s, key, strlen(key), name);
    else
      expect_unknown(s, key, strlen(key));
  }
  rt_apikey_store_free(s);
}

static void test_oom_store_new(void **state) {
  (void)state;
  long n;
  for (n = 0;; n++) {
    rt_alloc_fail_after(n);
    rt_apikey_store_t *s = rt_apikey_store_new();
    rt_alloc_fail_after(-1);
    if (s != NULL) {
      rt_apikey_store_free(s);
      break;
    }
  }
  assert_int_equal(n, 2);
}

/*
 * Adds `key` failing the n-th allocation for n = 0, 1, ... until it
 * succeeds: each failure returns RT_ENOMEM and leaves the store as it was.
 * Returns how many attempts failed.
 */
static long add_until_success(rt_apikey_store_t *s, const char *key, const char *name) {
  const char *perms[] = {"read:*", "write:user:{sub}", "query:raw"};
  size_t before = rt_apikey_count(s);
  for (long n = 0;; n++) {
    rt_alloc_fail_after(n);
    int rc = add(s, key, name, perms, 3);
    rt_alloc_fail_after(-1);
    if (rc == 0) {
      assert_int_equal(rt_apikey_count(s), before + 1);
      expect_name(s, key, strlen(key), name);
      return n;
    }
    assert_int_equal(rc, RT_ENOMEM);
    assert_int_equal(rt_apikey_count(s), before);
    expect_unknown(s, key, strlen(key));
  }
}

static void test_oom_add(void **state) {
  (void)state;
  rt_apikey_store_t *s = rt_apikey_store_new();
  /* entry, user id, name, permission array, three permissions */
  assert_int_equal(add_until_success(s, "first-key", "first"), 7);
  char key[32];
  for (int i = 1; i < 16; i++) {
    snprintf(key, sizeof(key), "filler-%d", i);
    assert_int_equal(add(s, key, "filler", NULL, 0), 0);
  }
  /* The 17th key would grow the table: a failed grow still adds the key. */
  assert_int_equal(add_until_success(s, "grow-key", "grow"), 7);
  assert_int_equal(rt_apikey_count(s), 17);
  expect_name(s, "first-key", 9, "first");
  expect_name(s, "filler-9", 8, "filler");
  assert_int_equal(add_until_success(s, "after-key", "after"), 7);
  expect_name(s, "grow-key", 8, "grow");
  rt_apikey_store_free(s);
}

static void test_oom_lookup(void **state) {
  (void)state;
  rt_apikey_store_t *s = rt_apikey_store_new();
  const char *perms[] = {"read:*", "write:x"};
  assert_int_equal(add(s, "the-key", "svc", perms, 2), 0);
  long n;
  for (n = 0;; n++) {
    rt_identity_t id;
    char *name = (char *)&id;
    rt_alloc_fail_after(n);
    int rc = lookup(s, "the-key", &id, &name);
    rt_alloc_fail_after(-1);
    if (rc == 0) {
      assert_string_equal(id.user_id, "apikey:svc");
      assert_string_equal(name, "svc");
      rt_free(name);
      rt_identity_destroy(&id);
      break;
    }
    assert_int_equal(rc, RT_ENOMEM);
    assert_null(id.user_id);
    assert_null(id.permissions);
    assert_null(name);
  }
  /* user id, permission array, two permissions, name */
  assert_int_equal(n, 5);
  expect_name(s, "the-key", 7, "svc");
  rt_apikey_store_free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_new_free),
      cmocka_unit_test(test_add_lookup),
      cmocka_unit_test(test_unknown_key),
      cmocka_unit_test(test_exact_bytes),
      cmocka_unit_test(test_long_key),
      cmocka_unit_test(test_duplicate),
      cmocka_unit_test(test_revoke),
      cmocka_unit_test(test_invalid_add),
      cmocka_unit_test(test_name_valid),
      cmocka_unit_test(test_no_permissions),
      cmocka_unit_test(test_deep_copies),
      cmocka_unit_test(test_key_not_kept_or_returned),
      cmocka_unit_test(test_identity_with_perm),
      cmocka_unit_test(test_many_keys),
      cmocka_unit_test(test_oom_store_new),
      cmocka_unit_test(test_oom_add),
      cmocka_unit_test(test_oom_lookup),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
