/*
 * Unit tests for the request-head parser (src/core/http_parse.h). Every case
 * goes through check(): the input is parsed whole, as a stream fed one byte
 * at a time, and as streams of seeded random reads. Each call parses an
 * exact-size heap copy of the bytes received so far, so AddressSanitizer
 * catches any read past `len`.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "alloc.h"
#include "http_parse.h"
#include "realtime/realtime.h"

#define BIG (1u << 20)
#define UPGRADE_REQ                                                                        \
  "GET /ws?token=abc HTTP/1.1\r\nHost: example.com:8080\r\nUpgrade: websocket\r\n"         \
  "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"     \
  "Sec-WebSocket-Version: 13\r\n\r\n"

/* Parses a private copy of s[0..len) that ends exactly at len. */
static int parse_copy(const char *s, size_t len, size_t max_head) {
  rt_http_request_t req;
  char *copy = rt_malloc(len > 0 ? len : 1);
  assert_non_null(copy);
  memcpy(copy, s, len);
  int rc = rt_http_parse_request(copy, len, max_head, &req);
  rt_free(copy);
  return rc;
}

static uint32_t next_rand(uint32_t *state) {
  *state ^= *state << 13;
  *state ^= *state >> 17;
  *state ^= *state << 5;
  return *state;
}

/*
 * Feeds s as a stream of reads (seed 0: one byte each; otherwise 1-17 bytes
 * chosen by the seed), re-parsing everything received after each read like a
 * connection would. Returns the first answer other than RT_EAGAIN (or
 * RT_EAGAIN if the stream ends) and sets *at to the bytes received then.
 */
static int feed_split(const char *s, size_t len, size_t max_head, uint32_t seed, size_t *at) {
  uint32_t state = seed * 2654435761u + 1;
  size_t got = 0;
  int rc = RT_EAGAIN;
  while (got < len && rc == RT_EAGAIN) {
    size_t step = seed == 0 ? 1 : 1 + next_rand(&state) % 17;
    got += step < len - got ? step : len - got;
    rc = parse_copy(s, got, max_head);
  }
  *at = got;
  return rc;
}

/*
 * Whole, byte by byte and in 32 random splits, the answer is `expect`. For a
 * complete head (expect > 0) the answer comes exactly when its last byte
 * arrives, so every shorter prefix gave RT_EAGAIN.
 */
static void check(const char *s, size_t len, size_t max_head, int expect) {
  size_t at;
  assert_int_equal(parse_copy(s, len, max_head), expect);
  for (uint32_t seed = 0; seed <= 32; seed++) {
    assert_int_equal(feed_split(s, len, max_head, seed, &at), expect);
    if (expect > 0 && seed == 0) assert_int_equal(at, (size_t)expect);
  }
}

static void check_str(const char *s, int expect) { check(s, strlen(s), BIG, expect); }

static void check_ok(const char *s) { check_str(s, (int)strlen(s)); }

/* For literals with embedded NUL bytes: the length comes from the literal itself. */
#define CHECK_BYTES(lit, expect) check((lit), sizeof(lit) - 1, BIG, (expect))

static void assert_span(const char *p, size_t n, const char *want) {
  assert_int_equal(n, strlen(want));
  assert_memory_equal(p, want, n);
}

static void test_parse_upgrade_request(void **state) {
  rt_http_request_t req;
  const char *s = UPGRADE_REQ;
  check_ok(s);
  assert_int_equal(rt_http_parse_request(s, strlen(s), BIG, &req), (int)strlen(s));
  assert_span(req.method, req.method_len, "GET");
  assert_span(req.target, req.target_len, "/ws?token=abc");
  assert_int_equal(req.minor_version, 1);
  assert_int_equal(req.num_headers, 5);
  assert_span(req.headers[0].name, req.headers[0].name_len, "Host");
  assert_span(req.headers[0].value, req.headers[0].value_len, "example.com:8080");
  assert_span(req.headers[2].name, req.headers[2].name_len, "Connection");
  assert_span(req.headers[2].value, req.headers[2].value_len, "keep-alive, Upgrade");
  assert_span(req.headers[4].value, req.headers[4].value_len, "13");
}

static void test_parse_empty_and_partial(void **state) {
  rt_http_request_t req;
  assert_int_equal(rt_http_parse_request("", 0, BIG, &req), RT_EAGAIN);
  assert_int_equal(parse_copy("GET / HTTP/1.1\r\nHost: x\r\n\r", 26, BIG), RT_EAGAIN);
  assert_int_equal(parse_copy("GET / HTTP/1.", 13, BIG), RT_EAGAIN);
}

