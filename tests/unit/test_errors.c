/*
 * The error space (include/realtime/realtime.h RT_ERRNO_MAP, src/core/errors.h):
 * every RT_E* code is negative and distinct, has its own snake_case name (the
 * wire error code) and its own message, and unknown codes still get text.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/errors.h"

#define CODE_ENTRY_(code, name, msg) {RT_##code, #code, name, msg},

static const struct {
  int code;
  const char *ident;
  const char *name;
  const char *msg;
} table[] = {RT_ERRNO_MAP(CODE_ENTRY_)};

#define COUNT (sizeof(table) / sizeof(table[0]))

static int is_snake(const char *s) {
  if (*s == '\0' || *s == '_') return 0;
  for (; *s != '\0'; s++)
    if (!((*s >= 'a' && *s <= 'z') || *s == '_')) return 0;
  return 1;
}

static void test_codes_negative_distinct_contiguous(void **state) {
  (void)state;
  assert_int_equal(RT_OK, 0);
  for (size_t i = 0; i < COUNT; i++) {
    assert_true(table[i].code < 0);
    assert_int_equal(table[i].code, RT__EFIRST + 1 + (int)i);
  }
  assert_int_equal(RT__ELAST, RT__EFIRST + 1 + (int)COUNT);
}

static void test_names_and_messages_match_table(void **state) {
  (void)state;
  for (size_t i = 0; i < COUNT; i++) {
    assert_string_equal(rt_err_name(table[i].code), table[i].name);
    assert_string_equal(rt_strerror(table[i].code), table[i].msg);
  }
}

static void test_names_snake_and_distinct(void **state) {
  (void)state;
  for (size_t i = 0; i < COUNT; i++) {
    const char *name = rt_err_name(table[i].code);
    if (!is_snake(name)) print_error("%s: \"%s\"\n", table[i].ident, name);
    assert_true(is_snake(name));
    assert_string_not_equal(name, "ok");
    assert_string_not_equal(name, "unknown_error");
    for (size_t j = i + 1; j < COUNT; j++) assert_string_not_equal(name, rt_err_name(table[j].code));
  }
}

static void test_messages_distinct(void **state) {
  (void)state;
  for (size_t i = 0; i < COUNT; i++) {
    const char *msg = rt_strerror(table[i].code);
    assert_true(msg[0] >= 'A' && msg[0] <= 'Z');
    assert_string_not_equal(msg, "Success");
    assert_string_not_equal(msg, "Unknown error");
    for (size_t j = i + 1; j < COUNT; j++) assert_string_not_equal(msg, rt_strerror(table[j].code));
  }
}

static void test_zero_and_unknown_codes(void **state) {
  (void)state;
  assert_string_equal(rt_err_name(0), "ok");
  assert_string_equal(rt_strerror(0), "Success");
  static const int unknown[] = {1, -1, 12345, RT__EFIRST, RT__ELAST, INT_MIN, INT_MAX};
  for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
    assert_string_equal(rt_err_name(unknown[i]), "unknown_error");
    assert_string_equal(rt_strerror(unknown[i]), "Unknown error");
  }
}

/* The wire error codes of protocol v1 (docs/protocol.md) are these exact names. */
static void test_wire_codes(void **state) {
  (void)state;
  assert_string_equal(rt_err_name(RT_EJSON), "invalid_json");
  assert_string_equal(rt_err_name(RT_ETYPE), "unknown_type");
  assert_string_equal(rt_err_name(RT_EMISSING), "missing_field");
  assert_string_equal(rt_err_name(RT_EFIELD), "invalid_field");
  assert_string_equal(rt_err_name(RT_ECHANNEL), "invalid_channel");
  assert_string_equal(rt_err_name(RT_ETOOLARGE), "message_too_large");
  assert_string_equal(rt_err_name(RT_EDEPTH), "nesting_too_deep");
  assert_string_equal(rt_err_name(RT_ELIMIT), "too_many_subscriptions");
  assert_string_equal(rt_err_name(RT_ENOMEM), "internal_error");
  assert_string_equal(rt_strerror(RT_ECHANNEL), "Invalid channel name format");
}

static void test_errbuf_set(void **state) {
  (void)state;
  rt_errbuf_t err;
  assert_int_equal(rt_errbuf_set(&err, RT_EJSON, "at byte %zu: %s", (size_t)17, "x"), RT_EJSON);
  assert_string_equal(err.msg, "at byte 17: x");
  assert_int_equal(rt_errbuf_set(NULL, RT_ETYPE, "%s", "ignored"), RT_ETYPE);
  char longer[400];
  memset(longer, 'z', sizeof(longer) - 1);
  longer[sizeof(longer) - 1] = '\0';
  assert_int_equal(rt_errbuf_set(&err, RT_EINVAL, "%s", longer), RT_EINVAL);
  assert_int_equal(strlen(err.msg), sizeof(err.msg) - 1);
  assert_memory_equal(err.msg, longer, sizeof(err.msg) - 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_codes_negative_distinct_contiguous),
      cmocka_unit_test(test_names_and_messages_match_table),
      cmocka_unit_test(test_names_snake_and_distinct),
      cmocka_unit_test(test_messages_distinct),
      cmocka_unit_test(test_zero_and_unknown_codes),
      cmocka_unit_test(test_wire_codes),
      cmocka_unit_test(test_errbuf_set),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
