/* Where credentials travel on the upgrade request (src/core/credentials.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/credentials.h"
#include "realtime/realtime.h"

static char head[4096];
static rt_http_request_t req;

static void parse(const char *target, const char *extra_headers) {
  snprintf(head, sizeof(head), "GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n", target, extra_headers);
  assert_true(rt_http_parse_request(head, strlen(head), sizeof(head), &req) > 0);
}

static void expect(int rc, const char *token, const char *key) {
  char scratch[256];
  rt_credentials_t c;
  assert_int_equal(rt_credentials_extract(&req, scratch, sizeof(scratch), &c), rc);
  if (rc != 0) return;
  if (token == NULL) {
    assert_null(c.token);
  } else {
    assert_non_null(c.token);
    assert_int_equal(c.token_len, strlen(token));
    assert_memory_equal(c.token, token, c.token_len);
  }
  if (key == NULL) {
    assert_null(c.api_key);
  } else {
    assert_non_null(c.api_key);
    assert_int_equal(c.api_key_len, strlen(key));
    assert_memory_equal(c.api_key, key, c.api_key_len);
  }
}

static void test_none(void **state) {
  parse("/ws", "");
  expect(0, NULL, NULL);
  parse("/ws?x=1", "");
  expect(0, NULL, NULL);
}

static void test_authorization_bearer(void **state) {
  parse("/ws", "Authorization: Bearer a.b.c\r\n");
  expect(0, "a.b.c", NULL);
  parse("/ws", "authorization: bEaReR   a.b.c\r\n");
  expect(0, "a.b.c", NULL);
  parse("/ws", "Authorization: Basic dXNlcjpwYXNz\r\n");
  expect(RT_ETOKEN, NULL, NULL);
  parse("/ws", "Authorization: Bearer \r\n");
  expect(RT_ETOKEN, NULL, NULL);
  parse("/ws", "Authorization: Bearer a\r\nAuthorization: Bearer b\r\n");
  expect(RT_ETOKEN, NULL, NULL);
}

static void test_subprotocol(void **state) {
  parse("/ws", "Sec-WebSocket-Protocol: realtime.v1, bearer.x.y.z\r\n");
  expect(0, "x.y.z", NULL);
  assert_true(rt_credentials_offers_subprotocol(&req));
  parse("/ws", "Sec-WebSocket-Protocol: bearer.x.y.z\r\n");
  expect(0, "x.y.z", NULL);
  assert_false(rt_credentials_offers_subprotocol(&req));
  parse("/ws", "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: Realtime.V1\r\n");
  assert_true(rt_credentials_offers_subprotocol(&req));
  expect(0, NULL, NULL);
  /* The header wins over the subprotocol and the query. */
  parse("/ws?token=q", "Sec-WebSocket-Protocol: bearer.p\r\nAuthorization: Bearer h\r\n");
  expect(0, "h", NULL);
}

static void test_query(void **state) {
  parse("/ws?token=a.b.c", "");
  expect(0, "a.b.c", NULL);
  parse("/ws?x=1&token=a%2Eb&y=2", "");
  expect(0, "a.b", NULL);
  parse("/ws?mytoken=zz", "");
  expect(0, NULL, NULL);
  parse("/ws?token=a&token=b", "");
  expect(RT_ETOKEN, NULL, NULL);
  parse("/ws?token=a%2", "");
  expect(RT_ETOKEN, NULL, NULL);
  parse("/ws?token=a%zz", "");
  expect(RT_ETOKEN, NULL, NULL);
  parse("/ws?token=", "");
  expect(RT_ETOKEN, NULL, NULL);
}

static void test_api_key(void **state) {
  parse("/ws", "X-API-Key: secret-api-key-123\r\n");
  expect(0, NULL, "secret-api-key-123");
  parse("/ws?api_key=k%20y", "");
  expect(0, NULL, "k y");
  parse("/ws?api_key=q", "x-api-key: h\r\n");
  expect(0, NULL, "h");
  parse("/ws", "X-API-Key: a\r\nX-API-Key: b\r\n");
  expect(RT_ETOKEN, NULL, NULL);
  parse("/ws?token=t&api_key=k", "");
  expect(0, "t", "k");
}

static void test_scratch_too_small(void **state) {
  char scratch[4];
  rt_credentials_t c;
  parse("/ws?token=abcdefgh", "");
  assert_int_equal(rt_credentials_extract(&req, scratch, sizeof(scratch), &c), RT_ETOKEN);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_none),          cmocka_unit_test(test_authorization_bearer),
      cmocka_unit_test(test_subprotocol),   cmocka_unit_test(test_query),
      cmocka_unit_test(test_api_key),       cmocka_unit_test(test_scratch_too_small),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
