#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "alloc.h"

#define ENV_PREFIX "REALTIME_"
#define KEY_MAX 64           /* longest key path accepted, with its NUL */
#define ENV_NAME_MAX 128     /* longest environment name built, with its NUL */
#define GOT_TEXT_MAX 32      /* bytes of an offending value quoted in messages */
#define SUGGEST_DISTANCE 2   /* edits within which an unknown key gets a "did you mean" */
#define MS_MAX 86400000u     /* one day: the ceiling of every duration */
#define SIZE_LIMIT ((uint64_t)1 << 30)
#define QUEUE_LIMIT ((uint64_t)1 << 34)

/* How a key is stored in rt_config_t and parsed. */
typedef enum {
  KIND_STRING, /* const char *, copied into the store */
  KIND_BOOL,   /* int 0/1 */
  KIND_INT,    /* int within [min, max] */
  KIND_U32,    /* uint32_t within [min, max] */
  KIND_SIZE    /* size_t within [min, max] */
} kind_t;

/* Returns NULL when a string value is acceptable, else what it must be ("a non-empty string"). */
typedef const char *(*string_check_fn)(const char *value);

typedef struct {
  const char *key;       /* camelCase path, '.' between object levels */
  kind_t kind;           /* storage and parsing */
  size_t cfg_off;        /* offset of the field in rt_config_t */
  size_t store_off;      /* KIND_STRING: offset of the owning slot in rt_config_store_t */
  string_check_fn check; /* KIND_STRING: value rule, NULL = any string, may be unset */
  uint64_t min;          /* numeric kinds: smallest accepted value */
  uint64_t max;          /* numeric kinds: largest accepted value */
} option_t;

#define OPT_STR(key, field, check)                                                            \
  {key, KIND_STRING, offsetof(rt_config_t, field), offsetof(rt_config_store_t, field), check, \
   0, 0}
#define OPT_BOOL(key, field) {key, KIND_BOOL, offsetof(rt_config_t, field), 0, NULL, 0, 1}
#define OPT_NUM(key, kind, field, lo, hi) \
  {key, kind, offsetof(rt_config_t, field), 0, NULL, lo, hi}

