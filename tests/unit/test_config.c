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

/* What a key holds, for tests that treat every key of one kind alike. */
typedef enum { NUM, STR, BOOL, LIST, KEYS, QUERIES } key_kind_t;

/*
 * Every key with its variable (NULL: file only) and kind, as the briefs name
 * them; the table must match exactly, in order.
 */
static const struct {
  const char *key;
  const char *env;
  key_kind_t kind;
} known_keys[] = {
    {"port", "REALTIME_PORT", NUM},
    {"host", "REALTIME_HOST", STR},
    {"path", "REALTIME_PATH", STR},
    {"pingInterval", "REALTIME_PING_INTERVAL", NUM},
    {"presenceTimeout", "REALTIME_PRESENCE_TIMEOUT", NUM},
    {"requireAuth", "REALTIME_REQUIRE_AUTH", BOOL},
    {"jwtSecret", "REALTIME_JWT_SECRET", STR},
    {"jwtPublicKeyFile", "REALTIME_JWT_PUBLIC_KEY_FILE", STR},
    {"jwtAlgorithms", "REALTIME_JWT_ALGORITHMS", LIST},
    {"jwtLeeway", "REALTIME_JWT_LEEWAY", NUM},
    {"authTimeout", "REALTIME_AUTH_TIMEOUT", NUM},
    {"tokenExpiryGrace", "REALTIME_TOKEN_EXPIRY_GRACE", NUM},
    {"apiKeys", NULL, KEYS},
    {"rateLimit.maxConnections", "REALTIME_RATE_LIMIT_MAX_CONNECTIONS", NUM},
    {"rateLimit.maxMessagesPerMinute", "REALTIME_RATE_LIMIT_MAX_MESSAGES_PER_MINUTE", NUM},
    {"rateLimit.windowMs", "REALTIME_RATE_LIMIT_WINDOW_MS", NUM},
    {"rateLimit.subscribe", "REALTIME_RATE_LIMIT_SUBSCRIBE", NUM},
    {"rateLimit.publish", "REALTIME_RATE_LIMIT_PUBLISH", NUM},
    {"rateLimit.presence", "REALTIME_RATE_LIMIT_PRESENCE", NUM},
    {"rateLimit.query", "REALTIME_RATE_LIMIT_QUERY", NUM},
    {"rateLimit.disconnectAfter", "REALTIME_RATE_LIMIT_DISCONNECT_AFTER", NUM},
    {"maxMessageSize", "REALTIME_MAX_MESSAGE_SIZE", NUM},
    {"maxPublishSize", "REALTIME_MAX_PUBLISH_SIZE", NUM},
    {"maxSubscriptions", "REALTIME_MAX_SUBSCRIPTIONS", NUM},
    {"maxQueuedBytes", "REALTIME_MAX_QUEUED_BYTES", NUM},
    {"maxHeaderSize", "REALTIME_MAX_HEADER_SIZE", NUM},
    {"handshakeTimeout", "REALTIME_HANDSHAKE_TIMEOUT", NUM},
    {"shutdownTimeout", "REALTIME_SHUTDOWN_TIMEOUT", NUM},
    {"ioUring", "REALTIME_IO_URING", BOOL},
    {"flushInterval", "REALTIME_FLUSH_INTERVAL", NUM},
    {"workers", "REALTIME_WORKERS", NUM},
    {"maxJsonDepth", "REALTIME_MAX_JSON_DEPTH", NUM},
    {"validation.xss", "REALTIME_VALIDATION_XSS", BOOL},
    {"maxPresenceDataSize", "REALTIME_MAX_PRESENCE_DATA_SIZE", NUM},
    {"maxPresencePerChannel", "REALTIME_MAX_PRESENCE_PER_CHANNEL", NUM},
    {"database.path", "REALTIME_DATABASE_PATH", STR},
    {"database.pollInterval", "REALTIME_DATABASE_POLL_INTERVAL", NUM},
    {"database.setup", "REALTIME_DATABASE_SETUP", STR},
    {"queries", NULL, QUERIES},
    {"liveQueries.allowRawSql", "REALTIME_LIVE_QUERIES_ALLOW_RAW_SQL", BOOL},
    {"liveQueries.timeout", "REALTIME_LIVE_QUERIES_TIMEOUT", NUM},
    {"liveQueries.maxRows", "REALTIME_LIVE_QUERIES_MAX_ROWS", NUM},
    {"liveQueries.maxBytes", "REALTIME_LIVE_QUERIES_MAX_BYTES", NUM},
};
#define KNOWN_COUNT (sizeof(known_keys) / sizeof(known_keys[0]))

/* Secret texts of the fixtures; no message may ever contain them. */
#define SECRET "s3cret"
#define KEY_A "KEYA-7f3e9c1d"
#define KEY_B "KEYB-0b5a2e44"

/* database.setup and the first query of the fixtures. */
#define SETUP_SQL "CREATE TABLE IF NOT EXISTS orders(id INTEGER PRIMARY KEY, status TEXT)"
#define ORDERS_SQL "SELECT id, status, total FROM orders WHERE status = $1"

static const char full_json[] =
    "{\n"
    "  \"port\": 9001, \"host\": \"127.0.0.1\", \"path\": \"/realtime\",\n"
    "  \"pingInterval\": 1500, \"presenceTimeout\": 2500,\n"
    "  \"requireAuth\": true, \"jwtSecret\": \"" SECRET "\",\n"
    "  \"jwtPublicKeyFile\": \"/etc/realtime/jwt.pem\",\n"
    "  \"jwtAlgorithms\": [\"RS256\", \"HS256\"],\n"
    "  \"jwtLeeway\": 5, \"authTimeout\": 4000, \"tokenExpiryGrace\": 7000,\n"
    "  \"apiKeys\": [\n"
    "    {\"key\": \"" KEY_A "\", \"name\": \"ingest\",\n"
    "     \"permissions\": [\"write:metrics:*\", \"read:*\"]},\n"
    "    {\"name\": \"ops\", \"permissions\": [], \"key\": \"" KEY_B "\"}\n"
    "  ],\n"
    "  \"rateLimit\": {\"maxConnections\": 10, \"maxMessagesPerMinute\": 60, \"windowMs\": 30000,\n"
    "                \"subscribe\": 11, \"publish\": 12, \"presence\": 13, \"query\": 14,\n"
    "                \"disconnectAfter\": 3},\n"
    "  \"maxMessageSize\": 2097152, \"maxPublishSize\": 1048576, \"maxSubscriptions\": 50,\n"
    "  \"maxQueuedBytes\": 8388608, \"maxHeaderSize\": 16384, \"handshakeTimeout\": 3000,\n"
    "  \"shutdownTimeout\": 0, \"flushInterval\": 7, \"workers\": 3, \"maxJsonDepth\": 16, \"validation\": {\"xss\": false},\n"
    "  \"maxPresenceDataSize\": 2048, \"maxPresencePerChannel\": 99,\n"
    "  \"database\": {\"path\": \"/var/lib/realtime/live.db\", \"pollInterval\": 20,\n"
    "               \"setup\": \"" SETUP_SQL "\"},\n"
    "  \"queries\": {\n"
    "    \"pending_orders\": {\"sql\": \"" ORDERS_SQL "\",\n"
    "                       \"permission\": \"read:orders\"},\n"
    "    \"top.users:v2-x\": {\"key\": \"user_id\",\n"
    "                       \"sql\": \"SELECT user_id, score FROM users\"}\n"
    "  },\n"
    "  \"liveQueries\": {\"allowRawSql\": true, \"timeout\": 250, \"maxRows\": 500,\n"
    "                  \"maxBytes\": 65536}\n"
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
  assert_ptr_equal(a->jwt_public_key_file, b->jwt_public_key_file);
  assert_ptr_equal(a->jwt_algorithms, b->jwt_algorithms);
  assert_int_equal(a->jwt_leeway_s, b->jwt_leeway_s);
  assert_int_equal(a->auth_timeout_ms, b->auth_timeout_ms);
  assert_int_equal(a->token_grace_ms, b->token_grace_ms);
  assert_ptr_equal(a->api_keys, b->api_keys);
  assert_int_equal(a->api_key_count, b->api_key_count);
  assert_int_equal(a->rate_limit.max_connections, b->rate_limit.max_connections);
  assert_int_equal(a->rate_limit.max_messages_per_minute, b->rate_limit.max_messages_per_minute);
  assert_int_equal(a->rate_limit.window_ms, b->rate_limit.window_ms);
  assert_int_equal(a->rate_limit.subscribe, b->rate_limit.subscribe);
  assert_int_equal(a->rate_limit.publish, b->rate_limit.publish);
  assert_int_equal(a->rate_limit.presence, b->rate_limit.presence);
  assert_int_equal(a->rate_limit.query, b->rate_limit.query);
  assert_int_equal(a->rate_limit.disconnect_after, b->rate_limit.disconnect_after);
  assert_int_equal(a->max_message_size, b->max_message_size);
  assert_int_equal(a->max_publish_size, b->max_publish_size);
  assert_int_equal(a->max_subscriptions, b->max_subscriptions);
  assert_int_equal(a->max_queued_bytes, b->max_queued_bytes);
  assert_int_equal(a->max_header_size, b->max_header_size);
  assert_int_equal(a->handshake_timeout_ms, b->handshake_timeout_ms);
  assert_int_equal(a->shutdown_timeout_ms, b->shutdown_timeout_ms);
  assert_int_equal(a->workers, b->workers);
  assert_int_equal(a->max_json_depth, b->max_json_depth);
  assert_int_equal(a->validate_xss, b->validate_xss);
  assert_int_equal(a->max_presence_data_size, b->max_presence_data_size);
  assert_int_equal(a->max_presence_per_channel, b->max_presence_per_channel);
  assert_ptr_equal(a->database_path, b->database_path);
  assert_int_equal(a->database_poll_ms, b->database_poll_ms);
  assert_ptr_equal(a->database_setup, b->database_setup);
  assert_ptr_equal(a->queries, b->queries);
  assert_int_equal(a->query_count, b->query_count);
  assert_int_equal(a->live_allow_raw_sql, b->live_allow_raw_sql);
  assert_int_equal(a->live_timeout_ms, b->live_timeout_ms);
  assert_int_equal(a->live_max_rows, b->live_max_rows);
  assert_int_equal(a->live_max_bytes, b->live_max_bytes);
  assert_ptr_equal(a->loop, b->loop);
}

/* The two API keys of full_json. */
static void assert_full_api_keys(const rt_config_t *cfg) {
  assert_int_equal(cfg->api_key_count, 2);
  assert_non_null(cfg->api_keys);
  assert_string_equal(cfg->api_keys[0].key, KEY_A);
  assert_string_equal(cfg->api_keys[0].name, "ingest");
  assert_int_equal(cfg->api_keys[0].permission_count, 2);
  assert_string_equal(cfg->api_keys[0].permissions[0], "write:metrics:*");
  assert_string_equal(cfg->api_keys[0].permissions[1], "read:*");
  assert_string_equal(cfg->api_keys[1].key, KEY_B);
  assert_string_equal(cfg->api_keys[1].name, "ops");
  assert_int_equal(cfg->api_keys[1].permission_count, 0);
  assert_null(cfg->api_keys[1].permissions);
}