/* Bytes after the blank line (an early WebSocket frame) are not part of the head. */
static void test_parse_stops_at_blank_line(void **state) {
  CHECK_BYTES("GET / HTTP/1.1\r\nHost: x\r\n\r\n\x81\x85\x00\x01\x02\x03GET / \r\n", 27);
}

static void test_parse_minimal_no_headers(void **state) {
  rt_http_request_t req;
  check_ok("GET / HTTP/1.1\r\n\r\n");
  assert_int_equal(rt_http_parse_request("GET / HTTP/1.1\r\n\r\n", 18, BIG, &req), 18);
  assert_int_equal(req.num_headers, 0);
}

static void test_parse_version(void **state) {
  rt_http_request_t req;
  check_ok("GET / HTTP/1.0\r\n\r\n");
  assert_int_equal(rt_http_parse_request("GET / HTTP/1.0\r\n\r\n", 18, BIG, &req), 18);
  assert_int_equal(req.minor_version, 0);
  assert_int_equal(rt_http_parse_request("GET / HTTP/1.9\r\n\r\n", 18, BIG, &req), 18);
  assert_int_equal(req.minor_version, 9);
  check_str("GET / HTTP/2.0\r\n\r\n", RT_EINVAL);
  check_str("GET / HTTP/0.9\r\n\r\n", RT_EINVAL);
  check_str("GET / http/1.1\r\n\r\n", RT_EINVAL);
  check_str("GET / HTTP/1.x\r\n\r\n", RT_EINVAL);
  check_str("GET / HTTP/1.10\r\n\r\n", RT_EINVAL);
  check_str("GET / HTTP/1.1 \r\n\r\n", RT_EINVAL);
  check_str("GET / HTTP/11\r\n\r\n", RT_EINVAL);
  check_str("GET / HTTP/1\r\n\r\n", RT_EINVAL);
  check_str("GET /\r\n\r\n", RT_EINVAL);
}

static void test_parse_method(void **state) {
  check_ok("M-SEARCH * HTTP/1.1\r\n\r\n");
  check_ok("get / HTTP/1.1\r\n\r\n");
  check_ok("X!#$%&'*+-.^_`|~9 / HTTP/1.1\r\n\r\n");
  check_str(" GET / HTTP/1.1\r\n\r\n", RT_EINVAL);
  check_str("G(ET / HTTP/1.1\r\n\r\n", RT_EINVAL);
  check_str("GET\t/ HTTP/1.1\r\n\r\n", RT_EINVAL);
  check_str("G\xc3\x89T / HTTP/1.1\r\n\r\n", RT_EINVAL);
  check_str("\r\nGET / HTTP/1.1\r\n\r\n", RT_EINVAL);
  CHECK_BYTES("G\0T / HTTP/1.1\r\n\r\n", RT_EINVAL);
}

static void test_parse_target(void **state) {
  check_ok("GET /a/b?x=1&y=%20z#frag HTTP/1.1\r\n\r\n");
  check_ok("GET http://example.com/ws HTTP/1.1\r\n\r\n");
  check_str("GET  / HTTP/1.1\r\n\r\n", RT_EINVAL);
  check_str("GET / a HTTP/1.1\r\n\r\n", RT_EINVAL);
  check_str("GET /a b HTTP/1.1\r\n\r\n", RT_EINVAL);
  check_str("GET /\ta HTTP/1.1\r\n\r\n", RT_EINVAL);
  check_str("GET /\x01 HTTP/1.1\r\n\r\n", RT_EINVAL);
  check_str("GET /\x7f HTTP/1.1\r\n\r\n", RT_EINVAL);
  check_str("GET /\xc3\xa9 HTTP/1.1\r\n\r\n", RT_EINVAL);
  check_str("GET /\r\n HTTP/1.1\r\n\r\n", RT_EINVAL);
  CHECK_BYTES("GET /\0 HTTP/1.1\r\n\r\n", RT_EINVAL);
}

