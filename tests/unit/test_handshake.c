/*
 * Unit tests for the WebSocket opening handshake (src/core/handshake.h):
 * every acceptance and refusal rule, the order in which they apply, the exact
 * response bytes, and the output-capacity contract. Requests go through the
 * real parser first, as they do in the server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "alloc.h"
#include "handshake.h"
#include "http_parse.h"
#include "realtime/realtime.h"

#define HOST "Host: example.com\r\n"
#define UPG "Upgrade: websocket\r\n"
#define CONN "Connection: Upgrade\r\n"
#define KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define VER "Sec-WebSocket-Version: 13\r\n"
#define GET_WS "GET /ws HTTP/1.1\r\n"
#define VALID GET_WS HOST UPG CONN KEY VER "\r\n"

#define ACCEPT_RESPONSE                                                                    \
  "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"      \
  "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"

typedef struct {
  rt_hs_result_t result; /* decision */
  rt_hs_info_t info;     /* status and reason */
  char out[512];         /* response bytes (cap 512, the documented sufficient size) */
  size_t out_len;        /* bytes written */
} outcome_t;

/*
 * Parses `raw` (which must be a complete, well-formed head) and runs the
 * handshake for `path`. Every decision except health and stats (whose
 * bodies the caller writes) must produce a response within 512 bytes.
 */
static outcome_t run_path(const char *raw, const char *path) {
  rt_http_request_t req;
  outcome_t o;
  memset(&o, 0, sizeof(o));
  assert_int_equal(rt_http_parse_request(raw, strlen(raw), 8192, &req), (int)strlen(raw));
  o.result = rt_handshake_process(&req, path, o.out, sizeof(o.out), &o.out_len, &o.info);
  if (o.result == RT_HS_HEALTH || o.result == RT_HS_STATS)
    assert_int_equal(o.out_len, 0);
  else
    assert_true(o.out_len > 0);
  return o;
}

static outcome_t run(const char *raw) { return run_path(raw, "/ws"); }

static void assert_out(const outcome_t *o, const char *want) {
  assert_int_equal(o->out_len, strlen(want));
  assert_memory_equal(o->out, want, o->out_len);
}

static void expect_upgrade(const char *raw) {
  outcome_t o = run(raw);
  assert_int_equal(o.result, RT_HS_UPGRADE);
  assert_int_equal(o.info.status, 101);
}

/* A refusal with `status` whose reason mentions `reason_part`. */
static void expect_reject(const char *raw, int status, const char *reason_part) {
  outcome_t o = run(raw);
  assert_int_equal(o.result, RT_HS_REJECT);
  assert_int_equal(o.info.status, status);
  assert_non_null(o.info.reason);
  assert_non_null(strstr(o.info.reason, reason_part));
  char line[32];
  snprintf(line, sizeof(line), "HTTP/1.1 %d ", status);
  assert_memory_equal(o.out, line, strlen(line));
}

static void test_accept_key_rfc6455(void **state) {
  char out[29];
  rt_handshake_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, out);
  assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  rt_handshake_accept_key("x3JJHMbDL1EzLkh9GBhXDw==", 24, out);
  assert_string_equal(out, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
}

static void test_accept_key_length_bound(void **state) {
  char key[300];
  char out[29];
  memset(key, 'k', sizeof(key));
  rt_handshake_accept_key(key, 256, out);
  assert_string_equal(out, "Y/WLzL+KN3FHt25gHz4P49/XsJ8=");
  rt_handshake_accept_key(key, 257, out);
  assert_string_equal(out, "");
}

static void test_upgrade_exact_response(void **state) {
  outcome_t o = run(VALID);
  assert_int_equal(o.result, RT_HS_UPGRADE);
  assert_int_equal(o.info.status, 101);
  assert_out(&o, ACCEPT_RESPONSE);
}

static void test_upgrade_info_optional(void **state) {
  rt_http_request_t req;
  char out[512];
  size_t n = 0;
  assert_true(rt_http_parse_request(VALID, strlen(VALID), 8192, &req) > 0);
  assert_int_equal(rt_handshake_process(&req, "/ws", out, sizeof(out), &n, NULL), RT_HS_UPGRADE);
  assert_int_equal(n, strlen(ACCEPT_RESPONSE));
}

static void test_case_insensitive_fields(void **state) {
  outcome_t o = run("GET /ws HTTP/1.1\r\nhOST: x\r\nUPGRADE: WebSocket\r\nconnection: UPGRADE\r\n"
                    "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nSEC-WEBSOCKET-VERSION: 13\r\n\r\n");
  assert_int_equal(o.result, RT_HS_UPGRADE);
  assert_out(&o, ACCEPT_RESPONSE);
}

