/*
 * Internal to the config module: what its other files take from
 * config_blocks.c. The two structured, file-only values ("apiKeys" and
 * "queries") are packed and checked there; config_file.c stages the packed
 * blocks like any other owned value and config_validate.c checks code-built
 * ones. The message helpers here are shared so that every message about a
 * key quotes, describes and names values in one wording.
 * Not part of the public config.h API (see also config_internal.h).
 */
#ifndef RT_CORE_CONFIG_BLOCKS_H
#define RT_CORE_CONFIG_BLOCKS_H

#include <jansson.h>
#include <stddef.h>

#include "config.h"

#define RT_CONFIG_KEY_MAX 64      /* longest key path accepted, with its NUL */
#define RT_CONFIG_GOT_TEXT_MAX 32 /* bytes of an offending value quoted in messages */

/* Writes `"text"` into got[cap], cut to RT_CONFIG_GOT_TEXT_MAX bytes plus "...". */
void rt_config_quote_text(char *got, size_t cap, const char *text);

/* "a number", "a string", "an object", "[]", "an array", "a boolean" or "null". */
const char *rt_config_json_type_name(const json_t *v);

/* Writes v into got[cap]: numbers by value, strings quoted if `quote`, else by type. */
void rt_config_describe_json(const json_t *v, int quote, char *got, size_t cap);

/* Writes `origin: "key[i]"`, or `origin: "key[i].member"` when member is not NULL. */
void rt_config_item_name(char *who, size_t cap, const char *origin, const char *key, size_t i,
                         const char *member);

/*
 * Checks a code-built apiKeys array: keys, names, permissions, then repeated
 * keys. `origin` ("" for code) prefixes messages. Returns 0, RT_ECONFIG or
 * RT_ENOMEM.
 */
int rt_config_check_api_keys(const rt_api_key_config_t *keys, size_t n, const char *origin,
                             rt_errbuf_t *err);

/* Checks a code-built queries array the same way, repeated names included. */
int rt_config_check_queries(const rt_query_config_t *queries, size_t n, const char *origin,
                            rt_errbuf_t *err);

/*
 * Packs and checks the JSON array v (the caller has checked it is one) into
 * one rt_calloc'd block: *out (NULL for an empty array, else freed by the
 * caller with rt_free) and *count. `who` names the key in messages. On error
 * nothing is allocated and *out, *count are untouched. Returns 0, RT_ECONFIG
 * or RT_ENOMEM.
 */
int rt_config_pack_api_keys(const json_t *v, const char *origin, const char *who,
                            rt_api_key_config_t **out, size_t *count, rt_errbuf_t *err);

/* The same for the JSON object v of queries, entries in file order. */
int rt_config_pack_queries(const json_t *v, const char *origin, const char *who,
                           rt_query_config_t **out, size_t *count, rt_errbuf_t *err);

#endif
