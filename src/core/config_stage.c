/*
 * Staged loads, which make every loader (the environment, flags and the
 * file) all-or-nothing: a load applies its values to a copy of the config
 * and a private store, and only when all of them were accepted does it
 * commit both. Also the store itself, which owns the strings and blocks a
 * loaded config points into, and the setters a loader stages one value with.
 */
#include "config_internal.h"

#include <stdint.h>
#include <string.h>

#include "alloc.h"
#include "config_blocks.h"

void rt_config_store_init(rt_config_store_t *store) { memset(store, 0, sizeof(*store)); }

void rt_config_store_destroy(rt_config_store_t *store) {
  rt_free(store->host);
  rt_free(store->path);
  rt_free(store->jwt_secret);
  rt_free(store->jwt_public_key_file);
  rt_free(store->jwt_algorithms);
  rt_free(store->api_key_block);
  rt_free(store->database_path);
  rt_free(store->database_setup);
  rt_free(store->query_block);
  memset(store, 0, sizeof(*store));
}

static int owns_storage(const rt_config_option_t *o) {
  return o->kind == RT_CONFIG_KIND_STRING || o->kind == RT_CONFIG_KIND_ALGS ||
         o->kind == RT_CONFIG_KIND_API_KEYS || o->kind == RT_CONFIG_KIND_QUERIES;
}

static char **string_slot(rt_config_store_t *store, const rt_config_option_t *o) {
  return (char **)((char *)store + o->store_off);
}

void rt_config_stage_begin(rt_config_stage_t *st, const rt_config_t *cfg) {
  st->cfg = *cfg;
  rt_config_store_init(&st->store);
}

/*
 * Ends a load: on success the staged strings and blocks of every key this
 * load set replace the store's (the old ones are freed only now, so a failed
 * load never leaves cfg pointing at freed memory; an empty apiKeys array
 * stages NULL, which still replaces) and the staged config is copied out; on
 * error both are dropped. Returns rc.
 */
int rt_config_stage_end(rt_config_stage_t *st, int rc, rt_config_store_t *store, rt_config_t *cfg) {
  if (rc != 0) {
    rt_config_store_destroy(&st->store);
    return rc;
  }
  for (size_t i = 0; i < rt_config_option_count; i++) {
    const rt_config_option_t *o = &rt_config_options[i];
    if (!owns_storage(o) || (st->store.set_keys & rt_config_key_bit(o)) == 0) continue;
    char **staged = string_slot(&st->store, o);
    char **slot = string_slot(store, o);
    rt_free(*slot);
    *slot = *staged;
  }
  store->set_keys |= st->store.set_keys;
  *cfg = st->cfg;
  return 0;
}

/* Stores a copy of value as the key's owned string and points the staged config at it. */
static int stage_copy(rt_config_stage_t *st, const rt_config_option_t *o, const char *value,
                      const char *who, rt_errbuf_t *err) {
  char *copy = rt_strdup(value);
  if (copy == NULL) return rt_errbuf_set(err, RT_ENOMEM, "%s: out of memory", who);
  char **slot = string_slot(&st->store, o);
  rt_free(*slot);
  *slot = copy;
  *(const char **)((char *)&st->cfg + o->cfg_off) = copy;
  st->store.set_keys |= rt_config_key_bit(o);
  return 0;
}

/* Never echoes a rule-free string (jwtSecret): only checked values appear in messages. */
int rt_config_stage_string(rt_config_stage_t *st, const rt_config_option_t *o, const char *value,
                           const char *who, rt_errbuf_t *err) {
  const char *rule = o->check != NULL ? o->check(value) : NULL;
  if (rule != NULL) {
    char got[RT_CONFIG_GOT_TEXT_MAX + 8];
    rt_config_quote_text(got, sizeof(got), value);
    return rt_errbuf_set(err, RT_ECONFIG, "%s must be %s (got %s)", who, rule, got);
  }
  return stage_copy(st, o, value, who, err);
}

void rt_config_stage_number(rt_config_stage_t *st, const rt_config_option_t *o, uint64_t v) {
  void *field = (char *)&st->cfg + o->cfg_off;
  switch (o->kind) {
    case RT_CONFIG_KIND_BOOL:
    case RT_CONFIG_KIND_INT: *(int *)field = (int)v; break;
    case RT_CONFIG_KIND_U32: *(uint32_t *)field = (uint32_t)v; break;
    case RT_CONFIG_KIND_SIZE: *(size_t *)field = (size_t)v; break;
    case RT_CONFIG_KIND_STRING:
    case RT_CONFIG_KIND_ALGS:
    case RT_CONFIG_KIND_API_KEYS:
    case RT_CONFIG_KIND_QUERIES: break;
  }
  st->store.set_keys |= rt_config_key_bit(o);
}

/* Stores the set as its normalised list: canonical names in table order, comma-separated. */
int rt_config_stage_algorithms(rt_config_stage_t *st, const rt_config_option_t *o, unsigned set,
                               const char *who, rt_errbuf_t *err) {
  char list[RT_CONFIG_ALG_LIST_MAX] = "";
  for (size_t i = 0; i < RT_CONFIG_ALG_COUNT; i++) {
    if ((set & (1u << i)) == 0) continue;
    if (list[0] != '\0') strcat(list, ",");
    strcat(list, rt_config_algorithms[i].name);
  }
  return stage_copy(st, o, list, who, err);
}

/*
 * Makes `block` (taken; NULL for an empty list) the staged block of key o,
 * freeing one an earlier key of this load staged.
 */
void rt_config_stage_block(rt_config_stage_t *st, const rt_config_option_t *o, void *block) {
  char **slot = string_slot(&st->store, o);
  rt_free(*slot);
  *slot = block;
  st->store.set_keys |= rt_config_key_bit(o);
}
