/*
 * Config loading: defaults, the JSON file, REALTIME_* variables, flag values,
 * validation, and the all-or-nothing guarantee (a failed load changes nothing).
 * Environments are injected as arrays, never through setenv.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "config.h"

#define ORIGIN "cfg.json"

/* Every key with its variable, as the brief names them; the table must match exactly. */
static const struct {
  const char *key;
  const char *env;
} known_keys[] = {
    {"port", "REALTIME_PORT"},
    {"host", "REALTIME_HOST"},
    {"path", "REALTIME_PATH"},
    {"pingInterval", "REALTIME_PING_INTERVAL"},
    {"presenceTimeout", "REALTIME_PRESENCE_TIMEOUT"},
    {"requireAuth", "REALTIME_REQUIRE_AUTH"},
    {"jwtSecret", "REALTIME_JWT_SECRET"},
    {"rateLimit.maxConnections", "REALTIME_RATE_LIMIT_MAX_CONNECTIONS"},
    {"rateLimit.maxMessagesPerMinute", "REALTIME_RATE_LIMIT_MAX_MESSAGES_PER_MINUTE"},
    {"rateLimit.windowMs", "REALTIME_RATE_LIMIT_WINDOW_MS"},
    {"maxMessageSize", "REALTIME_MAX_MESSAGE_SIZE"},
    {"maxPublishSize", "REALTIME_MAX_PUBLISH_SIZE"},
    {"maxSubscriptions", "REALTIME_MAX_SUBSCRIPTIONS"},
    {"maxQueuedBytes", "REALTIME_MAX_QUEUED_BYTES"},
    {"maxHeaderSize", "REALTIME_MAX_HEADER_SIZE"},
    {"handshakeTimeout", "REALTIME_HANDSHAKE_TIMEOUT"},
    {"shutdownTimeout", "REALTIME_SHUTDOWN_TIMEOUT"},
    {"maxJsonDepth", "REALTIME_MAX_JSON_DEPTH"},
};
#define KNOWN_COUNT (sizeof(known_keys) / sizeof(known_keys[0]))

static const char full_json[] =
    "{\n"
    "  \"port\": 9001, \"host\": \"127.0.0.1\", \"path\": \"/realtime\",\n"
    "  \"pingInterval\": 1500, \"presenceTimeout\": 2500,\n"
    "  \"requireAuth\": true, \"jwtSecret\": \"s3cret\",\n"
    "  \"rateLimit\": {\"maxConnections\": 10, \"maxMessagesPerMinute\": 60, \"windowMs\": 30000},\n"
    "  \"maxMessageSize\": 2097152, \"maxPublishSize\": 1048576, \"maxSubscriptions\": 50,\n"
    "  \"maxQueuedBytes\": 8388608, \"maxHeaderSize\": 16384, \"handshakeTimeout\": 3000,\n"
    "  \"shutdownTimeout\": 0, \"maxJsonDepth\": 16\n"
    "}\n";

static void assert_contains(const char *haystack, const char *needle) {
  if (strstr(haystack, needle) == NULL) fail_msg("\"%s\" does not contain \"%s\"", haystack, needle);
}

/* Field-by-field identity, string pointers included: "unchanged" means nothing was re-pointed. */
static void assert_config_same(const rt_config_t *a, const rt_config_t *b) {
  assert_ptr_equal(a->host, b->host);
  assert_int_equal(a->port, b->port);
  assert_ptr_equal(a->path, b->path);
  assert_int_equal(a->ping_interval_ms, b->ping_interval_ms);
  assert_int_equal(a->presence_timeout_ms, b->presence_timeout_ms);
  assert_int_equal(a->require_auth, b->require_auth);
  assert_ptr_equal(a->jwt_secret, b->jwt_secret);
  assert_int_equal(a->rate_limit.max_connections, b->rate_limit.max_connections);
  assert_int_equal(a->rate_limit.max_messages_per_minute, b->rate_limit.max_messages_per_minute);
  assert_int_equal(a->rate_limit.window_ms, b->rate_limit.window_ms);
  assert_int_equal(a->max_message_size, b->max_message_size);
  assert_int_equal(a->max_publish_size, b->max_publish_size);
  assert_int_equal(a->max_subscriptions, b->max_subscriptions);
  assert_int_equal(a->max_queued_bytes, b->max_queued_bytes);
  assert_int_equal(a->max_header_size, b->max_header_size);
  assert_int_equal(a->handshake_timeout_ms, b->handshake_timeout_ms);
  assert_int_equal(a->shutdown_timeout_ms, b->shutdown_timeout_ms);
  assert_int_equal(a->max_json_depth, b->max_json_depth);
  assert_ptr_equal(a->loop, b->loop);
}

static void assert_full_config(const rt_config_t *cfg) {
  assert_int_equal(cfg->port, 9001);
  assert_string_equal(cfg->host, "127.0.0.1");
  assert_string_equal(cfg->path, "/realtime");
  assert_int_equal(cfg->ping_interval_ms, 1500);
  assert_int_equal(cfg->presence_timeout_ms, 2500);
  assert_int_equal(cfg->require_auth, 1);
  assert_string_equal(cfg->jwt_secret, "s3cret");
  assert_int_equal(cfg->rate_limit.max_connections, 10);
  assert_int_equal(cfg->rate_limit.max_messages_per_minute, 60);
  assert_int_equal(cfg->rate_limit.window_ms, 30000);
  assert_int_equal(cfg->max_message_size, 2097152);
  assert_int_equal(cfg->max_publish_size, 1048576);
  assert_int_equal(cfg->max_subscriptions, 50);
  assert_int_equal(cfg->max_queued_bytes, 8388608);
  assert_int_equal(cfg->max_header_size, 16384);
  assert_int_equal(cfg->handshake_timeout_ms, 3000);
  assert_int_equal(cfg->shutdown_timeout_ms, 0);
  assert_int_equal(cfg->max_json_depth, 16);
}

