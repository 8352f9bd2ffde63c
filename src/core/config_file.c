/*
 * The config file: reading it (rt_config_load_file), parsing its JSON and
 * applying each member to the key it names (rt_config_load_json), groups
 * such as "rateLimit" as nested objects. Values are checked by the key table
 * and staged like every loader's; "apiKeys" and "queries" are packed by
 * config_blocks.c. Messages start with the file name, and a JSON syntax
 * error never quotes the text near it, which may be part of a secret.
 */
#include "config_internal.h"

#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "config_blocks.h"

/* True when `key` names an object level ("rateLimit") rather than a value. */
static int is_group(const char *key) {
  size_t n = strlen(key);
  for (size_t i = 0; i < rt_config_option_count; i++) {
    const char *k = rt_config_options[i].key;
    if (strncmp(k, key, n) == 0 && k[n] == '.') return 1;
  }
  return 0;
}

/* jwtAlgorithms in the file: a non-empty array of names; a bad item is named by its index. */
static int stage_json_algorithms(rt_config_stage_t *st, const rt_config_option_t *o,
                                 const json_t *v, const char *origin, const char *who,
                                 rt_errbuf_t *err) {
  if (!json_is_array(v) || json_array_size(v) == 0) {
    return rt_config_expect_error(o, who, rt_config_json_type_name(v), 0, err);
  }
  unsigned set = 0;
  size_t i;
  json_t *item;
  json_array_foreach(v, i, item) {
    int a = json_is_string(item)
                ? rt_config_find_algorithm(json_string_value(item), json_string_length(item))
                : -1;
    if (a < 0) {
      char name[RT_CONFIG_KEY_MAX + 256], got[RT_CONFIG_GOT_TEXT_MAX + 8];
      rt_config_item_name(name, sizeof(name), origin, o->key, i, NULL);
      rt_config_describe_json(item, 1, got, sizeof(got));
      return rt_errbuf_set(err, RT_ECONFIG, "%s must be one of " RT_CONFIG_ALG_NAMES " (got %s)",
                           name, got);
    }
    set |= 1u << a;
  }
  return rt_config_stage_algorithms(st, o, set, who, err);
}

/* apiKeys in the file: an array, packed by rt_config_pack_api_keys(), staged as one block. */
static int stage_api_keys(rt_config_stage_t *st, const rt_config_option_t *o, const json_t *v,
                          const char *origin, const char *who, rt_errbuf_t *err) {
  if (!json_is_array(v)) return rt_config_expect_error(o, who, rt_config_json_type_name(v), 0, err);
  rt_api_key_config_t *entries = NULL;
  size_t n = 0;
  int rc = rt_config_pack_api_keys(v, origin, who, &entries, &n, err);
  if (rc != 0) return rc;
  rt_config_stage_block(st, o, entries);
  st->cfg.api_keys = entries;
  st->cfg.api_key_count = n;
  return 0;
}

/* queries in the file: an object, packed by rt_config_pack_queries(), staged as one block. */
static int stage_queries(rt_config_stage_t *st, const rt_config_option_t *o, const json_t *v,
                         const char *origin, const char *who, rt_errbuf_t *err) {
  if (!json_is_object(v)) {
    char got[64];
    rt_config_describe_json(v, 0, got, sizeof(got));
    return rt_config_expect_error(o, who, got, 0, err);
  }
  rt_query_config_t *entries = NULL;
  size_t n = 0;
  int rc = rt_config_pack_queries(v, origin, who, &entries, &n, err);
  if (rc != 0) return rc;
  rt_config_stage_block(st, o, entries);
  st->cfg.queries = entries;
  st->cfg.query_count = n;
  return 0;
}

/* Applies one JSON value to key o; `origin` is the file name, messages say `origin: "key"`. */
static int stage_json(rt_config_stage_t *st, const rt_config_option_t *o, const json_t *v,
                      const char *origin, rt_errbuf_t *err) {
  char who[256];
  snprintf(who, sizeof(who), "%s: \"%s\"", origin, o->key);
  switch (o->kind) {
    case RT_CONFIG_KIND_STRING:
      if (json_is_string(v)) return rt_config_stage_string(st, o, json_string_value(v), who, err);
      break;
    case RT_CONFIG_KIND_ALGS: return stage_json_algorithms(st, o, v, origin, who, err);
    case RT_CONFIG_KIND_API_KEYS: return stage_api_keys(st, o, v, origin, who, err);
    case RT_CONFIG_KIND_QUERIES: return stage_queries(st, o, v, origin, who, err);
    case RT_CONFIG_KIND_BOOL:
      if (json_is_boolean(v)) {
        rt_config_stage_number(st, o, json_is_true(v));
        return 0;
      }
      break;
    default:
      if (json_is_integer(v) && json_integer_value(v) >= 0 &&
          (uint64_t)json_integer_value(v) >= o->min && (uint64_t)json_integer_value(v) <= o->max) {
        rt_config_stage_number(st, o, (uint64_t)json_integer_value(v));
        return 0;
      }
      break;
  }
  char got[64];
  if (o->flags & RT_CONFIG_FLAG_SECRET) {
    snprintf(got, sizeof(got), "%s", rt_config_json_type_name(v));
  } else {
    rt_config_describe_json(v, 0, got, sizeof(got));
  }
  return rt_config_expect_error(o, who, got, 0, err);
}

