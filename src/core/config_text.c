/*
 * The text sources: environment variables (rt_config_apply_env) and
 * command-line values (rt_config_set), whose values are text to parse for
 * the key's kind (strict decimal, true/false/1/0, a comma list of
 * algorithms). Also the variable names, derived from the key paths:
 * "rateLimit.windowMs" <-> REALTIME_RATE_LIMIT_WINDOW_MS. File-only keys
 * (apiKeys, queries) have no variable and no flag.
 */
#include "config_internal.h"

#include <ctype.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "config_blocks.h"

#define ENV_PREFIX "REALTIME_"
#define ENV_NAME_MAX 128 /* longest environment name built, with its NUL */

/* Strict unsigned decimal: digits only, no sign, no blanks, no overflow. */
static int parse_decimal(const char *s, uint64_t *out) {
  uint64_t v = 0;
  if (*s == '\0') return 0;
  for (; *s != '\0'; s++) {
    if (*s < '0' || *s > '9') return 0;
    unsigned d = (unsigned)(*s - '0');
    if (v > (UINT64_MAX - d) / 10) return 0;
    v = v * 10 + d;
  }
  *out = v;
  return 1;
}

static int parse_bool(const char *s, uint64_t *out) {
  if (strcasecmp(s, "true") == 0 || strcmp(s, "1") == 0) {
    *out = 1;
  } else if (strcasecmp(s, "false") == 0 || strcmp(s, "0") == 0) {
    *out = 0;
  } else {
    return 0;
  }
  return 1;
}

/* Applies a textual value (environment or flag) to one key; `who` names the source. */
static int stage_text(rt_config_stage_t *st, const rt_config_option_t *o, const char *text,
                      const char *who, rt_errbuf_t *err) {
  if (o->kind == RT_CONFIG_KIND_STRING) return rt_config_stage_string(st, o, text, who, err);
  if (o->flags & RT_CONFIG_FLAG_FILE_ONLY) {
    return rt_errbuf_set(err, RT_ECONFIG, "%s: \"%s\" can only be set in the config file", who,
                         o->key);
  }
  uint64_t v = 0;
  int ok = o->kind == RT_CONFIG_KIND_ALGS   ? (v = rt_config_parse_algorithms(text)) != 0
           : o->kind == RT_CONFIG_KIND_BOOL ? parse_bool(text, &v)
                                            : parse_decimal(text, &v) && v >= o->min && v <= o->max;
  if (!ok) {
    char got[RT_CONFIG_GOT_TEXT_MAX + 8];
    rt_config_quote_text(got, sizeof(got), text);
    return rt_config_expect_error(o, who, got, 1, err);
  }
  if (o->kind == RT_CONFIG_KIND_ALGS) {
    return rt_config_stage_algorithms(st, o, (unsigned)v, who, err);
  }
  rt_config_stage_number(st, o, v);
  return 0;
}

/* "rateLimit.windowMs" -> "REALTIME_RATE_LIMIT_WINDOW_MS"; -1 if it does not fit in cap. */
static int env_name_of(const char *key, char *buf, size_t cap) {
  size_t n = strlen(ENV_PREFIX);
  if (n >= cap) return -1;
  memcpy(buf, ENV_PREFIX, n);
  for (const char *p = key; *p != '\0'; p++) {
    int upper = isupper((unsigned char)*p);
    if (n + 2 >= cap) return -1;
    if (upper || *p == '.') buf[n++] = '_';
    if (*p != '.') buf[n++] = (char)toupper((unsigned char)*p);
  }
  buf[n] = '\0';
  return 0;
}

/* Like getenv over an explicit array: the first "NAME=" entry wins. */
static const char *find_env(char *const *envp, const char *name) {
  size_t n = strlen(name);
  for (; envp != NULL && *envp != NULL; envp++) {
    if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=') return *envp + n + 1;
  }
  return NULL;
}

int rt_config_apply_env(rt_config_store_t *store, rt_config_t *cfg, char *const *envp,
                        rt_errbuf_t *err) {
  rt_config_stage_t st;
  rt_config_stage_begin(&st, cfg);
  int rc = 0;
  for (size_t i = 0; i < rt_config_option_count && rc == 0; i++) {
    const rt_config_option_t *o = &rt_config_options[i];
    char name[ENV_NAME_MAX];
    if (o->flags & RT_CONFIG_FLAG_FILE_ONLY) continue;
    if (env_name_of(o->key, name, sizeof(name)) != 0) continue;
    const char *value = find_env(envp, name);
    if (value != NULL) rc = stage_text(&st, o, value, name, err);
  }
  return rt_config_stage_end(&st, rc, store, cfg);
}

int rt_config_set(rt_config_store_t *store, rt_config_t *cfg, const char *key, const char *value,
                  const char *source, rt_errbuf_t *err) {
  const rt_config_option_t *o = rt_config_find_option(key);
  if (o == NULL) return rt_config_unknown_key_error(source, key, err);
  rt_config_stage_t st;
  rt_config_stage_begin(&st, cfg);
  return rt_config_stage_end(&st, stage_text(&st, o, value, source, err), store, cfg);
}

int rt_config_env_name(const char *key, char *buf, size_t cap) {
  const rt_config_option_t *o = rt_config_find_option(key);
  if (o == NULL || (o->flags & RT_CONFIG_FLAG_FILE_ONLY)) return RT_ENOENT;
  return env_name_of(key, buf, cap) == 0 ? 0 : RT_EINVAL;
}

const char *rt_config_key_for_env(const char *name) {
  for (size_t i = 0; i < rt_config_option_count; i++) {
    const rt_config_option_t *o = &rt_config_options[i];
    char env[ENV_NAME_MAX];
    if (o->flags & RT_CONFIG_FLAG_FILE_ONLY) continue;
    if (env_name_of(o->key, env, sizeof(env)) == 0 && strcmp(env, name) == 0) return o->key;
  }
  return NULL;
}
