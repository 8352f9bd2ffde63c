/*
 * Checking a complete config, however it was built (loaders or C code):
 * every key against its entry in the key table (numbers in range, strings
 * by their rule, the algorithm list, the apiKeys and queries blocks through
 * config_blocks.c), then the rules that relate keys to each other. The
 * loaders check each value as they stage it; this is what catches a config
 * set up in code, and what no single key can say.
 */
#include "config_internal.h"

#include <stdint.h>
#include <stdio.h>

#include "config_blocks.h"

/*
 * Formats the current value of a numeric key into got[] and says whether it
 * lies in the key's range; ints are read signed so a negative port prints as such.
 */
static int number_in_range(const rt_config_t *cfg, const rt_config_option_t *o, char *got,
                           size_t cap) {
  const void *field = (const char *)cfg + o->cfg_off;
  uint64_t v;
  if (o->kind == RT_CONFIG_KIND_INT) {
    int i = *(const int *)field;
    snprintf(got, cap, "%d", i);
    if (i < 0) return 0;
    v = (uint64_t)i;
  } else if (o->kind == RT_CONFIG_KIND_U32) {
    v = *(const uint32_t *)field;
    snprintf(got, cap, "%llu", (unsigned long long)v);
  } else {
    v = *(const size_t *)field;
    snprintf(got, cap, "%llu", (unsigned long long)v);
  }
  return v >= o->min && v <= o->max;
}

/* A string key of a code-built config: NULL only where allowed, else by its rule. */
static int validate_string(const rt_config_t *cfg, const rt_config_option_t *o, const char *who,
                           rt_errbuf_t *err) {
  const char *value = *(const char *const *)((const char *)cfg + o->cfg_off);
  const char *rule;
  if (value == NULL) {
    rule = o->check == NULL || (o->flags & RT_CONFIG_FLAG_NULLABLE) ? NULL : "set";
  } else {
    rule = o->check == NULL ? NULL : o->check(value);
  }
  if (rule == NULL) return 0;
  char got[RT_CONFIG_GOT_TEXT_MAX + 8];
  rt_config_quote_text(got, sizeof(got), value == NULL ? "" : value);
  return rt_errbuf_set(err, RT_ECONFIG, "%s must be %s (got %s)", who, rule,
                       value == NULL ? "NULL" : got);
}

/* One key of a code-built config against the table; `who` is the quoted key. */
static int validate_option(const rt_config_t *cfg, const rt_config_option_t *o, const char *who,
                           rt_errbuf_t *err) {
  char got[RT_CONFIG_GOT_TEXT_MAX + 8];
  switch (o->kind) {
    case RT_CONFIG_KIND_STRING: return validate_string(cfg, o, who, err);
    case RT_CONFIG_KIND_ALGS:
      if (cfg->jwt_algorithms == NULL) return 0;
      if (rt_config_parse_algorithms(cfg->jwt_algorithms) != 0) return 0;
      rt_config_quote_text(got, sizeof(got), cfg->jwt_algorithms);
      return rt_config_expect_error(o, who, got, 1, err);
    case RT_CONFIG_KIND_API_KEYS:
      return rt_config_check_api_keys(cfg->api_keys, cfg->api_key_count, "", err);
    case RT_CONFIG_KIND_QUERIES:
      return rt_config_check_queries(cfg->queries, cfg->query_count, "", err);
    case RT_CONFIG_KIND_BOOL: return 0;
    default:
      if (number_in_range(cfg, o, got, sizeof(got))) return 0;
      return rt_config_expect_error(o, who, got, 0, err);
  }
}

/*
 * Re-checks every key against the table, for configs built in code: numbers
 * in range, strings by their rule (a rule-bound string may not be NULL
 * unless the table allows it), the algorithm list and every API key.
 */
static int validate_keys(const rt_config_t *cfg, rt_errbuf_t *err) {
  for (size_t i = 0; i < rt_config_option_count; i++) {
    char who[RT_CONFIG_KEY_MAX + 8];
    snprintf(who, sizeof(who), "\"%s\"", rt_config_options[i].key);
    int rc = validate_option(cfg, &rt_config_options[i], who, err);
    if (rc != 0) return rc;
  }
  return 0;
}

static int is_set(const char *s) { return s != NULL && s[0] != '\0'; }

/*
 * Each listed algorithm needs its kind of key: HS* the shared secret,
 * RS256/ES256 the public key file. The first one without is named.
 */
static int validate_algorithm_keys(const rt_config_t *cfg, rt_errbuf_t *err) {
  if (cfg->jwt_algorithms == NULL) return 0;
  unsigned set = rt_config_parse_algorithms(cfg->jwt_algorithms);
  for (size_t i = 0; i < RT_CONFIG_ALG_COUNT; i++) {
    if ((set & (1u << i)) == 0) continue;
    const rt_config_algorithm_t *a = &rt_config_algorithms[i];
    const char *needs = a->shared ? "jwtSecret" : "jwtPublicKeyFile";
    if (is_set(a->shared ? cfg->jwt_secret : cfg->jwt_public_key_file)) continue;
    return rt_errbuf_set(err, RT_ECONFIG, "\"jwtAlgorithms\" lists %s, which needs \"%s\"",
                         a->name, needs);
  }
  return 0;
}

/*
 * Checks that relate keys to each other. A queue cap below maxMessageSize is
 * allowed on purpose: it is how a deployment cuts off slow readers early.
 */
static int validate_relations(const rt_config_t *cfg, rt_errbuf_t *err) {
  if (cfg->require_auth && !is_set(cfg->jwt_secret) && !is_set(cfg->jwt_public_key_file) &&
      cfg->api_key_count == 0) {
    return rt_errbuf_set(err, RT_ECONFIG,
                         "\"jwtSecret\", \"jwtPublicKeyFile\" or \"apiKeys\" must be set when "
                         "\"requireAuth\" is true");
  }
  int rc = validate_algorithm_keys(cfg, err);
  if (rc != 0) return rc;
  if (cfg->max_publish_size > cfg->max_message_size) {
    return rt_errbuf_set(err, RT_ECONFIG,
                         "\"maxPublishSize\" (%zu) must not exceed \"maxMessageSize\" (%zu)",
                         cfg->max_publish_size, cfg->max_message_size);
  }
  return 0;
}

int rt_config_validate(const rt_config_t *cfg, rt_errbuf_t *err) {
  int rc = validate_keys(cfg, err);
  return rc != 0 ? rc : validate_relations(cfg, err);
}