static void test_connection_and_upgrade_lists(void **state) {
  expect_upgrade(GET_WS HOST UPG "Connection: keep-alive, Upgrade\r\n" KEY VER "\r\n");
  expect_upgrade(GET_WS HOST UPG "Connection: Upgrade, keep-alive\r\n" KEY VER "\r\n");
  expect_upgrade(GET_WS HOST UPG "Connection: keep-alive,upgrade\r\n" KEY VER "\r\n");
  expect_upgrade(GET_WS HOST UPG "Connection:  keep-alive ,\tUpgrade \r\n" KEY VER "\r\n");
  expect_upgrade(GET_WS HOST UPG "Connection: keep-alive\r\nConnection: Upgrade\r\n" KEY VER
                                 "\r\n");
  expect_upgrade(GET_WS HOST "Upgrade: h2c, WebSocket\r\n" CONN KEY VER "\r\n");
  expect_upgrade(GET_WS HOST "Upgrade: h2c\r\nUpgrade: websocket\r\n" CONN KEY VER "\r\n");
}

static void test_path_and_query(void **state) {
  expect_upgrade("GET /ws?token=abc&x=1 HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n");
  expect_upgrade("GET /ws? HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n");
  expect_reject("GET /ws/ HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n", 404, "path");
  expect_reject("GET /wss HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n", 404, "path");
  expect_reject("GET /w HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n", 404, "path");
  expect_reject("GET /WS HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n", 404, "path");
  expect_reject("GET / HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n", 404, "path");
  expect_reject("GET /x?/ws HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n", 404, "path");
  outcome_t o = run_path("GET /realtime/v1?x HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n",
                         "/realtime/v1");
  assert_int_equal(o.result, RT_HS_UPGRADE);
  o = run_path(VALID, "/realtime/v1");
  assert_int_equal(o.info.status, 404);
}