static int load(rt_config_store_t *store, rt_config_t *cfg, const char *json, rt_errbuf_t *err) {
  return rt_config_load_json(store, cfg, json, strlen(json), ORIGIN, err);
}

/*
 * Loads `json` onto defaults and expects it refused with `code` and exactly
 * `msg`, leaving the config as it was.
 */
static void expect_json_error(const char *json, int code, const char *msg) {
  rt_config_store_t store;
  rt_config_t cfg, before;
  rt_errbuf_t err = {""};
  rt_config_store_init(&store);
  rt_config_init(&cfg);
  before = cfg;
  int rc = load(&store, &cfg, json, &err);
  if (rc != code) fail_msg("%s: got %s (%s), want %s", json, rt_err_name(rc), err.msg, rt_err_name(code));
  assert_string_equal(err.msg, msg);
  assert_config_same(&cfg, &before);
  assert_null(store.host);
  rt_config_store_destroy(&store);
}

/* Wraps one key path in JSON with `value`: "rateLimit.windowMs" -> {"rateLimit":{"windowMs":V}}. */
static void json_for_key(const char *key, const char *value, char *buf, size_t cap) {
  const char *dot = strchr(key, '.');
  if (dot == NULL) {
    snprintf(buf, cap, "{\"%s\": %s}", key, value);
  } else {
    snprintf(buf, cap, "{\"%.*s\": {\"%s\": %s}}", (int)(dot - key), key, dot + 1, value);
  }
}

static void test_defaults(void **state) {
  rt_config_t cfg;
  memset(&cfg, 0xa5, sizeof(cfg));
  rt_config_init(&cfg);
  assert_string_equal(cfg.host, "0.0.0.0");
  assert_int_equal(cfg.port, 8080);
  assert_string_equal(cfg.path, "/ws");
  assert_int_equal(cfg.ping_interval_ms, 30000);
  assert_int_equal(cfg.presence_timeout_ms, 60000);
  assert_int_equal(cfg.require_auth, 0);
  assert_null(cfg.jwt_secret);
  assert_int_equal(cfg.rate_limit.max_connections, 0);
  assert_int_equal(cfg.rate_limit.max_messages_per_minute, 0);
  assert_int_equal(cfg.rate_limit.window_ms, 60000);
  assert_int_equal(cfg.max_message_size, 1024 * 1024);
  assert_int_equal(cfg.max_publish_size, 512 * 1024);
  assert_int_equal(cfg.max_subscriptions, 1024);
  assert_int_equal(cfg.max_queued_bytes, 4 * 1024 * 1024);
  assert_int_equal(cfg.max_header_size, 8192);
  assert_int_equal(cfg.handshake_timeout_ms, 10000);
  assert_int_equal(cfg.shutdown_timeout_ms, 5000);
  assert_int_equal(cfg.max_json_depth, 64);
  assert_null(cfg.loop);
  rt_errbuf_t err = {""};
  assert_int_equal(rt_config_validate(&cfg, &err), 0);
}

static void test_key_table_matches_env_names(void **state) {
  size_t n = 0;
  while (rt_config_key(n) != NULL) n++;
  assert_int_equal(n, KNOWN_COUNT);
  for (size_t i = 0; i < KNOWN_COUNT; i++) {
    char name[128];
    assert_string_equal(rt_config_key(i), known_keys[i].key);
    assert_int_equal(rt_config_env_name(known_keys[i].key, name, sizeof(name)), 0);
    assert_string_equal(name, known_keys[i].env);
    assert_string_equal(rt_config_key_for_env(known_keys[i].env), known_keys[i].key);
  }
  char small[8];
  assert_int_equal(rt_config_env_name("port", small, sizeof(small)), RT_EINVAL);
  assert_int_equal(rt_config_env_name("prot", small, sizeof(small)), RT_ENOENT);
  assert_int_equal(rt_config_env_name("rateLimit", small, sizeof(small)), RT_ENOENT);
  assert_null(rt_config_key_for_env("REALTIME_PROT"));
  assert_null(rt_config_key_for_env("REALTIME_RATE_LIMIT"));
  assert_null(rt_config_key_for_env("PORT"));
}

static void test_every_key_parsed(void **state) {
  rt_config_store_t store;
  rt_config_t cfg;
  rt_errbuf_t err = {""};
  rt_config_store_init(&store);
  rt_config_init(&cfg);
  assert_int_equal(load(&store, &cfg, full_json, &err), 0);
  assert_full_config(&cfg);
  assert_ptr_equal(cfg.host, store.host);
  assert_ptr_equal(cfg.path, store.path);
  assert_ptr_equal(cfg.jwt_secret, store.jwt_secret);
  assert_int_equal(rt_config_validate(&cfg, &err), 0);
  rt_config_store_destroy(&store);
}