/* The two queries of full_json, in file order; absent members are NULL. */
static void assert_full_queries(const rt_config_t *cfg) {
  assert_int_equal(cfg->query_count, 2);
  assert_non_null(cfg->queries);
  assert_string_equal(cfg->queries[0].name, "pending_orders");
  assert_string_equal(cfg->queries[0].sql, ORDERS_SQL);
  assert_string_equal(cfg->queries[0].permission, "read:orders");
  assert_null(cfg->queries[0].key);
  assert_string_equal(cfg->queries[1].name, "top.users:v2-x");
  assert_string_equal(cfg->queries[1].sql, "SELECT user_id, score FROM users");
  assert_null(cfg->queries[1].permission);
  assert_string_equal(cfg->queries[1].key, "user_id");
}

static void assert_full_config(const rt_config_t *cfg) {
  assert_int_equal(cfg->port, 9001);
  assert_string_equal(cfg->host, "127.0.0.1");
  assert_string_equal(cfg->path, "/realtime");
  assert_int_equal(cfg->ping_interval_ms, 1500);
  assert_int_equal(cfg->presence_timeout_ms, 2500);
  assert_int_equal(cfg->require_auth, 1);
  assert_string_equal(cfg->jwt_secret, SECRET);
  assert_string_equal(cfg->jwt_public_key_file, "/etc/realtime/jwt.pem");
  assert_string_equal(cfg->jwt_algorithms, "HS256,RS256");
  assert_int_equal(cfg->jwt_leeway_s, 5);
  assert_int_equal(cfg->auth_timeout_ms, 4000);
  assert_int_equal(cfg->token_grace_ms, 7000);
  assert_int_equal(cfg->rate_limit.max_connections, 10);
  assert_int_equal(cfg->rate_limit.max_messages_per_minute, 60);
  assert_int_equal(cfg->rate_limit.window_ms, 30000);
  assert_int_equal(cfg->rate_limit.subscribe, 11);
  assert_int_equal(cfg->rate_limit.publish, 12);
  assert_int_equal(cfg->rate_limit.presence, 13);
  assert_int_equal(cfg->rate_limit.query, 14);
  assert_int_equal(cfg->rate_limit.disconnect_after, 3);
  assert_int_equal(cfg->max_message_size, 2097152);
  assert_int_equal(cfg->max_publish_size, 1048576);
  assert_int_equal(cfg->max_subscriptions, 50);
  assert_int_equal(cfg->max_queued_bytes, 8388608);
  assert_int_equal(cfg->max_header_size, 16384);
  assert_int_equal(cfg->handshake_timeout_ms, 3000);
  assert_int_equal(cfg->shutdown_timeout_ms, 0);
  assert_int_equal(cfg->flush_interval_ms, 7);
  assert_int_equal(cfg->workers, 3);
  assert_int_equal(cfg->max_json_depth, 16);
  assert_int_equal(cfg->validate_xss, 0);
  assert_int_equal(cfg->max_presence_data_size, 2048);
  assert_int_equal(cfg->max_presence_per_channel, 99);
  assert_string_equal(cfg->database_path, "/var/lib/realtime/live.db");
  assert_int_equal(cfg->database_poll_ms, 20);
  assert_string_equal(cfg->database_setup, SETUP_SQL);
  assert_int_equal(cfg->live_allow_raw_sql, 1);
  assert_int_equal(cfg->live_timeout_ms, 250);
  assert_int_equal(cfg->live_max_rows, 500);
  assert_int_equal(cfg->live_max_bytes, 65536);
}

/* No message may carry a secret of the fixtures (jwtSecret, API keys). */
static void assert_no_secret(const char *msg) {
  static const char *const secrets[] = {SECRET, KEY_A, KEY_B, "7f3e9c1d", "sk_live"};
  for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
    if (strstr(msg, secrets[i]) != NULL) fail_msg("\"%s\" reveals \"%s\"", msg, secrets[i]);
  }
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
  assert_no_secret(err.msg);
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
  assert_null(cfg.jwt_public_key_file);
  assert_null(cfg.jwt_algorithms);
  assert_int_equal(cfg.jwt_leeway_s, 30);
  assert_int_equal(cfg.auth_timeout_ms, 10000);
  assert_int_equal(cfg.token_grace_ms, 30000);
  assert_null(cfg.api_keys);
  assert_int_equal(cfg.api_key_count, 0);
  assert_int_equal(cfg.rate_limit.max_connections, 0);
  assert_int_equal(cfg.rate_limit.max_messages_per_minute, 0);
  assert_int_equal(cfg.rate_limit.window_ms, 60000);
  assert_int_equal(cfg.rate_limit.subscribe, 0);
  assert_int_equal(cfg.rate_limit.publish, 0);
  assert_int_equal(cfg.rate_limit.presence, 0);
  assert_int_equal(cfg.rate_limit.query, 0);
  assert_int_equal(cfg.rate_limit.disconnect_after, 2);
  assert_int_equal(cfg.max_message_size, 1024 * 1024);
  assert_int_equal(cfg.max_publish_size, 512 * 1024);
  assert_int_equal(cfg.max_subscriptions, 1024);
  assert_int_equal(cfg.max_queued_bytes, 4 * 1024 * 1024);
  assert_int_equal(cfg.max_header_size, 8192);
  assert_int_equal(cfg.handshake_timeout_ms, 10000);
  assert_int_equal(cfg.shutdown_timeout_ms, 5000);
  assert_int_equal(cfg.io_uring, 1);
  assert_int_equal(cfg.flush_interval_ms, 0);
  assert_int_equal(cfg.workers, 1);
  assert_int_equal(cfg.max_json_depth, 64);
  assert_int_equal(cfg.validate_xss, 1);
  assert_int_equal(cfg.max_presence_data_size, 4096);
  assert_int_equal(cfg.max_presence_per_channel, 10000);
  assert_string_equal(cfg.database_path, "realtime.db");
  assert_int_equal(cfg.database_poll_ms, 50);
  assert_null(cfg.database_setup);
  assert_null(cfg.queries);
  assert_int_equal(cfg.query_count, 0);
  assert_int_equal(cfg.live_allow_raw_sql, 0);
  assert_int_equal(cfg.live_timeout_ms, 1000);
  assert_int_equal(cfg.live_max_rows, 10000);
  assert_int_equal(cfg.live_max_bytes, 1024 * 1024);
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
    if (known_keys[i].env == NULL) {
      assert_int_equal(rt_config_env_name(known_keys[i].key, name, sizeof(name)), RT_ENOENT);
      continue;
    }
    assert_int_equal(rt_config_env_name(known_keys[i].key, name, sizeof(name)), 0);
    assert_string_equal(name, known_keys[i].env);
    assert_string_equal(rt_config_key_for_env(known_keys[i].env), known_keys[i].key);
  }
  assert_null(rt_config_key_for_env("REALTIME_API_KEYS"));
  assert_null(rt_config_key_for_env("REALTIME_QUERIES"));
  assert_null(rt_config_key_for_env("REALTIME_DATABASE"));
  assert_null(rt_config_key_for_env("REALTIME_LIVE_QUERIES"));
  assert_null(rt_config_key_for_env("REALTIME_VALIDATION"));
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
  assert_full_api_keys(&cfg);
  assert_full_queries(&cfg);
  assert_ptr_equal(cfg.host, store.host);
  assert_ptr_equal(cfg.path, store.path);
  assert_ptr_equal(cfg.jwt_secret, store.jwt_secret);
  assert_ptr_equal(cfg.jwt_public_key_file, store.jwt_public_key_file);
  assert_ptr_equal(cfg.jwt_algorithms, store.jwt_algorithms);
  assert_ptr_equal(cfg.api_keys, store.api_key_block);
  assert_ptr_equal(cfg.database_path, store.database_path);
  assert_ptr_equal(cfg.database_setup, store.database_setup);
  assert_ptr_equal(cfg.queries, store.query_block);
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

/*
 * An object fits no key (groups are not keys) except queries, which is one,
 * so each must refuse an object (queries an array), naming itself.
 */
static void test_every_key_rejects_wrong_type(void **state) {
  for (size_t i = 0; i < KNOWN_COUNT; i++) {
    char json[160], want[160];
    int object_kind = known_keys[i].kind == QUERIES;
    json_for_key(known_keys[i].key, object_kind ? "[{\"a\": 1}]" : "{\"a\": 1}", json,
                 sizeof(json));
    snprintf(want, sizeof(want), ORIGIN ": \"%s\" must be ", known_keys[i].key);
    rt_config_store_t store;
    rt_config_t cfg, before;
    rt_errbuf_t err = {""};
    rt_config_store_init(&store);
    rt_config_init(&cfg);
    before = cfg;
    assert_int_equal(load(&store, &cfg, json, &err), RT_ECONFIG);
    assert_contains(err.msg, want);
    assert_contains(err.msg, object_kind ? "(got an array)" : "(got an object)");
    assert_config_same(&cfg, &before);
    rt_config_store_destroy(&store);
  }
}

