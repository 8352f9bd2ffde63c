/*
 * The key table: every key of rt_config_t once, with its JSON path, kind,
 * range and rule, from which the loaders (config_text.c, config_file.c),
 * the environment names and the checks (config_validate.c) all derive.
 * Also the defaults (rt_config_init, and rt_config_resolve for those that
 * depend on other keys) and what the other config files read the table
 * through: key lookups, the JWT algorithm names, and the one wording of
 * messages about a value that does not fit or a key that does not exist.
 */
#include "config.h"

#include <ctype.h>
#include <stdint.h>
#include <string.h>

#include "config_blocks.h"
#include "config_internal.h"

#define SUGGEST_DISTANCE 2   /* edits within which an unknown key gets a "did you mean" */
#define MS_MAX 86400000u     /* one day: the ceiling of every duration */
#define SIZE_LIMIT ((uint64_t)1 << 30)
#define QUEUE_LIMIT ((uint64_t)1 << 34)
#define LEEWAY_MAX 3600u     /* an hour of clock skew; more would keep expired tokens alive */
#define DISCONNECT_MAX 1000u /* largest rateLimit.disconnectAfter multiple */
#define POLL_MAX 60000u      /* database.pollInterval ceiling: a minute between looks for commits */
#define LIVE_TIMEOUT_MAX 600000u /* ten minutes: the longest one evaluation may run */
#define FLUSH_INTERVAL_MAX 1000u /* flushInterval ceiling: a second of added latency at most */
#define LIVE_BYTES_MAX ((uint64_t)256 << 20) /* largest encoded result of one query */

#define OPT_STR(key, field, check, flags)                    \
  {key, RT_CONFIG_KIND_STRING, offsetof(rt_config_t, field), \
   offsetof(rt_config_store_t, field), check, flags, 0, 0}
#define OPT_ALGS(key, field)                               \
  {key, RT_CONFIG_KIND_ALGS, offsetof(rt_config_t, field), \
   offsetof(rt_config_store_t, field), NULL, 0, 0, 0}
#define OPT_BLOCK(key, kind, field, slot, flags)                                                 \
  {key, RT_CONFIG_##kind, offsetof(rt_config_t, field), offsetof(rt_config_store_t, slot), NULL, \
   RT_CONFIG_FLAG_FILE_ONLY | (flags), 0, 0}
#define OPT_BOOL(key, field) \
  {key, RT_CONFIG_KIND_BOOL, offsetof(rt_config_t, field), 0, NULL, 0, 0, 1}