static void test_partial_file_keeps_defaults(void **state) {
  rt_config_store_t store;
  rt_config_t cfg, defaults;
  rt_errbuf_t err = {""};
  rt_config_store_init(&store);
  rt_config_init(&cfg);
  rt_config_init(&defaults);
  assert_int_equal(load(&store, &cfg, "{\"rateLimit\": {\"maxConnections\": 7}}", &err), 0);
  assert_int_equal(cfg.rate_limit.max_connections, 7);
  defaults.rate_limit.max_connections = 7;
  assert_config_same(&cfg, &defaults);
  assert_int_equal(load(&store, &cfg, "{}", &err), 0);
  assert_config_same(&cfg, &defaults);
  rt_config_store_destroy(&store);
}

static void test_every_key_rejects_wrong_type(void **state) {
  for (size_t i = 0; i < KNOWN_COUNT; i++) {
    char json[160], want[160];
    json_for_key(known_keys[i].key, "[1]", json, sizeof(json));
    snprintf(want, sizeof(want), ORIGIN ": \"%s\" must be ", known_keys[i].key);
    rt_config_store_t store;
    rt_config_t cfg, before;
    rt_errbuf_t err = {""};
    rt_config_store_init(&store);
    rt_config_init(&cfg);
    before = cfg;
    assert_int_equal(load(&store, &cfg, json, &err), RT_ECONFIG);
    assert_contains(err.msg, want);
    assert_contains(err.msg, "(got an array)");
    assert_config_same(&cfg, &before);
    rt_config_store_destroy(&store);
  }
}

static void test_every_number_rejects_out_of_range(void **state) {
  for (size_t i = 0; i < KNOWN_COUNT; i++) {
    const char *key = known_keys[i].key;
    if (!strcmp(key, "host") || !strcmp(key, "path") || !strcmp(key, "jwtSecret") ||
        !strcmp(key, "requireAuth")) {
      continue;
    }
    char json[160], want[160];
    json_for_key(key, "99999999999", json, sizeof(json));
    snprintf(want, sizeof(want), ORIGIN ": \"%s\" must be an integer ", key);
    rt_config_store_t store;
    rt_config_t cfg;
    rt_errbuf_t err = {""};
    rt_config_store_init(&store);
    rt_config_init(&cfg);
    assert_int_equal(load(&store, &cfg, json, &err), RT_ECONFIG);
    assert_contains(err.msg, want);
    assert_contains(err.msg, "(got 99999999999)");
    rt_config_store_destroy(&store);
  }
}

static void test_type_and_range_messages(void **state) {
  expect_json_error("{\"port\": 70000}", RT_ECONFIG,
                    ORIGIN ": \"port\" must be an integer 0-65535 (got 70000)");
  expect_json_error("{\"port\": -1}", RT_ECONFIG,
                    ORIGIN ": \"port\" must be an integer 0-65535 (got -1)");
  expect_json_error("{\"port\": \"8080\"}", RT_ECONFIG,
                    ORIGIN ": \"port\" must be an integer 0-65535 (got a string)");
  expect_json_error("{\"port\": 80.5}", RT_ECONFIG,
                    ORIGIN ": \"port\" must be an integer 0-65535 (got 80.5)");
  expect_json_error("{\"port\": 8080.0}", RT_ECONFIG,
                    ORIGIN ": \"port\" must be an integer 0-65535 (got 8080.0)");
  expect_json_error("{\"port\": null}", RT_ECONFIG,
                    ORIGIN ": \"port\" must be an integer 0-65535 (got null)");
  expect_json_error("{\"requireAuth\": 1}", RT_ECONFIG,
                    ORIGIN ": \"requireAuth\" must be true or false (got 1)");
  expect_json_error("{\"host\": 5}", RT_ECONFIG, ORIGIN ": \"host\" must be a string (got 5)");
  expect_json_error("{\"host\": \"\"}", RT_ECONFIG,
                    ORIGIN ": \"host\" must be a non-empty string (got \"\")");
  expect_json_error("{\"path\": \"ws\"}", RT_ECONFIG,
                    ORIGIN ": \"path\" must be a path starting with '/' without spaces, controls, "
                           "'?' or '#' (got \"ws\")");
  expect_json_error("{\"path\": \"/ws?x=1\"}", RT_ECONFIG,
                    ORIGIN ": \"path\" must be a path starting with '/' without spaces, controls, "
                           "'?' or '#' (got \"/ws?x=1\")");
  expect_json_error("{\"rateLimit\": 5}", RT_ECONFIG,
                    ORIGIN ": \"rateLimit\" must be an object (got 5)");
  expect_json_error("{\"rateLimit\": {\"windowMs\": 0}}", RT_ECONFIG,
                    ORIGIN ": \"rateLimit.windowMs\" must be an integer 1-86400000 (got 0)");
  expect_json_error("{\"maxMessageSize\": 0}", RT_ECONFIG,
                    ORIGIN ": \"maxMessageSize\" must be an integer 1-1073741824 (got 0)");
  expect_json_error("{\"maxHeaderSize\": 255}", RT_ECONFIG,
                    ORIGIN ": \"maxHeaderSize\" must be an integer 256-1048576 (got 255)");
  expect_json_error("{\"maxJsonDepth\": 1025}", RT_ECONFIG,
                    ORIGIN ": \"maxJsonDepth\" must be an integer 1-1024 (got 1025)");
  expect_json_error("{\"pingInterval\": 4294967296}", RT_ECONFIG,
                    ORIGIN ": \"pingInterval\" must be an integer 0-86400000 (got 4294967296)");
}