static void test_parse_header_names(void **state) {
  rt_http_request_t req;
  const char *ok = "GET / HTTP/1.1\r\nX-a_!#$%&'*+.^`|~9: v\r\n\r\n";
  check_ok(ok);
  assert_true(rt_http_parse_request(ok, strlen(ok), BIG, &req) > 0);
  assert_span(req.headers[0].name, req.headers[0].name_len, "X-a_!#$%&'*+.^`|~9");
  check_str("GET / HTTP/1.1\r\nHost : x\r\n\r\n", RT_EINVAL);
  check_str("GET / HTTP/1.1\r\nHost\t: x\r\n\r\n", RT_EINVAL);
  check_str("GET / HTTP/1.1\r\n: x\r\n\r\n", RT_EINVAL);
  check_str("GET / HTTP/1.1\r\nHo st: x\r\n\r\n", RT_EINVAL);
  check_str("GET / HTTP/1.1\r\nHo@st: x\r\n\r\n", RT_EINVAL);
  check_str("GET / HTTP/1.1\r\nHo\"st: x\r\n\r\n", RT_EINVAL);
  check_str("GET / HTTP/1.1\r\nHost x\r\n\r\n", RT_EINVAL);
  check_str("GET / HTTP/1.1\r\nHost\r\n\r\n", RT_EINVAL);
  CHECK_BYTES("GET / HTTP/1.1\r\nHo\0st: x\r\n\r\n", RT_EINVAL);
}

static void test_parse_value_trimming(void **state) {
  rt_http_request_t req;
  const char *s =
      "GET / HTTP/1.1\r\nA:   a b \t \r\nB:\r\nC: \t \r\nD:\tx\ty\t\r\nE: caf\xc3\xa9\r\n"
      "F:no-space\r\n\r\n";
  check_ok(s);
  assert_true(rt_http_parse_request(s, strlen(s), BIG, &req) > 0);
  assert_int_equal(req.num_headers, 6);
  assert_span(req.headers[0].value, req.headers[0].value_len, "a b");
  assert_int_equal(req.headers[1].value_len, 0);
  assert_int_equal(req.headers[2].value_len, 0);
  assert_span(req.headers[3].value, req.headers[3].value_len, "x\ty");
  assert_span(req.headers[4].value, req.headers[4].value_len, "caf\xc3\xa9");
  assert_span(req.headers[5].value, req.headers[5].value_len, "no-space");
}

static void test_parse_value_controls(void **state) {
  CHECK_BYTES("GET / HTTP/1.1\r\nA: x\0y\r\n\r\n", RT_EINVAL);
  check_str("GET / HTTP/1.1\r\nA: x\x01y\r\n\r\n", RT_EINVAL);
  check_str("GET / HTTP/1.1\r\nA: x\x1b[0m\r\n\r\n", RT_EINVAL);
  check_str("GET / HTTP/1.1\r\nA: x\x7fy\r\n\r\n", RT_EINVAL);
  check_str("GET / HTTP/1.1\r\nA: x\ny\r\n\r\n", RT_EINVAL);
  check_str("GET / HTTP/1.1\r\nA: x\ry\r\n\r\n", RT_EINVAL);
}

/* CRLF is required everywhere: bare LF and bare CR are refused. */
static void test_parse_line_endings(void **state) {
  check_str("GET / HTTP/1.1\nHost: x\n\n", RT_EINVAL);
  check_str("GET / HTTP/1.1\r\nHost: x\n\r\n", RT_EINVAL);
  check_str("GET / HTTP/1.1\r\nHost: x\r\n\n", RT_EINVAL);
  check_str("GET / HTTP/1.1\r\nHost: x\r\n\r\r\n", RT_EINVAL);
  check_str("GET / HTTP/1.1\rHost: x\r\n\r\n", RT_EINVAL);
  check_str("GET / HTTP/1.1\r\nHost: x\r\r\n\r\n", RT_EINVAL);
}

static void test_parse_obs_fold(void **state) {
  check_str("GET / HTTP/1.1\r\nA: x\r\n y\r\n\r\n", RT_EINVAL);
  check_str("GET / HTTP/1.1\r\nA: x\r\n\ty\r\n\r\n", RT_EINVAL);
  check_str("GET / HTTP/1.1\r\n Host: x\r\n\r\n", RT_EINVAL);
  check_str("GET / HTTP/1.1\r\n\r\n", 18);
}

/* Builds a request with n headers "Hk: v" into buf; returns its length. */
static size_t build_headers(char *buf, size_t cap, size_t n) {
  size_t len = (size_t)snprintf(buf, cap, "GET / HTTP/1.1\r\n");
  for (size_t i = 0; i < n; i++) len += (size_t)snprintf(buf + len, cap - len, "H%zu: v\r\n", i);
  len += (size_t)snprintf(buf + len, cap - len, "\r\n");
  return len;
}

