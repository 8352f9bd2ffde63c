/*
 * Wire protocol v1 (src/core/proto.h): the strict JSON scanner, the command
 * parser with its error codes, messages and echoed ids, the strbuf helpers
 * and the three frame encoders, byte for byte.
 *
 * The parser takes whole messages (the codec reassembles fragments), so
 * instead of chunked feeding every input is copied into a heap buffer of its
 * exact length: any read past the end is an ASan error. Every proper prefix
 * of a command must fail at its own end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "core/alloc.h"
#include "core/proto.h"

#define DEPTH 64
#define MAX_DATA 65536

/* ------------------------------------------------------------------ helpers */

/* An exact-size heap copy: one byte past the end is outside the allocation. */
static char *exact_copy(const char *s, size_t n) {
  char *p = malloc(n ? n : 1);
  assert_non_null(p);
  memcpy(p, s, n);
  return p;
}

static int parse_n(const char *msg, size_t n, uint32_t depth, size_t max_data, rt_cmd_t *cmd,
                   rt_errbuf_t *err, size_t *data_off) {
  char *copy = exact_copy(msg, n);
  err->msg[0] = '\0';
  int rc = rt_proto_parse(copy, n, depth, max_data, cmd, err);
  if (rc == 0 && cmd->data != NULL) {
    assert_true(cmd->data >= copy && cmd->data + cmd->data_len <= copy + n);
    *data_off = (size_t)(cmd->data - copy);
  }
  free(copy);
  return rc;
}

static int parse(const char *msg, rt_cmd_t *cmd, rt_errbuf_t *err, size_t *data_off) {
  return parse_n(msg, strlen(msg), DEPTH, MAX_DATA, cmd, err, data_off);
}

/* Parses and expects one error with its exact message and echoed id (has_id 0 means none). */
static void expect_parse_error_with(const char *msg, uint32_t depth, size_t max_data, int code,
                                    const char *message, int has_id, int64_t id) {
  rt_cmd_t cmd;
  rt_errbuf_t err;
  size_t off = 0;
  int rc = parse_n(msg, strlen(msg), depth, max_data, &cmd, &err, &off);
  if (rc != code) print_error("input: %s\n", msg);
  assert_int_equal(rc, code);
  assert_string_equal(err.msg, message);
  assert_int_equal(cmd.has_id, has_id);
  if (has_id) assert_int_equal(cmd.id, id);
}

static void expect_parse_error(const char *msg, int code, const char *message) {
  expect_parse_error_with(msg, DEPTH, MAX_DATA, code, message, 0, 0);
}

static void expect_parse_error_id(const char *msg, int code, const char *message, int64_t id) {
  expect_parse_error_with(msg, DEPTH, MAX_DATA, code, message, 1, id);
}

/* Parses a valid publish and checks `data` is exactly `data` (a substring of msg). */
static void expect_publish_data(const char *msg, const char *data) {
  rt_cmd_t cmd;
  rt_errbuf_t err;
  size_t off = 0;
  int rc = parse(msg, &cmd, &err, &off);
  if (rc != 0) print_error("input: %s\nerror: %s\n", msg, err.msg);
  assert_int_equal(rc, 0);
  assert_int_equal(cmd.type, RT_CMD_PUBLISH);
  assert_int_equal(cmd.data_len, strlen(data));
  assert_memory_equal(msg + off, data, strlen(data));
}

static int validate_n(const char *text, size_t n, uint32_t depth, size_t *start, size_t *vlen,
                      rt_errbuf_t *err) {
  char *copy = exact_copy(text, n);
  if (err != NULL) err->msg[0] = '\0';
  int rc = rt_json_validate(copy, n, depth, start, vlen, err);
  free(copy);
  return rc;
}

static void expect_valid_n(const char *text, size_t n) {
  rt_errbuf_t err;
  size_t start = 99, vlen = 99;
  int rc = validate_n(text, n, DEPTH, &start, &vlen, &err);
  if (rc != 0) print_error("input: %.*s\nerror: %s\n", (int)n, text, err.msg);
  assert_int_equal(rc, 0);
  assert_int_equal(start, 0);
  assert_int_equal(vlen, n);
}

static void expect_valid(const char *text) { expect_valid_n(text, strlen(text)); }

static void expect_invalid_n(const char *text, size_t n, int code, const char *message) {
  rt_errbuf_t err;
  int rc = validate_n(text, n, DEPTH, NULL, NULL, &err);
  if (rc != code) print_error("input: %.*s\n", (int)n, text);
  assert_int_equal(rc, code);
  assert_string_equal(err.msg, message);
}

static void expect_invalid(const char *text, const char *message) {
  expect_invalid_n(text, strlen(text), RT_EJSON, message);
}

/*
 * Checks a sealed text frame: FIN + opcode 1, unmasked, the shortest length
 * form of RFC 6455 5.2 (7, 16 or 64 bits), then exactly `payload`.
 */
static void assert_text_frame(const rt_frame_t *f, const char *payload, size_t n) {
  const uint8_t *w = rt_frame_wire(f);
  size_t hdr, len;
  assert_int_equal(f->refcnt, 1);
  assert_int_equal(f->len, f->cap);
  assert_int_equal(w[0], 0x81);
  if ((w[1] & 0x7f) < 126) {
    hdr = 2;
    len = w[1];
  } else if (w[1] == 126) {
    hdr = 4;
    len = ((size_t)w[2] << 8) | w[3];
    assert_true(len >= 126);
  } else {
    assert_int_equal(w[1], 127);
    hdr = 10;
    len = 0;
    for (int i = 0; i < 8; i++) len = (len << 8) | w[2 + i];
    assert_true(len > 0xffff);
  }
  assert_int_equal(len, n);
  assert_int_equal(rt_frame_wire_len(f), hdr + n);
  assert_memory_equal(w + hdr, payload, n);
}

static void expect_frame(rt_frame_t *f, const char *payload) {
  assert_non_null(f);
  assert_text_frame(f, payload, strlen(payload));
  rt_frame_unref(f);
}

static char *repeat(char c, size_t n) {
  char *s = malloc(n + 1);
  assert_non_null(s);
  memset(s, c, n);
  s[n] = '\0';
  return s;
}

/* ------------------------------------------------------- JSON grammar */

static void test_json_valid_scalars(void **state) {
  (void)state;
  static const char *const ok[] = {
      "0", "-0", "1", "-1", "10", "123456789", "1.5", "-0.0", "0.1", "1e5", "1E5", "1e+5",
      "1E-5", "0e0", "-0.5e-10", "18446744073709551616", "-18446744073709551617", "1e400",
      "1e-400", "123456789012345678901234567890.123456789e123456789", "true", "false", "null",
      "\"\"", "\"a\"", "\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"", "\"\\u00e9\\u00E9\"",
      "\"\\uD83D\\uDE00\"", "\"\\ud83d\\ude00\"", "\"\\u0000\"", "\"\\uFFFF\"",
      "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", "\"\xf4\x8f\xbf\xbf\"", "\"\x7f\"",
      "\"<script>&amp;'\""};
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) expect_valid(ok[i]);
}

static void test_json_valid_containers(void **state) {
  (void)state;
  static const char *const ok[] = {
      "[]", "{}", "[1]", "[1,2,3]", "{\"a\":1}", "{\"a\":1,\"b\":[true,false,null]}",
      "[[],[[]],{}]", "{\"a\":{\"b\":{\"c\":[]}}}", "[ 1 , 2 ]", "{ \"a\" : 1 , \"b\" : 2 }",
      "[\t\r\n1\t\r\n]", "{\"\":0}", "{\"a\":1,\"a\":2}", "[\"]\",\"}\",\"[\",\"{\"]",
      "{\"a\\u0000b\":\"\\u0000\"}"};
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) expect_valid(ok[i]);
}

static void test_json_whitespace_trimmed(void **state) {
  (void)state;
  rt_errbuf_t err;
  size_t start = 0, vlen = 0;
  const char *t = " \t\r\n {\"a\": [1, 2]} \n\t\r ";
  assert_int_equal(validate_n(t, strlen(t), DEPTH, &start, &vlen, &err), 0);
  assert_int_equal(start, 5);
  assert_int_equal(vlen, 13);
  assert_int_equal(validate_n("  7", 3, DEPTH, &start, &vlen, &err), 0);
  assert_int_equal(start, 2);
  assert_int_equal(vlen, 1);
  assert_int_equal(validate_n("7", 1, DEPTH, NULL, NULL, NULL), 0);
}