/* The first mistake in file order is the one reported, and earlier good keys are not kept. */
static void test_first_error_wins_and_nothing_applies(void **state) {
  expect_json_error("{\"port\": 1, \"host\": \"h\", \"pingInterval\": -5, \"prot\": 2}", RT_ECONFIG,
                    ORIGIN ": \"pingInterval\" must be an integer 0-86400000 (got -5)");
}

static void test_unknown_keys(void **state) {
  expect_json_error("{\"prot\": 1}", RT_ECONFIG, ORIGIN ": unknown key \"prot\" (did you mean \"port\"?)");
  expect_json_error("{\"Port\": 1}", RT_ECONFIG, ORIGIN ": unknown key \"Port\" (did you mean \"port\"?)");
  expect_json_error("{\"ratelimit\": {}}", RT_ECONFIG,
                    ORIGIN ": unknown key \"ratelimit\" (did you mean \"rateLimit\"?)");
  expect_json_error("{\"rateLimit\": {\"maxConection\": 1}}", RT_ECONFIG,
                    ORIGIN ": unknown key \"rateLimit.maxConection\" "
                           "(did you mean \"rateLimit.maxConnections\"?)");
  expect_json_error("{\"rateLimit\": {\"port\": 1}}", RT_ECONFIG,
                    ORIGIN ": unknown key \"rateLimit.port\"");
  expect_json_error("{\"zzzzzz\": 1}", RT_ECONFIG, ORIGIN ": unknown key \"zzzzzz\"");
  expect_json_error("{\"rateLimit.windowMs\": 5}", RT_ECONFIG,
                    ORIGIN ": unknown key \"rateLimit.windowMs\" (keys contain no '.'; nest "
                           "objects instead)");
  expect_json_error("{\"port\": 1, \"logLevel\": \"debug\"}", RT_ECONFIG,
                    ORIGIN ": unknown key \"logLevel\"");
  char json[300], want[300];
  char long_key[201];
  memset(long_key, 'k', 200);
  long_key[200] = '\0';
  snprintf(json, sizeof(json), "{\"%s\": 1}", long_key);
  snprintf(want, sizeof(want), ORIGIN ": unknown key \"%.64s\"", long_key);
  expect_json_error(json, RT_ECONFIG, want);
}

/*
 * A syntax error reports where it is; jansson's own wording after the
 * position is checked only where it matters (`needle`).
 */
static void expect_syntax_error(const char *json, int line, int column, const char *needle) {
  rt_config_store_t store;
  rt_config_t cfg, before;
  rt_errbuf_t err = {""};
  char want[128];
  rt_config_store_init(&store);
  rt_config_init(&cfg);
  before = cfg;
  assert_int_equal(load(&store, &cfg, json, &err), RT_EJSON);
  snprintf(want, sizeof(want), ORIGIN ": invalid JSON at line %d, column %d: ", line, column);
  if (strncmp(err.msg, want, strlen(want)) != 0) fail_msg("\"%s\" lacks \"%s\"", err.msg, want);
  assert_contains(err.msg, needle);
  assert_config_same(&cfg, &before);
  rt_config_store_destroy(&store);
}

static void test_json_syntax_errors(void **state) {
  expect_syntax_error("{\n  \"port\": 80,\n}", 3, 1, "expected near '}'");
  expect_syntax_error("{\n\"host\": tru }", 2, 11, "invalid token near 'tru'");
  expect_syntax_error("", 1, 0, "expected near end of file");
  expect_syntax_error("{} x", 1, 4, "end of file expected near 'x'");
  expect_syntax_error("{\"port\": 1, \"port\": 2}", 1, 18, "duplicate object key");
  expect_syntax_error("{\"port\": 99999999999999999999}", 1, 29, "too big integer");
  expect_syntax_error("{\"host\": \"a\\u0000b\"}", 1, 19, "\\u0000 is not allowed");
  expect_json_error("[1, 2]", RT_ECONFIG, ORIGIN ": the top level must be a JSON object");
}

static void test_env_every_variable(void **state) {
  char *env[] = {
      "HOME=/root",
      "REALTIME_PORTX=1",
      "REALTIME_PORT=9001",
      "REALTIME_PORT=1",
      "REALTIME_HOST=127.0.0.1",
      "REALTIME_PATH=/realtime",
      "REALTIME_PING_INTERVAL=1500",
      "REALTIME_PRESENCE_TIMEOUT=2500",
      "REALTIME_REQUIRE_AUTH=true",
      "REALTIME_JWT_SECRET=s3cret",
      "REALTIME_RATE_LIMIT_MAX_CONNECTIONS=10",
      "REALTIME_RATE_LIMIT_MAX_MESSAGES_PER_MINUTE=60",
      "REALTIME_RATE_LIMIT_WINDOW_MS=30000",
      "REALTIME_MAX_MESSAGE_SIZE=2097152",
      "REALTIME_MAX_PUBLISH_SIZE=1048576",
      "REALTIME_MAX_SUBSCRIPTIONS=50",
      "REALTIME_MAX_QUEUED_BYTES=8388608",
      "REALTIME_MAX_HEADER_SIZE=16384",
      "REALTIME_HANDSHAKE_TIMEOUT=3000",
      "REALTIME_SHUTDOWN_TIMEOUT=0",
      "REALTIME_MAX_JSON_DEPTH=16",
      NULL,
  };
  rt_config_store_t store;
  rt_config_t cfg;
  rt_errbuf_t err = {""};
  rt_config_store_init(&store);
  rt_config_init(&cfg);
  assert_int_equal(rt_config_apply_env(&store, &cfg, env, &err), 0);
  assert_full_config(&cfg);
  rt_config_store_destroy(&store);
}