static void test_every_number_rejects_out_of_range(void **state) {
  for (size_t i = 0; i < KNOWN_COUNT; i++) {
    const char *key = known_keys[i].key;
    if (known_keys[i].kind != NUM) continue;
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
  assert_null(strstr(err.msg, " near '"));
  assert_no_secret(err.msg);
  assert_config_same(&cfg, &before);
  rt_config_store_destroy(&store);
}

/*
 * jansson's " near '<token>'" tail is cut, since the token can be part of a
 * secret; the line and column remain.
 */
static void test_json_syntax_errors(void **state) {
  expect_syntax_error("{\n  \"port\": 80,\n}", 3, 1, "string or '}' expected");
  expect_syntax_error("{\n\"host\": tru }", 2, 11, "invalid token");
  expect_syntax_error("", 1, 0, "expected near end of file");
  expect_syntax_error("{} x", 1, 4, "end of file expected");
  expect_syntax_error("{\"port\": 1, \"port\": 2}", 1, 18, "duplicate object key");
  expect_syntax_error("{\"port\": 99999999999999999999}", 1, 29, "too big integer");
  expect_syntax_error("{\"host\": \"a\\u0000b\"}", 1, 19, "\\u0000 is not allowed");
  expect_syntax_error("{\"jwtSecret\": " SECRET "}", 1, 15, "invalid token");
  expect_syntax_error("{\"jwtSecret\": \"" SECRET "\n\"}", 1, 21, "unexpected newline");
  expect_syntax_error("{\"apiKeys\": [{\"key\": \"" KEY_A, 1, 35, "premature end of input");
  expect_syntax_error("{\"apiKeys\": [{\"key\": " KEY_A "}]}", 1, 25, "invalid token");
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
      "REALTIME_JWT_SECRET=" SECRET,
      "REALTIME_JWT_PUBLIC_KEY_FILE=/etc/realtime/jwt.pem",
      "REALTIME_JWT_ALGORITHMS=RS256, HS256,RS256",
      "REALTIME_JWT_LEEWAY=5",
      "REALTIME_AUTH_TIMEOUT=4000",
      "REALTIME_TOKEN_EXPIRY_GRACE=7000",
      "REALTIME_API_KEYS=[{\"key\": \"" KEY_A "\"}]",
      "REALTIME_RATE_LIMIT_MAX_CONNECTIONS=10",
      "REALTIME_RATE_LIMIT_MAX_MESSAGES_PER_MINUTE=60",
      "REALTIME_RATE_LIMIT_WINDOW_MS=30000",
      "REALTIME_RATE_LIMIT_SUBSCRIBE=11",
      "REALTIME_RATE_LIMIT_PUBLISH=12",
      "REALTIME_RATE_LIMIT_PRESENCE=13",
      "REALTIME_RATE_LIMIT_QUERY=14",
      "REALTIME_RATE_LIMIT_DISCONNECT_AFTER=3",
      "REALTIME_MAX_MESSAGE_SIZE=2097152",
      "REALTIME_MAX_PUBLISH_SIZE=1048576",
      "REALTIME_MAX_SUBSCRIPTIONS=50",
      "REALTIME_MAX_QUEUED_BYTES=8388608",
      "REALTIME_MAX_HEADER_SIZE=16384",
      "REALTIME_HANDSHAKE_TIMEOUT=3000",
      "REALTIME_SHUTDOWN_TIMEOUT=0",
      "REALTIME_FLUSH_INTERVAL=7",
      "REALTIME_WORKERS=3",
      "REALTIME_MAX_JSON_DEPTH=16",
      "REALTIME_VALIDATION_XSS=false",
      "REALTIME_MAX_PRESENCE_DATA_SIZE=2048",
      "REALTIME_MAX_PRESENCE_PER_CHANNEL=99",
      "REALTIME_DATABASE_PATH=/var/lib/realtime/live.db",
      "REALTIME_DATABASE_POLL_INTERVAL=20",
      "REALTIME_DATABASE_SETUP=" SETUP_SQL,
      "REALTIME_QUERIES={\"q\": {\"sql\": \"SELECT 1\"}}",
      "REALTIME_LIVE_QUERIES_ALLOW_RAW_SQL=1",
      "REALTIME_LIVE_QUERIES_TIMEOUT=250",
      "REALTIME_LIVE_QUERIES_MAX_ROWS=500",
      "REALTIME_LIVE_QUERIES_MAX_BYTES=65536",
      NULL,
  };
  rt_config_store_t store;
  rt_config_t cfg;
  rt_errbuf_t err = {""};
  rt_config_store_init(&store);
  rt_config_init(&cfg);
  assert_int_equal(rt_config_apply_env(&store, &cfg, env, &err), 0);
  assert_full_config(&cfg);
  assert_null(cfg.api_keys); /* REALTIME_API_KEYS is no variable: apiKeys is file only */
  assert_int_equal(cfg.api_key_count, 0);
  assert_null(store.api_key_block);
  assert_null(cfg.queries); /* likewise REALTIME_QUERIES */
  assert_int_equal(cfg.query_count, 0);
  assert_null(store.query_block);
  assert_ptr_equal(cfg.database_path, store.database_path);
  assert_ptr_equal(cfg.database_setup, store.database_setup);
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
  expect_env_error("REALTIME_JWT_LEEWAY=3601",
                   "REALTIME_JWT_LEEWAY must be an integer 0-3600 (got \"3601\")");
  expect_env_error("REALTIME_AUTH_TIMEOUT=0",
                   "REALTIME_AUTH_TIMEOUT must be an integer 1-86400000 (got \"0\")");
  expect_env_error("REALTIME_TOKEN_EXPIRY_GRACE=86400001",
                   "REALTIME_TOKEN_EXPIRY_GRACE must be an integer 0-86400000 (got \"86400001\")");
  expect_env_error("REALTIME_RATE_LIMIT_DISCONNECT_AFTER=1001",
                   "REALTIME_RATE_LIMIT_DISCONNECT_AFTER must be an integer 0-1000 (got \"1001\")");
  expect_env_error("REALTIME_FLUSH_INTERVAL=1001",
                   "REALTIME_FLUSH_INTERVAL must be an integer 0-1000 (got \"1001\")");
  expect_env_error("REALTIME_RATE_LIMIT_PUBLISH=-1",
                   "REALTIME_RATE_LIMIT_PUBLISH must be an integer 0-4294967295 (got \"-1\")");
  expect_env_error("REALTIME_VALIDATION_XSS=on",
                   "REALTIME_VALIDATION_XSS must be true, false, 1 or 0 (got \"on\")");
  expect_env_error("REALTIME_JWT_PUBLIC_KEY_FILE=",
                   "REALTIME_JWT_PUBLIC_KEY_FILE must be a non-empty string (got \"\")");
  expect_env_error("REALTIME_DATABASE_PATH=",
                   "REALTIME_DATABASE_PATH must be a non-empty string (got \"\")");
  expect_env_error("REALTIME_DATABASE_POLL_INTERVAL=0",
                   "REALTIME_DATABASE_POLL_INTERVAL must be an integer 1-60000 (got \"0\")");
  expect_env_error("REALTIME_DATABASE_POLL_INTERVAL=60001",
                   "REALTIME_DATABASE_POLL_INTERVAL must be an integer 1-60000 (got \"60001\")");
  expect_env_error("REALTIME_LIVE_QUERIES_ALLOW_RAW_SQL=yes",
                   "REALTIME_LIVE_QUERIES_ALLOW_RAW_SQL must be true, false, 1 or 0 (got \"yes\")");
  expect_env_error("REALTIME_LIVE_QUERIES_TIMEOUT=600001",
                   "REALTIME_LIVE_QUERIES_TIMEOUT must be an integer 1-600000 (got \"600001\")");
  expect_env_error("REALTIME_LIVE_QUERIES_MAX_ROWS=0",
                   "REALTIME_LIVE_QUERIES_MAX_ROWS must be an integer 1-4294967295 (got \"0\")");
  expect_env_error("REALTIME_LIVE_QUERIES_MAX_BYTES=268435457",
                   "REALTIME_LIVE_QUERIES_MAX_BYTES must be an integer 1-268435456 "
                   "(got \"268435457\")");
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

#define NO_AUTH_KEY \
  "\"jwtSecret\", \"jwtPublicKeyFile\" or \"apiKeys\" must be set when \"requireAuth\" is true"

static void expect_invalid(const rt_config_t *cfg, const char *msg) {
  rt_errbuf_t err = {""};
  assert_int_equal(rt_config_validate(cfg, &err), RT_ECONFIG);
  assert_string_equal(err.msg, msg);
  assert_no_secret(err.msg);
}

static void test_validate(void **state) {
  rt_config_t cfg;
  rt_errbuf_t err = {""};
  rt_config_init(&cfg);
  cfg.require_auth = 1;
  expect_invalid(&cfg, NO_AUTH_KEY);
  cfg.jwt_secret = "";
  expect_invalid(&cfg, NO_AUTH_KEY);
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

/* The set_keys bit of `key`: its index in the table. */
static uint64_t bit_of(const char *key) {
  for (size_t i = 0; rt_config_key(i) != NULL; i++) {
    if (strcmp(rt_config_key(i), key) == 0) return (uint64_t)1 << i;
  }
  fail_msg("no key %s", key);
  return 0;
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
  uint64_t want = bit_of("port") | bit_of("rateLimit.windowMs");
  assert_int_equal(store.set_keys, want);
  assert_int_equal(load(&store, &cfg, "{\"host\": \"h\", \"port\": \"x\"}", &err), RT_ECONFIG);
  assert_int_equal(store.set_keys, want);
  assert_int_equal(rt_config_apply_env(&store, &cfg, env, &err), 0);
  assert_int_equal(rt_config_set(&store, &cfg, "requireAuth", "1", "--x", &err), 0);
  want |= bit_of("jwtSecret") | bit_of("requireAuth");
  assert_int_equal(store.set_keys, want);
  assert_int_equal(
      load(&store, &cfg, "{\"apiKeys\": [], \"validation\": {\"xss\": true}}", &err), 0);
  want |= bit_of("apiKeys") | bit_of("validation.xss");
  assert_int_equal(store.set_keys, want);
  assert_int_equal(load(&store, &cfg,
                        "{\"queries\": {}, \"database\": {\"path\": \"a.db\"},"
                        " \"liveQueries\": {\"maxRows\": 5}}",
                        &err),
                   0);
  want |= bit_of("queries") | bit_of("database.path") | bit_of("liveQueries.maxRows");
  assert_int_equal(store.set_keys, want);
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

/* Loads `json` onto defaults and expects `code`; on failure the message must hide the keys. */
static void expect_load_code(const char *json, int code) {
  rt_config_store_t store;
  rt_config_t cfg;
  rt_errbuf_t err = {""};
  rt_config_store_init(&store);
  rt_config_init(&cfg);
  int rc = load(&store, &cfg, json, &err);
  if (rc != code) {
    fail_msg("%s: got %s (%s), want %s", json, rt_err_name(rc), err.msg, rt_err_name(code));
  }
  assert_no_secret(err.msg);
  rt_config_store_destroy(&store);
}
/* ------------------------------------------------------- security keys */

static void test_security_scalars(void **state) {
  expect_json_error("{\"jwtLeeway\": 3601}", RT_ECONFIG,
                    ORIGIN ": \"jwtLeeway\" must be an integer 0-3600 (got 3601)");
  expect_json_error("{\"authTimeout\": 0}", RT_ECONFIG,
                    ORIGIN ": \"authTimeout\" must be an integer 1-86400000 (got 0)");
  expect_json_error("{\"tokenExpiryGrace\": -1}", RT_ECONFIG,
                    ORIGIN ": \"tokenExpiryGrace\" must be an integer 0-86400000 (got -1)");
  expect_json_error("{\"rateLimit\": {\"disconnectAfter\": 1001}}", RT_ECONFIG,
                    ORIGIN ": \"rateLimit.disconnectAfter\" must be an integer 0-1000 (got 1001)");
  expect_json_error("{\"rateLimit\": {\"query\": \"5\"}}", RT_ECONFIG,
                    ORIGIN ": \"rateLimit.query\" must be an integer 0-4294967295 (got a string)");
  expect_json_error("{\"validation\": {\"xss\": 0}}", RT_ECONFIG,
                    ORIGIN ": \"validation.xss\" must be true or false (got 0)");
  expect_json_error("{\"validation\": true}", RT_ECONFIG,
                    ORIGIN ": \"validation\" must be an object (got true)");
  expect_json_error("{\"validation\": {\"xs\": true}}", RT_ECONFIG,
                    ORIGIN ": unknown key \"validation.xs\" (did you mean \"validation.xss\"?)");
  expect_json_error("{\"validaton\": {}}", RT_ECONFIG,
                    ORIGIN ": unknown key \"validaton\" (did you mean \"validation\"?)");
  expect_json_error("{\"jwtPublicKeyFile\": \"\"}", RT_ECONFIG,
                    ORIGIN ": \"jwtPublicKeyFile\" must be a non-empty string (got \"\")");
  expect_json_error("{\"jwtPublicKeyFile\": 7}", RT_ECONFIG,
                    ORIGIN ": \"jwtPublicKeyFile\" must be a string (got 7)");

  rt_config_store_t store;
  rt_config_t cfg;
  rt_errbuf_t err = {""};
  rt_config_store_init(&store);
  rt_config_init(&cfg);
  assert_int_equal(load(&store, &cfg,
                        "{\"jwtLeeway\": 0, \"tokenExpiryGrace\": 0,"
                        " \"validation\": {\"xss\": false},"
                        " \"rateLimit\": {\"disconnectAfter\": 0, \"subscribe\": 4294967295}}",
                        &err),
                   0);
  assert_int_equal(cfg.jwt_leeway_s, 0);
  assert_int_equal(cfg.token_grace_ms, 0);
  assert_int_equal(cfg.validate_xss, 0);
  assert_int_equal(cfg.rate_limit.disconnect_after, 0);
  assert_int_equal(cfg.rate_limit.subscribe, UINT32_MAX);
  assert_int_equal(rt_config_set(&store, &cfg, "validation.xss", "true", "--x", &err), 0);
  assert_int_equal(cfg.validate_xss, 1);
  assert_int_equal(rt_config_set(&store, &cfg, "jwtLeeway", "3600", "--x", &err), 0);
  assert_int_equal(cfg.jwt_leeway_s, 3600);
  rt_config_store_destroy(&store);
}

/* Loads `json` and expects jwtAlgorithms normalised to `want`. */
static void expect_algorithms(const char *json, const char *want) {
  rt_config_store_t store;
  rt_config_t cfg;
  rt_errbuf_t err = {""};
  rt_config_store_init(&store);
  rt_config_init(&cfg);
  if (load(&store, &cfg, json, &err) != 0) fail_msg("%s: %s", json, err.msg);
  assert_string_equal(cfg.jwt_algorithms, want);
  assert_ptr_equal(cfg.jwt_algorithms, store.jwt_algorithms);
  rt_config_store_destroy(&store);
}

static void test_jwt_algorithms_file(void **state) {
  expect_algorithms("{\"jwtAlgorithms\": [\"HS256\"]}", "HS256");
  expect_algorithms("{\"jwtAlgorithms\": [\"ES256\", \"RS256\", \"HS512\", \"ES256\"]}",
                    "HS512,RS256,ES256");
  expect_algorithms("{\"jwtAlgorithms\": [\"ES256\", \"RS256\", \"HS512\", \"HS384\", \"HS256\"]}",
                    "HS256,HS384,HS512,RS256,ES256");
  expect_json_error("{\"jwtAlgorithms\": [\"HS256\", \"none\"]}", RT_ECONFIG,
                    ORIGIN ": \"jwtAlgorithms[1]\" must be one of HS256, HS384, HS512, RS256, "
                           "ES256 (got \"none\")");
  expect_json_error("{\"jwtAlgorithms\": [\"rs256\"]}", RT_ECONFIG,
                    ORIGIN ": \"jwtAlgorithms[0]\" must be one of HS256, HS384, HS512, RS256, "
                           "ES256 (got \"rs256\")");
  expect_json_error("{\"jwtAlgorithms\": [\"HS256 \"]}", RT_ECONFIG,
                    ORIGIN ": \"jwtAlgorithms[0]\" must be one of HS256, HS384, HS512, RS256, "
                           "ES256 (got \"HS256 \")");
  expect_json_error("{\"jwtAlgorithms\": [256]}", RT_ECONFIG,
                    ORIGIN ": \"jwtAlgorithms[0]\" must be one of HS256, HS384, HS512, RS256, "
                           "ES256 (got 256)");
  expect_json_error("{\"jwtAlgorithms\": []}", RT_ECONFIG,
                    ORIGIN ": \"jwtAlgorithms\" must be a non-empty array of HS256, HS384, "
                           "HS512, RS256, ES256 (got [])");
  expect_json_error("{\"jwtAlgorithms\": \"HS256\"}", RT_ECONFIG,
                    ORIGIN ": \"jwtAlgorithms\" must be a non-empty array of HS256, HS384, "
                           "HS512, RS256, ES256 (got a string)");
}

static void test_jwt_algorithms_text(void **state) {
  static const struct {
    const char *text, *want;
  } good[] = {
      {"HS256", "HS256"},
      {"RS256,HS256", "HS256,RS256"},
      {" ES256 ,\tHS384 ", "HS384,ES256"},
      {"HS512,HS512", "HS512"},
  };
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    char var[64];
    snprintf(var, sizeof(var), "REALTIME_JWT_ALGORITHMS=%s", good[i].text);
    char *env[] = {var, NULL};
    rt_config_store_t store;
    rt_config_t cfg;
    rt_errbuf_t err = {""};
    rt_config_store_init(&store);
    rt_config_init(&cfg);
    assert_int_equal(rt_config_apply_env(&store, &cfg, env, &err), 0);
    assert_string_equal(cfg.jwt_algorithms, good[i].want);
    assert_int_equal(rt_config_set(&store, &cfg, "jwtAlgorithms", good[i].text, "--x", &err), 0);
    assert_string_equal(cfg.jwt_algorithms, good[i].want);
    rt_config_store_destroy(&store);
  }
  static const char *const bad[] = {"", ",", "HS256,", ",HS256", "HS256,,RS256", "none",
                                    "HS256;RS256", "HS 256", "RS512", "hs256"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char var[64], want[256];
    snprintf(var, sizeof(var), "REALTIME_JWT_ALGORITHMS=%s", bad[i]);
    snprintf(want, sizeof(want),
             "REALTIME_JWT_ALGORITHMS must be a comma-separated list of HS256, HS384, HS512, "
             "RS256, ES256 (got \"%s\")",
             bad[i]);
    expect_env_error(var, want);
  }
}

/* API keys: strings live in the store's one block, independent of the JSON text. */
static void test_api_keys_parsed(void **state) {
  rt_config_store_t store;
  rt_config_t cfg;
  rt_errbuf_t err = {""};
  rt_config_store_init(&store);
  rt_config_init(&cfg);
  char *text = rt_strdup(
      "{\"apiKeys\": [{\"key\": \"" KEY_A "\", \"name\": \"a.b-c_d@e\", \"permissions\": "
      "[\"*\", \"*:*\", \"query:raw\", \"read:user:{sub}:*\", \"write:metrics\"]}]}");
  assert_int_equal(load(&store, &cfg, text, &err), 0);
  memset(text, 'x', strlen(text));
  rt_free(text);
  assert_int_equal(cfg.api_key_count, 1);
  assert_ptr_equal(cfg.api_keys, store.api_key_block);
  assert_string_equal(cfg.api_keys[0].key, KEY_A);
  assert_string_equal(cfg.api_keys[0].name, "a.b-c_d@e");
  assert_int_equal(cfg.api_keys[0].permission_count, 5);
  assert_string_equal(cfg.api_keys[0].permissions[0], "*");
  assert_string_equal(cfg.api_keys[0].permissions[3], "read:user:{sub}:*");
  assert_string_equal(cfg.api_keys[0].permissions[4], "write:metrics");
  assert_int_equal(rt_config_validate(&cfg, &err), 0);

  /* A later file replaces the list; an empty one clears it. */
  assert_int_equal(load(&store, &cfg, full_json, &err), 0);
  assert_full_api_keys(&cfg);
  assert_int_equal(load(&store, &cfg, "{\"apiKeys\": []}", &err), 0);
  assert_null(cfg.api_keys);
  assert_int_equal(cfg.api_key_count, 0);
  assert_null(store.api_key_block);
  rt_config_store_destroy(&store);
}

/* A failed load keeps the earlier keys valid and in place. */
static void test_api_keys_failed_load_keeps_previous(void **state) {
  rt_config_store_t store;
  rt_config_t cfg;
  rt_errbuf_t err = {""};
  rt_config_store_init(&store);
  rt_config_init(&cfg);
  assert_int_equal(load(&store, &cfg, full_json, &err), 0);
  const rt_api_key_config_t *first = cfg.api_keys;
  assert_int_equal(load(&store, &cfg,
                        "{\"apiKeys\": [{\"key\": \"k\", \"name\": \"n\", \"permissions\": []}],"
                        " \"port\": -1}",
                        &err),
                   RT_ECONFIG);
  assert_ptr_equal(cfg.api_keys, first);
  assert_full_api_keys(&cfg);
  rt_config_store_destroy(&store);
}

static void test_api_keys_errors(void **state) {
  expect_json_error("{\"apiKeys\": {\"" KEY_A "\": {\"name\": \"a\"}}}", RT_ECONFIG,
                    ORIGIN ": \"apiKeys\" must be an array of {\"key\", \"name\", \"permissions\"} "
                           "objects (got an object)");
  expect_json_error("{\"apiKeys\": \"" KEY_A "\"}", RT_ECONFIG,
                    ORIGIN ": \"apiKeys\" must be an array of {\"key\", \"name\", \"permissions\"} "
                           "objects (got a string)");
  expect_json_error("{\"apiKeys\": [\"" KEY_A "\"]}", RT_ECONFIG,
                    ORIGIN ": \"apiKeys[0]\" must be an object with \"key\", \"name\" and "
                           "\"permissions\" (got a string)");
  expect_json_error("{\"apiKeys\": [{\"" KEY_A "\": {}}]}", RT_ECONFIG,
                    ORIGIN ": \"apiKeys[0]\" has an unknown member (allowed: \"key\", \"name\", "
                           "\"permissions\")");
  expect_json_error("{\"apiKeys\": [{\"name\": \"a\", \"permissions\": []}]}", RT_ECONFIG,
                    ORIGIN ": \"apiKeys[0].key\" is missing");
  expect_json_error("{\"apiKeys\": [{\"key\": 7f3e9c1d, \"name\": \"a\"}]}", RT_EJSON,
                    ORIGIN ": invalid JSON at line 1, column 23: '}' expected");
  expect_json_error("{\"apiKeys\": [{\"key\": 73912345, \"name\": \"a\", \"permissions\": []}]}",
                    RT_ECONFIG, ORIGIN ": \"apiKeys[0].key\" must be a string (got a number)");
  expect_json_error("{\"apiKeys\": [{\"key\": \"" KEY_A "\", \"permissions\": []}]}", RT_ECONFIG,
                    ORIGIN ": \"apiKeys[0].name\" is missing");
  expect_json_error("{\"apiKeys\": [{\"key\": \"" KEY_A "\", \"name\": 5, \"permissions\": []}]}",
                    RT_ECONFIG, ORIGIN ": \"apiKeys[0].name\" must be a string (got 5)");
  expect_json_error("{\"apiKeys\": [{\"key\": \"" KEY_A "\", \"name\": \"a\"}]}", RT_ECONFIG,
                    ORIGIN ": \"apiKeys[0].permissions\" is missing");
  expect_json_error(
      "{\"apiKeys\": [{\"key\": \"" KEY_A "\", \"name\": \"a\", \"permissions\": \"read:*\"}]}",
      RT_ECONFIG,
      ORIGIN ": \"apiKeys[0].permissions\" must be an array of strings (got \"read:*\")");
  expect_json_error("{\"apiKeys\": [{\"key\": \"k0\", \"name\": \"a\", \"permissions\": []},"
                    " {\"key\": \"" KEY_A "\", \"name\": \"b\","
                    " \"permissions\": [\"read:*\", 3]}]}",
                    RT_ECONFIG, ORIGIN ": \"apiKeys[1].permissions[1]\" must be a string (got 3)");
  expect_json_error("{\"apiKeys\": [{\"key\": \"k0\", \"name\": \"a\", \"permissions\": []},"
                    " {\"key\": \"" KEY_A "\", \"name\": \"b\", \"permissions\": [\"admin\"]}]}",
                    RT_ECONFIG,
                    ORIGIN ": \"apiKeys[1].permissions[0]\" must be \"*\", \"query:raw\", "
                           "\"read:<pattern>\" or \"write:<pattern>\" (got \"admin\")");
  expect_json_error("{\"apiKeys\": [{\"key\": \"" KEY_A "\", \"name\": \"a\", \"permissions\":"
                    " [\"read:*\", \"write:\", \"read:a b\"]}]}",
                    RT_ECONFIG,
                    ORIGIN ": \"apiKeys[0].permissions[1]\" must be \"*\", \"query:raw\", "
                           "\"read:<pattern>\" or \"write:<pattern>\" (got \"write:\")");
  expect_json_error("{\"apiKeys\": [{\"key\": \"" KEY_A "\", \"name\": \"a\", \"permissions\":"
                    " [\"query:*\"]}]}",
                    RT_ECONFIG,
                    ORIGIN ": \"apiKeys[0].permissions[0]\" must be \"*\", \"query:raw\", "
                           "\"read:<pattern>\" or \"write:<pattern>\" (got \"query:*\")");
}

/* Key and name rules, duplicates; the key text never shows, whatever is wrong with it. */
static void test_api_keys_key_and_name_rules(void **state) {
  expect_json_error("{\"apiKeys\": [{\"key\": \"\", \"name\": \"a\", \"permissions\": []}]}",
                    RT_ECONFIG,
                    ORIGIN ": \"apiKeys[0].key\" must be a non-empty string of visible ASCII "
                           "characters without spaces");
  expect_json_error("{\"apiKeys\": [{\"key\": \"sk_live 1\", \"name\": \"a\","
                    " \"permissions\": []}]}",
                    RT_ECONFIG,
                    ORIGIN ": \"apiKeys[0].key\" must be a non-empty string of visible ASCII "
                           "characters without spaces");
  expect_json_error("{\"apiKeys\": [{\"key\": \"sk_live\\u00e9\", \"name\": \"a\","
                    " \"permissions\": []}]}",
                    RT_ECONFIG,
                    ORIGIN ": \"apiKeys[0].key\" must be a non-empty string of visible ASCII "
                           "characters without spaces");
  expect_json_error("{\"apiKeys\": ["
                    "{\"key\": \"" KEY_A "\", \"name\": \"a\", \"permissions\": []},"
                    "{\"key\": \"" KEY_B "\", \"name\": \"b\", \"permissions\": []},"
                    "{\"key\": \"" KEY_A "\", \"name\": \"c\", \"permissions\": []}]}",
                    RT_ECONFIG,
                    ORIGIN ": \"apiKeys[2].key\" is the same key as \"apiKeys[0].key\"");
  expect_json_error("{\"apiKeys\": [{\"key\": \"" KEY_A "\", \"name\": \"\","
                    " \"permissions\": []}]}",
                    RT_ECONFIG,
                    ORIGIN ": \"apiKeys[0].name\" must be 1-128 characters of A-Z a-z 0-9 _ - . @ "
                           "(got \"\")");
  expect_json_error(
      "{\"apiKeys\": [{\"key\": \"" KEY_A "\", \"name\": \"team:ops\", \"permissions\": []}]}",
      RT_ECONFIG,
      ORIGIN ": \"apiKeys[0].name\" must be 1-128 characters of A-Z a-z 0-9 _ - . @ "
             "(got \"team:ops\")");
  char name[140], json[400];
  memset(name, 'n', 128);
  name[128] = '\0';
  snprintf(json, sizeof(json),
           "{\"apiKeys\": [{\"key\": \"" KEY_A "\", \"name\": \"%s\", \"permissions\": []}]}",
           name);
  expect_load_code(json, 0);
  strcat(name, "n");
  snprintf(json, sizeof(json),
           "{\"apiKeys\": [{\"key\": \"" KEY_A "\", \"name\": \"%s\", \"permissions\": []}]}",
           name);
  expect_load_code(json, RT_ECONFIG);
  /* The repeat reported is the first one in the list, named with the entry it repeats. */
  expect_json_error("{\"apiKeys\": ["
                    "{\"key\": \"" KEY_A "\", \"name\": \"a\", \"permissions\": []},"
                    "{\"key\": \"" KEY_B "\", \"name\": \"b\", \"permissions\": []},"
                    "{\"key\": \"" KEY_B "\", \"name\": \"c\", \"permissions\": []},"
                    "{\"key\": \"" KEY_A "\", \"name\": \"d\", \"permissions\": []},"
                    "{\"key\": \"" KEY_B "\", \"name\": \"e\", \"permissions\": []}]}",
                    RT_ECONFIG,
                    ORIGIN ": \"apiKeys[2].key\" is the same key as \"apiKeys[1].key\"");
  /* Each entry's own rules come first, then repeats across the list. */
  expect_json_error("{\"apiKeys\": ["
                    "{\"key\": \"" KEY_A "\", \"name\": \"a\", \"permissions\": []},"
                    "{\"key\": \"" KEY_A "\", \"name\": \"b\", \"permissions\": []},"
                    "{\"key\": \"" KEY_B "\", \"name\": \"c\", \"permissions\": [\"x\"]}]}",
                    RT_ECONFIG,
                    ORIGIN ": \"apiKeys[2].permissions[0]\" must be \"*\", \"query:raw\", "
                           "\"read:<pattern>\" or \"write:<pattern>\" (got \"x\")");
  /* Same name twice is fine: only keys must differ. */
  expect_load_code("{\"apiKeys\": ["
                              "{\"key\": \"" KEY_A "\", \"name\": \"a\", \"permissions\": []},"
                              "{\"key\": \"" KEY_B "\", \"name\": \"a\", \"permissions\": []}]}",
                              0);
}

/* apiKeys comes from the file only: flags are refused, the variable is no variable. */
static void test_api_keys_file_only(void **state) {
  rt_config_store_t store;
  rt_config_t cfg, before;
  rt_errbuf_t err = {""};
  rt_config_store_init(&store);
  rt_config_init(&cfg);
  before = cfg;
  assert_int_equal(rt_config_set(&store, &cfg, "apiKeys", KEY_A, "--set", &err), RT_ECONFIG);
  assert_string_equal(err.msg, "--set: \"apiKeys\" can only be set in the config file");
  assert_config_same(&cfg, &before);
  char *env[] = {"REALTIME_API_KEYS=" KEY_A, NULL};
  assert_int_equal(rt_config_apply_env(&store, &cfg, env, &err), 0);
  assert_config_same(&cfg, &before);
  rt_config_store_destroy(&store);
}

/* ---------------------------------------------------- live query keys */

/* Each new scalar: exact messages at and past its bounds, groups and suggestions. */
static void test_live_scalars_errors(void **state) {
  expect_json_error("{\"database\": {\"pollInterval\": 0}}", RT_ECONFIG,
                    ORIGIN ": \"database.pollInterval\" must be an integer 1-60000 (got 0)");
  expect_json_error("{\"database\": {\"pollInterval\": 60001}}", RT_ECONFIG,
                    ORIGIN ": \"database.pollInterval\" must be an integer 1-60000 (got 60001)");
  expect_json_error("{\"database\": {\"pollInterval\": \"50\"}}", RT_ECONFIG,
                    ORIGIN ": \"database.pollInterval\" must be an integer 1-60000 (got a string)");
  expect_json_error("{\"database\": {\"path\": \"\"}}", RT_ECONFIG,
                    ORIGIN ": \"database.path\" must be a non-empty string (got \"\")");
  expect_json_error("{\"database\": {\"path\": 5}}", RT_ECONFIG,
                    ORIGIN ": \"database.path\" must be a string (got 5)");
  expect_json_error("{\"database\": {\"setup\": [\"CREATE TABLE t(x)\"]}}", RT_ECONFIG,
                    ORIGIN ": \"database.setup\" must be a string (got an array)");
  expect_json_error("{\"database\": {\"setup\": null}}", RT_ECONFIG,
                    ORIGIN ": \"database.setup\" must be a string (got null)");
  expect_json_error("{\"database\": \"realtime.db\"}", RT_ECONFIG,
                    ORIGIN ": \"database\" must be an object (got a string)");
  expect_json_error("{\"liveQueries\": {\"allowRawSql\": 1}}", RT_ECONFIG,
                    ORIGIN ": \"liveQueries.allowRawSql\" must be true or false (got 1)");
  expect_json_error("{\"liveQueries\": {\"timeout\": 0}}", RT_ECONFIG,
                    ORIGIN ": \"liveQueries.timeout\" must be an integer 1-600000 (got 0)");
  expect_json_error("{\"liveQueries\": {\"timeout\": 600001}}", RT_ECONFIG,
                    ORIGIN ": \"liveQueries.timeout\" must be an integer 1-600000 (got 600001)");
  expect_json_error("{\"liveQueries\": {\"timeout\": 1.5}}", RT_ECONFIG,
                    ORIGIN ": \"liveQueries.timeout\" must be an integer 1-600000 (got 1.5)");
  expect_json_error("{\"liveQueries\": {\"maxRows\": 0}}", RT_ECONFIG,
                    ORIGIN ": \"liveQueries.maxRows\" must be an integer 1-4294967295 (got 0)");
  expect_json_error("{\"liveQueries\": {\"maxRows\": 4294967296}}", RT_ECONFIG,
                    ORIGIN ": \"liveQueries.maxRows\" must be an integer 1-4294967295 "
                           "(got 4294967296)");
  expect_json_error("{\"liveQueries\": {\"maxBytes\": 0}}", RT_ECONFIG,
                    ORIGIN ": \"liveQueries.maxBytes\" must be an integer 1-268435456 (got 0)");
  expect_json_error("{\"liveQueries\": {\"maxBytes\": 268435457}}", RT_ECONFIG,
                    ORIGIN ": \"liveQueries.maxBytes\" must be an integer 1-268435456 "
                           "(got 268435457)");
  expect_json_error("{\"liveQueries\": []}", RT_ECONFIG,
                    ORIGIN ": \"liveQueries\" must be an object (got [])");
  expect_json_error("{\"liveQuerys\": {}}", RT_ECONFIG,
                    ORIGIN ": unknown key \"liveQuerys\" (did you mean \"liveQueries\"?)");
  expect_json_error("{\"liveQueries\": {\"timout\": 5}}", RT_ECONFIG,
                    ORIGIN ": unknown key \"liveQueries.timout\" "
                           "(did you mean \"liveQueries.timeout\"?)");
  expect_json_error("{\"database\": {\"pth\": \"x.db\"}}", RT_ECONFIG,
                    ORIGIN ": unknown key \"database.pth\" (did you mean \"database.path\"?)");
  expect_json_error("{\"querys\": {}}", RT_ECONFIG,
                    ORIGIN ": unknown key \"querys\" (did you mean \"queries\"?)");
  expect_json_error("{\"database\": {\"path\": \"a.db\", \"pollInterval\": 0}}", RT_ECONFIG,
                    ORIGIN ": \"database.pollInterval\" must be an integer 1-60000 (got 0)");
}

/* The bounds themselves are accepted, from the file and from flags alike. */
static void test_live_scalars_bounds(void **state) {
  rt_config_store_t store;
  rt_config_t cfg;
  rt_errbuf_t err = {""};
  rt_config_store_init(&store);
  rt_config_init(&cfg);
  assert_int_equal(load(&store, &cfg,
                        "{\"database\": {\"pollInterval\": 1, \"path\": \":memory:\","
                        " \"setup\": \"\"},"
                        " \"liveQueries\": {\"timeout\": 600000, \"maxRows\": 1,"
                        " \"maxBytes\": 268435456, \"allowRawSql\": false}}",
                        &err),
                   0);
  assert_int_equal(cfg.database_poll_ms, 1);
  assert_string_equal(cfg.database_path, ":memory:");
  assert_string_equal(cfg.database_setup, "");
  assert_int_equal(cfg.live_timeout_ms, 600000);
  assert_int_equal(cfg.live_max_rows, 1);
  assert_int_equal(cfg.live_max_bytes, 268435456);
  assert_int_equal(cfg.live_allow_raw_sql, 0);
  assert_int_equal(rt_config_validate(&cfg, &err), 0);
  assert_int_equal(rt_config_set(&store, &cfg, "database.pollInterval", "60000", "--x", &err), 0);
  assert_int_equal(cfg.database_poll_ms, 60000);
  assert_int_equal(rt_config_set(&store, &cfg, "liveQueries.timeout", "1", "--x", &err), 0);
  assert_int_equal(cfg.live_timeout_ms, 1);
  assert_int_equal(rt_config_set(&store, &cfg, "liveQueries.maxRows", "4294967295", "--x", &err),
                   0);
  assert_int_equal(cfg.live_max_rows, UINT32_MAX);
  assert_int_equal(rt_config_set(&store, &cfg, "liveQueries.maxBytes", "1", "--x", &err), 0);
  assert_int_equal(cfg.live_max_bytes, 1);
  assert_int_equal(rt_config_set(&store, &cfg, "liveQueries.allowRawSql", "TRUE", "--x", &err), 0);
  assert_int_equal(cfg.live_allow_raw_sql, 1);
  assert_int_equal(rt_config_set(&store, &cfg, "database.path", "b.db", "--x", &err), 0);
  assert_string_equal(cfg.database_path, "b.db");
  assert_ptr_equal(cfg.database_path, store.database_path);
  assert_int_equal(rt_config_set(&store, &cfg, "database.setup", "SELECT 1", "--x", &err), 0);
  assert_ptr_equal(cfg.database_setup, store.database_setup);
  assert_int_equal(rt_config_set(&store, &cfg, "liveQueries.maxBytes", "0", "--max-bytes", &err),
                   RT_ECONFIG);
  assert_string_equal(err.msg, "--max-bytes must be an integer 1-268435456 (got \"0\")");
  assert_int_equal(rt_config_validate(&cfg, &err), 0);
  rt_config_store_destroy(&store);

  /* An empty REALTIME_DATABASE_SETUP turns off a setup the file gave. */
  char *env[] = {"REALTIME_DATABASE_SETUP=", NULL};
  rt_config_store_init(&store);
  rt_config_init(&cfg);
  assert_int_equal(load(&store, &cfg, "{\"database\": {\"setup\": \"" SETUP_SQL "\"}}", &err), 0);
  assert_int_equal(rt_config_apply_env(&store, &cfg, env, &err), 0);
  assert_string_equal(cfg.database_setup, "");
  rt_config_store_destroy(&store);
}

/* Queries: file order, absent members NULL, strings in the store's block. */
static void test_queries_parsed(void **state) {
  rt_config_store_t store;
  rt_config_t cfg;
  rt_errbuf_t err = {""};
  rt_config_store_init(&store);
  rt_config_init(&cfg);
  char *text = rt_strdup(
      "{\"queries\": {"
      "\"pending_orders\": {\"sql\": \"" ORDERS_SQL "\","
      " \"permission\": \"read:orders\"},"
      "\"all\": {\"sql\": \"SELECT * FROM t\"},"
      "\"raw\": {\"sql\": \"SELECT :a, ?\", \"permission\": \"query:raw\", \"key\": \"rowid\"},"
      "\"star\": {\"permission\": \"*\", \"sql\": \"SELECT 1\"},"
      "\"user:{x}\": {\"sql\": \"SELECT 2\", \"permission\": \"read:user:{sub}:*\"}"
      "}}");
  int rc = load(&store, &cfg, text, &err);
  if (rc == 0) fail_msg("a '{' in a name must be refused");
  assert_string_equal(err.msg, ORIGIN ": \"queries\" names must be 1-64 characters of A-Z a-z "
                               "0-9 _ . : - (got \"user:{x}\")");
  char *brace = strstr(text, "user:{x}");
  memcpy(brace, "user:_x_", 8);
  assert_int_equal(load(&store, &cfg, text, &err), 0);
  memset(text, 'x', strlen(text));
  rt_free(text);
  assert_int_equal(cfg.query_count, 5);
  assert_ptr_equal(cfg.queries, store.query_block);
  assert_string_equal(cfg.queries[0].name, "pending_orders");
  assert_string_equal(cfg.queries[0].sql, ORDERS_SQL);
  assert_string_equal(cfg.queries[0].permission, "read:orders");
  assert_null(cfg.queries[0].key);
  assert_string_equal(cfg.queries[1].name, "all");
  assert_string_equal(cfg.queries[1].sql, "SELECT * FROM t");
  assert_null(cfg.queries[1].permission);
  assert_null(cfg.queries[1].key);
  assert_string_equal(cfg.queries[2].name, "raw");
  assert_string_equal(cfg.queries[2].sql, "SELECT :a, ?");
  assert_string_equal(cfg.queries[2].permission, "query:raw");
  assert_string_equal(cfg.queries[2].key, "rowid");
  assert_string_equal(cfg.queries[3].name, "star");
  assert_string_equal(cfg.queries[3].permission, "*");
  assert_string_equal(cfg.queries[4].name, "user:_x_");
  assert_string_equal(cfg.queries[4].permission, "read:user:{sub}:*");
  assert_int_equal(rt_config_validate(&cfg, &err), 0);

  /* A later file replaces the set, a failed one keeps it, an empty object clears it. */
  assert_int_equal(load(&store, &cfg, full_json, &err), 0);
  assert_full_queries(&cfg);
  const rt_query_config_t *kept = cfg.queries;
  assert_int_equal(load(&store, &cfg,
                        "{\"queries\": {\"q\": {\"sql\": \"SELECT 1\"}}, \"liveQueries\":"
                        " {\"timeout\": 0}}",
                        &err),
                   RT_ECONFIG);
  assert_ptr_equal(cfg.queries, kept);
  assert_full_queries(&cfg);
  assert_int_equal(load(&store, &cfg, "{\"queries\": {}}", &err), 0);
  assert_null(cfg.queries);
  assert_int_equal(cfg.query_count, 0);
  assert_null(store.query_block);
  rt_config_store_destroy(&store);
}

/* Names: the channel-like alphabet without '/' and '@', 1-64 bytes. */
static void test_queries_names(void **state) {
  static const char *const bad[] = {"", "a b", "a/b", "a@b", "caf\\u00e9", "a\\tb", "a*"};
  static const char *const shown[] = {"", "a b", "a/b", "a@b", "caf\xc3\xa9", "a\tb", "a*"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char json[200], want[200];
    snprintf(json, sizeof(json), "{\"queries\": {\"ok\": {\"sql\": \"SELECT 1\"}, \"%s\":"
             " {\"sql\": \"SELECT 1\"}}}", bad[i]);
    snprintf(want, sizeof(want),
             ORIGIN ": \"queries\" names must be 1-64 characters of A-Z a-z 0-9 _ . : - "
             "(got \"%s\")", shown[i]);
    expect_json_error(json, RT_ECONFIG, want);
  }
  char name[80], json[300];
  memset(name, 'n', 64);
  name[64] = '\0';
  snprintf(json, sizeof(json), "{\"queries\": {\"%s\": {\"sql\": \"SELECT 1\"}}}", name);
  expect_load_code(json, 0);
  strcat(name, "n");
  snprintf(json, sizeof(json), "{\"queries\": {\"%s\": {\"sql\": \"SELECT 1\"}}}", name);
  expect_json_error(json, RT_ECONFIG,
                    ORIGIN ": \"queries\" names must be 1-64 characters of A-Z a-z 0-9 _ . : - "
                           "(got \"nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn...\")");
  expect_load_code("{\"queries\": {\"A-z_0.9:x\": {\"sql\": \"SELECT 1\"}}}", 0);
  /* An object cannot repeat a name: the JSON reader refuses it first. */
  expect_syntax_error(
      "{\"queries\": {\"a\": {\"sql\": \"SELECT 1\"}, \"a\": {\"sql\": \"SELECT 2\"}}}", 1, 42,
      "duplicate object key");
}

/* Shapes and types: every message names the path of what is wrong. */
static void test_queries_errors(void **state) {
  expect_json_error("{\"queries\": [{\"sql\": \"SELECT 1\"}]}", RT_ECONFIG,
                    ORIGIN ": \"queries\" must be an object mapping query names to {\"sql\", "
                           "\"permission\", \"key\"} objects (got an array)");
  expect_json_error("{\"queries\": \"SELECT 1\"}", RT_ECONFIG,
                    ORIGIN ": \"queries\" must be an object mapping query names to {\"sql\", "
                           "\"permission\", \"key\"} objects (got a string)");
  expect_json_error("{\"queries\": null}", RT_ECONFIG,
                    ORIGIN ": \"queries\" must be an object mapping query names to {\"sql\", "
                           "\"permission\", \"key\"} objects (got null)");
  expect_json_error("{\"queries\": {\"pending_orders\": \"SELECT 1\"}}", RT_ECONFIG,
                    ORIGIN ": \"queries.pending_orders\" must be an object with \"sql\" and "
                           "optional \"permission\" and \"key\" (got \"SELECT 1\")");
  expect_json_error("{\"queries\": {\"pending_orders\": []}}", RT_ECONFIG,
                    ORIGIN ": \"queries.pending_orders\" must be an object with \"sql\" and "
                           "optional \"permission\" and \"key\" (got [])");
  expect_json_error("{\"queries\": {\"pending_orders\": {}}}", RT_ECONFIG,
                    ORIGIN ": \"queries.pending_orders.sql\" is missing");
  expect_json_error("{\"queries\": {\"pending_orders\": {\"permission\": \"read:orders\"}}}",
                    RT_ECONFIG, ORIGIN ": \"queries.pending_orders.sql\" is missing");
  expect_json_error("{\"queries\": {\"pending_orders\": {\"sql\": 42}}}", RT_ECONFIG,
                    ORIGIN ": \"queries.pending_orders.sql\" must be a string (got 42)");
  expect_json_error("{\"queries\": {\"pending_orders\": {\"sql\": null}}}", RT_ECONFIG,
                    ORIGIN ": \"queries.pending_orders.sql\" must be a string (got null)");
  expect_json_error("{\"queries\": {\"pending_orders\": {\"sql\": [\"SELECT 1\"]}}}", RT_ECONFIG,
                    ORIGIN ": \"queries.pending_orders.sql\" must be a string (got an array)");
  expect_json_error("{\"queries\": {\"pending_orders\": {\"sql\": \"\"}}}", RT_ECONFIG,
                    ORIGIN ": \"queries.pending_orders.sql\" must be a non-empty string "
                           "(got \"\")");
  expect_json_error("{\"queries\": {\"q\": {\"sql\": \"SELECT 1\", \"permission\": true}}}",
                    RT_ECONFIG, ORIGIN ": \"queries.q.permission\" must be a string (got true)");
  expect_json_error("{\"queries\": {\"q\": {\"sql\": \"SELECT 1\", \"permission\": null}}}",
                    RT_ECONFIG, ORIGIN ": \"queries.q.permission\" must be a string (got null)");
  expect_json_error("{\"queries\": {\"q\": {\"sql\": \"SELECT 1\", \"key\": 1}}}", RT_ECONFIG,
                    ORIGIN ": \"queries.q.key\" must be a string (got 1)");
  expect_json_error("{\"queries\": {\"q\": {\"sql\": \"SELECT 1\", \"key\": \"\"}}}", RT_ECONFIG,
                    ORIGIN ": \"queries.q.key\" must be a non-empty string (got \"\")");
  expect_json_error("{\"queries\": {\"q\": {\"sql\": \"SELECT 1\", \"params\": [1]}}}", RT_ECONFIG,
                    ORIGIN ": \"queries.q\" has an unknown member \"params\" (allowed: \"sql\", "
                           "\"permission\", \"key\")");
  expect_json_error("{\"queries\": {\"q\": {\"SQL\": \"SELECT 1\"}}}", RT_ECONFIG,
                    ORIGIN ": \"queries.q\" has an unknown member \"SQL\" (allowed: \"sql\", "
                           "\"permission\", \"key\")");
  /* The first mistake in file order wins: the second query here. */
  expect_json_error("{\"queries\": {\"a\": {\"sql\": \"SELECT 1\"}, \"b\": {\"sql\": 1},"
                    " \"c\": {}}}",
                    RT_ECONFIG, ORIGIN ": \"queries.b.sql\" must be a string (got 1)");
  expect_json_error("{\"queries\": {\"a\": {\"sql\": \"SELECT 1\"}}, \"queries\": {}}", RT_EJSON,
                    ORIGIN ": invalid JSON at line 1, column 49: duplicate object key");
}

/* A query's permission follows the permission rules of API keys and tokens. */
static void test_queries_permissions(void **state) {
  static const char *const bad[] = {"admin", "read:", "write:", "query:*", "read:a b",
                                    "read:{user}", "", "Read:x"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char json[200], want[300];
    snprintf(json, sizeof(json),
             "{\"queries\": {\"pending_orders\": {\"sql\": \"SELECT 1\", \"permission\": \"%s\"}}}",
             bad[i]);
    snprintf(want, sizeof(want),
             ORIGIN ": \"queries.pending_orders.permission\" must be \"*\", \"query:raw\", "
                    "\"read:<pattern>\" or \"write:<pattern>\" (got \"%s\")",
             bad[i]);
    expect_json_error(json, RT_ECONFIG, want);
  }
  static const char *const good[] = {"read:orders", "read:orders:*", "write:x", "*", "*:*",
                                     "query:raw", "read:user:{sub}"};
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    char json[200];
    snprintf(json, sizeof(json),
             "{\"queries\": {\"q\": {\"sql\": \"SELECT 1\", \"permission\": \"%s\"}}}", good[i]);
    expect_load_code(json, 0);
  }
}

/* queries comes from the file only: flags are refused, the variable is no variable. */
static void test_queries_file_only(void **state) {
  rt_config_store_t store;
  rt_config_t cfg, before;
  rt_errbuf_t err = {""};
  rt_config_store_init(&store);
  rt_config_init(&cfg);
  before = cfg;
  assert_int_equal(rt_config_set(&store, &cfg, "queries", "{}", "--set", &err), RT_ECONFIG);
  assert_string_equal(err.msg, "--set: \"queries\" can only be set in the config file");
  assert_config_same(&cfg, &before);
  char *env[] = {"REALTIME_QUERIES={\"q\": {\"sql\": \"SELECT 1\"}}", NULL};
  assert_int_equal(rt_config_apply_env(&store, &cfg, env, &err), 0);
  assert_config_same(&cfg, &before);
  assert_int_equal(store.set_keys, 0);
  rt_config_store_destroy(&store);
}

/* Queries built in C code get the file's rules, plus unique names. */
static void test_validate_queries_in_code(void **state) {
  rt_query_config_t q[3] = {
      {"orders", "SELECT * FROM orders", "read:orders", NULL},
      {"users", "SELECT * FROM users", NULL, "id"},
      {"x.y:z-1", "SELECT 1", "query:raw", NULL},
  };
  rt_config_t cfg;
  rt_errbuf_t err = {""};
  rt_config_init(&cfg);
  cfg.queries = q;
  cfg.query_count = 3;
  assert_int_equal(rt_config_validate(&cfg, &err), 0);

  q[2].name = "orders";
  expect_invalid(&cfg, "\"queries[2].name\" is the same name as \"queries[0].name\"");
  rt_alloc_fail_after(0);
  assert_int_equal(rt_config_validate(&cfg, &err), RT_ENOMEM);
  rt_alloc_fail_after(-1);
  assert_string_equal(err.msg, "\"queries\": out of memory");
  q[2].name = NULL;
  expect_invalid(&cfg, "\"queries[2].name\" must be 1-64 characters of A-Z a-z 0-9 _ . : - "
                       "(got NULL)");
  q[2].name = "a/b";
  expect_invalid(&cfg, "\"queries[2].name\" must be 1-64 characters of A-Z a-z 0-9 _ . : - "
                       "(got \"a/b\")");
  q[2].name = "third";
  q[1].sql = NULL;
  expect_invalid(&cfg, "\"queries.users.sql\" must be a non-empty string (got NULL)");
  q[1].sql = "";
  expect_invalid(&cfg, "\"queries.users.sql\" must be a non-empty string (got \"\")");
  q[1].sql = "SELECT 1";
  q[1].key = "";
  expect_invalid(&cfg, "\"queries.users.key\" must be a non-empty string (got \"\")");
  q[1].key = NULL;
  q[0].permission = "read";
  expect_invalid(&cfg, "\"queries.orders.permission\" must be \"*\", \"query:raw\", "
                       "\"read:<pattern>\" or \"write:<pattern>\" (got \"read\")");
  q[0].permission = NULL;
  assert_int_equal(rt_config_validate(&cfg, &err), 0);
  cfg.queries = NULL;
  expect_invalid(&cfg, "\"queries\" must be set (got NULL with 3 entries)");
  cfg.query_count = 0;
  assert_int_equal(rt_config_validate(&cfg, &err), 0);
}

/* The new scalars of a config built in code are held to the table's ranges. */
static void test_validate_live_scalars_in_code(void **state) {
  rt_config_t cfg;
  rt_errbuf_t err = {""};
  rt_config_init(&cfg);
  cfg.database_path = NULL;
  expect_invalid(&cfg, "\"database.path\" must be set (got NULL)");
  cfg.database_path = "";
  expect_invalid(&cfg, "\"database.path\" must be a non-empty string (got \"\")");
  rt_config_init(&cfg);
  cfg.database_poll_ms = 0;
  expect_invalid(&cfg, "\"database.pollInterval\" must be an integer 1-60000 (got 0)");
  rt_config_init(&cfg);
  cfg.live_timeout_ms = 600001;
  expect_invalid(&cfg, "\"liveQueries.timeout\" must be an integer 1-600000 (got 600001)");
  rt_config_init(&cfg);
  cfg.live_max_rows = 0;
  expect_invalid(&cfg, "\"liveQueries.maxRows\" must be an integer 1-4294967295 (got 0)");
  rt_config_init(&cfg);
  cfg.live_max_bytes = (size_t)256 * 1024 * 1024 + 1;
  expect_invalid(&cfg, "\"liveQueries.maxBytes\" must be an integer 1-268435456 (got 268435457)");
  rt_config_init(&cfg);
  cfg.database_setup = "";
  cfg.live_allow_raw_sql = 1;
  assert_int_equal(rt_config_validate(&cfg, &err), 0);
}

/* Every allocation of a queries load failing in turn: RT_ENOMEM, nothing changed, no leak. */
static void test_queries_out_of_memory(void **state) {
  static const char json[] =
      "{\"queries\": {\"a\": {\"sql\": \"SELECT 1\", \"key\": \"id\"},"
      " \"b\": {\"sql\": \"SELECT 2\", \"permission\": \"read:b\"}},"
      " \"database\": {\"path\": \"x.db\", \"setup\": \"SELECT 3\"}}";
  int succeeded = 0;
  for (long n = 0; n < 200 && !succeeded; n++) {
    rt_config_store_t store;
    rt_config_t cfg, before;
    rt_errbuf_t err = {""};
    rt_config_store_init(&store);
    rt_config_init(&cfg);
    assert_int_equal(load(&store, &cfg, "{\"queries\": {\"old\": {\"sql\": \"SELECT 0\"}}}", &err),
                     0);
    before = cfg;
    rt_alloc_fail_after(n);
    int rc = load(&store, &cfg, json, &err);
    rt_alloc_fail_after(-1);
    if (rc == 0) {
      succeeded = 1;
      assert_int_equal(cfg.query_count, 2);
      assert_string_equal(cfg.queries[1].permission, "read:b");
      assert_string_equal(cfg.database_setup, "SELECT 3");
    } else {
      assert_int_equal(rc, RT_ENOMEM);
      assert_config_same(&cfg, &before);
      assert_string_equal(cfg.queries[0].name, "old");
    }
    rt_config_store_destroy(&store);
  }
  assert_true(succeeded);
}

/* A mistyped secret is described by its type only, never by its value. */
static void test_secrets_never_in_messages(void **state) {
  expect_json_error("{\"jwtSecret\": 7391234}", RT_ECONFIG,
                    ORIGIN ": \"jwtSecret\" must be a string (got a number)");
  expect_json_error("{\"jwtSecret\": [\"" SECRET "\"]}", RT_ECONFIG,
                    ORIGIN ": \"jwtSecret\" must be a string (got an array)");
  expect_json_error("{\"jwtSecret\": true}", RT_ECONFIG,
                    ORIGIN ": \"jwtSecret\" must be a string (got a boolean)");
  rt_config_store_t store;
  rt_config_t cfg;
  rt_errbuf_t err = {""};
  rt_config_store_init(&store);
  rt_config_init(&cfg);
  assert_int_equal(rt_config_set(&store, &cfg, "jwtSecret", "", "--x", &err), 0);
  assert_string_equal(cfg.jwt_secret, "");
  cfg.require_auth = 1;
  expect_invalid(&cfg, NO_AUTH_KEY);
  rt_config_store_destroy(&store);
}

/* requireAuth is satisfied by any one kind of credential; algorithms need their key kind. */
static void test_validate_auth_relations(void **state) {
  rt_config_t cfg;
  rt_errbuf_t err = {""};
  const rt_api_key_config_t one = {KEY_A, "svc", NULL, 0};

  rt_config_init(&cfg);
  cfg.require_auth = 1;
  cfg.jwt_public_key_file = "";
  expect_invalid(&cfg, "\"jwtPublicKeyFile\" must be a non-empty string (got \"\")");
  cfg.jwt_public_key_file = "/k.pem";
  assert_int_equal(rt_config_validate(&cfg, &err), 0);
  cfg.jwt_public_key_file = NULL;
  cfg.api_keys = &one;
  cfg.api_key_count = 1;
  assert_int_equal(rt_config_validate(&cfg, &err), 0);
  cfg.require_auth = 0;
  cfg.api_keys = NULL;
  cfg.api_key_count = 0;
  assert_int_equal(rt_config_validate(&cfg, &err), 0);

  rt_config_init(&cfg);
  cfg.jwt_algorithms = "HS256";
  expect_invalid(&cfg, "\"jwtAlgorithms\" lists HS256, which needs \"jwtSecret\"");
  cfg.jwt_secret = "k";
  assert_int_equal(rt_config_validate(&cfg, &err), 0);
  cfg.jwt_algorithms = "HS384,ES256";
  expect_invalid(&cfg, "\"jwtAlgorithms\" lists ES256, which needs \"jwtPublicKeyFile\"");
  cfg.jwt_algorithms = "RS256";
  expect_invalid(&cfg, "\"jwtAlgorithms\" lists RS256, which needs \"jwtPublicKeyFile\"");
  cfg.jwt_public_key_file = "/k.pem";
  assert_int_equal(rt_config_validate(&cfg, &err), 0);
  cfg.jwt_secret = NULL;
  cfg.jwt_algorithms = "RS256,HS512";
  expect_invalid(&cfg, "\"jwtAlgorithms\" lists HS512, which needs \"jwtSecret\"");
  cfg.jwt_secret = "";
  expect_invalid(&cfg, "\"jwtAlgorithms\" lists HS512, which needs \"jwtSecret\"");
  cfg.jwt_algorithms = "RS256, ES256";
  assert_int_equal(rt_config_validate(&cfg, &err), 0);
  cfg.jwt_algorithms = "RS256,es256";
  expect_invalid(&cfg, "\"jwtAlgorithms\" must be a comma-separated list of HS256, HS384, HS512, "
                       "RS256, ES256 (got \"RS256,es256\")");
  cfg.jwt_algorithms = "RS256,none";
  expect_invalid(&cfg, "\"jwtAlgorithms\" must be a comma-separated list of HS256, HS384, HS512, "
                       "RS256, ES256 (got \"RS256,none\")");
  cfg.jwt_algorithms = "";
  expect_invalid(&cfg, "\"jwtAlgorithms\" must be a comma-separated list of HS256, HS384, HS512, "
                       "RS256, ES256 (got \"\")");
}

/* The file's jwtAlgorithms and keys meet in validate, as realtimed runs it. */
static void test_validate_loaded_auth(void **state) {
  rt_config_store_t store;
  rt_config_t cfg;
  rt_errbuf_t err = {""};
  rt_config_store_init(&store);
  rt_config_init(&cfg);
  assert_int_equal(
      load(&store, &cfg, "{\"requireAuth\": true, \"jwtAlgorithms\": [\"ES256\"]}", &err), 0);
  expect_invalid(&cfg, NO_AUTH_KEY);
  assert_int_equal(load(&store, &cfg, "{\"jwtSecret\": \"" SECRET "\"}", &err), 0);
  expect_invalid(&cfg, "\"jwtAlgorithms\" lists ES256, which needs \"jwtPublicKeyFile\"");
  assert_int_equal(load(&store, &cfg, "{\"jwtPublicKeyFile\": \"/k.pem\"}", &err), 0);
  assert_int_equal(rt_config_validate(&cfg, &err), 0);
  rt_config_store_destroy(&store);

  rt_config_store_init(&store);
  rt_config_init(&cfg);
  assert_int_equal(load(&store, &cfg,
                        "{\"requireAuth\": true, \"apiKeys\": [{\"key\": \"" KEY_A "\","
                        " \"name\": \"svc\", \"permissions\": [\"read:*\"]}]}",
                        &err),
                   0);
  assert_int_equal(rt_config_validate(&cfg, &err), 0);
  rt_config_store_destroy(&store);
}

/* Keys built in C code get the file's rules, named without an origin. */
static void test_validate_api_keys_in_code(void **state) {
  const char *const good[] = {"read:*", "write:chat:{sub}"};
  const char *const bad[] = {"read:*", "delete:*"};
  const char *const null_perm[] = {NULL};
  rt_api_key_config_t keys[2] = {{KEY_A, "a", good, 2}, {KEY_B, "b", NULL, 0}};
  rt_config_t cfg;
  rt_errbuf_t err = {""};
  rt_config_init(&cfg);
  cfg.api_keys = keys;
  cfg.api_key_count = 2;
  assert_int_equal(rt_config_validate(&cfg, &err), 0);

  keys[1].key = KEY_A;
  expect_invalid(&cfg, "\"apiKeys[1].key\" is the same key as \"apiKeys[0].key\"");
  rt_alloc_fail_after(0);
  assert_int_equal(rt_config_validate(&cfg, &err), RT_ENOMEM);
  rt_alloc_fail_after(-1);
  assert_string_equal(err.msg, "\"apiKeys\": out of memory");
  keys[1].key = NULL;
  expect_invalid(&cfg, "\"apiKeys[1].key\" must be a non-empty string of visible ASCII "
                       "characters without spaces");
  keys[1].key = KEY_A "\n";
  expect_invalid(&cfg, "\"apiKeys[1].key\" must be a non-empty string of visible ASCII "
                       "characters without spaces");
  keys[1].key = KEY_B;
  keys[1].name = NULL;
  expect_invalid(&cfg, "\"apiKeys[1].name\" must be 1-128 characters of A-Z a-z 0-9 _ - . @ "
                       "(got NULL)");
  keys[1].name = "b";
  keys[1].permissions = bad;
  keys[1].permission_count = 2;
  expect_invalid(&cfg, "\"apiKeys[1].permissions[1]\" must be \"*\", \"query:raw\", "
                       "\"read:<pattern>\" or \"write:<pattern>\" (got \"delete:*\")");
  keys[1].permissions = null_perm;
  keys[1].permission_count = 1;
  expect_invalid(&cfg, "\"apiKeys[1].permissions[0]\" must be \"*\", \"query:raw\", "
                       "\"read:<pattern>\" or \"write:<pattern>\" (got NULL)");
  keys[1].permissions = NULL;
  keys[1].permission_count = 3;
  expect_invalid(&cfg, "\"apiKeys[1].permissions\" must be set (got NULL with 3 entries)");
  keys[1].permission_count = 0;
  assert_int_equal(rt_config_validate(&cfg, &err), 0);
  cfg.api_keys = NULL;
  expect_invalid(&cfg, "\"apiKeys\" must be set (got NULL with 2 entries)");
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
  char *env[] = {"REALTIME_HOST=h", "REALTIME_PATH=/p", "REALTIME_JWT_SECRET=s",
                 "REALTIME_JWT_PUBLIC_KEY_FILE=/k.pem", "REALTIME_JWT_ALGORITHMS=ES256,HS384",
                 "REALTIME_DATABASE_PATH=/d.db", "REALTIME_DATABASE_SETUP=SELECT 1", NULL};
  for (int which = 0; which < 4; which++) {
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
               : which == 2 ? rt_config_set(&store, &cfg, "host", "x", "--host", &err)
                            : rt_config_set(&store, &cfg, "jwtAlgorithms", "HS512", "--x", &err);
      rt_alloc_fail_after(-1);
      if (rc == 0) {
        succeeded = 1;
        if (which == 0) assert_full_api_keys(&cfg);
        if (which == 0) assert_full_queries(&cfg);
        if (which == 1) assert_string_equal(cfg.database_setup, "SELECT 1");
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
  assert_null(store.jwt_public_key_file);
  assert_null(store.jwt_algorithms);
  assert_null(store.api_key_block);
  assert_null(store.database_path);
  assert_null(store.database_setup);
  assert_null(store.query_block);
  assert_int_equal(store.set_keys, 0);
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
      cmocka_unit_test(test_security_scalars),
      cmocka_unit_test(test_jwt_algorithms_file),
      cmocka_unit_test(test_jwt_algorithms_text),
      cmocka_unit_test(test_api_keys_parsed),
      cmocka_unit_test(test_api_keys_failed_load_keeps_previous),
      cmocka_unit_test(test_api_keys_errors),
      cmocka_unit_test(test_api_keys_key_and_name_rules),
      cmocka_unit_test(test_api_keys_file_only),
      cmocka_unit_test(test_live_scalars_errors),
      cmocka_unit_test(test_live_scalars_bounds),
      cmocka_unit_test(test_queries_parsed),
      cmocka_unit_test(test_queries_names),
      cmocka_unit_test(test_queries_errors),
      cmocka_unit_test(test_queries_permissions),
      cmocka_unit_test(test_queries_file_only),
      cmocka_unit_test(test_validate_queries_in_code),
      cmocka_unit_test(test_validate_live_scalars_in_code),
      cmocka_unit_test(test_queries_out_of_memory),
      cmocka_unit_test(test_secrets_never_in_messages),
      cmocka_unit_test(test_validate_auth_relations),
      cmocka_unit_test(test_validate_loaded_auth),
      cmocka_unit_test(test_validate_api_keys_in_code),
      cmocka_unit_test(test_load_file),
      cmocka_unit_test(test_load_endless_stream),
      cmocka_unit_test(test_out_of_memory),
      cmocka_unit_test(test_store_lifecycle),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