static void test_json_invalid_numbers(void **state) {
  (void)state;
  expect_invalid("01", "Invalid JSON at byte 1: leading zero in number");
  expect_invalid("-01", "Invalid JSON at byte 2: leading zero in number");
  expect_invalid("00", "Invalid JSON at byte 1: leading zero in number");
  expect_invalid("+1", "Invalid JSON at byte 0: expected a value");
  expect_invalid(".5", "Invalid JSON at byte 0: expected a value");
  expect_invalid("1.", "Invalid JSON at byte 2: unexpected end of input");
  expect_invalid("1.e5", "Invalid JSON at byte 2: expected a digit after '.'");
  expect_invalid("1e", "Invalid JSON at byte 2: unexpected end of input");
  expect_invalid("1e+", "Invalid JSON at byte 3: unexpected end of input");
  expect_invalid("1ex", "Invalid JSON at byte 2: expected a digit in the exponent");
  expect_invalid("1e+-1", "Invalid JSON at byte 3: expected a digit in the exponent");
  expect_invalid("-", "Invalid JSON at byte 1: unexpected end of input");
  expect_invalid("-a", "Invalid JSON at byte 1: expected a digit");
  expect_invalid("--1", "Invalid JSON at byte 1: expected a digit");
  expect_invalid("NaN", "Invalid JSON at byte 0: expected a value");
  expect_invalid("Infinity", "Invalid JSON at byte 0: expected a value");
  expect_invalid("-Infinity", "Invalid JSON at byte 1: expected a digit");
  expect_invalid("0x10", "Invalid JSON at byte 1: unexpected data after the value");
  expect_invalid("1.5.2", "Invalid JSON at byte 3: unexpected data after the value");
  expect_invalid("[1.]", "Invalid JSON at byte 3: expected a digit after '.'");
}

static void test_json_invalid_literals(void **state) {
  (void)state;
  expect_invalid("tru", "Invalid JSON at byte 3: unexpected end of input");
  expect_invalid("trux", "Invalid JSON at byte 3: invalid literal");
  expect_invalid("True", "Invalid JSON at byte 0: expected a value");
  expect_invalid("nul", "Invalid JSON at byte 3: unexpected end of input");
  expect_invalid("nulL", "Invalid JSON at byte 3: invalid literal");
  expect_invalid("falsy", "Invalid JSON at byte 4: invalid literal");
  expect_invalid("truefalse", "Invalid JSON at byte 4: unexpected data after the value");
  expect_invalid("undefined", "Invalid JSON at byte 0: expected a value");
}

static void test_json_invalid_structure(void **state) {
  (void)state;
  expect_invalid("", "Invalid JSON at byte 0: unexpected end of input");
  expect_invalid("   ", "Invalid JSON at byte 3: unexpected end of input");
  expect_invalid("[", "Invalid JSON at byte 1: unexpected end of input");
  expect_invalid("[1,]", "Invalid JSON at byte 3: expected a value");
  expect_invalid("[,1]", "Invalid JSON at byte 1: expected a value");
  expect_invalid("[1 2]", "Invalid JSON at byte 3: expected ',' or ']'");
  expect_invalid("[1}", "Invalid JSON at byte 2: expected ',' or ']'");
  expect_invalid("{\"a\":1]", "Invalid JSON at byte 6: expected ',' or '}'");
  expect_invalid("{\"a\":1,}", "Invalid JSON at byte 7: expected a string key");
  expect_invalid("{\"a\" 1}", "Invalid JSON at byte 5: expected ':'");
  expect_invalid("{\"a\"}", "Invalid JSON at byte 4: expected ':'");
  expect_invalid("{a:1}", "Invalid JSON at byte 1: expected a string key");
  expect_invalid("{'a':1}", "Invalid JSON at byte 1: expected a string key");
  expect_invalid("{1:1}", "Invalid JSON at byte 1: expected a string key");
  expect_invalid("{\"a\":1 \"b\":2}", "Invalid JSON at byte 7: expected ',' or '}'");
  expect_invalid("{\"a\":}", "Invalid JSON at byte 5: expected a value");
  expect_invalid("]", "Invalid JSON at byte 0: expected a value");
  expect_invalid("1 2", "Invalid JSON at byte 2: unexpected data after the value");
  expect_invalid("{}{}", "Invalid JSON at byte 2: unexpected data after the value");
  expect_invalid("[]]", "Invalid JSON at byte 2: unexpected data after the value");
  expect_invalid("/*c*/1", "Invalid JSON at byte 0: expected a value");
}

static void test_json_whitespace_only_four(void **state) {
  (void)state;
  expect_invalid("\f1", "Invalid JSON at byte 0: expected a value");
  expect_invalid("\v1", "Invalid JSON at byte 0: expected a value");
  expect_invalid("1\f", "Invalid JSON at byte 1: unexpected data after the value");
  expect_invalid("\xc2\xa0" "1", "Invalid JSON at byte 0: expected a value");
  expect_invalid("[1,\xe2\x80\x83 2]", "Invalid JSON at byte 3: expected a value");
  expect_invalid_n("1\0", 2, RT_EJSON, "Invalid JSON at byte 1: unexpected data after the value");
  expect_invalid_n("\0", 1, RT_EJSON, "Invalid JSON at byte 0: expected a value");
  expect_invalid_n("false\0", 6, RT_EJSON,
                   "Invalid JSON at byte 5: unexpected data after the value");
}

static void test_json_invalid_strings(void **state) {
  (void)state;
  expect_invalid("\"abc", "Invalid JSON at byte 4: unexpected end of input");
  expect_invalid("\"a\x01\"", "Invalid JSON at byte 2: control character in string");
  expect_invalid("\"a\tb\"", "Invalid JSON at byte 2: control character in string");
  expect_invalid("\"a\nb\"", "Invalid JSON at byte 2: control character in string");
  expect_invalid("\"\x1f\"", "Invalid JSON at byte 1: control character in string");
  expect_invalid_n("\"\0\"", 3, RT_EJSON, "Invalid JSON at byte 1: control character in string");
  expect_invalid("\"\\x\"", "Invalid JSON at byte 2: invalid escape in string");
  expect_invalid("\"\\'\"", "Invalid JSON at byte 2: invalid escape in string");
  expect_invalid("\"\\U0041\"", "Invalid JSON at byte 2: invalid escape in string");
  expect_invalid("\"\\", "Invalid JSON at byte 2: unexpected end of input");
  expect_invalid("\"\\u12G4\"", "Invalid JSON at byte 5: invalid \\u escape");
  expect_invalid("\"\\u123\"", "Invalid JSON at byte 6: invalid \\u escape");
  expect_invalid("\"\\u12", "Invalid JSON at byte 5: unexpected end of input");
  expect_invalid("'a'", "Invalid JSON at byte 0: expected a value");
}

static void test_json_surrogates_must_pair(void **state) {
  (void)state;
  expect_invalid("\"\\uD800\"", "Invalid JSON at byte 1: unpaired surrogate in \\u escape");
  expect_invalid("\"\\uDBFF\"", "Invalid JSON at byte 1: unpaired surrogate in \\u escape");
  expect_invalid("\"\\uDC00\"", "Invalid JSON at byte 1: unpaired surrogate in \\u escape");
  expect_invalid("\"\\uDFFF\\uD800\"", "Invalid JSON at byte 1: unpaired surrogate in \\u escape");
  expect_invalid("\"\\uD800x\"", "Invalid JSON at byte 1: unpaired surrogate in \\u escape");
  expect_invalid("\"\\uD800\\n\"", "Invalid JSON at byte 1: unpaired surrogate in \\u escape");
  expect_invalid("\"\\uD800\\u0041\"", "Invalid JSON at byte 7: unpaired surrogate in \\u escape");
  expect_invalid("\"\\uD800\\uD800\"", "Invalid JSON at byte 7: unpaired surrogate in \\u escape");
  expect_invalid("\"\\uD800\\uE000\"", "Invalid JSON at byte 7: unpaired surrogate in \\u escape");
  expect_invalid("\"\\uD800\\uDC0", "Invalid JSON at byte 12: unexpected end of input");
  expect_invalid("\"\\uD800\\", "Invalid JSON at byte 8: unexpected end of input");
  expect_invalid("\"\\uD800", "Invalid JSON at byte 7: unexpected end of input");
  expect_valid("\"\\uD800\\uDC00\"");
  expect_valid("\"\\uDBFF\\uDFFF\"");
  expect_valid("\"\\uD7FF\\uE000\"");
}

static void test_json_invalid_utf8(void **state) {
  (void)state;
  expect_invalid("\"\xc3\"", "Invalid JSON at byte 1: invalid UTF-8 in string");
  expect_invalid("\"\xc3", "Invalid JSON at byte 2: unexpected end of input");
  expect_invalid("\"\xf0\x9f\x98", "Invalid JSON at byte 4: unexpected end of input");
  expect_invalid("\"\xf0\x8f\x98", "Invalid JSON at byte 1: invalid UTF-8 in string");
  expect_invalid("\"\xc0\x80\"", "Invalid JSON at byte 1: invalid UTF-8 in string");
  expect_invalid("\"\xc1\xbf\"", "Invalid JSON at byte 1: invalid UTF-8 in string");
  expect_invalid("\"\xe0\x80\x80\"", "Invalid JSON at byte 1: invalid UTF-8 in string");
  expect_invalid("\"\xed\xa0\x80\"", "Invalid JSON at byte 1: invalid UTF-8 in string");
  expect_invalid("\"\xf0\x80\x80\x80\"", "Invalid JSON at byte 1: invalid UTF-8 in string");
  expect_invalid("\"\xf4\x90\x80\x80\"", "Invalid JSON at byte 1: invalid UTF-8 in string");
  expect_invalid("\"\xf5\x80\x80\x80\"", "Invalid JSON at byte 1: invalid UTF-8 in string");
  expect_invalid("\"\xff\"", "Invalid JSON at byte 1: invalid UTF-8 in string");
  expect_invalid("\"a\x80\"", "Invalid JSON at byte 2: invalid UTF-8 in string");
  expect_invalid("\"\xe2\x82x\"", "Invalid JSON at byte 1: invalid UTF-8 in string");
  expect_invalid("\xc3\xa9", "Invalid JSON at byte 0: expected a value");
}