static void test_env_booleans(void **state) {
  static const struct {
    const char *text;
    int want;
  } cases[] = {{"true", 1}, {"TRUE", 1}, {"1", 1}, {"false", 0}, {"False", 0}, {"0", 0}};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char var[64];
    snprintf(var, sizeof(var), "REALTIME_REQUIRE_AUTH=%s", cases[i].text);
    char *env[] = {var, NULL};
    rt_config_store_t store;
    rt_config_t cfg;
    rt_errbuf_t err = {""};
    rt_config_store_init(&store);
    rt_config_init(&cfg);
    cfg.require_auth = !cases[i].want;
    assert_int_equal(rt_config_apply_env(&store, &cfg, env, &err), 0);
    assert_int_equal(cfg.require_auth, cases[i].want);
    rt_config_store_destroy(&store);
  }
}

static void expect_env_error(const char *var, const char *msg) {
  char *env[] = {"REALTIME_HOST=from-env", (char *)var, NULL};
  rt_config_store_t store;
  rt_config_t cfg, before;
  rt_errbuf_t err = {""};
  rt_config_store_init(&store);
  rt_config_init(&cfg);
  before = cfg;
  assert_int_equal(rt_config_apply_env(&store, &cfg, env, &err), RT_ECONFIG);
  assert_string_equal(err.msg, msg);
  assert_config_same(&cfg, &before);
  assert_null(store.host);
  rt_config_store_destroy(&store);
}

static void test_env_errors_name_the_variable(void **state) {
  expect_env_error("REALTIME_PORT=abc", "REALTIME_PORT must be an integer 0-65535 (got \"abc\")");
  expect_env_error("REALTIME_PORT=", "REALTIME_PORT must be an integer 0-65535 (got \"\")");
  expect_env_error("REALTIME_PORT= 80", "REALTIME_PORT must be an integer 0-65535 (got \" 80\")");
  expect_env_error("REALTIME_PORT=+80", "REALTIME_PORT must be an integer 0-65535 (got \"+80\")");
  expect_env_error("REALTIME_PORT=-1", "REALTIME_PORT must be an integer 0-65535 (got \"-1\")");
  expect_env_error("REALTIME_PORT=80x", "REALTIME_PORT must be an integer 0-65535 (got \"80x\")");
  expect_env_error("REALTIME_PORT=65536", "REALTIME_PORT must be an integer 0-65535 (got \"65536\")");
  expect_env_error("REALTIME_MAX_QUEUED_BYTES=18446744073709551617",
                   "REALTIME_MAX_QUEUED_BYTES must be an integer 1-17179869184 "
                   "(got \"18446744073709551617\")");
  expect_env_error("REALTIME_REQUIRE_AUTH=yes",
                   "REALTIME_REQUIRE_AUTH must be true, false, 1 or 0 (got \"yes\")");
  expect_env_error("REALTIME_PATH=ws",
                   "REALTIME_PATH must be a path starting with '/' without spaces, controls, "
                   "'?' or '#' (got \"ws\")");
  expect_env_error("REALTIME_RATE_LIMIT_WINDOW_MS=0",
                   "REALTIME_RATE_LIMIT_WINDOW_MS must be an integer 1-86400000 (got \"0\")");
  expect_env_error("REALTIME_PING_INTERVAL=123456789012345678901234567890123456789",
                   "REALTIME_PING_INTERVAL must be an integer 0-86400000 "
                   "(got \"12345678901234567890123456789012...\")");
}

static void test_env_absent_and_null(void **state) {
  rt_config_store_t store;
  rt_config_t cfg, before;
  rt_errbuf_t err = {""};
  char *env[] = {"PATH=/usr/bin", "REALTIME=1", "REALTIMED=/bin/x", NULL};
  rt_config_store_init(&store);
  rt_config_init(&cfg);
  before = cfg;
  assert_int_equal(rt_config_apply_env(&store, &cfg, env, &err), 0);
  assert_config_same(&cfg, &before);
  assert_int_equal(rt_config_apply_env(&store, &cfg, NULL, &err), 0);
  assert_config_same(&cfg, &before);
  rt_config_store_destroy(&store);
}