static const char *check_host(const char *value) {
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
 * where 0 means "off" (pingInterval) or "at once" (shutdownTimeout).
 */
static const option_t options[] = {
    OPT_NUM("port", KIND_INT, port, 0, 65535),
    OPT_STR("host", host, check_host),
    OPT_STR("path", path, check_path),
    OPT_NUM("pingInterval", KIND_U32, ping_interval_ms, 0, MS_MAX),
    OPT_NUM("presenceTimeout", KIND_U32, presence_timeout_ms, 1, MS_MAX),
    OPT_BOOL("requireAuth", require_auth),
    OPT_STR("jwtSecret", jwt_secret, NULL),
    OPT_NUM("rateLimit.maxConnections", KIND_U32, rate_limit.max_connections, 0, UINT32_MAX),
    OPT_NUM("rateLimit.maxMessagesPerMinute", KIND_U32, rate_limit.max_messages_per_minute, 0,
            UINT32_MAX),
    OPT_NUM("rateLimit.windowMs", KIND_U32, rate_limit.window_ms, 1, MS_MAX),
    OPT_NUM("maxMessageSize", KIND_SIZE, max_message_size, 1, SIZE_LIMIT),
    OPT_NUM("maxPublishSize", KIND_SIZE, max_publish_size, 1, SIZE_LIMIT),
    OPT_NUM("maxSubscriptions", KIND_U32, max_subscriptions, 1, UINT32_MAX),
    OPT_NUM("maxQueuedBytes", KIND_SIZE, max_queued_bytes, 1,
            SIZE_MAX < QUEUE_LIMIT ? (uint64_t)SIZE_MAX : QUEUE_LIMIT),
    OPT_NUM("maxHeaderSize", KIND_SIZE, max_header_size, 256, 1024 * 1024),
    OPT_NUM("handshakeTimeout", KIND_U32, handshake_timeout_ms, 1, MS_MAX),
    OPT_NUM("shutdownTimeout", KIND_U32, shutdown_timeout_ms, 0, MS_MAX),
    OPT_NUM("maxJsonDepth", KIND_U32, max_json_depth, 1, 1024),
};

#define OPTION_COUNT (sizeof(options) / sizeof(options[0]))
_Static_assert(OPTION_COUNT <= 32, "rt_config_store_t.set_keys has a bit per key");

/*
 * A load in progress: a copy of the config plus a private store for the
 * strings it sets. Committing moves those strings into the caller's store;
 * aborting frees them, which is what makes every loader all-or-nothing.
 */
typedef struct {
  rt_config_t cfg;         /* the caller's config with this load's changes */
  rt_config_store_t store; /* strings set by this load only */
} stage_t;

void rt_config_init(rt_config_t *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->host = "0.0.0.0";
  cfg->port = 8080;
  cfg->path = "/ws";
  cfg->ping_interval_ms = 30000;
  cfg->presence_timeout_ms = 60000;
  cfg->require_auth = 0;
  cfg->jwt_secret = NULL;
  cfg->rate_limit.max_connections = 0;
  cfg->rate_limit.max_messages_per_minute = 0;
  cfg->rate_limit.window_ms = 60000;
  cfg->max_message_size = 1024 * 1024;
  cfg->max_publish_size = 512 * 1024;
  cfg->max_subscriptions = 1024;
  cfg->max_queued_bytes = 4 * 1024 * 1024;
  cfg->max_header_size = 8192;
  cfg->handshake_timeout_ms = 10000;
  cfg->shutdown_timeout_ms = 5000;
  cfg->max_json_depth = 64;
  cfg->loop = NULL;
}

void rt_config_store_init(rt_config_store_t *store) { memset(store, 0, sizeof(*store)); }

void rt_config_store_destroy(rt_config_store_t *store) {
  rt_free(store->host);
  rt_free(store->path);
  rt_free(store->jwt_secret);
  memset(store, 0, sizeof(*store));
}

static const option_t *find_option(const char *key) {
  for (size_t i = 0; i < OPTION_COUNT; i++) {
    if (strcmp(options[i].key, key) == 0) return &options[i];
  }
  return NULL;
}

/* True when `key` names an object level ("rateLimit") rather than a value. */
static int is_group(const char *key) {
  size_t n = strlen(key);
  for (size_t i = 0; i < OPTION_COUNT; i++) {
    if (strncmp(options[i].key, key, n) == 0 && options[i].key[n] == '.') return 1;
  }
  return 0;
}

static uint32_t key_bit(const option_t *o) { return (uint32_t)1 << (o - options); }

static char **string_slot(rt_config_store_t *store, const option_t *o) {
  return (char **)((char *)store + o->store_off);
}

static void stage_begin(stage_t *st, const rt_config_t *cfg) {
  st->cfg = *cfg;
  rt_config_store_init(&st->store);
}

/*
 * Ends a load: on success the staged strings replace the store's (the old
 * copies are freed only now, so a failed load never leaves cfg pointing at
 * freed memory) and the staged config is copied out; on error both are
 * dropped. Returns rc.
 */
static int stage_end(stage_t *st, int rc, rt_config_store_t *store, rt_config_t *cfg) {
  if (rc != 0) {
    rt_config_store_destroy(&st->store);
    return rc;
  }
  for (size_t i = 0; i < OPTION_COUNT; i++) {
    if (options[i].kind != KIND_STRING) continue;
    char **staged = string_slot(&st->store, &options[i]);
    if (*staged == NULL) continue;
    char **slot = string_slot(store, &options[i]);
    rt_free(*slot);
    *slot = *staged;
  }
  store->set_keys |= st->store.set_keys;
  *cfg = st->cfg;
  return 0;
}

/* `"text"` for messages, cut to GOT_TEXT_MAX bytes with "..." so one line stays readable. */
static void quote_text(char *got, size_t cap, const char *text) {
  snprintf(got, cap, "\"%.*s%s\"", GOT_TEXT_MAX, text, strlen(text) > GOT_TEXT_MAX ? "..." : "");
}

/* Never echoes a rule-free string (jwtSecret): only checked values appear in messages. */
static int stage_string(stage_t *st, const option_t *o, const char *value, const char *who,
                        rt_errbuf_t *err) {
  const char *rule = o->check != NULL ? o->check(value) : NULL;
  if (rule != NULL) {
    char got[GOT_TEXT_MAX + 8];
    quote_text(got, sizeof(got), value);
    return rt_errbuf_set(err, RT_ECONFIG, "%s must be %s (got %s)", who, rule, got);
  }
  char *copy = rt_strdup(value);
  if (copy == NULL) return rt_errbuf_set(err, RT_ENOMEM, "%s: out of memory", who);
  char **slot = string_slot(&st->store, o);
  rt_free(*slot);
  *slot = copy;
  *(const char **)((char *)&st->cfg + o->cfg_off) = copy;
  st->store.set_keys |= key_bit(o);
  return 0;
}

static void stage_number(stage_t *st, const option_t *o, uint64_t v) {
  void *field = (char *)&st->cfg + o->cfg_off;
  switch (o->kind) {
    case KIND_BOOL:
    case KIND_INT: *(int *)field = (int)v; break;
    case KIND_U32: *(uint32_t *)field = (uint32_t)v; break;
    case KIND_SIZE: *(size_t *)field = (size_t)v; break;
    case KIND_STRING: break;
  }
  st->store.set_keys |= key_bit(o);
}

/*
 * Formats the current value of a numeric key into got[] and says whether it
 * lies in the key's range; ints are read signed so a negative port prints as such.
 */
static int number_in_range(const rt_config_t *cfg, const option_t *o, char *got, size_t cap) {
  const void *field = (const char *)cfg + o->cfg_off;
  uint64_t v;
  if (o->kind == KIND_INT) {
    int i = *(const int *)field;
    snprintf(got, cap, "%d", i);
    if (i < 0) return 0;
    v = (uint64_t)i;
  } else if (o->kind == KIND_U32) {
    v = *(const uint32_t *)field;
    snprintf(got, cap, "%llu", (unsigned long long)v);
  } else {
    v = *(const size_t *)field;
    snprintf(got, cap, "%llu", (unsigned long long)v);
  }
  return v >= o->min && v <= o->max;
}

/*
 * The one wording for "this value does not fit this key": `who` names the
 * key or variable, the expectation comes from the table, `got` shows what
 * was given. Text sources (environment, flags) also accept 1 and 0 for booleans.
 */
static int expect_error(const option_t *o, const char *who, const char *got, int from_text,
                        rt_errbuf_t *err) {
  switch (o->kind) {
    case KIND_STRING:
      return rt_errbuf_set(err, RT_ECONFIG, "%s must be a string (got %s)", who, got);
    case KIND_BOOL:
      return rt_errbuf_set(err, RT_ECONFIG, "%s must be %s (got %s)", who,
                           from_text ? "true, false, 1 or 0" : "true or false", got);
    default:
      return rt_errbuf_set(err, RT_ECONFIG, "%s must be an integer %llu-%llu (got %s)", who,
                           (unsigned long long)o->min, (unsigned long long)o->max, got);
  }
}

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
static int stage_text(stage_t *st, const option_t *o, const char *text, const char *who,
                      rt_errbuf_t *err) {
  if (o->kind == KIND_STRING) return stage_string(st, o, text, who, err);
  uint64_t v = 0;
  int ok = o->kind == KIND_BOOL ? parse_bool(text, &v)
                                : parse_decimal(text, &v) && v >= o->min && v <= o->max;
  if (!ok) {
    char got[GOT_TEXT_MAX + 8];
    quote_text(got, sizeof(got), text);
    return expect_error(o, who, got, 1, err);
  }
  stage_number(st, o, v);
  return 0;
}

/* What a JSON value is, for messages: integers by value, the rest by type. */
static void describe_json(const json_t *v, char *got, size_t cap) {
  switch (json_typeof(v)) {
    case JSON_INTEGER:
      snprintf(got, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
      break;
    case JSON_REAL:
      snprintf(got, cap, "%g", json_real_value(v));
      if (strpbrk(got, ".en") == NULL && strlen(got) + 2 < cap) strcat(got, ".0");
      break;
    case JSON_STRING: snprintf(got, cap, "a string"); break;
    case JSON_OBJECT: snprintf(got, cap, "an object"); break;
    case JSON_ARRAY: snprintf(got, cap, "an array"); break;
    case JSON_TRUE: snprintf(got, cap, "true"); break;
    case JSON_FALSE: snprintf(got, cap, "false"); break;
    case JSON_NULL: snprintf(got, cap, "null"); break;
  }
}

static int stage_json(stage_t *st, const option_t *o, const json_t *v, const char *who,
                      rt_errbuf_t *err) {
  switch (o->kind) {
    case KIND_STRING:
      if (json_is_string(v)) return stage_string(st, o, json_string_value(v), who, err);
      break;
    case KIND_BOOL:
      if (json_is_boolean(v)) {
        stage_number(st, o, json_is_true(v));
        return 0;
      }
      break;
    default:
      if (json_is_integer(v) && json_integer_value(v) >= 0 &&
          (uint64_t)json_integer_value(v) >= o->min && (uint64_t)json_integer_value(v) <= o->max) {
        stage_number(st, o, (uint64_t)json_integer_value(v));
        return 0;
      }
      break;
  }
  char got[64];
  describe_json(v, got, sizeof(got));
  return expect_error(o, who, got, 0, err);
}

/* Case-insensitive Levenshtein distance between a and b[0..bn); both shorter than KEY_MAX. */
static size_t edit_distance(const char *a, const char *b, size_t bn) {
  size_t row[KEY_MAX + 1];
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
  for (size_t i = 0; i < OPTION_COUNT; i++) {
    const char *cand = options[i].key;
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

static int unknown_key_error(const char *origin, const char *key, rt_errbuf_t *err) {
  char near[KEY_MAX];
  if (strlen(key) < KEY_MAX && suggest_key(key, near, sizeof(near))) {
    return rt_errbuf_set(err, RT_ECONFIG, "%s: unknown key \"%s\" (did you mean \"%s\"?)", origin,
                         key, near);
  }
  return rt_errbuf_set(err, RT_ECONFIG, "%s: unknown key \"%.*s\"", origin, KEY_MAX, key);
}

/*
 * Applies every member of a JSON object whose keys sit under `prefix` ("" at
 * the top, "rateLimit" inside it), recursing into groups. Members are visited
 * in file order (jansson keeps insertion order), so the first mistake is the
 * one reported.
 */
static int stage_object(stage_t *st, json_t *obj, const char *prefix, const char *origin,
                        rt_errbuf_t *err) {
  const char *name;
  json_t *value;
  json_object_foreach(obj, name, value) {
    if (strchr(name, '.') != NULL) {
      return rt_errbuf_set(err, RT_ECONFIG,
                           "%s: unknown key \"%.*s\" (keys contain no '.'; nest objects instead)",
                           origin, KEY_MAX, name);
    }
    char key[KEY_MAX];
    int n = snprintf(key, sizeof(key), "%s%s%s", prefix, *prefix ? "." : "", name);
    if (n < 0 || (size_t)n >= sizeof(key)) return unknown_key_error(origin, name, err);
    const option_t *o = find_option(key);
    char who[256];
    snprintf(who, sizeof(who), "%s: \"%s\"", origin, key);
    int rc;
    if (o != NULL) {
      rc = stage_json(st, o, value, who, err);
    } else if (!is_group(key)) {
      rc = unknown_key_error(origin, key, err);
    } else if (!json_is_object(value)) {
      char got[64];
      describe_json(value, got, sizeof(got));
      rc = rt_errbuf_set(err, RT_ECONFIG, "%s must be an object (got %s)", who, got);
    } else {
      rc = stage_object(st, value, key, origin, err);
    }
    if (rc != 0) return rc;
  }
  return 0;
}

static int syntax_error(const char *origin, const json_error_t *jerr, rt_errbuf_t *err) {
  if (json_error_code(jerr) == json_error_out_of_memory) {
    return rt_errbuf_set(err, RT_ENOMEM, "%s: out of memory", origin);
  }
  return rt_errbuf_set(err, RT_EJSON, "%s: invalid JSON at line %d, column %d: %s", origin,
                       jerr->line, jerr->column, jerr->text);
}

int rt_config_load_json(rt_config_store_t *store, rt_config_t *cfg, const char *text, size_t len,
                        const char *origin, rt_errbuf_t *err) {
  json_error_t jerr;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (root == NULL) return syntax_error(origin, &jerr, err);
  stage_t st;
  stage_begin(&st, cfg);
  int rc = json_is_object(root)
               ? stage_object(&st, root, "", origin, err)
               : rt_errbuf_set(err, RT_ECONFIG, "%s: the top level must be a JSON object", origin);
  json_decref(root);
  return stage_end(&st, rc, store, cfg);
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
  stage_t st;
  stage_begin(&st, cfg);
  int rc = 0;
  for (size_t i = 0; i < OPTION_COUNT && rc == 0; i++) {
    char name[ENV_NAME_MAX];
    if (env_name_of(options[i].key, name, sizeof(name)) != 0) continue;
    const char *value = find_env(envp, name);
    if (value != NULL) rc = stage_text(&st, &options[i], value, name, err);
  }
  return stage_end(&st, rc, store, cfg);
}

int rt_config_set(rt_config_store_t *store, rt_config_t *cfg, const char *key, const char *value,
                  const char *source, rt_errbuf_t *err) {
  const option_t *o = find_option(key);
  if (o == NULL) return unknown_key_error(source, key, err);
  stage_t st;
  stage_begin(&st, cfg);
  return stage_end(&st, stage_text(&st, o, value, source, err), store, cfg);
}

/*
 * Re-checks every key against the table, for configs built in code: numbers
 * in range, strings by their rule (a rule-bound string may not be NULL).
 */
static int validate_keys(const rt_config_t *cfg, rt_errbuf_t *err) {
  for (size_t i = 0; i < OPTION_COUNT; i++) {
    const option_t *o = &options[i];
    char got[GOT_TEXT_MAX + 8], who[KEY_MAX + 8];
    snprintf(who, sizeof(who), "\"%s\"", o->key);
    if (o->kind == KIND_STRING) {
      const char *value = *(const char *const *)((const char *)cfg + o->cfg_off);
      const char *rule = o->check == NULL ? NULL : value == NULL ? "set" : o->check(value);
      if (rule == NULL) continue;
      quote_text(got, sizeof(got), value == NULL ? "" : value);
      return rt_errbuf_set(err, RT_ECONFIG, "%s must be %s (got %s)", who, rule,
                           value == NULL ? "NULL" : got);
    }
    if (o->kind == KIND_BOOL || number_in_range(cfg, o, got, sizeof(got))) continue;
    return expect_error(o, who, got, 0, err);
  }
  return 0;
}

/*
 * Checks that relate keys to each other. A queue cap below maxMessageSize is
 * allowed on purpose: it is how a deployment cuts off slow readers early.
 */
static int validate_relations(const rt_config_t *cfg, rt_errbuf_t *err) {
  if (cfg->require_auth && (cfg->jwt_secret == NULL || cfg->jwt_secret[0] == '\0')) {
    return rt_errbuf_set(err, RT_ECONFIG, "\"jwtSecret\" must be set when \"requireAuth\" is true");
  }
  if (cfg->max_publish_size > cfg->max_message_size) {
    return rt_errbuf_set(err, RT_ECONFIG,
                         "\"maxPublishSize\" (%zu) must not exceed \"maxMessageSize\" (%zu)",
                         cfg->max_publish_size, cfg->max_message_size);
  }
  return 0;
}

void rt_config_resolve(const rt_config_store_t *store, rt_config_t *cfg) {
  const option_t *publish = find_option("maxPublishSize");
  if ((store->set_keys & key_bit(publish)) == 0 && cfg->max_publish_size > cfg->max_message_size) {
    cfg->max_publish_size = cfg->max_message_size;
  }
}

int rt_config_validate(const rt_config_t *cfg, rt_errbuf_t *err) {
  int rc = validate_keys(cfg, err);
  return rc != 0 ? rc : validate_relations(cfg, err);
}

const char *rt_config_key(size_t i) { return i < OPTION_COUNT ? options[i].key : NULL; }

int rt_config_env_name(const char *key, char *buf, size_t cap) {
  if (find_option(key) == NULL) return RT_ENOENT;
  return env_name_of(key, buf, cap) == 0 ? 0 : RT_EINVAL;
}

const char *rt_config_key_for_env(const char *name) {
  for (size_t i = 0; i < OPTION_COUNT; i++) {
    char env[ENV_NAME_MAX];
    if (env_name_of(options[i].key, env, sizeof(env)) == 0 && strcmp(env, name) == 0) {
      return options[i].key;
    }
  }
  return NULL;
}
