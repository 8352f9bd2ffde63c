/*
 * Permission patterns (src/core/perm.h). Every channel is passed in an
 * exact-size heap copy without a NUL, so ASan proves the matcher never reads
 * past channel_len.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "perm.h"

static int allows_n(const char *const *perms, size_t n, rt_perm_action_t action,
                    const char *channel, size_t len, const char *uid) {
  char *copy = malloc(len ? len : 1);
  assert_non_null(copy);
  memcpy(copy, channel, len);
  int got = rt_perm_allows(perms, n, action, copy, len, uid);
  free(copy);
  return got;
}

/* One permission, one action, one channel; prints the case when it fails. */
static void expect(const char *perm, rt_perm_action_t action, const char *channel, const char *uid,
                   int want) {
  const char *perms[] = {perm};
  int got = allows_n(perms, 1, action, channel, strlen(channel), uid);
  if (got != want)
    print_error("perm \"%s\" %s \"%s\" uid=%s%s%s\n", perm, action == RT_PERM_READ ? "read" : "write",
                channel, uid ? "\"" : "", uid ? uid : "NULL", uid ? "\"" : "");
  assert_int_equal(got, want);
}

static void expect_read(const char *perm, const char *channel, int want) {
  expect(perm, RT_PERM_READ, channel, NULL, want);
}

static void expect_valid(const char *perm, int want) {
  int got = rt_perm_valid(perm);
  if (got != want) print_error("rt_perm_valid(\"%s\")\n", perm ? perm : "(null)");
  assert_int_equal(got, want);
}

static void test_read_star(void **state) {
  (void)state;
  expect_read("read:*", "chat", 1);
  expect_read("read:*", "a:b/c.d@e", 1);
  expect_read("read:*", "x", 1);
  expect("read:*", RT_PERM_WRITE, "chat", NULL, 0);
}

static void test_write_exact(void **state) {
  (void)state;
  expect("write:metrics", RT_PERM_WRITE, "metrics", NULL, 1);
  expect("write:metrics", RT_PERM_WRITE, "metrics2", NULL, 0);
  expect("write:metrics", RT_PERM_WRITE, "xmetrics", NULL, 0);
  expect("write:metrics", RT_PERM_WRITE, "metric", NULL, 0);
  expect("write:metrics", RT_PERM_WRITE, "Metrics", NULL, 0);
  expect("write:metrics", RT_PERM_READ, "metrics", NULL, 0);
}

/* The star spans any run, separators included, and the match is anchored at both ends. */
static void test_inner_star(void **state) {
  (void)state;
  const char *p = "read:user:*:public";
  expect_read(p, "user:alice:public", 1);
  expect_read(p, "user:a:b:public", 1);
  expect_read(p, "user:a/b:public", 1);
  expect_read(p, "user::public", 1);
  expect_read(p, "user:alice:private", 0);
  expect_read(p, "user:alice:public:x", 0);
  expect_read(p, "users:alice:public", 0);
  expect_read(p, "xuser:alice:public", 0);
  expect_read(p, "user:public", 0);
}

static void test_sub_placeholder(void **state) {
  (void)state;
  const char *p = "read:user:{sub}:notifications";
  expect(p, RT_PERM_READ, "user:alice:notifications", "alice", 1);
  expect(p, RT_PERM_READ, "user:bob:notifications", "alice", 0);
  expect(p, RT_PERM_READ, "user:alicex:notifications", "alice", 0);
  expect(p, RT_PERM_READ, "user:alice:notifications", "ali", 0);
  expect(p, RT_PERM_READ, "user:ali:notifications", "alice", 0);
  expect(p, RT_PERM_READ, "user:alice:notifications", "Alice", 0);
  expect(p, RT_PERM_WRITE, "user:alice:notifications", "alice", 0);
  expect(p, RT_PERM_READ, "user:123:notifications", "123", 1);
}

/* Without a user id a {sub} pattern matches nothing, not even the literal text. */
static void test_sub_without_user(void **state) {
  (void)state;
  const char *p = "read:user:{sub}:notifications";
  expect(p, RT_PERM_READ, "user::notifications", NULL, 0);
  expect(p, RT_PERM_READ, "user::notifications", "", 0);
  expect(p, RT_PERM_READ, "user:{sub}:notifications", NULL, 0);
  expect(p, RT_PERM_READ, "user:alice:notifications", NULL, 0);
  expect("read:*{sub}*", RT_PERM_READ, "anything", NULL, 0);
  expect("read:*{sub}*", RT_PERM_READ, "anything", "", 0);
  expect("read:*", RT_PERM_READ, "anything", NULL, 1);
}