/* `levels` nested arrays around a 1, as a malloc'd string. */
static char *nested_arrays(size_t levels) {
  char *s = malloc(2 * levels + 2);
  assert_non_null(s);
  memset(s, '[', levels);
  s[levels] = '1';
  memset(s + levels + 1, ']', levels);
  s[2 * levels + 1] = '\0';
  return s;
}

static void expect_depth(const char *text, uint32_t depth, int code) {
  rt_errbuf_t err;
  assert_int_equal(validate_n(text, strlen(text), depth, NULL, NULL, &err), code);
}

static void test_json_depth_limit(void **state) {
  (void)state;
  char *at = nested_arrays(64), *over = nested_arrays(65);
  expect_depth(at, 64, 0);
  expect_depth(over, 64, RT_EDEPTH);
  rt_errbuf_t err;
  assert_int_equal(validate_n(over, strlen(over), 64, NULL, NULL, &err), RT_EDEPTH);
  assert_string_equal(err.msg, "JSON nesting too deep at byte 64 (limit 64)");
  free(at);
  free(over);
  expect_depth("{\"a\":[{\"b\":[1]}]}", 4, 0);
  expect_depth("{\"a\":[{\"b\":[1]}]}", 3, RT_EDEPTH);
  expect_depth("[[],[[]],[]]", 3, 0);
  expect_depth("[[],[[]],[]]", 2, RT_EDEPTH);
  expect_depth("7", 0, 0);
  expect_depth("\"[[[[\"", 0, 0);
  expect_depth("[]", 0, RT_EDEPTH);
  expect_depth("{}", 0, RT_EDEPTH);
  expect_depth("[]", 1, 0);
}

static void test_json_depth_hard_cap(void **state) {
  (void)state;
  char *cap = nested_arrays(1024), *over = nested_arrays(1025);
  rt_errbuf_t err;
  assert_int_equal(validate_n(cap, strlen(cap), UINT32_MAX, NULL, NULL, &err), 0);
  assert_int_equal(validate_n(over, strlen(over), UINT32_MAX, NULL, NULL, &err), RT_EDEPTH);
  assert_string_equal(err.msg, "JSON nesting too deep at byte 1024 (limit 1024)");
  free(cap);
  free(over);
}

/*
 * 300 levels of objects and arrays in a seeded pattern cross several words
 * of the bit stack: valid closers pass, and swapping any one closer for the
 * other kind fails right there.
 */
static void test_json_deep_mixed_nesting(void **state) {
  (void)state;
  enum { LEVELS = 300 };
  static char text[LEVELS * 6 + 2];
  char kinds[LEVELS];
  size_t n = 0;
  uint32_t seed = 12345;
  for (int i = 0; i < LEVELS; i++) {
    seed = seed * 1103515245u + 12345u;
    kinds[i] = (seed >> 16) & 1 ? '{' : '[';
    if (kinds[i] == '{') {
      memcpy(text + n, "{\"k\":", 5);
      n += 5;
    } else {
      text[n++] = '[';
    }
  }
  text[n++] = '0';
  size_t closers = n;
  for (int i = LEVELS - 1; i >= 0; i--) text[n++] = kinds[i] == '{' ? '}' : ']';
  rt_errbuf_t err;
  assert_int_equal(validate_n(text, n, LEVELS, NULL, NULL, &err), 0);
  for (size_t i = closers; i < n; i++) {
    char saved = text[i];
    text[i] = saved == '}' ? ']' : '}';
    assert_int_equal(validate_n(text, n, 1024, NULL, NULL, &err), RT_EJSON);
    char expected[96];
    snprintf(expected, sizeof(expected), "Invalid JSON at byte %zu: expected ',' or '%c'", i,
             saved);
    assert_string_equal(err.msg, expected);
    text[i] = saved;
  }
}

/* ------------------------------------------------------- commands */

static void test_parse_subscribe(void **state) {
  (void)state;
  rt_cmd_t cmd;
  rt_errbuf_t err;
  size_t off;
  assert_int_equal(parse("{\"type\":\"subscribe\",\"channel\":\"chat\",\"id\":1}", &cmd, &err, &off),
                   0);
  assert_int_equal(cmd.type, RT_CMD_SUBSCRIBE);
  assert_string_equal(cmd.channel, "chat");
  assert_int_equal(cmd.channel_len, 4);
  assert_int_equal(cmd.has_id, 1);
  assert_int_equal(cmd.id, 1);
  assert_null(cmd.data);
  assert_int_equal(cmd.data_len, 0);
}

static void test_parse_unsubscribe_without_id(void **state) {
  (void)state;
  rt_cmd_t cmd;
  rt_errbuf_t err;
  size_t off;
  assert_int_equal(
      parse(" \n{ \"channel\" : \"user:alice:notifications\" , \"type\" : \"unsubscribe\" }\r\n",
            &cmd, &err, &off),
      0);
  assert_int_equal(cmd.type, RT_CMD_UNSUBSCRIBE);
  assert_string_equal(cmd.channel, "user:alice:notifications");
  assert_int_equal(cmd.has_id, 0);
}

static void test_parse_publish_exact_data(void **state) {
  (void)state;
  rt_cmd_t cmd;
  rt_errbuf_t err;
  size_t off;
  const char *msg = "{\"type\":\"publish\",\"channel\":\"chat\",\"data\": {\"x\": [1, 2]} ,\"id\":3}";
  assert_int_equal(parse(msg, &cmd, &err, &off), 0);
  assert_int_equal(cmd.type, RT_CMD_PUBLISH);
  assert_int_equal(cmd.id, 3);
  assert_int_equal(off, 43);
  assert_int_equal(cmd.data_len, 13);
  assert_memory_equal(msg + off, "{\"x\": [1, 2]}", 13);
}

/* "Unchanged" in the protocol means these bytes, which a jansson round trip would alter. */
static void test_parse_publish_data_passthrough(void **state) {
  (void)state;
  static const char *const values[] = {
      "18446744073709551616", "-18446744073709551617", "0.1", "1e400", "1E-400", "-0",
      "0.10000000000000000001", "1.0", "\"caf\\u00e9 \\ud83d\\ude00\"", "\"\\u0000\"",
      "\"\xc3\xa9\"", "null", "false", "true", "[]", "{}", "{\"b\":2,\"a\":1,\"a\":3}",
      "[1,  2,\n3]", "{\"data\":{\"type\":\"x\"}}"};
  for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
    char msg[256];
    snprintf(msg, sizeof(msg), "{\"type\":\"publish\",\"channel\":\"c\",\"data\":%s}", values[i]);
    expect_publish_data(msg, values[i]);
    snprintf(msg, sizeof(msg), "{\"data\":\t%s\n,\"channel\":\"c\",\"type\":\"publish\"}",
             values[i]);
    expect_publish_data(msg, values[i]);
  }
}

static void test_parse_member_order_and_unknown_keys(void **state) {
  (void)state;
  rt_cmd_t cmd;
  rt_errbuf_t err;
  size_t off;
  const char *msg =
      "{\"x\":{\"type\":\"nope\",\"id\":\"bad\"},\"data\":[1],\"typ\":1,\"channelx\":{},"
      "\"ids\":\"q\",\"id\":-5,\"meta\":[null,{\"a\":[]}],\"channel\":\"a.b\",\"type\":\"publish\"}";
  assert_int_equal(parse(msg, &cmd, &err, &off), 0);
  assert_int_equal(cmd.type, RT_CMD_PUBLISH);
  assert_int_equal(cmd.id, -5);
  assert_string_equal(cmd.channel, "a.b");
  assert_int_equal(cmd.data_len, 3);
  assert_memory_equal(msg + off, "[1]", 3);
  expect_parse_error("{\"type\":\"subscribe\",\"channel\":\"c\",\"extra\":[1,}",
                     RT_EJSON, "Invalid JSON at byte 45: expected a value");
}