/* flags > environment > file > defaults, built by calling the layers in that order. */
static void test_precedence(void **state) {
  rt_config_store_t store;
  rt_config_t cfg;
  rt_errbuf_t err = {""};
  char *env[] = {"REALTIME_PORT=2000", "REALTIME_HOST=env-host", "REALTIME_JWT_SECRET=env-secret",
                 NULL};
  rt_config_store_init(&store);
  rt_config_init(&cfg);
  assert_int_equal(load(&store, &cfg,
                        "{\"port\": 1000, \"host\": \"file-host\", \"path\": \"/file\", "
                        "\"pingInterval\": 5, \"jwtSecret\": \"file-secret\"}",
                        &err),
                   0);
  assert_int_equal(rt_config_apply_env(&store, &cfg, env, &err), 0);
  assert_int_equal(cfg.port, 2000);
  assert_string_equal(cfg.host, "env-host");
  assert_string_equal(cfg.path, "/file");
  assert_string_equal(cfg.jwt_secret, "env-secret");
  assert_int_equal(cfg.ping_interval_ms, 5);
  assert_int_equal(rt_config_set(&store, &cfg, "port", "3000", "--port", &err), 0);
  assert_int_equal(rt_config_set(&store, &cfg, "path", "/flag", "--path", &err), 0);
  assert_int_equal(cfg.port, 3000);
  assert_string_equal(cfg.path, "/flag");
  assert_string_equal(cfg.host, "env-host");
  assert_int_equal(cfg.presence_timeout_ms, 60000);
  assert_ptr_equal(cfg.path, store.path);
  rt_config_store_destroy(&store);
}

static void test_set_errors_name_the_source(void **state) {
  rt_config_store_t store;
  rt_config_t cfg, before;
  rt_errbuf_t err = {""};
  rt_config_store_init(&store);
  rt_config_init(&cfg);
  before = cfg;
  assert_int_equal(rt_config_set(&store, &cfg, "port", "http", "--port", &err), RT_ECONFIG);
  assert_string_equal(err.msg, "--port must be an integer 0-65535 (got \"http\")");
  assert_int_equal(rt_config_set(&store, &cfg, "host", "", "--host", &err), RT_ECONFIG);
  assert_string_equal(err.msg, "--host must be a non-empty string (got \"\")");
  assert_int_equal(rt_config_set(&store, &cfg, "prot", "1", "--set", &err), RT_ECONFIG);
  assert_string_equal(err.msg, "--set: unknown key \"prot\" (did you mean \"port\"?)");
  assert_config_same(&cfg, &before);
  assert_int_equal(rt_config_set(&store, &cfg, "rateLimit.windowMs", "5", "--x", &err), 0);
  assert_int_equal(cfg.rate_limit.window_ms, 5);
  rt_config_store_destroy(&store);
}

static void expect_invalid(const rt_config_t *cfg, const char *msg) {
  rt_errbuf_t err = {""};
  assert_int_equal(rt_config_validate(cfg, &err), RT_ECONFIG);
  assert_string_equal(err.msg, msg);
}

static void test_validate(void **state) {
  rt_config_t cfg;
  rt_errbuf_t err = {""};
  rt_config_init(&cfg);
  cfg.require_auth = 1;
  expect_invalid(&cfg, "\"jwtSecret\" must be set when \"requireAuth\" is true");
  cfg.jwt_secret = "";
  expect_invalid(&cfg, "\"jwtSecret\" must be set when \"requireAuth\" is true");
  cfg.jwt_secret = "k";
  assert_int_equal(rt_config_validate(&cfg, &err), 0);

  rt_config_init(&cfg);
  cfg.max_publish_size = cfg.max_message_size + 1;
  expect_invalid(&cfg, "\"maxPublishSize\" (1048577) must not exceed \"maxMessageSize\" (1048576)");
  cfg.max_publish_size = cfg.max_message_size;
  assert_int_equal(rt_config_validate(&cfg, &err), 0);

  rt_config_init(&cfg);
  cfg.max_queued_bytes = 1;
  assert_int_equal(rt_config_validate(&cfg, &err), 0);

  rt_config_init(&cfg);
  cfg.max_message_size = 0;
  expect_invalid(&cfg, "\"maxMessageSize\" must be an integer 1-1073741824 (got 0)");
  rt_config_init(&cfg);
  cfg.max_subscriptions = 0;
  expect_invalid(&cfg, "\"maxSubscriptions\" must be an integer 1-4294967295 (got 0)");
  rt_config_init(&cfg);
  cfg.port = -5;
  expect_invalid(&cfg, "\"port\" must be an integer 0-65535 (got -5)");
  rt_config_init(&cfg);
  cfg.host = NULL;
  expect_invalid(&cfg, "\"host\" must be set (got NULL)");
  rt_config_init(&cfg);
  cfg.host = "";
  expect_invalid(&cfg, "\"host\" must be a non-empty string (got \"\")");
  rt_config_init(&cfg);
  cfg.path = "ws";
  expect_invalid(&cfg, "\"path\" must be a path starting with '/' without spaces, controls, '?' "
                       "or '#' (got \"ws\")");
  cfg.path = "/a b";
  expect_invalid(&cfg, "\"path\" must be a path starting with '/' without spaces, controls, '?' "
                       "or '#' (got \"/a b\")");

  rt_config_init(&cfg);
  cfg.ping_interval_ms = 0;
  cfg.shutdown_timeout_ms = 0;
  cfg.port = 0;
  assert_int_equal(rt_config_validate(&cfg, &err), 0);
}