/* The user id is substituted literally: its '*' is not a wildcard. */
static void test_sub_is_literal(void **state) {
  (void)state;
  const char *p = "read:user:{sub}:x";
  expect(p, RT_PERM_READ, "user:*:x", "*", 1);
  expect(p, RT_PERM_READ, "user:bob:x", "*", 0);
  expect(p, RT_PERM_READ, "user::x", "*", 0);
  expect(p, RT_PERM_READ, "user:a:b:x", "*", 0);
  expect(p, RT_PERM_READ, "user:abc:x", "a*", 0);
  expect(p, RT_PERM_READ, "user:a*:x", "a*", 1);
  expect(p, RT_PERM_READ, "user:a:x", "a*", 0);
  expect(p, RT_PERM_READ, "user:{sub}:x", "{sub}", 1);
  expect(p, RT_PERM_READ, "user:{sub}:x", "bob", 0);
  expect("read:{sub}", RT_PERM_READ, "**", "**", 1);
  expect("read:{sub}", RT_PERM_READ, "ab", "**", 0);
}

static void test_sub_with_stars(void **state) {
  (void)state;
  expect("read:{sub}*", RT_PERM_READ, "alice", "alice", 1);
  expect("read:{sub}*", RT_PERM_READ, "alice:inbox", "alice", 1);
  expect("read:{sub}*", RT_PERM_READ, "bob:alice", "alice", 0);
  expect("read:*{sub}", RT_PERM_READ, "room:alice", "alice", 1);
  expect("read:*{sub}", RT_PERM_READ, "alice:room", "alice", 0);
  expect("read:*:{sub}:*", RT_PERM_READ, "a:alice:b", "alice", 1);
  expect("read:*:{sub}:*", RT_PERM_READ, "a:alic:b", "alice", 0);
  expect("read:{sub}{sub}", RT_PERM_READ, "abab", "ab", 1);
  expect("read:{sub}{sub}", RT_PERM_READ, "ab", "ab", 0);
  expect("read:{sub}:{sub}", RT_PERM_READ, "ab:ab", "ab", 1);
  expect("read:{sub}:{sub}", RT_PERM_READ, "ab:ba", "ab", 0);
  /* A star must backtrack into the middle of a user id. */
  expect("read:*{sub}", RT_PERM_READ, "aaab", "aab", 1);
  expect("read:*{sub}x", RT_PERM_READ, "ababx", "ab", 1);
  expect("read:*{sub}x", RT_PERM_READ, "abax", "ab", 0);
}

static void test_multiple_stars(void **state) {
  (void)state;
  expect_read("read:a*b*c", "abc", 1);
  expect_read("read:a*b*c", "aXbYc", 1);
  expect_read("read:a*b*c", "a::b//c", 1);
  expect_read("read:a*b*c", "abcabc", 1);
  expect_read("read:a*b*c", "acb", 0);
  expect_read("read:a*b*c", "abcd", 0);
  expect_read("read:**", "x", 1);
  expect_read("read:a**b", "ab", 1);
  expect_read("read:a**b", "a:x:b", 1);
  expect_read("read:a**b", "a:x:c", 0);
  expect_read("read:*:*:*", "a:b:c", 1);
  expect_read("read:*:*:*", "::", 1);
  expect_read("read:*:*:*", "a:b", 0);
  expect_read("read:*ab*ab*", "xabyabz", 1);
  expect_read("read:*ab*ab*", "xaby", 0);
  expect_read("read:*ab*ab*", "abab", 1);
  expect_read("read:*aab", "aaaab", 1);
}

static void test_star_at_ends(void **state) {
  (void)state;
  expect_read("read:*chat", "chat", 1);
  expect_read("read:*chat", "room:chat", 1);
  expect_read("read:*chat", "chat:room", 0);
  expect_read("read:*chat", "hat", 0);
  expect_read("read:chat*", "chat", 1);
  expect_read("read:chat*", "chat:1", 1);
  expect_read("read:chat*", "chat/a/b", 1);
  expect_read("read:chat*", "xchat", 0);
  expect_read("read:chat*", "cha", 0);
  expect_read("read:*chat*", "my-chat-room", 1);
  expect_read("read:*chat*", "chat", 1);
  expect_read("read:*chat*", "cha-t", 0);
}

/* A star may match nothing; an empty or NULL channel is never allowed. */
static void test_empty_matches(void **state) {
  (void)state;
  expect_read("read:a*", "a", 1);
  expect_read("read:*a", "a", 1);
  expect_read("read:a*b", "ab", 1);
  expect_read("read:a*b*", "ab", 1);
  const char *perms[] = {"read:*", "*"};
  assert_int_equal(allows_n(perms, 2, RT_PERM_READ, "", 0, NULL), 0);
  assert_int_equal(rt_perm_allows(perms, 2, RT_PERM_READ, NULL, 0, NULL), 0);
  assert_int_equal(rt_perm_allows(perms, 2, RT_PERM_READ, NULL, 4, NULL), 0);
}