static void test_parse_escaped_names(void **state) {
  (void)state;
  rt_cmd_t cmd;
  rt_errbuf_t err;
  size_t off;
  assert_int_equal(parse("{\"typ\\u0065\":\"sub\\u0073cribe\",\"ch\\u0061nnel\":\"ch\\u0061t\","
                         "\"\\u0069d\":4}",
                         &cmd, &err, &off),
                   0);
  assert_int_equal(cmd.type, RT_CMD_SUBSCRIBE);
  assert_string_equal(cmd.channel, "chat");
  assert_int_equal(cmd.channel_len, 4);
  assert_int_equal(cmd.id, 4);
  assert_int_equal(parse("{\"type\":\"subscribe\",\"channel\":\"a\\/b\"}", &cmd, &err, &off), 0);
  assert_string_equal(cmd.channel, "a/b");
}

static void test_parse_duplicate_keys(void **state) {
  (void)state;
  expect_parse_error("{\"type\":\"subscribe\",\"type\":\"publish\",\"channel\":\"c\"}", RT_EJSON,
                     "Invalid JSON at byte 20: duplicate key \"type\"");
  expect_parse_error("{\"type\":\"subscribe\",\"channel\":\"c\",\"ch\\u0061nnel\":\"d\"}", RT_EJSON,
                     "Invalid JSON at byte 34: duplicate key \"channel\"");
  expect_parse_error(
      "{\"type\":\"publish\",\"channel\":\"c\",\"data\":1,\"data\":2}", RT_EJSON,
      "Invalid JSON at byte 41: duplicate key \"data\"");
  expect_parse_error_id("{\"id\":1,\"type\":\"subscribe\",\"id\":2,\"channel\":\"c\"}", RT_EJSON,
                        "Invalid JSON at byte 27: duplicate key \"id\"", 1);
}

static void test_parse_top_level_must_be_object(void **state) {
  (void)state;
  expect_parse_error("[]", RT_EJSON, "Invalid JSON at byte 0: expected an object");
  expect_parse_error("\"subscribe\"", RT_EJSON, "Invalid JSON at byte 0: expected an object");
  expect_parse_error("1", RT_EJSON, "Invalid JSON at byte 0: expected an object");
  expect_parse_error("null", RT_EJSON, "Invalid JSON at byte 0: expected an object");
  expect_parse_error("  \t[{}]", RT_EJSON, "Invalid JSON at byte 3: expected an object");
  expect_parse_error("", RT_EJSON, "Invalid JSON at byte 0: unexpected end of input");
  expect_parse_error("  ", RT_EJSON, "Invalid JSON at byte 2: unexpected end of input");
  expect_parse_error("{\"type\":\"subscribe\",\"channel\":\"a\"} x", RT_EJSON,
                     "Invalid JSON at byte 35: unexpected data after the object");
  expect_parse_error("{\"type\":\"subscribe\",\"channel\":\"a\"}{}", RT_EJSON,
                     "Invalid JSON at byte 34: unexpected data after the object");
  expect_parse_error("{\"type\" \"subscribe\"}", RT_EJSON,
                     "Invalid JSON at byte 8: expected ':'");
  expect_parse_error("{\"type\":\"subscribe\" \"channel\":\"a\"}", RT_EJSON,
                     "Invalid JSON at byte 20: expected ',' or '}'");
  expect_parse_error("{,}", RT_EJSON, "Invalid JSON at byte 1: expected a string key");
  expect_parse_error("{\"type\":\"subscribe\",}", RT_EJSON,
                     "Invalid JSON at byte 20: expected a string key");
}

/* Every proper prefix of a command is cut off, and says so at its own end. */
static void test_parse_every_prefix_fails_at_its_end(void **state) {
  (void)state;
  const char *msg = "{\"type\":\"publish\",\"channel\":\"ch\\u0061t\",\"id\":-12,"
                    "\"data\":{\"s\":\"\\ud83d\\ude00\\n\xc3\xa9\xf0\x9f\x98\x80\",\"n\":[0,-1.5e+3,true,false,null]}}";
  size_t n = strlen(msg);
  for (size_t k = 0; k < n; k++) {
    rt_cmd_t cmd;
    rt_errbuf_t err;
    size_t off;
    char expected[96];
    snprintf(expected, sizeof(expected), "Invalid JSON at byte %zu: unexpected end of input", k);
    assert_int_equal(parse_n(msg, k, DEPTH, MAX_DATA, &cmd, &err, &off), RT_EJSON);
    assert_string_equal(err.msg, expected);
  }
  rt_cmd_t cmd;
  rt_errbuf_t err;
  size_t off;
  assert_int_equal(parse_n(msg, n, DEPTH, MAX_DATA, &cmd, &err, &off), 0);
}

static void test_parse_type_errors(void **state) {
  (void)state;
  expect_parse_error("{\"channel\":\"c\"}", RT_EMISSING, "Missing field \"type\"");
  expect_parse_error("{}", RT_EMISSING, "Missing field \"type\"");
  expect_parse_error("{\"type\":1,\"channel\":\"c\"}", RT_EFIELD, "Field \"type\" must be a string");
  expect_parse_error("{\"type\":null}", RT_EFIELD, "Field \"type\" must be a string");
  expect_parse_error("{\"type\":[\"publish\"]}", RT_EFIELD, "Field \"type\" must be a string");
  expect_parse_error("{\"type\":\"hello\",\"channel\":\"c\"}", RT_ETYPE,
                     "Unknown message type \"hello\"");
  expect_parse_error("{\"type\":\"Subscribe\"}", RT_ETYPE, "Unknown message type \"Subscribe\"");
  expect_parse_error("{\"type\":\"publish \"}", RT_ETYPE, "Unknown message type \"publish \"");
  expect_parse_error("{\"type\":\"publish\\u0000\"}", RT_ETYPE,
                     "Unknown message type \"publish\\u0000\"");
  expect_parse_error("{\"type\":\"\"}", RT_ETYPE, "Unknown message type \"\"");
  expect_parse_error("{\"type\":\"a\\\"b\\nc\\\\\"}", RT_ETYPE,
                     "Unknown message type \"a\\\"b\\nc\\\\\"");
}

/* Long names are cut to 32 decoded bytes, never inside a UTF-8 sequence. */
static void test_parse_type_name_truncated(void **state) {
  (void)state;
  char msg[512];
  char *a100 = repeat('a', 100), *a31 = repeat('a', 31), *a32 = repeat('a', 32);
  snprintf(msg, sizeof(msg), "{\"type\":\"%s\"}", a100);
  char expected[256];
  snprintf(expected, sizeof(expected), "Unknown message type \"%s...\"", a32);
  expect_parse_error(msg, RT_ETYPE, expected);
  snprintf(msg, sizeof(msg), "{\"type\":\"%s\"}", a32);
  snprintf(expected, sizeof(expected), "Unknown message type \"%s\"", a32);
  expect_parse_error(msg, RT_ETYPE, expected);
  snprintf(msg, sizeof(msg), "{\"type\":\"%s\xc3\xa9xyz\"}", a31);
  snprintf(expected, sizeof(expected), "Unknown message type \"%s...\"", a31);
  expect_parse_error(msg, RT_ETYPE, expected);
  snprintf(msg, sizeof(msg), "{\"type\":\"%s\\u00e9\"}", a31);
  expect_parse_error(msg, RT_ETYPE, expected);
  char *ctl = malloc(40 * 6 + 32);
  assert_non_null(ctl);
  strcpy(ctl, "{\"type\":\"");
  for (int i = 0; i < 40; i++) strcat(ctl, "\\u0001");
  strcat(ctl, "\"}");
  char shown[256] = "Unknown message type \"";
  for (int i = 0; i < 32; i++) strcat(shown, "\\u0001");
  strcat(shown, "...\"");
  expect_parse_error(ctl, RT_ETYPE, shown);
  free(ctl);
  free(a100);
  free(a31);
  free(a32);
}

static void test_parse_id_rules(void **state) {
  (void)state;
  static const struct { const char *text; int64_t id; } ok[] = {
      {"0", 0}, {"-0", 0}, {"42", 42}, {"-7", -7}, {"9223372036854775807", INT64_MAX},
      {"-9223372036854775808", INT64_MIN}};
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    char msg[128];
    rt_cmd_t cmd;
    rt_errbuf_t err;
    size_t off;
    snprintf(msg, sizeof(msg), "{\"type\":\"subscribe\",\"channel\":\"c\",\"id\":%s}", ok[i].text);
    assert_int_equal(parse(msg, &cmd, &err, &off), 0);
    assert_int_equal(cmd.has_id, 1);
    assert_int_equal(cmd.id, ok[i].id);
  }
  static const char *const bad[] = {"1.0", "1e2", "1E0", "-1.5", "\"1\"", "true", "null", "[1]",
                                    "{}", "9223372036854775808", "-9223372036854775809",
                                    "18446744073709551616", "99999999999999999999999"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char msg[128];
    snprintf(msg, sizeof(msg), "{\"type\":\"subscribe\",\"channel\":\"c\",\"id\":%s}", bad[i]);
    expect_parse_error(msg, RT_EFIELD, "Field \"id\" must be an integer");
  }
}

