/*
 * Channel-name rules (src/core/channel.h): 1-255 bytes of
 * [A-Za-z0-9_-:.@/], no leading '/', no ".." segment between separators
 * ('/' or ':') or the ends. Every name is passed in an exact-size heap copy
 * without a NUL, so the length argument is the only bound (ASan checks it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/channel.h"

static int valid_n(const char *name, size_t n) {
  char *copy = malloc(n ? n : 1);
  assert_non_null(copy);
  memcpy(copy, name, n);
  int ok = rt_channel_valid(copy, n);
  free(copy);
  return ok;
}

static void expect_channel(const char *name, int ok) {
  int got = valid_n(name, strlen(name));
  if (got != ok) print_error("channel: \"%s\"\n", name);
  assert_int_equal(got, ok);
}

static void test_ordinary_names(void **state) {
  (void)state;
  static const char *const ok[] = {"chat", "admin:secrets", "user:alice:notifications",
                                   "room/42", "a/b/c", "a_b-c", "x@example.com", "v1.2",
                                   "A", "0", "_", "-", "@", ":", "::", ":a", "a:", "a/",
                                   "a//b", "a:/b"};
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) expect_channel(ok[i], 1);
}

/* ".." is refused only as a whole segment; dots inside or around other text are fine. */
static void test_dot_dot_segments(void **state) {
  (void)state;
  static const char *const ok[] = {"a..b", "v1..2", "...", "a/...", ".../a", "..a", "a..",
                                   "a/..b/c", "a:b..:c", ".", "a/./b", "./a", ".a."};
  static const char *const bad[] = {"..", "../admin/secrets", "a/../b", "a:..:b", "a/..",
                                    "a:..", "..:a", "../", "..:", "a/..:b", "a:../b",
                                    "x/y/z/.."};
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) expect_channel(ok[i], 1);
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) expect_channel(bad[i], 0);
}

static void test_leading_slash(void **state) {
  (void)state;
  expect_channel("/", 0);
  expect_channel("/a", 0);
  expect_channel("//a", 0);
  expect_channel("/admin/secrets", 0);
  expect_channel("a/", 1);
}

static void test_length_limits(void **state) {
  (void)state;
  char name[300];
  memset(name, 'a', sizeof(name));
  assert_int_equal(RT_CHANNEL_MAX, 255);
  assert_int_equal(valid_n(name, 0), 0);
  assert_int_equal(valid_n(name, 1), 1);
  assert_int_equal(valid_n(name, 255), 1);
  assert_int_equal(valid_n(name, 256), 0);
  assert_int_equal(valid_n(name, 300), 0);
  memcpy(name + 252, "/..", 3);
  assert_int_equal(valid_n(name, 255), 0);
  assert_int_equal(valid_n(name, 254), 1);
  assert_int_equal(rt_channel_valid(NULL, 0), 0);
  assert_int_equal(rt_channel_valid(NULL, 5), 0);
  expect_channel("", 0);
}

/* The length argument is the name: a NUL or text past it does not count. */
static void test_length_is_authoritative(void **state) {
  (void)state;
  assert_int_equal(valid_n("chat room", 4), 1);
  assert_int_equal(valid_n("a/..", 3), 1);
  assert_int_equal(valid_n("a\0b", 3), 0);
  assert_int_equal(valid_n("ab\0", 3), 0);
}

static int in_allowed_set(int c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         strchr("_-:.@/", c) != NULL;
}

/* Each of the 256 byte values, in the middle of a name, is accepted exactly when it is in the set. */
static void test_every_byte_value(void **state) {
  (void)state;
  for (int c = 0; c < 256; c++) {
    char name[3] = {'a', (char)c, 'b'};
    int expected = c != 0 && in_allowed_set(c);
    if (valid_n(name, 3) != expected) print_error("byte 0x%02x\n", c);
    assert_int_equal(valid_n(name, 3), expected);
  }
}

static void test_spaces_and_unicode_refused(void **state) {
  (void)state;
  static const char *const bad[] = {"a b", " a", "a ", "a\tb", "a\nb", "caf\xc3\xa9",
                                    "\xe2\x82\xac", "\xf0\x9f\x98\x80", "a\xc2\xa0\x62",
                                    "a#b", "a*b", "a?b", "a\\b", "a\"b", "a,b", "a+b",
                                    "a%2e%2e", "a~b", "a$b", "a;b"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) expect_channel(bad[i], 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ordinary_names),
      cmocka_unit_test(test_dot_dot_segments),
      cmocka_unit_test(test_leading_slash),
      cmocka_unit_test(test_length_limits),
      cmocka_unit_test(test_length_is_authoritative),
      cmocka_unit_test(test_every_byte_value),
      cmocka_unit_test(test_spaces_and_unicode_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