/* Keys given by a successful loader are recorded; a failed one records nothing. */
static void test_set_keys_recorded(void **state) {
  rt_config_store_t store;
  rt_config_t cfg;
  rt_errbuf_t err = {""};
  char *env[] = {"REALTIME_JWT_SECRET=s", NULL};
  rt_config_store_init(&store);
  rt_config_init(&cfg);
  assert_int_equal(load(&store, &cfg, "{\"port\": 1, \"rateLimit\": {\"windowMs\": 5}}", &err), 0);
  assert_int_equal(store.set_keys, (1u << 0) | (1u << 9));
  assert_int_equal(load(&store, &cfg, "{\"host\": \"h\", \"port\": \"x\"}", &err), RT_ECONFIG);
  assert_int_equal(store.set_keys, (1u << 0) | (1u << 9));
  assert_int_equal(rt_config_apply_env(&store, &cfg, env, &err), 0);
  assert_int_equal(rt_config_set(&store, &cfg, "requireAuth", "1", "--x", &err), 0);
  assert_int_equal(store.set_keys, (1u << 0) | (1u << 9) | (1u << 6) | (1u << 5));
  rt_config_store_destroy(&store);
  assert_int_equal(store.set_keys, 0);
}

/*
 * Lowering only maxMessageSize brings the default maxPublishSize down with
 * it; an explicit maxPublishSize above maxMessageSize stays and is reported.
 */
static void test_resolve_publish_follows_message(void **state) {
  rt_config_store_t store;
  rt_config_t cfg;
  rt_errbuf_t err = {""};
  rt_config_store_init(&store);
  rt_config_init(&cfg);
  assert_int_equal(load(&store, &cfg, "{\"maxMessageSize\": 65536}", &err), 0);
  expect_invalid(&cfg, "\"maxPublishSize\" (524288) must not exceed \"maxMessageSize\" (65536)");
  rt_config_resolve(&store, &cfg);
  assert_int_equal(cfg.max_publish_size, 65536);
  assert_int_equal(rt_config_validate(&cfg, &err), 0);
  rt_config_store_destroy(&store);

  char *env[] = {"REALTIME_MAX_PUBLISH_SIZE=100000", NULL};
  rt_config_store_init(&store);
  rt_config_init(&cfg);
  assert_int_equal(load(&store, &cfg, "{\"maxMessageSize\": 65536}", &err), 0);
  assert_int_equal(rt_config_apply_env(&store, &cfg, env, &err), 0);
  rt_config_resolve(&store, &cfg);
  assert_int_equal(cfg.max_publish_size, 100000);
  expect_invalid(&cfg, "\"maxPublishSize\" (100000) must not exceed \"maxMessageSize\" (65536)");
  rt_config_store_destroy(&store);

  rt_config_store_init(&store);
  rt_config_init(&cfg);
  assert_int_equal(load(&store, &cfg, "{\"maxMessageSize\": 4194304}", &err), 0);
  rt_config_resolve(&store, &cfg);
  assert_int_equal(cfg.max_publish_size, 512 * 1024);
  rt_config_store_destroy(&store);
}

static void test_strings_survive_source(void **state) {
  rt_config_store_t store;
  rt_config_t cfg;
  rt_errbuf_t err = {""};
  rt_config_store_init(&store);
  rt_config_init(&cfg);
  char *text = rt_strdup("{\"host\": \"10.1.2.3\", \"jwtSecret\": \"k1\"}");
  assert_int_equal(load(&store, &cfg, text, &err), 0);
  memset(text, 'x', strlen(text));
  rt_free(text);
  char *var = rt_strdup("REALTIME_PATH=/env");
  char **env = rt_calloc(2, sizeof(char *));
  env[0] = var;
  assert_int_equal(rt_config_apply_env(&store, &cfg, env, &err), 0);
  memset(var, 'x', strlen(var));
  rt_free(var);
  rt_free(env);
  assert_string_equal(cfg.host, "10.1.2.3");
  assert_string_equal(cfg.jwt_secret, "k1");
  assert_string_equal(cfg.path, "/env");
  rt_config_store_destroy(&store);
  assert_null(store.host);
}

/* A failed load after a good one leaves the first load's strings in place and valid. */
static void test_failed_load_keeps_previous_strings(void **state) {
  rt_config_store_t store;
  rt_config_t cfg;
  rt_errbuf_t err = {""};
  rt_config_store_init(&store);
  rt_config_init(&cfg);
  assert_int_equal(load(&store, &cfg, "{\"host\": \"a\"}", &err), 0);
  const char *first = cfg.host;
  assert_int_equal(load(&store, &cfg, "{\"host\": \"b\", \"port\": \"x\"}", &err), RT_ECONFIG);
  assert_ptr_equal(cfg.host, first);
  assert_ptr_equal(store.host, first);
  assert_string_equal(cfg.host, "a");
  assert_int_equal(load(&store, &cfg, "{\"host\": \"c\"}", &err), 0);
  assert_string_equal(cfg.host, "c");
  assert_ptr_equal(cfg.host, store.host);
  rt_config_store_destroy(&store);
}

static void write_file(const char *path, const char *text, size_t len) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(text, 1, len, f), len);
  assert_int_equal(fclose(f), 0);
}