static void test_parse_channel_errors(void **state) {
  (void)state;
  static const char *const types[] = {"subscribe", "unsubscribe", "publish"};
  for (size_t i = 0; i < 3; i++) {
    char msg[128];
    snprintf(msg, sizeof(msg), "{\"type\":\"%s\",\"data\":1}", types[i]);
    expect_parse_error(msg, RT_EMISSING, "Missing field \"channel\"");
    snprintf(msg, sizeof(msg), "{\"type\":\"%s\",\"channel\":5,\"data\":1}", types[i]);
    expect_parse_error(msg, RT_EFIELD, "Field \"channel\" must be a string");
    snprintf(msg, sizeof(msg), "{\"type\":\"%s\",\"channel\":\"../admin/secrets\",\"data\":1}",
             types[i]);
    expect_parse_error(msg, RT_ECHANNEL, "Invalid channel name format");
  }
  static const char *const bad[] = {"\"\"", "\"a b\"", "\"/a\"", "\"a/../b\"", "\"..\"",
                                    "\"caf\\u00e9\"", "\"caf\xc3\xa9\"", "\"a\\u0000b\"",
                                    "\"a\\nb\"", "\"a\\\\b\"", "\"a:..:b\"", "null", "[\"c\"]"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char msg[128];
    rt_cmd_t cmd;
    rt_errbuf_t err;
    size_t off;
    snprintf(msg, sizeof(msg), "{\"type\":\"subscribe\",\"channel\":%s}", bad[i]);
    int rc = parse(msg, &cmd, &err, &off);
    assert_true(rc == RT_ECHANNEL || rc == RT_EFIELD);
    assert_string_equal(err.msg, rc == RT_ECHANNEL ? "Invalid channel name format"
                                                   : "Field \"channel\" must be a string");
    assert_int_equal(rc, bad[i][0] == '"' ? RT_ECHANNEL : RT_EFIELD);
  }
}

/* The 255-byte limit applies to the decoded name, however it was written. */
static void test_parse_channel_length_after_decoding(void **state) {
  (void)state;
  char msg[2048];
  rt_cmd_t cmd;
  rt_errbuf_t err;
  size_t off;
  char *a255 = repeat('a', 255), *a256 = repeat('a', 256), *a250 = repeat('a', 250);
  snprintf(msg, sizeof(msg), "{\"type\":\"subscribe\",\"channel\":\"%s\"}", a255);
  assert_int_equal(parse(msg, &cmd, &err, &off), 0);
  assert_int_equal(cmd.channel_len, 255);
  assert_memory_equal(cmd.channel, a255, 256);
  snprintf(msg, sizeof(msg), "{\"type\":\"subscribe\",\"channel\":\"%s\"}", a256);
  expect_parse_error(msg, RT_ECHANNEL, "Invalid channel name format");
  snprintf(msg, sizeof(msg), "{\"type\":\"subscribe\",\"channel\":\"%s\\u0062\\u0062\\u0062\\u0062"
                             "\\u0062\"}", a250);
  assert_int_equal(parse(msg, &cmd, &err, &off), 0);
  assert_int_equal(cmd.channel_len, 255);
  assert_memory_equal(cmd.channel + 250, "bbbbb", 6);
  snprintf(msg, sizeof(msg), "{\"type\":\"subscribe\",\"channel\":\"%s\\u0061\"}", a255);
  expect_parse_error(msg, RT_ECHANNEL, "Invalid channel name format");
  snprintf(msg, sizeof(msg), "{\"type\":\"subscribe\",\"channel\":\"%s\\u00e9\"}", a255);
  expect_parse_error(msg, RT_ECHANNEL, "Invalid channel name format");
  free(a255);
  free(a256);
  free(a250);
}

static void test_parse_data_rules(void **state) {
  (void)state;
  expect_parse_error("{\"type\":\"publish\",\"channel\":\"c\"}", RT_EMISSING,
                     "Missing field \"data\"");
  rt_cmd_t cmd;
  rt_errbuf_t err;
  size_t off;
  assert_int_equal(parse("{\"type\":\"subscribe\",\"channel\":\"c\",\"data\":[1]}", &cmd, &err, &off),
                   0);
  assert_null(cmd.data);
  char *big = malloc(70000 + 64);
  assert_non_null(big);
  int n = sprintf(big, "{\"type\":\"publish\",\"channel\":\"c\",\"id\":9,\"data\":\"");
  memset(big + n, 'x', 70000 - 2);
  strcpy(big + n + 70000 - 2, "\"}");
  expect_parse_error_id(big, RT_ETOOLARGE, "Message too large: 70000 bytes (limit 65536)", 9);
  expect_parse_error_with(big, DEPTH, 69999, RT_ETOOLARGE,
                          "Message too large: 70000 bytes (limit 69999)", 1, 9);
  assert_int_equal(parse_n(big, strlen(big), DEPTH, 70000, &cmd, &err, &off), 0);
  assert_int_equal(cmd.data_len, 70000);
  free(big);
  expect_parse_error_with("{\"type\":\"publish\",\"channel\":\"c\",\"data\":1}", DEPTH, 0,
                          RT_ETOOLARGE, "Message too large: 1 bytes (limit 0)", 0, 0);
}

/* When several things are wrong: syntax, then type, then id, then channel, then data. */
static void test_parse_error_order(void **state) {
  (void)state;
  expect_parse_error("{\"type\":\"nope\",\"id\":\"x\",\"channel\":\"../a\",}", RT_EJSON,
                     "Invalid JSON at byte 41: expected a string key");
  expect_parse_error("{\"channel\":\"../a\",\"id\":\"x\",\"type\":\"nope\"}", RT_ETYPE,
                     "Unknown message type \"nope\"");
  expect_parse_error("{\"channel\":\"../a\",\"id\":\"x\"}", RT_EMISSING, "Missing field \"type\"");
  expect_parse_error("{\"channel\":\"../a\",\"id\":1.5,\"type\":\"publish\"}", RT_EFIELD,
                     "Field \"id\" must be an integer");
  expect_parse_error_id("{\"id\":2,\"type\":\"publish\",\"channel\":\"../a\"}", RT_ECHANNEL,
                        "Invalid channel name format", 2);
  expect_parse_error_id("{\"id\":2,\"type\":\"publish\"}", RT_EMISSING,
                        "Missing field \"channel\"", 2);
  expect_parse_error_with("{\"data\":[[[1]]],\"type\":\"nope\"}", 2, MAX_DATA, RT_EDEPTH,
                          "JSON nesting too deep at byte 9 (limit 2)", 0, 0);
}

/* The id is read wherever it sits, so every error reply can echo it. */
static void test_parse_id_echoed_on_errors(void **state) {
  (void)state;
  expect_parse_error_id("{\"type\":\"nope\",\"id\":9}", RT_ETYPE, "Unknown message type \"nope\"",
                        9);
  expect_parse_error_id("{\"id\":7,\"channel\":\"c\"}", RT_EMISSING, "Missing field \"type\"", 7);
  expect_parse_error_id("{\"type\":5,\"id\":7}", RT_EFIELD, "Field \"type\" must be a string", 7);
  expect_parse_error_id("{\"type\":\"publish\",\"channel\":\"a b\",\"data\":1,\"id\":-3}",
                        RT_ECHANNEL, "Invalid channel name format", -3);
  expect_parse_error_id("{\"type\":\"publish\",\"channel\":\"c\",\"id\":11}", RT_EMISSING,
                        "Missing field \"data\"", 11);
  expect_parse_error_id("{\"id\":7,\"type\":\"subscribe\",", RT_EJSON,
                        "Invalid JSON at byte 27: unexpected end of input", 7);
  expect_parse_error_with("{\"id\":7.5,\"type\":\"subscribe\",", DEPTH, MAX_DATA, RT_EJSON,
                          "Invalid JSON at byte 29: unexpected end of input", 0, 0);
  expect_parse_error("{\"type\":\"subscribe\",x,\"id\":7}", RT_EJSON,
                     "Invalid JSON at byte 20: expected a string key");
  expect_parse_error_with("{\"id\":8,\"data\":[[[1]]]}", 3, MAX_DATA, RT_EDEPTH,
                          "JSON nesting too deep at byte 17 (limit 3)", 1, 8);
  /* An id after too-deep data is still read (the scan goes on up to DEPTH_CAP). */
  expect_parse_error_with("{\"data\":[[[1]]],\"id\":8}", 3, MAX_DATA, RT_EDEPTH,
                          "JSON nesting too deep at byte 10 (limit 3)", 1, 8);
}