/* 64 fields are fine; a 65th is RT_ETOOLARGE from its first byte, but a fold is still RT_EINVAL. */
static void test_parse_header_count(void **state) {
  static char buf[4096];
  rt_http_request_t req;
  size_t len = build_headers(buf, sizeof(buf), RT_HTTP_MAX_HEADERS);
  check(buf, len, BIG, (int)len);
  assert_int_equal(rt_http_parse_request(buf, len, BIG, &req), (int)len);
  assert_int_equal(req.num_headers, RT_HTTP_MAX_HEADERS);
  assert_span(req.headers[63].name, req.headers[63].name_len, "H63");
  memcpy(buf + len - 2, " x\r\n\r\n", 7);
  check(buf, len + 5, BIG, RT_EINVAL);
  len = build_headers(buf, sizeof(buf), RT_HTTP_MAX_HEADERS + 1);
  check(buf, len, BIG, RT_ETOOLARGE);
  size_t at;
  size_t before_65th = len - strlen("H64: v\r\n\r\n");
  assert_int_equal(feed_split(buf, len, BIG, 0, &at), RT_ETOOLARGE);
  assert_int_equal(at, before_65th + 1);
}

static void test_parse_max_head(void **state) {
  const char *s = UPGRADE_REQ;
  size_t n = strlen(s);
  check(s, n, n, (int)n);
  check(s, n, n + 1, (int)n);
  check(s, n, n - 1, RT_ETOOLARGE);
  check(s, n - 1, n, RT_EAGAIN);
  assert_int_equal(parse_copy(s, 10, 10), RT_ETOOLARGE);
  assert_int_equal(parse_copy(s, 10, 11), RT_EAGAIN);
  assert_int_equal(parse_copy(s, 0, 0), RT_ETOOLARGE);
  check_str("GET / HTTP/1.1\r\n\r\n", 18);
  static const char extra[] = "GET / HTTP/1.1\r\n\r\nextra bytes past the limit";
  check(extra, sizeof(extra) - 1, 18, 18);
  check("GET / HTTP/1.1\r\nA\x01: x\r\n", 24, 20, RT_EINVAL);
  check("GET / HTTP/1.1\r\nA: x\r\n\x01", 23, 20, RT_ETOOLARGE);
}

static void test_find_header(void **state) {
  rt_http_request_t req;
  const char *s = "GET / HTTP/1.1\r\nHostname: a\r\nhOsT: b\r\nHOST: c\r\n\r\n";
  assert_true(rt_http_parse_request(s, strlen(s), BIG, &req) > 0);
  const rt_http_header_t *h = rt_http_find_header(&req, "Host");
  assert_non_null(h);
  assert_span(h->value, h->value_len, "b");
  h = rt_http_find_header(&req, "HOSTNAME");
  assert_non_null(h);
  assert_span(h->value, h->value_len, "a");
  assert_null(rt_http_find_header(&req, "Hos"));
  assert_null(rt_http_find_header(&req, "Upgrade"));
}

static void test_has_token(void **state) {
  static const struct {
    const char *value;
    int want;
  } cases[] = {
      {"Upgrade", 1},
      {"upgrade", 1},
      {"UPGRADE", 1},
      {"keep-alive, Upgrade", 1},
      {"Upgrade, keep-alive", 1},
      {"keep-alive,upgrade", 1},
      {"keep-alive ,\tUpgrade\t", 1},
      {" , ,upgrade,", 1},
      {"", 0},
      {",", 0},
      {"keep-alive", 0},
      {"upgraded", 0},
      {"xupgrade", 0},
      {"up grade", 0},
      {"upgrade;q=1", 0},
      {"keep-alive upgrade", 0},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const char *v = cases[i].value;
    assert_int_equal(rt_http_has_token(v, strlen(v), "upgrade"), cases[i].want);
  }
  assert_int_equal(rt_http_has_token("upgrade", 6, "upgrade"), 0);
  assert_int_equal(rt_http_has_token("upgrade, x", 7, "upgrade"), 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_upgrade_request),
      cmocka_unit_test(test_parse_empty_and_partial),
      cmocka_unit_test(test_parse_stops_at_blank_line),
      cmocka_unit_test(test_parse_minimal_no_headers),
      cmocka_unit_test(test_parse_version),
      cmocka_unit_test(test_parse_method),
      cmocka_unit_test(test_parse_target),
      cmocka_unit_test(test_parse_header_names),
      cmocka_unit_test(test_parse_value_trimming),
      cmocka_unit_test(test_parse_value_controls),
      cmocka_unit_test(test_parse_line_endings),
      cmocka_unit_test(test_parse_obs_fold),
      cmocka_unit_test(test_parse_header_count),
      cmocka_unit_test(test_parse_max_head),
      cmocka_unit_test(test_find_header),
      cmocka_unit_test(test_has_token),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
