/*
 * The security calls of the public API (src/security.c), which mirror the
 * seed's authenticateConnection, handleConnection, addApiKey,
 * checkChannelPermission, enforceRateLimit and validateMessage. The pure
 * modules behind them have their own tests; these check the wiring and the
 * requireAuth on/off semantics.
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "realtime/realtime.h"

#define SECRET "test-secret"

/* base64url without padding (RFC 7515 2). */
static void b64url(const unsigned char *in, size_t n, char *out) {
  int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
  while (len > 0 && out[len - 1] == '=') len--;
  out[len] = '\0';
  for (char *p = out; *p; p++) *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
}

/* An HS256 token for `payload`, signed with `secret`. */
static void mint(const char *payload, const char *secret, char *out) {
  char h[128], p[512];
  const char *header = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
  b64url((const unsigned char *)header, strlen(header), h);
  b64url((const unsigned char *)payload, strlen(payload), p);
  char signing[1024];
  snprintf(signing, sizeof(signing), "%s.%s", h, p);
  unsigned char mac[32];
  unsigned maclen = 0;
  HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)signing, strlen(signing),
       mac, &maclen);
  char s[64];
  b64url(mac, maclen, s);
  sprintf(out, "%s.%s", signing, s);
}

static rt_server_t *server(int require_auth, const char *secret) {
  rt_config_t cfg;
  rt_config_init(&cfg);
  cfg.host = "127.0.0.1";
  cfg.port = 0;
  cfg.require_auth = require_auth;
  cfg.jwt_secret = secret;
  cfg.rate_limit.max_connections = 2;
  rt_server_t *srv = NULL;
  assert_int_equal(rt_server_new(&cfg, &srv), 0);
  return srv;
}

static void test_authenticate(void **state) {
  rt_server_t *srv = server(1, SECRET);
  char tok[1024];
  rt_auth_result_t r;
  mint("{\"id\":\"user-123\",\"permissions\":[\"read:*\",\"write:metrics\"]}", SECRET, tok);
  assert_int_equal(rt_server_authenticate(srv, tok, &r), 0);
  assert_true(r.success);
  assert_string_equal(r.user_id, "user-123");
  assert_int_equal(r.permission_count, 2);
  assert_string_equal(r.permissions[1], "write:metrics");
  rt_auth_result_destroy(&r);
  assert_null(r.user_id);

  mint("{\"sub\":\"x\"}", "other-secret", tok);
  assert_int_equal(rt_server_authenticate(srv, tok, &r), RT_ETOKEN);
  assert_false(r.success);
  assert_non_null(strstr(r.error, "signature"));
  assert_null(strstr(r.error, tok)); /* never echoes the token */
  rt_auth_result_destroy(&r);

  char payload[128];
  snprintf(payload, sizeof(payload), "{\"sub\":\"x\",\"exp\":%lld}", (long long)time(NULL) - 3600);
  mint(payload, SECRET, tok);
  assert_int_equal(rt_server_authenticate(srv, tok, &r), RT_EEXPIRED);
  assert_string_equal(r.error, "Token expired");
  rt_auth_result_destroy(&r);

  assert_int_equal(rt_server_authenticate(srv, NULL, &r), RT_EAUTHREQ);
  rt_auth_result_destroy(&r);
  rt_server_free(srv);
}

static void test_require_auth_needs_a_key(void **state) {
  rt_config_t cfg;
  rt_config_init(&cfg);
  cfg.require_auth = 1;
  rt_server_t *srv = (rt_server_t *)1;
  assert_int_equal(rt_server_new(&cfg, &srv), RT_ECONFIG);
  assert_null(srv);
}

static void test_handle_connection(void **state) {
  rt_server_t *srv = server(1, SECRET);
  char tok[1024];
  mint("{\"sub\":\"u\"}", SECRET, tok);
  rt_connection_request_t req = {tok, NULL, "10.0.0.1"};
  assert_int_equal(rt_server_handle_connection(srv, &req), 0);
  req.token = "garbage";
  assert_int_equal(rt_server_handle_connection(srv, &req), RT_ETOKEN);
  req.token = NULL;
  assert_int_equal(rt_server_handle_connection(srv, &req), RT_EAUTHREQ);
  req.api_key = "k-1";
  assert_int_equal(rt_server_handle_connection(srv, &req), RT_ETOKEN);
  const char *perms[] = {"read:metrics"};
  assert_int_equal(rt_server_add_api_key(srv, "k-1", "dashboard", perms, 1), 0);
  assert_int_equal(rt_server_add_api_key(srv, "k-1", "dashboard", perms, 1), RT_EEXIST);
  const char *bad[] = {"fly:away"};
  assert_int_equal(rt_server_add_api_key(srv, "k-2", "x", bad, 1), RT_EINVAL);
  assert_int_equal(rt_server_handle_connection(srv, &req), 0);
  assert_int_equal(rt_server_revoke_api_key(srv, "k-1"), 0);
  assert_int_equal(rt_server_revoke_api_key(srv, "k-1"), RT_ENOENT);
  assert_int_equal(rt_server_handle_connection(srv, &req), RT_ETOKEN);
  rt_server_free(srv);

  srv = server(0, NULL); /* auth off: everyone is admitted, as in the seed */
  rt_connection_request_t anon = {NULL, NULL, "10.0.0.1"};
  assert_int_equal(rt_server_handle_connection(srv, &anon), 0);
  rt_server_free(srv);
}

static void test_unknown_clients(void **state) {
  rt_server_t *srv = server(0, NULL);
  assert_int_equal(rt_server_check_channel_permission(srv, 42, "chat", 0), 0);
  assert_int_equal(rt_server_enforce_rate_limit(srv, 42, "publish"), RT_ENOENT);
  rt_server_free(srv);
}

static void test_validate_message(void **state) {
  rt_server_t *srv = server(0, NULL);
  char msg[256];
  const char *ok = "{\"text\":\"Hello!\",\"n\":1}";
  assert_int_equal(rt_server_validate_message(srv, ok, strlen(ok), msg, sizeof(msg)), 0);
  const char *xss = "{\"text\":\"<script>alert(1)</script>\"}";
  assert_int_equal(rt_server_validate_message(srv, xss, strlen(xss), msg, sizeof(msg)), RT_EMESSAGE);
  assert_non_null(strstr(msg, "script"));
  const char *esc = "{\"text\":\"\\u003cscript>\"}";
  assert_int_equal(rt_server_validate_message(srv, esc, strlen(esc), NULL, 0), RT_EMESSAGE);
  assert_int_equal(rt_server_validate_message(srv, "{bad", 4, msg, sizeof(msg)), RT_EJSON);
  rt_server_free(srv);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_authenticate),
      cmocka_unit_test(test_require_auth_needs_a_key),
      cmocka_unit_test(test_handle_connection),
      cmocka_unit_test(test_unknown_clients),
      cmocka_unit_test(test_validate_message),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
