/*
 * Internal to the config module (config.h), not part of its API: what its
 * files share. The key table (config.c) describes every key once (its JSON
 * path, storage, parsing and range); every loader, the text sources
 * (config_text.c) and the file (config_file.c), goes through a staged load
 * (config_stage.c) so that it is all-or-nothing; the checks
 * (config_validate.c) read the same table. The structured "apiKeys" and
 * "queries" values have their own internal header, config_blocks.h.
 * Nothing here is thread-safe, as in config.h.
 */
#ifndef RT_CORE_CONFIG_INTERNAL_H
#define RT_CORE_CONFIG_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "errors.h"

/* How a key is stored in rt_config_t and parsed. */
typedef enum {
  RT_CONFIG_KIND_STRING,   /* const char *, copied into the store */
  RT_CONFIG_KIND_ALGS,     /* const char * list of algorithm names, normalised into the store */
  RT_CONFIG_KIND_API_KEYS, /* rt_api_key_config_t array + count, packed into one store block */
  RT_CONFIG_KIND_QUERIES,  /* rt_query_config_t array + count from a JSON object, one store block */
  RT_CONFIG_KIND_BOOL,     /* int 0/1 */
  RT_CONFIG_KIND_INT,      /* int within [min, max] */
  RT_CONFIG_KIND_U32,      /* uint32_t within [min, max] */
  RT_CONFIG_KIND_SIZE      /* size_t within [min, max] */
} rt_config_kind_t;

enum {
  RT_CONFIG_FLAG_SECRET = 1,   /* no message shows the value, not even a mistyped number */
  RT_CONFIG_FLAG_NULLABLE = 2, /* RT_CONFIG_KIND_STRING, block member: NULL (unset) is valid */
  RT_CONFIG_FLAG_FILE_ONLY = 4 /* no environment variable and no rt_config_set() */
};

/* Returns NULL when a string value is acceptable, else what it must be ("a non-empty string"). */
typedef const char *(*rt_config_check_fn)(const char *value);

/* One key of the table. */
typedef struct {
  const char *key;          /* camelCase path, '.' between object levels */
  rt_config_kind_t kind;    /* storage and parsing */
  size_t cfg_off;           /* offset of the field in rt_config_t */
  size_t store_off;         /* owned kinds: offset of the owning slot in rt_config_store_t */
  rt_config_check_fn check; /* RT_CONFIG_KIND_STRING: value rule, NULL = any string, may be unset */
  unsigned flags;           /* RT_CONFIG_FLAG_* */
  uint64_t min;             /* numeric kinds: smallest accepted value */
  uint64_t max;             /* numeric kinds: largest accepted value */
} rt_config_option_t;

/* The key table (config.c): every key once, in the order rt_config_key() lists them. */
extern const rt_config_option_t rt_config_options[];
extern const size_t rt_config_option_count; /* entries of rt_config_options, at most 64 */

/* The bit of key o in rt_config_store_t.set_keys. */
static inline uint64_t rt_config_key_bit(const rt_config_option_t *o) {
  return (uint64_t)1 << (o - rt_config_options);
}

/* The entry of `key` ("rateLimit.windowMs") in the key table, or NULL. */
const rt_config_option_t *rt_config_find_option(const char *key);

/*
 * The one wording for "this value does not fit key o": `who` names the key
 * or variable, `got` shows what was given, the expectation comes from the
 * table (from_text: the environment or a flag, which write booleans and
 * jwtAlgorithms differently from the file). Returns RT_ECONFIG.
 */
int rt_config_expect_error(const rt_config_option_t *o, const char *who, const char *got,
                           int from_text, rt_errbuf_t *err);

/*
 * `origin: unknown key "key"`, with a "did you mean" naming the closest
 * known key or group when one is a couple of edits away. Returns RT_ECONFIG.
 */
int rt_config_unknown_key_error(const char *origin, const char *key, rt_errbuf_t *err);

/* A JWT algorithm a deployment may accept ("none" is deliberately absent). */
typedef struct {
  const char *name; /* "alg" header value */
  int shared;       /* 1: HMAC with jwtSecret; 0: signature with the public key */
} rt_config_algorithm_t;

/* The algorithms (config.c), in the order a normalised list spells them. */
extern const rt_config_algorithm_t rt_config_algorithms[];
#define RT_CONFIG_ALG_COUNT 5 /* entries of rt_config_algorithms */
#define RT_CONFIG_ALG_NAMES "HS256, HS384, HS512, RS256, ES256"
#define RT_CONFIG_ALG_LIST_MAX 64 /* every algorithm name, comma-separated, with its NUL */

/* The index in rt_config_algorithms of the name name[0..len) (case-sensitive, as JWS), or -1. */
int rt_config_find_algorithm(const char *name, size_t len);

/*
 * Parses "HS256, RS256" into a set (bit i: rt_config_algorithms[i]), blanks
 * around names ignored, repeats collapsed; 0, which no valid list yields,
 * when the list is empty or an item is empty or unknown.
 */
unsigned rt_config_parse_algorithms(const char *text);

/*
 * A load in progress: a copy of the config plus a private store for the
 * strings it sets. Committing moves those strings into the caller's store;
 * aborting frees them, which is what makes every loader all-or-nothing.
 */
typedef struct {
  rt_config_t cfg;         /* the caller's config with this load's changes */
  rt_config_store_t store; /* strings set by this load only */
} rt_config_stage_t;

/* Starts a load on top of *cfg (borrowed, copied): st->cfg is the copy, st->store empty. */
void rt_config_stage_begin(rt_config_stage_t *st, const rt_config_t *cfg);

/*
 * Ends a load with its result rc: when 0, the strings and blocks of every key
 * the load set replace those of `store` (freeing the old ones) and st->cfg
 * is copied to *cfg; otherwise both are dropped and nothing changes.
 * Returns rc.
 */
int rt_config_stage_end(rt_config_stage_t *st, int rc, rt_config_store_t *store, rt_config_t *cfg);

/*
 * Stages a copy of `value` (borrowed) for string key o once it passes the
 * key's rule; `who` names the source in messages, which never quote a value
 * the rule did not check (jwtSecret). Returns 0, RT_ECONFIG or RT_ENOMEM.
 */
int rt_config_stage_string(rt_config_stage_t *st, const rt_config_option_t *o, const char *value,
                           const char *who, rt_errbuf_t *err);

/* Stages v for boolean or numeric key o; the caller has checked the range. */
void rt_config_stage_number(rt_config_stage_t *st, const rt_config_option_t *o, uint64_t v);

/*
 * Stages the algorithm set (bit i: rt_config_algorithms[i]) as its
 * normalised list, "HS256,RS256". Returns 0 or RT_ENOMEM.
 */
int rt_config_stage_algorithms(rt_config_stage_t *st, const rt_config_option_t *o, unsigned set,
                               const char *who, rt_errbuf_t *err);

/*
 * Makes `block` (taken; NULL for an empty list) the staged block of key o;
 * the caller points st->cfg at it.
 */
void rt_config_stage_block(rt_config_stage_t *st, const rt_config_option_t *o, void *block);

#endif
