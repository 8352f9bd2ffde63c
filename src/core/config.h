/*
 * Loading rt_config_t from a JSON file, the environment and command-line
 * values. The keys are the seed's RealtimeConfig names (port, host,
 * pingInterval, rateLimit.windowMs, ...) and ours in the same camelCase style;
 * each key's environment variable is REALTIME_ plus the key in upper snake
 * case (rateLimit.windowMs -> REALTIME_RATE_LIMIT_WINDOW_MS). One table in
 * config.c drives JSON keys, environment names, text parsing and range checks.
 *
 * Layering is the caller's: rt_config_init(), then rt_config_load_file(),
 * rt_config_apply_env(), rt_config_set() for flags, then rt_config_resolve()
 * and rt_config_validate();
 * each step overrides only what it names, so flags > environment > file >
 * defaults falls out of the call order.
 *
 * Every loader is all-or-nothing: on error neither the config nor the store
 * has changed, and err says which key or variable is wrong and what it must be.
 * Nothing here is thread-safe; load once at start-up.
 *
 * Value kinds: strings, booleans, ranged integers, the algorithm list
 * jwtAlgorithms (a JSON array of names in the file, a comma list in the
 * environment, stored as a normalised comma list such as "HS256,RS256"), and
 * two read from the file only: apiKeys, an array of {"key", "name",
 * "permissions"} objects, and queries, an object mapping each live query's
 * name to {"sql", "permission", "key"} (only "sql" required), whose messages
 * name the path ("queries.pending_orders.sql"). Secrets (jwtSecret,
 * apiKeys[].key) never appear in a message, not even as a mistyped number or
 * in a JSON syntax error.
 */
#ifndef RT_CORE_CONFIG_H
#define RT_CORE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "errors.h"
#include "realtime/realtime.h"

/* Largest config file rt_config_load_file() reads. */
#define RT_CONFIG_FILE_MAX (1024 * 1024)

/*
 * What the loaders of one config own and know. A loader that sets cfg->host
 * stores a copy here and points cfg->host at it, so the config stays valid
 * after the JSON text or environment is gone, until rt_config_store_destroy().
 * It also records which keys were given, for rt_config_resolve().
 */
typedef struct {
  char *host;                /* copy behind cfg->host when a loader set it, else NULL */
  char *path;                /* copy behind cfg->path when a loader set it, else NULL */
  char *jwt_secret;          /* copy behind cfg->jwt_secret when a loader set it, else NULL */
  char *jwt_public_key_file; /* copy behind cfg->jwt_public_key_file, else NULL */
  char *jwt_algorithms;      /* normalised list behind cfg->jwt_algorithms, else NULL */
  char *api_key_block;       /* one allocation behind cfg->api_keys: entries, then permission
                                arrays, then strings; NULL when unset or empty */
  char *database_path;       /* copy behind cfg->database_path when a loader set it, else NULL */
  char *database_setup;      /* copy behind cfg->database_setup when a loader set it, else NULL */
  char *query_block;         /* one allocation behind cfg->queries: entries, then strings;
                                NULL when unset or empty */
  uint64_t set_keys;         /* bit i: key rt_config_key(i) was set by a successful loader */
} rt_config_store_t;

void rt_config_store_init(rt_config_store_t *store);
/* Frees the strings; configs loaded through this store must not be used after. */
void rt_config_store_destroy(rt_config_store_t *store);

/*
 * Applies the JSON object in text[0..len) (borrowed) on top of *cfg. Keys not
 * present keep their current value; unknown keys, duplicate keys, wrong types
 * and out-of-range values are errors. `origin` (borrowed, e.g. the file name)
 * prefixes messages: `config.json: "port" must be an integer 0-65535 (got 70000)`.
 * Returns 0, RT_EJSON (syntax, with line and column), RT_ECONFIG or RT_ENOMEM.
 */
int rt_config_load_json(rt_config_store_t *store, rt_config_t *cfg, const char *text, size_t len,
                        const char *origin, rt_errbuf_t *err);