static void test_not_found_exact_response(void **state) {
  outcome_t o = run("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
  assert_int_equal(o.result, RT_HS_REJECT);
  assert_out(&o,
             "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 35\r\n"
             "Connection: close\r\n\r\nno WebSocket endpoint at this path\n");
}

static void test_health(void **state) {
  outcome_t o = run("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  assert_int_equal(o.result, RT_HS_HEALTH);
  assert_int_equal(o.info.status, 200);
  o = run("GET /health?probe=1 HTTP/1.0\r\n\r\n");
  assert_int_equal(o.result, RT_HS_HEALTH);
  o = run("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  assert_int_equal(o.info.status, 404);
  expect_reject("POST /health HTTP/1.1\r\nHost: x\r\n\r\n", 405, "GET");
  o = run_path("GET /health HTTP/1.1\r\n\r\n", "/health");
  assert_int_equal(o.result, RT_HS_HEALTH);
}

/*
 * GET /stats is answered by the caller (access check, then the JSON), like
 * /health: nothing is written here, also when the request carries upgrade
 * headers (the input fuzz_http_parse's stale harness tripped on).
 */
static void test_stats(void **state) {
  outcome_t o = run("GET /stats HTTP/1.1\r\nHost: x\r\n\r\n");
  assert_int_equal(o.result, RT_HS_STATS);
  assert_int_equal(o.info.status, 200);
  o = run("GET /stats?api_key=k HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
          "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
  assert_int_equal(o.result, RT_HS_STATS);
  o = run("GET /statsz HTTP/1.1\r\nHost: x\r\n\r\n");
  assert_int_equal(o.info.status, 404);
  expect_reject("POST /stats HTTP/1.1\r\nHost: x\r\n\r\n", 405, "GET");
}

static void test_health_response(void **state) {
  char out[256];
  const char *want =
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n"
      "Connection: close\r\n\r\n{\"status\":\"ok\"}";
  size_t n = rt_handshake_health("{\"status\":\"ok\"}", out, sizeof(out));
  assert_int_equal(n, strlen(want));
  assert_memory_equal(out, want, n);
  n = rt_handshake_health(NULL, out, sizeof(out));
  assert_true(n > 2);
  assert_memory_equal(out + n - 2, "{}", 2);
}

static void test_method_not_allowed(void **state) {
  outcome_t o = run("POST /ws HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n");
  assert_int_equal(o.result, RT_HS_REJECT);
  assert_out(&o,
             "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n"
             "Connection: close\r\nAllow: GET\r\n\r\nonly GET is allowed\n");
  expect_reject("get /ws HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n", 405, "GET");
  expect_reject("HEAD /ws HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n", 405, "GET");
  expect_reject("GETS /ws HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n", 405, "GET");
}

static void test_http_version(void **state) {
  expect_reject("GET /ws HTTP/1.0\r\n" HOST UPG CONN KEY VER "\r\n", 400, "HTTP/1.1");
  expect_upgrade("GET /ws HTTP/1.2\r\n" HOST UPG CONN KEY VER "\r\n");
}

static void test_host(void **state) {
  expect_reject(GET_WS UPG CONN KEY VER "\r\n", 400, "missing Host");
  expect_reject(GET_WS HOST UPG CONN KEY VER "host: other\r\n\r\n", 400, "duplicate Host");
  expect_upgrade(GET_WS "Host: [::1]:8080\r\n" UPG CONN KEY VER "\r\n");
}

static void test_upgrade_header(void **state) {
  outcome_t o = run(GET_WS HOST CONN KEY VER "\r\n");
  assert_int_equal(o.result, RT_HS_REJECT);
  assert_out(&o,
             "HTTP/1.1 426 Upgrade Required\r\nContent-Type: text/plain\r\nContent-Length: 28\r\n"
             "Connection: Upgrade, close\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
             "\r\nUpgrade: websocket required\n");
  expect_reject(GET_WS HOST "Upgrade: h2c\r\n" CONN KEY VER "\r\n", 426, "Upgrade");
  expect_reject(GET_WS HOST "Upgrade: websockets\r\n" CONN KEY VER "\r\n", 426, "Upgrade");
  expect_reject(GET_WS HOST "Upgrade: web socket\r\n" CONN KEY VER "\r\n", 426, "Upgrade");
  expect_reject(GET_WS HOST "Upgrade:\r\n" CONN KEY VER "\r\n", 426, "Upgrade");
  expect_reject(GET_WS HOST "X-Upgrade: websocket\r\n" CONN KEY VER "\r\n", 426, "Upgrade");
}

static void test_connection_header(void **state) {
  expect_reject(GET_WS HOST UPG KEY VER "\r\n", 400, "Connection");
  expect_reject(GET_WS HOST UPG "Connection: keep-alive\r\n" KEY VER "\r\n", 400, "Connection");
  expect_reject(GET_WS HOST UPG "Connection: upgraded\r\n" KEY VER "\r\n", 400, "Connection");
  expect_reject(GET_WS HOST UPG "Connection: close\r\n" KEY VER "\r\n", 400, "Connection");
  expect_reject(GET_WS HOST UPG "Connection: keep-alive upgrade\r\n" KEY VER "\r\n", 400,
                "Connection");
}

static void test_version_header(void **state) {
  outcome_t o = run(GET_WS HOST UPG CONN KEY "Sec-WebSocket-Version: 8\r\n\r\n");
  assert_int_equal(o.result, RT_HS_REJECT);
  assert_int_equal(o.info.status, 426);
  assert_non_null(strstr(o.out, "\r\nSec-WebSocket-Version: 13\r\n"));
  assert_non_null(strstr(o.out, "\r\nUpgrade: websocket\r\n"));
  expect_reject(GET_WS HOST UPG CONN KEY "\r\n", 426, "Version");
  expect_reject(GET_WS HOST UPG CONN KEY "Sec-WebSocket-Version: 013\r\n\r\n", 426, "Version");
  expect_reject(GET_WS HOST UPG CONN KEY "Sec-WebSocket-Version: 13, 8\r\n\r\n", 426, "Version");
  expect_reject(GET_WS HOST UPG CONN KEY "Sec-WebSocket-Version: 14\r\n\r\n", 426, "Version");
  expect_reject(GET_WS HOST UPG CONN KEY "Sec-WebSocket-Version:\r\n\r\n", 426, "Version");
  expect_reject(GET_WS HOST UPG CONN KEY VER VER "\r\n", 426, "Version");
  expect_upgrade(GET_WS HOST UPG CONN KEY "Sec-WebSocket-Version:  13 \t\r\n\r\n");
}

static void test_key_header(void **state) {
  static const char *bad[] = {
      "",
      "dGhlIHNhbXBsZSBub25jZQ=",       /* 23 characters */
      "dGhlIHNhbXBsZSBub25jZQ===",     /* 25 characters */
      "dGhlIHNhbXBsZSBub25jZQ",        /* padding missing */
      "dGhlIHNhbXBsZSBub25jZQA",       /* 23 characters, no padding: 17 bytes */
      "dGhlIHNhbXBsZSBub25jZQA=",      /* 24 characters, one '=': 17 bytes */
      "AAAAAAAAAAAAAAAAAAAA",          /* 15 bytes, no padding */
      "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",  /* 20 bytes */
      "AAAAAAAAAAAAAAAAAAAAAA=A",      /* '=' inside */
      "AAAA=AAAAAAAAAAAAAAAAA==",      /* '=' inside */
      "AAAAAAAAAAAAAAAAAAAAA*==",      /* not base64 */
      "AAAAAAAAAAAAAAAAAAAAA-==",      /* base64url alphabet */
      "AAAAAAAAAAAAAAAAAAAAA_==",      /* base64url alphabet */
      "AAAAAAAAAA AAAAAAAAAAA==",      /* inner space */
      "AAAAAAAAAAAAAAAAAAAAAA==-",     /* trailing byte EVP_DecodeBlock would skip */
      "AAAAAAAAAAAAAAAAAAAAAA==AAAA",  /* trailing group */
  };
  char raw[256];
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    snprintf(raw, sizeof(raw), GET_WS HOST UPG CONN VER "Sec-WebSocket-Key: %s\r\n\r\n", bad[i]);
    expect_reject(raw, 400, "Sec-WebSocket-Key");
  }
  expect_reject(GET_WS HOST UPG CONN VER "\r\n", 400, "missing Sec-WebSocket-Key");
  expect_reject(GET_WS HOST UPG CONN VER KEY KEY "\r\n", 400, "invalid Sec-WebSocket-Key");
}

static void test_key_accepted_forms(void **state) {
  static const char *good[] = {
      "AAAAAAAAAAAAAAAAAAAAAA==",
      "/+/+/+/+/+/+/+/+/+/+/w==",
      "zzzzzzzzzzzzzzzzzzzzzz==", /* non-zero unused bits, accepted as by npm ws */
      "x3JJHMbDL1EzLkh9GBhXDw==",
  };
  char raw[256];
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    snprintf(raw, sizeof(raw), GET_WS HOST UPG CONN VER "Sec-WebSocket-Key:  %s \r\n\r\n", good[i]);
    outcome_t o = run(raw);
    assert_int_equal(o.result, RT_HS_UPGRADE);
    char accept[29];
    char line[64];
    rt_handshake_accept_key(good[i], 24, accept);
    snprintf(line, sizeof(line), "Sec-WebSocket-Accept: %s\r\n", accept);
    assert_non_null(strstr(o.out, line));
  }
}

/* The first failing rule decides, in the documented order. */
static void test_check_order(void **state) {
  expect_reject("POST /nope HTTP/1.0\r\n\r\n", 404, "path");
  expect_reject("POST /ws HTTP/1.0\r\n\r\n", 405, "GET");
  expect_reject("GET /ws HTTP/1.0\r\n\r\n", 400, "HTTP/1.1");
  expect_reject("GET /ws HTTP/1.1\r\n\r\n", 400, "missing Host");
  expect_reject(GET_WS HOST "\r\n", 426, "Upgrade");
  expect_reject(GET_WS HOST UPG "\r\n", 400, "Connection");
  expect_reject(GET_WS HOST UPG CONN "Sec-WebSocket-Key: bad\r\n\r\n", 426, "Version");
  expect_reject(GET_WS HOST UPG CONN VER "Sec-WebSocket-Key: bad\r\n\r\n", 400, "Key");
}

static void test_error_responses(void **state) {
  char out[512];
  const char *want =
      "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\n"
      "Content-Length: 23\r\nConnection: close\r\n\r\nrequest head too large\n";
  size_t n = rt_handshake_error(431, "request head too large", out, sizeof(out));
  assert_int_equal(n, strlen(want));
  assert_memory_equal(out, want, n);
  want = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
         "Connection: close\r\n\r\nBad Request\n";
  n = rt_handshake_error(400, NULL, out, sizeof(out));
  assert_int_equal(n, strlen(want));
  assert_memory_equal(out, want, n);
  n = rt_handshake_error(408, "timeout", out, sizeof(out));
  assert_true(n > 0);
  assert_memory_equal(out, "HTTP/1.1 408 Request Timeout\r\n", 30);
  assert_int_equal(rt_handshake_error(99, "x", out, sizeof(out)), 0);
  assert_int_equal(rt_handshake_error(600, "x", out, sizeof(out)), 0);
  want = "HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n"
         "Connection: close\r\nWWW-Authenticate: Bearer error=\"invalid_token\"\r\n\r\n"
         "Invalid token\n";
  n = rt_handshake_error(401, "Invalid token", out, sizeof(out));
  assert_int_equal(n, strlen(want));
  assert_memory_equal(out, want, n);
  want = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nContent-Length: 18\r\n"
         "Connection: close\r\nRetry-After: 5\r\n\r\nToo many requests\n";
  n = rt_handshake_error(429, "Too many requests", out, sizeof(out));
  assert_int_equal(n, strlen(want));
  assert_memory_equal(out, want, n);
}

/* realtime.v1 is echoed when offered (with or without a bearer entry), never a bearer entry. */
static void test_subprotocol_echo(void **state) {
  static const char *head =
      "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
      "Sec-WebSocket-Protocol: realtime.v1, bearer.a.b.c\r\n\r\n";
  rt_http_request_t r;
  char out[512];
  size_t n;
  assert_true(rt_http_parse_request(head, strlen(head), 8192, &r) > 0);
  assert_int_equal(rt_handshake_process(&r, "/ws", out, sizeof(out), &n, NULL), RT_HS_UPGRADE);
  const char *want = "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                     "Sec-WebSocket-Protocol: realtime.v1\r\n\r\n";
  assert_true(n > strlen(want));
  assert_memory_equal(out + n - strlen(want), want, strlen(want));
}

/*
 * Every capacity short of the full response gives 0 and writes nothing past
 * cap (the buffer is an exact-size heap block, so ASan would report it); the
 * exact size works.
 */
static void check_capacities(size_t (*write)(size_t cap, char *out), size_t full) {
  for (size_t cap = 0; cap <= full; cap++) {
    char *out = rt_malloc(cap > 0 ? cap : 1);
    assert_non_null(out);
    assert_int_equal(write(cap, out), cap == full ? full : 0);
    rt_free(out);
  }
}

static size_t write_error(size_t cap, char *out) { return rt_handshake_error(426, "r", out, cap); }

static size_t write_health(size_t cap, char *out) {
  return rt_handshake_health("{\"ok\":true}", out, cap);
}

static size_t write_upgrade(size_t cap, char *out) {
  rt_http_request_t req;
  size_t n = 99;
  assert_true(rt_http_parse_request(VALID, strlen(VALID), 8192, &req) > 0);
  assert_int_equal(rt_handshake_process(&req, "/ws", out, cap, &n, NULL), RT_HS_UPGRADE);
  return n;
}

static size_t write_reject(size_t cap, char *out) {
  rt_http_request_t req;
  size_t n = 99;
  const char *raw = "POST /ws HTTP/1.1\r\n\r\n";
  assert_true(rt_http_parse_request(raw, strlen(raw), 8192, &req) > 0);
  assert_int_equal(rt_handshake_process(&req, "/ws", out, cap, &n, NULL), RT_HS_REJECT);
  return n;
}

static void test_capacity(void **state) {
  char big[512];
  check_capacities(write_error, rt_handshake_error(426, "r", big, sizeof(big)));
  check_capacities(write_health, rt_handshake_health("{\"ok\":true}", big, sizeof(big)));
  check_capacities(write_upgrade, strlen(ACCEPT_RESPONSE));
  check_capacities(write_reject, write_reject(sizeof(big), big));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_accept_key_rfc6455),
      cmocka_unit_test(test_accept_key_length_bound),
      cmocka_unit_test(test_upgrade_exact_response),
      cmocka_unit_test(test_upgrade_info_optional),
      cmocka_unit_test(test_case_insensitive_fields),
      cmocka_unit_test(test_connection_and_upgrade_lists),
      cmocka_unit_test(test_path_and_query),
      cmocka_unit_test(test_not_found_exact_response),
      cmocka_unit_test(test_health),
      cmocka_unit_test(test_stats),
      cmocka_unit_test(test_health_response),
      cmocka_unit_test(test_method_not_allowed),
      cmocka_unit_test(test_http_version),
      cmocka_unit_test(test_host),
      cmocka_unit_test(test_upgrade_header),
      cmocka_unit_test(test_connection_header),
      cmocka_unit_test(test_version_header),
      cmocka_unit_test(test_key_header),
      cmocka_unit_test(test_key_accepted_forms),
      cmocka_unit_test(test_check_order),
      cmocka_unit_test(test_error_responses),
      cmocka_unit_test(test_subprotocol_echo),
      cmocka_unit_test(test_capacity),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