/*
 * Applies every member of a JSON object whose keys sit under `prefix` ("" at
 * the top, "rateLimit" inside it), recursing into groups. Members are visited
 * in file order (jansson keeps insertion order), so the first mistake is the
 * one reported.
 */
static int stage_object(rt_config_stage_t *st, json_t *obj, const char *prefix, const char *origin,
                        rt_errbuf_t *err) {
  const char *name;
  json_t *value;
  json_object_foreach(obj, name, value) {
    if (strchr(name, '.') != NULL) {
      return rt_errbuf_set(err, RT_ECONFIG,
                           "%s: unknown key \"%.*s\" (keys contain no '.'; nest objects instead)",
                           origin, RT_CONFIG_KEY_MAX, name);
    }
    char key[RT_CONFIG_KEY_MAX];
    int n = snprintf(key, sizeof(key), "%s%s%s", prefix, *prefix ? "." : "", name);
    if (n < 0 || (size_t)n >= sizeof(key)) return rt_config_unknown_key_error(origin, name, err);
    const rt_config_option_t *o = rt_config_find_option(key);
    int rc;
    if (o != NULL) {
      rc = stage_json(st, o, value, origin, err);
    } else if (!is_group(key)) {
      rc = rt_config_unknown_key_error(origin, key, err);
    } else if (!json_is_object(value)) {
      char got[64];
      rt_config_describe_json(value, 0, got, sizeof(got));
      rc = rt_errbuf_set(err, RT_ECONFIG, "%s: \"%s\" must be an object (got %s)", origin, key,
                         got);
    } else {
      rc = stage_object(st, value, key, origin, err);
    }
    if (rc != 0) return rc;
  }
  return 0;
}

/*
 * jansson ends its messages with " near '<token>'", and the token may be
 * part of a secret (an unquoted jwtSecret, an unterminated API key), so that
 * part is cut; the line and column still point at the mistake.
 */
static int syntax_error(const char *origin, const json_error_t *jerr, rt_errbuf_t *err) {
  if (json_error_code(jerr) == json_error_out_of_memory) {
    return rt_errbuf_set(err, RT_ENOMEM, "%s: out of memory", origin);
  }
  const char *near = strstr(jerr->text, " near '");
  int len = near != NULL ? (int)(near - jerr->text) : (int)strlen(jerr->text);
  return rt_errbuf_set(err, RT_EJSON, "%s: invalid JSON at line %d, column %d: %.*s", origin,
                       jerr->line, jerr->column, len, jerr->text);
}

int rt_config_load_json(rt_config_store_t *store, rt_config_t *cfg, const char *text, size_t len,
                        const char *origin, rt_errbuf_t *err) {
  json_error_t jerr;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (root == NULL) return syntax_error(origin, &jerr, err);
  rt_config_stage_t st;
  rt_config_stage_begin(&st, cfg);
  int rc = json_is_object(root)
               ? stage_object(&st, root, "", origin, err)
               : rt_errbuf_set(err, RT_ECONFIG, "%s: the top level must be a JSON object", origin);
  json_decref(root);
  return rt_config_stage_end(&st, rc, store, cfg);
}

/*
 * Reads a stream into a new buffer (freed by the caller with rt_free),
 * growing by doubling and stopping once past RT_CONFIG_FILE_MAX, so a runaway
 * file or endless pipe is refused without reading it all.
 */
static int read_stream(FILE *f, const char *filename, char **out, size_t *out_len,
                       rt_errbuf_t *err) {
  size_t cap = 0, len = 0;
  char *buf = NULL;
  while (len <= RT_CONFIG_FILE_MAX) {
    if (len == cap) {
      size_t bigger = cap == 0 ? 4096 : cap * 2;
      char *p = rt_realloc(buf, bigger);
      if (p == NULL) {
        rt_free(buf);
        return rt_errbuf_set(err, RT_ENOMEM, "cannot read config file %s: out of memory", filename);
      }
      buf = p;
      cap = bigger;
    }
    size_t n = fread(buf + len, 1, cap - len, f);
    len += n;
    if (n == 0) break;
  }
  int rc = 0;
  if (ferror(f)) {
    rc = rt_errbuf_set(err, RT_EIO, "cannot read config file %s: %s", filename, strerror(errno));
  } else if (len > RT_CONFIG_FILE_MAX) {
    rc = rt_errbuf_set(err, RT_EIO, "config file %s is larger than %d bytes", filename,
                       RT_CONFIG_FILE_MAX);
  }
  if (rc != 0) {
    rt_free(buf);
    return rc;
  }
  *out = buf;
  *out_len = len;
  return 0;
}

int rt_config_load_file(rt_config_store_t *store, rt_config_t *cfg, const char *filename,
                        rt_errbuf_t *err) {
  FILE *f = fopen(filename, "rb");
  if (f == NULL) {
    return rt_errbuf_set(err, RT_EIO, "cannot read config file %s: %s", filename, strerror(errno));
  }
  char *text = NULL;
  size_t len = 0;
  int rc = read_stream(f, filename, &text, &len, err);
  fclose(f);
  if (rc != 0) return rc;
  rc = rt_config_load_json(store, cfg, text, len, filename, err);
  rt_free(text);
  return rc;
}