/* The length bounds the channel, not a NUL: a prefix of a longer buffer is its own channel. */
static void test_channel_length(void **state) {
  (void)state;
  const char *perms[] = {"read:chat"};
  assert_int_equal(rt_perm_allows(perms, 1, RT_PERM_READ, "chatroom", 4, NULL), 1);
  assert_int_equal(rt_perm_allows(perms, 1, RT_PERM_READ, "chatroom", 5, NULL), 0);
  assert_int_equal(rt_perm_allows(perms, 1, RT_PERM_READ, "chatroom", 3, NULL), 0);
}

static double elapsed_s(const struct timespec *t0) {
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/*
 * A backtracking matcher that retries every star on every mismatch needs
 * about n^5 steps here (hours for n = 200000); the last-star algorithm needs
 * a few n. The 10 s bound is only a tripwire for an exponential rewrite.
 */
static void test_pathological_patterns(void **state) {
  (void)state;
  enum { N = 200000 };
  char *s = malloc(N + 1);
  assert_non_null(s);
  memset(s, 'a', N);
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  const char *p1[] = {"read:a*a*a*a*a*b"};
  assert_int_equal(allows_n(p1, 1, RT_PERM_READ, s, N, NULL), 0);
  s[N] = 'b';
  assert_int_equal(allows_n(p1, 1, RT_PERM_READ, s, N + 1, NULL), 1);
  s[N] = 'a';

  char many[RT_PERM_MAX + 1];
  size_t n = strlen(strcpy(many, "read:"));
  while (n + 3 <= RT_PERM_MAX) {
    many[n++] = '*';
    many[n++] = 'a';
  }
  many[n++] = 'b';
  many[n] = '\0';
  expect_valid(many, 1);
  const char *p2[] = {many};
  assert_int_equal(allows_n(p2, 1, RT_PERM_READ, s, 20000, NULL), 0);

  const char *p3[] = {"read:*{sub}*{sub}*{sub}b"};
  assert_int_equal(allows_n(p3, 1, RT_PERM_READ, s, N, "aaaa"), 0);
  double secs = elapsed_s(&t0);
  if (secs >= 10.0) print_error("pathological patterns took %.3f s\n", secs);
  assert_true(secs < 10.0);
  free(s);
}

static void test_action_mismatch(void **state) {
  (void)state;
  expect("read:chat", RT_PERM_WRITE, "chat", NULL, 0);
  expect("write:chat", RT_PERM_READ, "chat", NULL, 0);
  expect("read:chat", RT_PERM_READ, "chat", NULL, 1);
  expect("write:chat", RT_PERM_WRITE, "chat", NULL, 1);
  expect("query:raw", RT_PERM_READ, "raw", NULL, 0);
  expect("query:raw", RT_PERM_WRITE, "raw", NULL, 0);
  const char *perms[] = {"*"};
  assert_int_equal(rt_perm_allows(perms, 1, (rt_perm_action_t)7, "chat", 4, NULL), 0);
}

static void test_full_grants(void **state) {
  (void)state;
  static const char *const full[] = {"*", "*:*"};
  for (size_t i = 0; i < 2; i++) {
    expect(full[i], RT_PERM_READ, "chat", NULL, 1);
    expect(full[i], RT_PERM_WRITE, "chat", NULL, 1);
    expect(full[i], RT_PERM_READ, "admin:secrets", "bob", 1);
    expect(full[i], RT_PERM_WRITE, "user:alice:notifications", NULL, 1);
  }
  /* A star action with any other pattern is not a grant. */
  expect("*:chat", RT_PERM_READ, "chat", NULL, 0);
  expect("*:*:*", RT_PERM_READ, "chat", NULL, 0);
  expect("**", RT_PERM_READ, "chat", NULL, 0);
  expect("*:", RT_PERM_READ, "chat", NULL, 0);
}

/* Each entry counts on its own; NULL entries are skipped; n bounds the array. */
static void test_permission_lists(void **state) {
  (void)state;
  const char *perms[] = {NULL, "read:news", "write:chat", NULL, "read:user:{sub}:*"};
  assert_int_equal(allows_n(perms, 5, RT_PERM_READ, "news", 4, NULL), 1);
  assert_int_equal(allows_n(perms, 5, RT_PERM_WRITE, "chat", 4, NULL), 1);
  assert_int_equal(allows_n(perms, 5, RT_PERM_READ, "chat", 4, NULL), 0);
  assert_int_equal(allows_n(perms, 5, RT_PERM_READ, "user:al:inbox", 13, "al"), 1);
  assert_int_equal(allows_n(perms, 4, RT_PERM_READ, "user:al:inbox", 13, "al"), 0);
  assert_int_equal(allows_n(perms, 1, RT_PERM_READ, "news", 4, NULL), 0);
  assert_int_equal(allows_n(perms, 0, RT_PERM_READ, "news", 4, NULL), 0);
  assert_int_equal(allows_n(NULL, 3, RT_PERM_READ, "news", 4, NULL), 0);
}

/* A permission that fails rt_perm_valid grants nothing, even on a channel spelled like it. */
static void test_invalid_grants_nothing(void **state) {
  (void)state;
  expect_read("read:chat ", "chat ", 0);
  expect_read("read:a{b}", "a{b}", 0);
  expect_read("read:", "x", 0);
  expect_read("READ:chat", "chat", 0);
  expect_read("admin:*", "chat", 0);
  expect_read("read", "read", 0);
}

static void test_valid_syntax(void **state) {
  (void)state;
  static const char *const ok[] = {
      "*", "*:*", "query:raw", "read:*", "write:*", "read:chat", "write:metrics",
      "read:user:*:public", "read:user:{sub}:notifications", "read:{sub}", "read:{sub}{sub}",
      "read:**", "read:a*b*c", "read:a/b.c@d_e-f:G9", "write:{sub}*", "read::", "read:/x",
  };
  static const char *const bad[] = {
      "", "read", "read:", "write:", "read :chat", " read:chat", "admin:chat", "READ:chat",
      "Read:chat", "delete:chat", "query:", "query:*", "query:raw2", "query:raw:x", "*:chat",
      "**", "*:", ":*", ":chat", "*:*:*", "read:chat room", "read:chat\n", "read:chat\t",
      "read:{user}", "read:{sub", "read:sub}", "read:{SUB}", "read:{}", "read:{", "read:}",
      "read:{{sub}}", "read:caf\xc3\xa9", "read:a?b", "read:a+b", "read:a#b", "read:a%2fb",
      "write:\x01", "read:a\\b",
  };
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) expect_valid(ok[i], 1);
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) expect_valid(bad[i], 0);
  expect_valid(NULL, 0);
}