#define OPT_NUM(key, kind, field, lo, hi) \
  {key, RT_CONFIG_##kind, offsetof(rt_config_t, field), 0, NULL, 0, lo, hi}

static const char *check_nonempty(const char *value) {
  return value[0] == '\0' ? "a non-empty string" : NULL;
}

/* The endpoint path is compared with the request target: '/' then visible ASCII, no query. */
static const char *check_path(const char *value) {
  static const char rule[] = "a path starting with '/' without spaces, controls, '?' or '#'";
  if (value[0] != '/') return rule;
  for (const char *p = value; *p != '\0'; p++) {
    if (*p <= ' ' || *p > '~' || *p == '?' || *p == '#') return rule;
  }
  return NULL;
}

/*
 * The one description of every key: JSON names, environment names (derived),
 * parsing and validation ranges all come from here. A duration may be 0 only
 * where 0 means "off" (pingInterval) or "at once" (shutdownTimeout,
 * tokenExpiryGrace).
 */
const rt_config_option_t rt_config_options[] = {
    OPT_NUM("port", KIND_INT, port, 0, 65535),
    OPT_STR("host", host, check_nonempty, 0),
    OPT_STR("path", path, check_path, 0),
    OPT_NUM("pingInterval", KIND_U32, ping_interval_ms, 0, MS_MAX),
    OPT_NUM("presenceTimeout", KIND_U32, presence_timeout_ms, 1, MS_MAX),
    OPT_BOOL("requireAuth", require_auth),
    OPT_STR("jwtSecret", jwt_secret, NULL, RT_CONFIG_FLAG_SECRET),
    OPT_STR("jwtPublicKeyFile", jwt_public_key_file, check_nonempty, RT_CONFIG_FLAG_NULLABLE),
    OPT_ALGS("jwtAlgorithms", jwt_algorithms),
    OPT_NUM("jwtLeeway", KIND_U32, jwt_leeway_s, 0, LEEWAY_MAX),
    OPT_NUM("authTimeout", KIND_U32, auth_timeout_ms, 1, MS_MAX),
    OPT_NUM("tokenExpiryGrace", KIND_U32, token_grace_ms, 0, MS_MAX),
    OPT_BLOCK("apiKeys", KIND_API_KEYS, api_keys, api_key_block, RT_CONFIG_FLAG_SECRET),
    OPT_NUM("rateLimit.maxConnections", KIND_U32, rate_limit.max_connections, 0, UINT32_MAX),
    OPT_NUM("rateLimit.maxMessagesPerMinute", KIND_U32, rate_limit.max_messages_per_minute, 0,
            UINT32_MAX),
    OPT_NUM("rateLimit.windowMs", KIND_U32, rate_limit.window_ms, 1, MS_MAX),
    OPT_NUM("rateLimit.subscribe", KIND_U32, rate_limit.subscribe, 0, UINT32_MAX),
    OPT_NUM("rateLimit.publish", KIND_U32, rate_limit.publish, 0, UINT32_MAX),
    OPT_NUM("rateLimit.presence", KIND_U32, rate_limit.presence, 0, UINT32_MAX),
    OPT_NUM("rateLimit.query", KIND_U32, rate_limit.query, 0, UINT32_MAX),
    OPT_NUM("rateLimit.disconnectAfter", KIND_U32, rate_limit.disconnect_after, 0,
            DISCONNECT_MAX),
    OPT_NUM("maxMessageSize", KIND_SIZE, max_message_size, 1, SIZE_LIMIT),
    OPT_NUM("maxPublishSize", KIND_SIZE, max_publish_size, 1, SIZE_LIMIT),
    OPT_NUM("maxSubscriptions", KIND_U32, max_subscriptions, 1, UINT32_MAX),
    OPT_NUM("maxQueuedBytes", KIND_SIZE, max_queued_bytes, 1,
            SIZE_MAX < QUEUE_LIMIT ? (uint64_t)SIZE_MAX : QUEUE_LIMIT),
    OPT_NUM("maxHeaderSize", KIND_SIZE, max_header_size, 256, 1024 * 1024),
    OPT_NUM("handshakeTimeout", KIND_U32, handshake_timeout_ms, 1, MS_MAX),
    OPT_NUM("shutdownTimeout", KIND_U32, shutdown_timeout_ms, 0, MS_MAX),
    OPT_BOOL("ioUring", io_uring),
    OPT_NUM("flushInterval", KIND_U32, flush_interval_ms, 0, FLUSH_INTERVAL_MAX),
    OPT_NUM("workers", KIND_U32, workers, 1, 64),
    OPT_NUM("maxJsonDepth", KIND_U32, max_json_depth, 1, 1024),
    OPT_BOOL("validation.xss", validate_xss),
    OPT_NUM("maxPresenceDataSize", KIND_SIZE, max_presence_data_size, 1, 1024 * 1024),
    OPT_NUM("maxPresencePerChannel", KIND_U32, max_presence_per_channel, 1, UINT32_MAX),
    OPT_STR("database.path", database_path, check_nonempty, 0),
    OPT_NUM("database.pollInterval", KIND_U32, database_poll_ms, 1, POLL_MAX),
    OPT_STR("database.setup", database_setup, NULL, 0),
    OPT_BLOCK("queries", KIND_QUERIES, queries, query_block, 0),
    OPT_BOOL("liveQueries.allowRawSql", live_allow_raw_sql),
    OPT_NUM("liveQueries.timeout", KIND_U32, live_timeout_ms, 1, LIVE_TIMEOUT_MAX),
    OPT_NUM("liveQueries.maxRows", KIND_U32, live_max_rows, 1, UINT32_MAX),
    OPT_NUM("liveQueries.maxBytes", KIND_SIZE, live_max_bytes, 1, LIVE_BYTES_MAX),
};

#define OPTION_COUNT (sizeof(rt_config_options) / sizeof(rt_config_options[0]))
_Static_assert(OPTION_COUNT <= 64, "rt_config_store_t.set_keys has a bit per key");
const size_t rt_config_option_count = OPTION_COUNT;

/*
 * The JWT algorithms a deployment may accept, in the order a normalised list
 * spells them. `shared` ones verify with jwtSecret, the others with the key
 * in jwtPublicKeyFile; "none" is deliberately absent.
 */
const rt_config_algorithm_t rt_config_algorithms[] = {
    {"HS256", 1}, {"HS384", 1}, {"HS512", 1}, {"RS256", 0}, {"ES256", 0},
};

_Static_assert(sizeof(rt_config_algorithms) / sizeof(rt_config_algorithms[0]) ==
                   RT_CONFIG_ALG_COUNT,
               "RT_CONFIG_ALG_COUNT and RT_CONFIG_ALG_NAMES follow the table");

void rt_config_init(rt_config_t *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->host = "0.0.0.0";
  cfg->port = 8080;
  cfg->path = "/ws";
  cfg->ping_interval_ms = 30000;
  cfg->presence_timeout_ms = 60000;
  cfg->require_auth = 0;
  cfg->jwt_secret = NULL;
  cfg->jwt_public_key_file = NULL;
  cfg->jwt_algorithms = NULL;
  cfg->jwt_leeway_s = 30;
  cfg->auth_timeout_ms = 10000;
  cfg->token_grace_ms = 30000;
  cfg->api_keys = NULL;
  cfg->api_key_count = 0;
  cfg->rate_limit.max_connections = 0;
  cfg->rate_limit.max_messages_per_minute = 0;
  cfg->rate_limit.window_ms = 60000;
  cfg->rate_limit.subscribe = 0;
  cfg->rate_limit.publish = 0;
  cfg->rate_limit.presence = 0;
  cfg->rate_limit.query = 0;
  cfg->rate_limit.disconnect_after = 2;
  cfg->max_message_size = 1024 * 1024;
  cfg->max_publish_size = 512 * 1024;
  cfg->max_subscriptions = 1024;
  cfg->max_queued_bytes = 4 * 1024 * 1024;
  cfg->max_header_size = 8192;
  cfg->handshake_timeout_ms = 10000;
  cfg->shutdown_timeout_ms = 5000;
  cfg->io_uring = 1;
  cfg->flush_interval_ms = 0;
  cfg->workers = 1;
  cfg->max_json_depth = 64;
  cfg->validate_xss = 1;
  cfg->max_presence_data_size = 4096;
  cfg->max_presence_per_channel = 10000;
  cfg->database_path = "realtime.db";
  cfg->database_poll_ms = 50;
  cfg->database_setup = NULL;
  cfg->queries = NULL;
  cfg->query_count = 0;
  cfg->live_allow_raw_sql = 0;
  cfg->live_timeout_ms = 1000;
  cfg->live_max_rows = 10000;
  cfg->live_max_bytes = 1024 * 1024;
  cfg->loop = NULL;
}

/* Defaults that depend on other keys: an unset maxPublishSize follows a lower maxMessageSize. */
void rt_config_resolve(const rt_config_store_t *store, rt_config_t *cfg) {
  const rt_config_option_t *publish = rt_config_find_option("maxPublishSize");
  if ((store->set_keys & rt_config_key_bit(publish)) == 0 &&
      cfg->max_publish_size > cfg->max_message_size) {
    cfg->max_publish_size = cfg->max_message_size;
  }
}

const char *rt_config_key(size_t i) {
  return i < rt_config_option_count ? rt_config_options[i].key : NULL;
}

const rt_config_option_t *rt_config_find_option(const char *key) {
  for (size_t i = 0; i < rt_config_option_count; i++) {
    if (strcmp(rt_config_options[i].key, key) == 0) return &rt_config_options[i];
  }
  return NULL;
}

/*
 * The one wording for "this value does not fit this key": `who` names the
 * key or variable, the expectation comes from the table, `got` shows what
 * was given. Text sources (environment, flags) also accept 1 and 0 for
 * booleans and give jwtAlgorithms as a comma list, the file as an array.
 */
int rt_config_expect_error(const rt_config_option_t *o, const char *who, const char *got,
                           int from_text, rt_errbuf_t *err) {
  switch (o->kind) {
    case RT_CONFIG_KIND_STRING:
      return rt_errbuf_set(err, RT_ECONFIG, "%s must be a string (got %s)", who, got);
    case RT_CONFIG_KIND_ALGS:
      return rt_errbuf_set(err, RT_ECONFIG, "%s must be a %s of " RT_CONFIG_ALG_NAMES " (got %s)",
                           who, from_text ? "comma-separated list" : "non-empty array", got);
    case RT_CONFIG_KIND_API_KEYS:
      return rt_errbuf_set(err, RT_ECONFIG,
                           "%s must be an array of {\"key\", \"name\", \"permissions\"} objects "
                           "(got %s)",
                           who, got);
    case RT_CONFIG_KIND_QUERIES:
      return rt_errbuf_set(err, RT_ECONFIG,
                           "%s must be an object mapping query names to {\"sql\", \"permission\", "
                           "\"key\"} objects (got %s)",
                           who, got);
    case RT_CONFIG_KIND_BOOL:
      return rt_errbuf_set(err, RT_ECONFIG, "%s must be %s (got %s)", who,
                           from_text ? "true, false, 1 or 0" : "true or false", got);
    default:
      return rt_errbuf_set(err, RT_ECONFIG, "%s must be an integer %llu-%llu (got %s)", who,
                           (unsigned long long)o->min, (unsigned long long)o->max, got);
  }
}

/*
 * Index of the algorithm named name[0..len), or -1. Case-sensitive, as JWS
 * "alg" values are and as rt_jwt_parse_algorithms() reads the list.
 */
int rt_config_find_algorithm(const char *name, size_t len) {
  for (size_t i = 0; i < RT_CONFIG_ALG_COUNT; i++) {
    if (strlen(rt_config_algorithms[i].name) == len &&
        memcmp(rt_config_algorithms[i].name, name, len) == 0) {
      return (int)i;
    }
  }
  return -1;
}

/*
 * Parses "HS256, RS256" into a set (bit i: rt_config_algorithms[i]);
 * blanks around names are ignored, repeats collapse. Returns 0, which no
 * valid list yields, when the list is empty or an item is empty or unknown.
 */
unsigned rt_config_parse_algorithms(const char *text) {
  unsigned set = 0;
  for (const char *p = text;; p++) {
    size_t n = strcspn(p, ",");
    const char *b = p, *e = p + n;
    while (b < e && (*b == ' ' || *b == '\t')) b++;
    while (e > b && (e[-1] == ' ' || e[-1] == '\t')) e--;
    int i = rt_config_find_algorithm(b, (size_t)(e - b));
    if (i < 0) return 0;
    set |= 1u << i;
    p += n;
    if (*p == '\0') return set;
  }
}

/*
 * Case-insensitive Levenshtein distance between a and b[0..bn); both shorter
 * than RT_CONFIG_KEY_MAX.
 */
static size_t edit_distance(const char *a, const char *b, size_t bn) {
  size_t row[RT_CONFIG_KEY_MAX + 1];
  size_t an = strlen(a);
  for (size_t j = 0; j <= bn; j++) row[j] = j;
  for (size_t i = 1; i <= an; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= bn; j++) {
      size_t up = row[j];
      size_t cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
      size_t best = diag + cost;
      if (up + 1 < best) best = up + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[bn];
}

/*
 * The known key or group closest to `key` at the same depth ("prot" ->
 * "port", "rateLimt" -> "rateLimit"), within SUGGEST_DISTANCE edits, written
 * into out; returns 0 when nothing is close.
 */
static int suggest_key(const char *key, char *out, size_t cap) {
  size_t depth = 0, best = SUGGEST_DISTANCE + 1;
  for (const char *p = key; *p != '\0'; p++) depth += *p == '.';
  for (size_t i = 0; i < rt_config_option_count; i++) {
    const char *cand = rt_config_options[i].key;
    size_t n = 0, dots = 0;
    while (cand[n] != '\0' && !(cand[n] == '.' && dots++ == depth)) n++;
    size_t d = edit_distance(key, cand, n);
    if (d < best && n < cap) {
      best = d;
      memcpy(out, cand, n);
      out[n] = '\0';
    }
  }
  return best <= SUGGEST_DISTANCE;
}

int rt_config_unknown_key_error(const char *origin, const char *key, rt_errbuf_t *err) {
  char near[RT_CONFIG_KEY_MAX];
  if (strlen(key) < RT_CONFIG_KEY_MAX && suggest_key(key, near, sizeof(near))) {
    return rt_errbuf_set(err, RT_ECONFIG, "%s: unknown key \"%s\" (did you mean \"%s\"?)", origin,
                         key, near);
  }
  return rt_errbuf_set(err, RT_ECONFIG, "%s: unknown key \"%.*s\"", origin, RT_CONFIG_KEY_MAX, key);
}