static void test_load_file(void **state) {
  char dir[] = "/tmp/rt_test_config_XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[128], missing[128], want[256];
  snprintf(path, sizeof(path), "%s/realtime.json", dir);
  snprintf(missing, sizeof(missing), "%s/missing.json", dir);
  rt_config_store_t store;
  rt_config_t cfg;
  rt_errbuf_t err = {""};
  rt_config_store_init(&store);
  rt_config_init(&cfg);

  write_file(path, full_json, strlen(full_json));
  assert_int_equal(rt_config_load_file(&store, &cfg, path, &err), 0);
  assert_full_config(&cfg);

  write_file(path, "{\"port\": true}", 14);
  assert_int_equal(rt_config_load_file(&store, &cfg, path, &err), RT_ECONFIG);
  snprintf(want, sizeof(want), "%s: \"port\" must be an integer 0-65535 (got true)", path);
  assert_string_equal(err.msg, want);

  assert_int_equal(rt_config_load_file(&store, &cfg, missing, &err), RT_EIO);
  snprintf(want, sizeof(want), "cannot read config file %s: No such file or directory", missing);
  assert_string_equal(err.msg, want);

  assert_int_equal(rt_config_load_file(&store, &cfg, dir, &err), RT_EIO);
  snprintf(want, sizeof(want), "cannot read config file %s: Is a directory", dir);
  assert_string_equal(err.msg, want);

  size_t big = RT_CONFIG_FILE_MAX + 1;
  char *spaces = rt_malloc(big);
  memset(spaces, ' ', big);
  spaces[0] = '{';
  spaces[big - 1] = '}';
  write_file(path, spaces, big);
  assert_int_equal(rt_config_load_file(&store, &cfg, path, &err), RT_EIO);
  snprintf(want, sizeof(want), "config file %s is larger than %d bytes", path, RT_CONFIG_FILE_MAX);
  assert_string_equal(err.msg, want);
  spaces[big - 2] = '}';
  write_file(path, spaces, big - 1);
  assert_int_equal(rt_config_load_file(&store, &cfg, path, &err), 0);
  rt_free(spaces);

  assert_full_config(&cfg);
  rt_config_store_destroy(&store);
  assert_int_equal(unlink(path), 0);
  assert_int_equal(rmdir(dir), 0);
}

/* An endless stream is cut off just past the limit instead of being read forever. */
static void test_load_endless_stream(void **state) {
  rt_config_store_t store;
  rt_config_t cfg;
  rt_errbuf_t err = {""};
  rt_config_store_init(&store);
  rt_config_init(&cfg);
  assert_int_equal(rt_config_load_file(&store, &cfg, "/dev/zero", &err), RT_EIO);
  assert_contains(err.msg, "config file /dev/zero is larger than");
  rt_config_store_destroy(&store);
}

/*
 * SQLite-style OOM loop: fail the Nth allocation for N = 0, 1, ... until the
 * call succeeds. Each failure must be RT_ENOMEM with nothing changed and
 * nothing leaked (ASan checks the latter).
 */
static void test_out_of_memory(void **state) {
  char *env[] = {"REALTIME_HOST=h", "REALTIME_PATH=/p", "REALTIME_JWT_SECRET=s", NULL};
  for (int which = 0; which < 3; which++) {
    int succeeded = 0;
    for (long n = 0; n < 100 && !succeeded; n++) {
      rt_config_store_t store;
      rt_config_t cfg, before;
      rt_errbuf_t err = {""};
      rt_config_store_init(&store);
      rt_config_init(&cfg);
      assert_int_equal(load(&store, &cfg, "{\"host\": \"first\"}", &err), 0);
      before = cfg;
      rt_alloc_fail_after(n);
      int rc = which == 0   ? load(&store, &cfg, full_json, &err)
               : which == 1 ? rt_config_apply_env(&store, &cfg, env, &err)
                            : rt_config_set(&store, &cfg, "host", "x", "--host", &err);
      rt_alloc_fail_after(-1);
      if (rc == 0) {
        succeeded = 1;
      } else {
        assert_int_equal(rc, RT_ENOMEM);
        assert_config_same(&cfg, &before);
        assert_string_equal(cfg.host, "first");
      }
      rt_config_store_destroy(&store);
    }
    assert_true(succeeded);
  }
}

static void test_store_lifecycle(void **state) {
  rt_config_store_t store;
  rt_config_store_init(&store);
  assert_null(store.host);
  assert_null(store.path);
  assert_null(store.jwt_secret);
  rt_config_store_destroy(&store);
  rt_config_store_destroy(&store);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_key_table_matches_env_names),
      cmocka_unit_test(test_every_key_parsed),
      cmocka_unit_test(test_partial_file_keeps_defaults),
      cmocka_unit_test(test_every_key_rejects_wrong_type),
      cmocka_unit_test(test_every_number_rejects_out_of_range),
      cmocka_unit_test(test_type_and_range_messages),
      cmocka_unit_test(test_first_error_wins_and_nothing_applies),
      cmocka_unit_test(test_unknown_keys),
      cmocka_unit_test(test_json_syntax_errors),
      cmocka_unit_test(test_env_every_variable),
      cmocka_unit_test(test_env_booleans),
      cmocka_unit_test(test_env_errors_name_the_variable),
      cmocka_unit_test(test_env_absent_and_null),
      cmocka_unit_test(test_precedence),
      cmocka_unit_test(test_set_errors_name_the_source),
      cmocka_unit_test(test_validate),
      cmocka_unit_test(test_set_keys_recorded),
      cmocka_unit_test(test_resolve_publish_follows_message),
      cmocka_unit_test(test_strings_survive_source),
      cmocka_unit_test(test_failed_load_keeps_previous_strings),
      cmocka_unit_test(test_load_file),
      cmocka_unit_test(test_load_endless_stream),
      cmocka_unit_test(test_out_of_memory),
      cmocka_unit_test(test_store_lifecycle),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