/*
 * Reads `filename` (at most RT_CONFIG_FILE_MAX bytes; pipes work) and applies
 * it as rt_config_load_json() with the file name as origin. Returns the same
 * codes, or RT_EIO when the file cannot be read or is too large.
 */
int rt_config_load_file(rt_config_store_t *store, rt_config_t *cfg, const char *filename,
                        rt_errbuf_t *err);

/*
 * Applies the REALTIME_<KEY> variables found in envp (a NULL-terminated
 * "NAME=value" array such as `environ`, borrowed; the first definition of a
 * name wins, as with getenv). Values are parsed as by rt_config_set(), and
 * errors name the variable. Unknown REALTIME_* names are ignored here (see
 * rt_config_key_for_env), and so are apiKeys and queries, which have no
 * variable.
 * Returns 0, RT_ECONFIG or RT_ENOMEM.
 */
int rt_config_apply_env(rt_config_store_t *store, rt_config_t *cfg, char *const *envp,
                        rt_errbuf_t *err);

/*
 * Sets one key from text, as for a command-line flag: strings as given,
 * booleans true/false/1/0, integers as unsigned decimal within the key's
 * range, jwtAlgorithms as a comma list. `source` (e.g. "--port") names the
 * value in messages: `--port must be an integer 0-65535 (got "x")`.
 * Returns 0, RT_ECONFIG (also for an unknown key and for apiKeys and
 * queries, which only the file sets) or RT_ENOMEM.
 */
int rt_config_set(rt_config_store_t *store, rt_config_t *cfg, const char *key, const char *value,
                  const char *source, rt_errbuf_t *err);

/*
 * Settles defaults that depend on other keys, after the last loader and
 * before rt_config_validate(): maxPublishSize, when no loader set it, comes
 * down to maxMessageSize, so lowering only maxMessageSize is a valid config
 * while an explicit maxPublishSize above it is still reported.
 */
void rt_config_resolve(const rt_config_store_t *store, rt_config_t *cfg);

/*
 * Checks a complete config, however it was built (file, environment or C
 * code): every numeric field within its key's range (so no zero sizes), host
 * non-empty, path starting with '/' with no blanks, controls, '?' or '#',
 * jwtPublicKeyFile non-empty when set, jwtAlgorithms a list of known names,
 * every API key well formed (key: visible ASCII, unique; name: 1-128 of
 * [A-Za-z0-9_.@-]; permissions: rt_perm_valid), database.path non-empty,
 * every query well formed (name: 1-64 of [A-Za-z0-9_.:-], unique; sql
 * non-empty; permission NULL or rt_perm_valid; key NULL or non-empty) and
 * maxPublishSize <= maxMessageSize. Across keys: requireAuth needs
 * jwtSecret, jwtPublicKeyFile or at least one API key; a listed HS*
 * algorithm needs jwtSecret and RS256/ES256 need jwtPublicKeyFile (an empty
 * string counts as unset). Messages name the keys (`"jwtSecret",
 * "jwtPublicKeyFile" or "apiKeys" must be set when "requireAuth" is true`,
 * `"apiKeys[1].permissions[0]" must be ...`, `"queries.orders.sql" must be
 * ...`) and never a secret. Whether the key file can be read and parsed, or
 * the SQL prepared, is for the server to find out when it starts. Returns 0,
 * RT_ECONFIG, or RT_ENOMEM when a duplicate check cannot sort its index of
 * the API keys or query names.
 */
int rt_config_validate(const rt_config_t *cfg, rt_errbuf_t *err);

/* The i-th key path ("port", "rateLimit.windowMs"), or NULL past the last one. */
const char *rt_config_key(size_t i);

/*
 * Writes the environment variable name of `key` ("REALTIME_PING_INTERVAL")
 * into buf. Returns 0, RT_ENOENT for an unknown key or one set from the file
 * only (apiKeys, queries), RT_EINVAL if cap is too small.
 */
int rt_config_env_name(const char *key, char *buf, size_t cap);

/*
 * The key whose variable is `name` ("REALTIME_RATE_LIMIT_WINDOW_MS" ->
 * "rateLimit.windowMs"), or NULL; lets callers warn about mistyped variables.
 */
const char *rt_config_key_for_env(const char *name);

#endif