static void test_parse_depth(void **state) {
  (void)state;
  rt_cmd_t cmd;
  rt_errbuf_t err;
  size_t off;
  const char *d3 = "{\"type\":\"publish\",\"channel\":\"c\",\"data\":[[1]]}";
  assert_int_equal(parse_n(d3, strlen(d3), 3, MAX_DATA, &cmd, &err, &off), 0);
  assert_int_equal(parse_n(d3, strlen(d3), 2, MAX_DATA, &cmd, &err, &off), RT_EDEPTH);
  assert_string_equal(err.msg, "JSON nesting too deep at byte 40 (limit 2)");
  const char *u3 = "{\"type\":\"subscribe\",\"channel\":\"c\",\"x\":{\"y\":{}}}";
  assert_int_equal(parse_n(u3, strlen(u3), 3, MAX_DATA, &cmd, &err, &off), 0);
  assert_int_equal(parse_n(u3, strlen(u3), 2, MAX_DATA, &cmd, &err, &off), RT_EDEPTH);
  const char *d1 = "{\"type\":\"publish\",\"channel\":\"c\",\"data\":1}";
  assert_int_equal(parse_n(d1, strlen(d1), 1, MAX_DATA, &cmd, &err, &off), 0);
  assert_int_equal(parse_n(d1, strlen(d1), 0, MAX_DATA, &cmd, &err, &off), RT_EDEPTH);
  assert_string_equal(err.msg, "JSON nesting too deep at byte 0 (limit 0)");
  /* Syntax errors win over depth, also at limit 0 (a fuzz_proto finding). */
  const char *cut = "{\"type\":\"subscribe\",x";
  assert_int_equal(parse_n(cut, strlen(cut), 0, MAX_DATA, &cmd, &err, &off), RT_EJSON);
  char *deep = nested_arrays(200), msg[512];
  snprintf(msg, sizeof(msg), "{\"type\":\"publish\",\"channel\":\"c\",\"data\":%s}", deep);
  assert_int_equal(parse_n(msg, strlen(msg), 201, MAX_DATA, &cmd, &err, &off), 0);
  assert_int_equal(parse_n(msg, strlen(msg), 200, MAX_DATA, &cmd, &err, &off), RT_EDEPTH);
  free(deep);
}

static void test_parse_null_errbuf(void **state) {
  (void)state;
  rt_cmd_t cmd;
  const char *m = "{\"type\":\"nope\"}";
  assert_int_equal(rt_proto_parse(m, strlen(m), DEPTH, MAX_DATA, &cmd, NULL), RT_ETYPE);
  assert_int_equal(rt_proto_parse("[", 1, DEPTH, MAX_DATA, &cmd, NULL), RT_EJSON);
  assert_int_equal(rt_json_validate("[", 1, DEPTH, NULL, NULL, NULL), RT_EJSON);
}

/* ------------------------------------------------------- strbuf */

static void test_strbuf_append_grows(void **state) {
  (void)state;
  rt_strbuf_t b = {NULL, 0, 0};
  assert_int_equal(rt_strbuf_append(&b, NULL, 0), 0);
  assert_non_null(b.p);
  assert_string_equal(b.p, "");
  for (int i = 0; i < 5000; i++) assert_int_equal(rt_strbuf_append(&b, "abc", 3), 0);
  assert_int_equal(b.len, 15000);
  assert_true(b.cap > b.len);
  assert_int_equal(b.p[b.len], '\0');
  assert_memory_equal(b.p + 14997, "abc", 4);
  rt_strbuf_destroy(&b);
  assert_null(b.p);
  assert_int_equal(b.len, 0);
  assert_int_equal(b.cap, 0);
  rt_strbuf_destroy(&b);
}

static void expect_escaped(const char *in, size_t n, const char *out) {
  rt_strbuf_t b = {NULL, 0, 0};
  assert_int_equal(rt_strbuf_append_json_string(&b, in, n), 0);
  assert_string_equal(b.p, out);
  assert_int_equal(b.len, strlen(out));
  rt_strbuf_destroy(&b);
}

static void test_strbuf_json_escapes(void **state) {
  (void)state;
  expect_escaped("", 0, "\"\"");
  expect_escaped("plain text", 10, "\"plain text\"");
  expect_escaped("a\"b\\c", 5, "\"a\\\"b\\\\c\"");
  expect_escaped("\b\f\n\r\t", 5, "\"\\b\\f\\n\\r\\t\"");
  expect_escaped("\x01\x1f\x0b", 3, "\"\\u0001\\u001f\\u000b\"");
  expect_escaped("\0x", 2, "\"\\u0000x\"");
  expect_escaped("</script>&'\x7f/", 13, "\"</script>&'\x7f/\"");
  expect_escaped("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9, "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
  expect_escaped("a\xff", 2, "\"a\\ufffd\"");
  expect_escaped("\x80", 1, "\"\\ufffd\"");
  expect_escaped("\xc0\x80", 2, "\"\\ufffd\\ufffd\"");
  expect_escaped("\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\"");
  expect_escaped("\xe2\x82", 2, "\"\\ufffd\\ufffd\"");
  expect_escaped("\xf4\x90\x80\x80", 4, "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
}

/* Every control character gets its escape, and jansson decodes the output back to the input. */
static void test_strbuf_json_roundtrip(void **state) {
  (void)state;
  char in[160];
  size_t n = 0;
  for (int c = 0; c < 128; c++) in[n++] = (char)c;
  memcpy(in + n, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf", 13);
  n += 13;
  rt_strbuf_t b = {NULL, 0, 0};
  assert_int_equal(rt_strbuf_append(&b, "[", 1), 0);
  assert_int_equal(rt_strbuf_append_json_string(&b, in, n), 0);
  assert_int_equal(rt_strbuf_append(&b, "]", 1), 0);
  assert_int_equal(rt_json_validate(b.p, b.len, 1, NULL, NULL, NULL), 0);
  json_error_t jerr;
  json_t *arr = json_loadb(b.p, b.len, JSON_ALLOW_NUL, &jerr);
  assert_non_null(arr);
  json_t *str = json_array_get(arr, 0);
  assert_int_equal(json_string_length(str), n);
  assert_memory_equal(json_string_value(str), in, n);
  json_decref(arr);
  rt_strbuf_destroy(&b);
}

/* An append that cannot allocate leaves the buffer as it was. */
static void test_strbuf_oom(void **state) {
  (void)state;
  rt_strbuf_t b = {NULL, 0, 0};
  rt_alloc_fail_after(0);
  assert_int_equal(rt_strbuf_append(&b, "x", 1), RT_ENOMEM);
  assert_int_equal(rt_strbuf_append_json_string(&b, "x", 1), RT_ENOMEM);
  rt_alloc_fail_after(-1);
  assert_null(b.p);
  assert_int_equal(b.len, 0);
  assert_int_equal(rt_strbuf_append(&b, "hello", 5), 0);
  char *big = repeat('\n', 200);
  for (long n = 0;; n++) {
    rt_alloc_fail_after(n);
    int rc = rt_strbuf_append_json_string(&b, big, 200);
    rt_alloc_fail_after(-1);
    if (rc == 0) break;
    assert_int_equal(rc, RT_ENOMEM);
    assert_int_equal(b.len, 5);
    assert_string_equal(b.p, "hello");
  }
  assert_int_equal(b.len, 5 + 2 + 400);
  rt_alloc_fail_after(0);
  assert_int_equal(rt_strbuf_append(&b, big, 200), RT_ENOMEM);
  rt_alloc_fail_after(-1);
  assert_int_equal(b.len, 407);
  free(big);
  rt_strbuf_destroy(&b);
}

/* ------------------------------------------------------- encoders */

static void test_ack_shapes(void **state) {
  (void)state;
  expect_frame(rt_proto_ack(1, 3, 2), "{\"type\":\"ack\",\"id\":3,\"delivered\":2}");
  expect_frame(rt_proto_ack(1, 1, -1), "{\"type\":\"ack\",\"id\":1}");
  expect_frame(rt_proto_ack(0, 99, -1), "{\"type\":\"ack\"}");
  expect_frame(rt_proto_ack(0, 0, 0), "{\"type\":\"ack\",\"delivered\":0}");
  expect_frame(rt_proto_ack(1, 0, 1000), "{\"type\":\"ack\",\"id\":0,\"delivered\":1000}");
  expect_frame(rt_proto_ack(1, -42, 7), "{\"type\":\"ack\",\"id\":-42,\"delivered\":7}");
  expect_frame(rt_proto_ack(1, INT64_MIN, INT64_MAX),
               "{\"type\":\"ack\",\"id\":-9223372036854775808,"
               "\"delivered\":9223372036854775807}");
  expect_frame(rt_proto_ack(1, INT64_MAX, -5), "{\"type\":\"ack\",\"id\":9223372036854775807}");
}

static void test_error_shapes(void **state) {
  (void)state;
  expect_frame(rt_proto_error(1, 3, RT_EJSON, "Invalid JSON at byte 17: expected ':'"),
               "{\"type\":\"error\",\"id\":3,\"code\":\"invalid_json\","
               "\"message\":\"Invalid JSON at byte 17: expected ':'\"}");
  expect_frame(rt_proto_error(0, 3, RT_ECHANNEL, "Invalid channel name format"),
               "{\"type\":\"error\",\"code\":\"invalid_channel\","
               "\"message\":\"Invalid channel name format\"}");
  expect_frame(rt_proto_error(1, -1, RT_ETYPE, "Unknown message type \"a\\\"b\""),
               "{\"type\":\"error\",\"id\":-1,\"code\":\"unknown_type\","
               "\"message\":\"Unknown message type \\\"a\\\\\\\"b\\\"\"}");
  expect_frame(rt_proto_error(0, 0, RT_ETOOLARGE, NULL),
               "{\"type\":\"error\",\"code\":\"message_too_large\",\"message\":\"Message too large\"}");
  expect_frame(rt_proto_error(0, 0, RT_EMISSING, "a\nb\tc\x01<&>\xc3\xa9\xff"),
               "{\"type\":\"error\",\"code\":\"missing_field\","
               "\"message\":\"a\\nb\\tc\\u0001<&>\xc3\xa9\\ufffd\"}");
  expect_frame(rt_proto_error(1, 5, RT_EDEPTH, ""),
               "{\"type\":\"error\",\"id\":5,\"code\":\"nesting_too_deep\",\"message\":\"\"}");
}

/* Each error the parser produces becomes a reply that is valid JSON carrying the same text. */
static void test_error_replies_roundtrip(void **state) {
  (void)state;
  static const char *const bad[] = {
      "{\"type\":\"x\\\"\\u0001\\u00e9\\ud83d\\ude00\",\"id\":4}", "[", "{\"id\":4,\"type\":1}",
      "{\"type\":\"subscribe\",\"id\":4}", "{\"type\":\"publish\",\"channel\":\"..\",\"id\":4}"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    rt_cmd_t cmd;
    rt_errbuf_t err;
    size_t off;
    int rc = parse(bad[i], &cmd, &err, &off);
    assert_true(rc < 0);
    rt_frame_t *f = rt_proto_error(cmd.has_id, cmd.id, rc, err.msg);
    assert_non_null(f);
    json_error_t jerr;
    json_t *o = json_loadb((const char *)rt_frame_payload(f), f->len, 0, &jerr);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "type")), "error");
    assert_string_equal(json_string_value(json_object_get(o, "code")), rt_err_name(rc));
    assert_string_equal(json_string_value(json_object_get(o, "message")), err.msg);
    assert_int_equal(json_object_get(o, "id") != NULL, cmd.has_id);
    if (cmd.has_id) assert_int_equal(json_integer_value(json_object_get(o, "id")), 4);
    json_decref(o);
    rt_frame_unref(f);
  }
}