static void test_valid_length_limit(void **state) {
  (void)state;
  char p[RT_PERM_MAX + 2];
  memcpy(p, "read:", 5);
  memset(p + 5, 'a', sizeof(p) - 5);
  p[RT_PERM_MAX] = '\0';
  expect_valid(p, 1);
  p[RT_PERM_MAX] = 'a';
  p[RT_PERM_MAX + 1] = '\0';
  expect_valid(p, 0);
  expect_read(p, "aaa", 0);
}

static void test_has(void **state) {
  (void)state;
  const char *plain[] = {"read:*", NULL, "query:raw"};
  assert_int_equal(rt_perm_has(plain, 3, "query:raw"), 1);
  assert_int_equal(rt_perm_has(plain, 2, "query:raw"), 0);
  assert_int_equal(rt_perm_has(plain, 3, "query:raw2"), 0);
  assert_int_equal(rt_perm_has(plain, 3, "query:ra"), 0);
  assert_int_equal(rt_perm_has(plain, 3, "read:chat"), 0);
  assert_int_equal(rt_perm_has(plain, 3, "read:*"), 1);
  assert_int_equal(rt_perm_has(plain, 3, NULL), 0);
  assert_int_equal(rt_perm_has(NULL, 3, "query:raw"), 0);
  const char *star[] = {"*"};
  const char *star2[] = {"*:*"};
  const char *wild[] = {"query:*", "*:raw"};
  assert_int_equal(rt_perm_has(star, 1, "query:raw"), 1);
  assert_int_equal(rt_perm_has(star2, 1, "query:raw"), 1);
  assert_int_equal(rt_perm_has(wild, 2, "query:raw"), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_read_star),
      cmocka_unit_test(test_write_exact),
      cmocka_unit_test(test_inner_star),
      cmocka_unit_test(test_sub_placeholder),
      cmocka_unit_test(test_sub_without_user),
      cmocka_unit_test(test_sub_is_literal),
      cmocka_unit_test(test_sub_with_stars),
      cmocka_unit_test(test_multiple_stars),
      cmocka_unit_test(test_star_at_ends),
      cmocka_unit_test(test_empty_matches),
      cmocka_unit_test(test_channel_length),
      cmocka_unit_test(test_pathological_patterns),
      cmocka_unit_test(test_action_mismatch),
      cmocka_unit_test(test_full_grants),
      cmocka_unit_test(test_permission_lists),
      cmocka_unit_test(test_invalid_grants_nothing),
      cmocka_unit_test(test_valid_syntax),
      cmocka_unit_test(test_has),
      cmocka_unit_test(test_valid_length_limit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