static void test_message_shapes(void **state) {
  (void)state;
  expect_frame(rt_proto_message("chat", 4, "{\"a\":1}", 7),
               "{\"type\":\"message\",\"channel\":\"chat\",\"data\":{\"a\":1}}");
  expect_frame(rt_proto_message("user:alice:notifications", 24, "18446744073709551616", 20),
               "{\"type\":\"message\",\"channel\":\"user:alice:notifications\","
               "\"data\":18446744073709551616}");
  expect_frame(rt_proto_message("c", 1, "0.1", 3),
               "{\"type\":\"message\",\"channel\":\"c\",\"data\":0.1}");
  expect_frame(rt_proto_message("c", 1, "[1,  2]", 7),
               "{\"type\":\"message\",\"channel\":\"c\",\"data\":[1,  2]}");
}

/* Payloads of 125, 126, 65535, 65536 bytes take the 7-, 16- and 64-bit length forms. */
static void test_message_length_forms(void **state) {
  (void)state;
  static const size_t totals[] = {125, 126, 65535, 65536, 200000};
  const char *head = "{\"type\":\"message\",\"channel\":\"c\",\"data\":\"";
  size_t fixed = strlen(head) + 1;
  for (size_t i = 0; i < sizeof(totals) / sizeof(totals[0]); i++) {
    size_t inner = totals[i] - fixed;
    char *data = malloc(inner + 2), *payload = malloc(totals[i] + 1);
    assert_non_null(data);
    assert_non_null(payload);
    data[0] = '"';
    memset(data + 1, 'y', inner - 1);
    data[inner] = '"';
    data[inner + 1] = '\0';
    snprintf(payload, totals[i] + 1, "{\"type\":\"message\",\"channel\":\"c\",\"data\":%s}", data);
    rt_frame_t *f = rt_proto_message("c", 1, data, inner + 1);
    assert_non_null(f);
    assert_text_frame(f, payload, totals[i]);
    rt_frame_unref(f);
    free(data);
    free(payload);
  }
}

static rt_frame_t *encode_sample(int which) {
  if (which == 0) return rt_proto_ack(1, 3, 2);
  if (which == 1) return rt_proto_error(1, 3, RT_EJSON, "bad \"json\"");
  return rt_proto_message("chat", 4, "[1]", 3);
}

/*
 * Failing the n-th allocation for n = 0, 1, ...: each encoder returns NULL
 * without leaking until the allocator lets its one allocation (the frame)
 * through, and the frame it then returns is complete.
 */
static void test_encoders_oom(void **state) {
  (void)state;
  static const char *const expected[] = {
      "{\"type\":\"ack\",\"id\":3,\"delivered\":2}",
      "{\"type\":\"error\",\"id\":3,\"code\":\"invalid_json\",\"message\":\"bad \\\"json\\\"\"}",
      "{\"type\":\"message\",\"channel\":\"chat\",\"data\":[1]}"};
  for (int which = 0; which < 3; which++) {
    long first_ok = -1;
    for (long n = 0; n < 8 && first_ok < 0; n++) {
      rt_alloc_fail_after(n);
      rt_frame_t *f = encode_sample(which);
      rt_alloc_fail_after(-1);
      if (f == NULL) continue;
      first_ok = n;
      expect_frame(f, expected[which]);
    }
    assert_int_equal(first_ok, 1);
  }
}

/* The parser allocates nothing: it works with every allocation failing. */
static void test_parse_allocates_nothing(void **state) {
  (void)state;
  rt_cmd_t cmd;
  rt_errbuf_t err;
  const char *m = "{\"type\":\"publish\",\"channel\":\"c\",\"data\":{\"a\":[1,2,{\"b\":null}]}}";
  rt_alloc_fail_after(0);
  int rc = rt_proto_parse(m, strlen(m), DEPTH, MAX_DATA, &cmd, &err);
  int vrc = rt_json_validate(m, strlen(m), DEPTH, NULL, NULL, &err);
  rt_alloc_fail_after(-1);
  assert_int_equal(rc, 0);
  assert_int_equal(vrc, 0);
}


static void test_parse_auth(void **state) {
  (void)state;
  rt_cmd_t cmd;
  rt_errbuf_t err;
  char out[64];
  const char *m = "{\"type\":\"auth\",\"token\":\"a.b.c\",\"id\":1}";
  assert_int_equal(rt_proto_parse(m, strlen(m), 64, 1024, &cmd, &err), 0);
  assert_int_equal(cmd.type, RT_CMD_AUTH);
  assert_int_equal(cmd.cred_is_key, 0);
  assert_int_equal(cmd.cred_len, 7);
  assert_int_equal(rt_proto_decode_string(cmd.cred, cmd.cred_len, out, sizeof(out)), 5);
  assert_memory_equal(out, "a.b.c", 5);
  assert_int_equal(rt_proto_decode_string(cmd.cred, cmd.cred_len, out, 4), RT_ETOOLARGE);
  m = "{\"type\":\"auth\",\"apiKey\":\"k\\u0065y\"}";
  assert_int_equal(rt_proto_parse(m, strlen(m), 64, 1024, &cmd, &err), 0);
  assert_int_equal(cmd.cred_is_key, 1);
  assert_int_equal(rt_proto_decode_string(cmd.cred, cmd.cred_len, out, sizeof(out)), 3);
  assert_memory_equal(out, "key", 3);
  m = "{\"type\":\"auth\",\"id\":4}";
  assert_int_equal(rt_proto_parse(m, strlen(m), 64, 1024, &cmd, &err), RT_EMISSING);
  assert_string_equal(err.msg, "Missing field \"token\"");
  assert_int_equal(cmd.id, 4);
  m = "{\"type\":\"auth\",\"token\":\"t\",\"apiKey\":\"k\"}";
  assert_int_equal(rt_proto_parse(m, strlen(m), 64, 1024, &cmd, &err), RT_EFIELD);
  m = "{\"type\":\"auth\",\"token\":42}";
  assert_int_equal(rt_proto_parse(m, strlen(m), 64, 1024, &cmd, &err), RT_EFIELD);
  assert_string_equal(err.msg, "Field \"token\" must be a string");
}


static void test_security_encoders(void **state) {
  (void)state;
  expect_frame(rt_proto_error_retry(1, 6, RT_ERATE, NULL, 1500),
               "{\"type\":\"error\",\"id\":6,\"code\":\"rate_limited\",\"message\":"
               "\"Rate limit exceeded: Too many messages sent\",\"retry_after_ms\":1500}");
  const char *perms[] = {"read:*", "write:a\"b"};
  expect_frame(rt_proto_auth_ack(1, 2, "user-123", perms, 2),
               "{\"type\":\"ack\",\"id\":2,\"userId\":\"user-123\","
               "\"permissions\":[\"read:*\",\"write:a\\\"b\"]}");
  expect_frame(rt_proto_auth_ack(0, 0, NULL, NULL, 0), "{\"type\":\"ack\",\"permissions\":[]}");
  expect_frame(rt_proto_token_expired(30000), "{\"type\":\"token_expired\",\"graceMs\":30000}");
  rt_strbuf_t b = {0};
  assert_int_equal(rt_strbuf_append(&b, "{\"a\":1}", 7), 0);
  expect_frame(rt_strbuf_to_frame(&b, 1), "{\"a\":1}");
  assert_null(b.p); /* destroyed */
  assert_int_equal(rt_strbuf_append(&b, "{", 1), 0);
  assert_null(rt_strbuf_to_frame(&b, 0)); /* a failed builder: no frame, buffer freed */
  assert_null(b.p);
  for (long n = 0;; n++) { /* OOM: each failure point gives NULL, never a leak */
    rt_alloc_fail_after(n);
    rt_frame_t *f = rt_proto_auth_ack(1, 2, "u", perms, 2);
    rt_alloc_fail_after(-1);
    if (f != NULL) {
      rt_frame_unref(f);
      break;
    }
  }
}


static void test_parse_presence(void **state) {
  (void)state;
  rt_cmd_t cmd;
  rt_errbuf_t err;
  const char *m = "{\"type\":\"presence\",\"channel\":\"lobby\",\"data\":{\"name\":\"Alice\"},\"id\":1}";
  assert_int_equal(rt_proto_parse(m, strlen(m), 64, 1024, &cmd, &err), 0);
  assert_int_equal(cmd.type, RT_CMD_PRESENCE);
  assert_string_equal(cmd.channel, "lobby");
  assert_int_equal(cmd.data_len, 16);
  assert_memory_equal(cmd.data, "{\"name\":\"Alice\"}", 16);
  m = "{\"type\":\"presence\",\"channel\":\"lobby\"}";
  assert_int_equal(rt_proto_parse(m, strlen(m), 64, 1024, &cmd, &err), 0);
  assert_null(cmd.data);
  m = "{\"type\":\"presence_leave\",\"channel\":\"lobby\",\"id\":2}";
  assert_int_equal(rt_proto_parse(m, strlen(m), 64, 1024, &cmd, &err), 0);
  assert_int_equal(cmd.type, RT_CMD_PRESENCE_LEAVE);
  m = "{\"type\":\"presence_get\",\"channel\":\"lobby\",\"id\":3}";
  assert_int_equal(rt_proto_parse(m, strlen(m), 64, 1024, &cmd, &err), 0);
  assert_int_equal(cmd.type, RT_CMD_PRESENCE_GET);
  m = "{\"type\":\"presence_get\",\"id\":3}";
  assert_int_equal(rt_proto_parse(m, strlen(m), 64, 1024, &cmd, &err), RT_EMISSING);
  assert_string_equal(err.msg, "Missing field \"channel\"");
  m = "{\"type\":\"presence\",\"channel\":\"../x\"}";
  assert_int_equal(rt_proto_parse(m, strlen(m), 64, 1024, &cmd, &err), RT_ECHANNEL);
  m = "{\"type\":\"presence\",\"channel\":\"c\",\"data\":\"0123456789\"}";
  assert_int_equal(rt_proto_parse(m, strlen(m), 64, 8, &cmd, &err), RT_ETOOLARGE);
}


static void test_parse_query_commands(void **state) {
  (void)state;
  rt_cmd_t cmd;
  rt_errbuf_t err;
  char out[64];
  const char *m = "{\"type\":\"query_subscribe\",\"query\":\"pending_orders\",\"params\":[\"pending\"],\"id\":1}";
  assert_int_equal(rt_proto_parse(m, strlen(m), 64, 1024, &cmd, &err), 0);
  assert_int_equal(cmd.type, RT_CMD_QUERY_SUBSCRIBE);
  assert_int_equal(cmd.cred_is_key, 0);
  assert_int_equal(rt_proto_decode_string(cmd.cred, cmd.cred_len, out, sizeof(out)), 14);
  assert_memory_equal(out, "pending_orders", 14);
  assert_int_equal(cmd.data_len, 11);
  assert_memory_equal(cmd.data, "[\"pending\"]", 11);
  m = "{\"type\":\"query_subscribe\",\"sql\":\"SELECT 1\",\"params\":{\"a\":1}}";
  assert_int_equal(rt_proto_parse(m, strlen(m), 64, 1024, &cmd, &err), 0);
  assert_int_equal(cmd.cred_is_key, 1);
  m = "{\"type\":\"query_subscribe\",\"query\":\"q\"}";
  assert_int_equal(rt_proto_parse(m, strlen(m), 64, 1024, &cmd, &err), 0);
  assert_null(cmd.data);
  m = "{\"type\":\"query_subscribe\",\"id\":3}";
  assert_int_equal(rt_proto_parse(m, strlen(m), 64, 1024, &cmd, &err), RT_EMISSING);
  assert_string_equal(err.msg, "Missing field \"query\"");
  m = "{\"type\":\"query_subscribe\",\"query\":\"q\",\"sql\":\"x\"}";
  assert_int_equal(rt_proto_parse(m, strlen(m), 64, 1024, &cmd, &err), RT_EFIELD);
  m = "{\"type\":\"query_subscribe\",\"query\":\"q\",\"params\":5}";
  assert_int_equal(rt_proto_parse(m, strlen(m), 64, 1024, &cmd, &err), RT_EFIELD);
  assert_string_equal(err.msg, "Field \"params\" must be an array or an object");
  m = "{\"type\":\"query_unsubscribe\",\"subscription\":\"q7\",\"id\":4}";
  assert_int_equal(rt_proto_parse(m, strlen(m), 64, 1024, &cmd, &err), 0);
  assert_int_equal(cmd.type, RT_CMD_QUERY_UNSUBSCRIBE);
  assert_int_equal(rt_proto_decode_string(cmd.cred, cmd.cred_len, out, sizeof(out)), 2);
  m = "{\"type\":\"query_unsubscribe\"}";
  assert_int_equal(rt_proto_parse(m, strlen(m), 64, 1024, &cmd, &err), RT_EMISSING);
  assert_string_equal(err.msg, "Missing field \"subscription\"");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_auth),
      cmocka_unit_test(test_parse_presence),
      cmocka_unit_test(test_parse_query_commands),
      cmocka_unit_test(test_security_encoders),
      cmocka_unit_test(test_json_valid_scalars),
      cmocka_unit_test(test_json_valid_containers),
      cmocka_unit_test(test_json_whitespace_trimmed),
      cmocka_unit_test(test_json_invalid_numbers),
      cmocka_unit_test(test_json_invalid_literals),
      cmocka_unit_test(test_json_invalid_structure),
      cmocka_unit_test(test_json_whitespace_only_four),
      cmocka_unit_test(test_json_invalid_strings),
      cmocka_unit_test(test_json_surrogates_must_pair),
      cmocka_unit_test(test_json_invalid_utf8),
      cmocka_unit_test(test_json_depth_limit),
      cmocka_unit_test(test_json_depth_hard_cap),
      cmocka_unit_test(test_json_deep_mixed_nesting),
      cmocka_unit_test(test_parse_subscribe),
      cmocka_unit_test(test_parse_unsubscribe_without_id),
      cmocka_unit_test(test_parse_publish_exact_data),
      cmocka_unit_test(test_parse_publish_data_passthrough),
      cmocka_unit_test(test_parse_member_order_and_unknown_keys),
      cmocka_unit_test(test_parse_escaped_names),
      cmocka_unit_test(test_parse_duplicate_keys),
      cmocka_unit_test(test_parse_top_level_must_be_object),
      cmocka_unit_test(test_parse_every_prefix_fails_at_its_end),
      cmocka_unit_test(test_parse_type_errors),
      cmocka_unit_test(test_parse_type_name_truncated),
      cmocka_unit_test(test_parse_id_rules),
      cmocka_unit_test(test_parse_channel_errors),
      cmocka_unit_test(test_parse_channel_length_after_decoding),
      cmocka_unit_test(test_parse_data_rules),
      cmocka_unit_test(test_parse_error_order),
      cmocka_unit_test(test_parse_id_echoed_on_errors),
      cmocka_unit_test(test_parse_depth),
      cmocka_unit_test(test_parse_null_errbuf),
      cmocka_unit_test(test_strbuf_append_grows),
      cmocka_unit_test(test_strbuf_json_escapes),
      cmocka_unit_test(test_strbuf_json_roundtrip),
      cmocka_unit_test(test_strbuf_oom),
      cmocka_unit_test(test_ack_shapes),
      cmocka_unit_test(test_error_shapes),
      cmocka_unit_test(test_error_replies_roundtrip),
      cmocka_unit_test(test_message_shapes),
      cmocka_unit_test(test_message_length_forms),
      cmocka_unit_test(test_encoders_oom),
      cmocka_unit_test(test_parse_allocates_nothing),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
