/*
 * The two structured values a config file may hold and the environment
 * cannot: "apiKeys", an array of {"key", "name", "permissions"} objects, and
 * "queries", an object of {"sql", "permission", "key"} objects keyed by query
 * name. Each is packed into one allocation that the store frees with one
 * call, and checked entry by entry; code-built configs get the same checks.
 * Also the wording helpers that the other config files share: quoted
 * values, JSON values described by value or by type, and the names of array
 * items.
 */
#include "config_blocks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "perm.h"

#define KEY_NAME_MAX 128  /* longest API key name */
#define QUERY_NAME_MAX 64 /* longest live query name */

enum {
  MEMBER_SECRET = 1,  /* a mistyped value is described by its type only */
  MEMBER_NULLABLE = 2 /* the member may be absent */
};

/* ------------------------------------------------------------- messages */

/*
 * `"text"` for messages, cut to RT_CONFIG_GOT_TEXT_MAX bytes with "..." so
 * one line stays readable.
 */
void rt_config_quote_text(char *got, size_t cap, const char *text) {
  snprintf(got, cap, "\"%.*s%s\"", RT_CONFIG_GOT_TEXT_MAX, text,
           strlen(text) > RT_CONFIG_GOT_TEXT_MAX ? "..." : "");
}

/* What a JSON value is by type alone ("a number"): the description for secrets. */
const char *rt_config_json_type_name(const json_t *v) {
  switch (json_typeof(v)) {
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_STRING: return "a string";
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return json_array_size(v) == 0 ? "[]" : "an array";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: break;
  }
  return "null";
}

/* What a JSON value is, for messages: numbers by value, strings quoted if `quote`, else by type. */
void rt_config_describe_json(const json_t *v, int quote, char *got, size_t cap) {
  switch (json_typeof(v)) {
    case JSON_INTEGER:
      snprintf(got, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
      break;
    case JSON_REAL:
      snprintf(got, cap, "%g", json_real_value(v));
      if (strpbrk(got, ".en") == NULL && strlen(got) + 2 < cap) strcat(got, ".0");
      break;
    case JSON_STRING:
      if (quote) {
        rt_config_quote_text(got, cap, json_string_value(v));
      } else {
        snprintf(got, cap, "a string");
      }
      break;
    case JSON_TRUE: snprintf(got, cap, "true"); break;
    case JSON_FALSE: snprintf(got, cap, "false"); break;
    default: snprintf(got, cap, "%s", rt_config_json_type_name(v)); break;
  }
}

/* The `origin: "key[i]"` and `origin: "key[i].member"` names of messages about array items. */
void rt_config_item_name(char *who, size_t cap, const char *origin, const char *key, size_t i,
                         const char *member) {
  snprintf(who, cap, "%s%s\"%s[%zu]%s%s\"", origin, *origin ? ": " : "", key, i,
           member != NULL ? "." : "", member != NULL ? member : "");
}

/* The name of permission j of API key i: `origin: "apiKeys[i].permissions[j]"`. */
static void permission_name(char *who, size_t cap, const char *origin, size_t i, size_t j) {
  char member[48];
  snprintf(member, sizeof(member), "permissions[%zu]", j);
  rt_config_item_name(who, cap, origin, "apiKeys", i, member);
}

/* ------------------------------------------------------------- API keys */

/* An API key travels in a header or query: non-empty visible ASCII, no blanks. */
static int valid_key_text(const char *key) {
  if (key == NULL || key[0] == '\0') return 0;
  for (const char *p = key; *p != '\0'; p++) {
    if (*p <= ' ' || *p > '~') return 0;
  }
  return 1;
}

/* 1 when name is 1-max characters, each a letter, a digit or one of `punct`. */
static int valid_name(const char *name, size_t max, const char *punct) {
  size_t n = name != NULL ? strlen(name) : 0;
  if (n == 0 || n > max) return 0;
  for (const char *p = name; *p != '\0'; p++) {
    int alnum = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9');
    if (!alnum && strchr(punct, *p) == NULL) return 0;
  }
  return 1;
}

/*
 * The name becomes the user id "apikey:<name>", which "{sub}" patterns put
 * into channel names: so the channel alphabet without separators.
 */
static int valid_key_name(const char *name) { return valid_name(name, KEY_NAME_MAX, "_-.@"); }

/* The one wording for a permission that rt_perm_valid refuses; `who` names where it is. */
static int permission_error(const char *who, const char *perm, rt_errbuf_t *err) {
  char got[RT_CONFIG_GOT_TEXT_MAX + 8];
  if (perm != NULL) rt_config_quote_text(got, sizeof(got), perm);
  return rt_errbuf_set(err, RT_ECONFIG,
                       "%s must be \"*\", \"query:raw\", \"read:<pattern>\" or "
                       "\"write:<pattern>\" (got %s)",
                       who, perm != NULL ? got : "NULL");
}

/* Checks the permissions of entry i; `origin` ("" for code-built configs) prefixes messages. */
static int check_permissions(const rt_api_key_config_t *k, size_t i, const char *origin,
                             rt_errbuf_t *err) {
  char name[RT_CONFIG_KEY_MAX + 256];
  if (k->permission_count > 0 && k->permissions == NULL) {
    rt_config_item_name(name, sizeof(name), origin, "apiKeys", i, "permissions");
    return rt_errbuf_set(err, RT_ECONFIG, "%s must be set (got NULL with %zu entries)", name,
                         k->permission_count);
  }
  for (size_t j = 0; j < k->permission_count; j++) {
    if (rt_perm_valid(k->permissions[j])) continue;
    permission_name(name, sizeof(name), origin, i, j);
    return permission_error(name, k->permissions[j], err);
  }
  return 0;
}

/*
 * Checks entry i of keys[] on its own (duplicates are find_duplicate's).
 * Messages name the entry by index and never contain the key text.
 */
static int check_api_key(const rt_api_key_config_t *keys, size_t i, const char *origin,
                         rt_errbuf_t *err) {
  const rt_api_key_config_t *k = &keys[i];
  char name[RT_CONFIG_KEY_MAX + 256], got[RT_CONFIG_GOT_TEXT_MAX + 8];
  if (!valid_key_text(k->key)) {
    rt_config_item_name(name, sizeof(name), origin, "apiKeys", i, "key");
    return rt_errbuf_set(err, RT_ECONFIG,
                         "%s must be a non-empty string of visible ASCII characters without "
                         "spaces",
                         name);
  }
  if (!valid_key_name(k->name)) {
    rt_config_item_name(name, sizeof(name), origin, "apiKeys", i, "name");
    if (k->name != NULL) rt_config_quote_text(got, sizeof(got), k->name);
    return rt_errbuf_set(err, RT_ECONFIG,
                         "%s must be 1-%d characters of A-Z a-z 0-9 _ - . @ (got %s)", name,
                         KEY_NAME_MAX, k->name != NULL ? got : "NULL");
  }
  return check_permissions(k, i, origin, err);
}

/* One entry's key or name and its position in the array, for finding repeats by sorting. */
typedef struct {
  const char *text; /* the text that must be unique */
  size_t index;     /* position of its entry */
} indexed_t;

/* By text, then by position, so equal texts sit together, earliest first. */
static int compare_indexed(const void *a, const void *b) {
  const indexed_t *x = a, *y = b;
  int c = strcmp(x->text, y->text);
  return c != 0 ? c : (x->index > y->index) - (x->index < y->index);
}

/*
 * Refuses a text given twice among n entries `stride` bytes apart (the text
 * pointer `off` bytes into each), naming the repeat that comes first in the
 * list and the entry it repeats: `"apiKeys[2].key" is the same key as
 * "apiKeys[0].key"`. Sorting an index of the entries keeps this O(n log n):
 * a file at the size cap holds over 20,000 keys, where comparing every pair
 * took seconds. Needs non-NULL texts (check the entries first). Returns 0,
 * RT_ECONFIG or RT_ENOMEM.
 */
static int find_duplicate(const void *entries, size_t n, size_t stride, size_t off,
                          const char *array, const char *member, const char *origin,
                          rt_errbuf_t *err) {
  if (n < 2) return 0;
  indexed_t *order = rt_malloc(n * sizeof(*order));
  if (order == NULL) {
    return rt_errbuf_set(err, RT_ENOMEM, "%s%s\"%s\": out of memory", origin, *origin ? ": " : "",
                         array);
  }
  for (size_t i = 0; i < n; i++) {
    order[i].text = *(const char *const *)((const char *)entries + i * stride + off);
    order[i].index = i;
  }
  qsort(order, n, sizeof(*order), compare_indexed);
  size_t repeat = n, first = 0;
  for (size_t i = 1; i < n; i++) {
    if (strcmp(order[i - 1].text, order[i].text) != 0 || order[i].index >= repeat) continue;
    repeat = order[i].index;
    first = order[i - 1].index;
  }
  rt_free(order);
  if (repeat == n) return 0;
  char name[RT_CONFIG_KEY_MAX + 256];
  rt_config_item_name(name, sizeof(name), origin, array, repeat, member);
  return rt_errbuf_set(err, RT_ECONFIG, "%s is the same %s as \"%s[%zu].%s\"", name, member, array,
                       first, member);
}

static int find_duplicate_key(const rt_api_key_config_t *keys, size_t n, const char *origin,
                              rt_errbuf_t *err) {
  return find_duplicate(keys, n, sizeof(*keys), offsetof(rt_api_key_config_t, key), "apiKeys",
                        "key", origin, err);
}

int rt_config_check_api_keys(const rt_api_key_config_t *keys, size_t n, const char *origin,
                             rt_errbuf_t *err) {
  if (n > 0 && keys == NULL) {
    return rt_errbuf_set(err, RT_ECONFIG, "\"apiKeys\" must be set (got NULL with %zu entries)", n);
  }
  for (size_t i = 0; i < n; i++) {
    int rc = check_api_key(keys, i, origin, err);
    if (rc != 0) return rc;
  }
  return find_duplicate_key(keys, n, origin, err);
}

/* Where the next permission pointer and string byte of a block being filled go. */
typedef struct {
  const char **ptrs; /* next free permission slot; NULL for blocks without arrays (queries) */
  char *chars;       /* next free string byte */
} packer_t;

static size_t string_size(const json_t *v) {
  return json_is_string(v) ? json_string_length(v) + 1 : 0;
}

/*
 * Bytes of the block for an "apiKeys" array: the entries, then every
 * permission pointer, then every string with its NUL. Items of the wrong
 * type count as nothing; the fill reports them.
 */
static void measure_api_keys(const json_t *arr, size_t *ptr_count, size_t *char_count) {
  size_t i, j;
  json_t *entry, *perm;
  *ptr_count = *char_count = 0;
  json_array_foreach(arr, i, entry) {
    *char_count += string_size(json_object_get(entry, "key"));
    *char_count += string_size(json_object_get(entry, "name"));
    json_t *perms = json_object_get(entry, "permissions");
    if (!json_is_array(perms)) continue;
    json_array_foreach(perms, j, perm) {
      *ptr_count += 1;
      *char_count += string_size(perm);
    }
  }
}

/* Copies text[0..n) and a NUL into the block; returns the copy. */
static const char *pack_chars(packer_t *pk, const char *text, size_t n) {
  char *out = pk->chars;
  memcpy(out, text, n);
  out[n] = '\0';
  pk->chars += n + 1;
  return out;
}

static const char *pack_string(packer_t *pk, const json_t *v) {
  return pack_chars(pk, json_string_value(v), json_string_length(v));
}

/*
 * Member `member` of a JSON object, which must be a string (or may be absent,
 * leaving *out as it is, with MEMBER_NULLABLE); `who` names it in messages.
 * With MEMBER_SECRET a mistyped value is described by its type only, so a
 * mistyped API key never shows up in a message.
 */
static int pack_member(packer_t *pk, const json_t *entry, const char *member, const char *who,
                       unsigned flags, const char **out, rt_errbuf_t *err) {
  const json_t *v = json_object_get(entry, member);
  if (json_is_string(v)) {
    *out = pack_string(pk, v);
    return 0;
  }
  if (v == NULL && (flags & MEMBER_NULLABLE)) return 0;
  if (v == NULL) return rt_errbuf_set(err, RT_ECONFIG, "%s is missing", who);
  char got[64];
  rt_config_describe_json(v, 0, got, sizeof(got));
  return rt_errbuf_set(err, RT_ECONFIG, "%s must be a string (got %s)", who,
                       (flags & MEMBER_SECRET) ? rt_config_json_type_name(v) : got);
}

/* The first member of the object `entry` that is not in the NULL-terminated `allowed`, or NULL. */
static const char *find_unknown_member(const json_t *entry, const char *const *allowed) {
  const char *member;
  const json_t *value;
  json_object_foreach((json_t *)entry, member, value) {
    size_t i = 0;
    while (allowed[i] != NULL && strcmp(allowed[i], member) != 0) i++;
    if (allowed[i] == NULL) return member;
  }
  return NULL;
}

static int pack_permissions(packer_t *pk, const json_t *entry, size_t i, const char *origin,
                            rt_api_key_config_t *k, rt_errbuf_t *err) {
  char name[RT_CONFIG_KEY_MAX + 256], got[64];
  const json_t *perms = json_object_get(entry, "permissions");
  rt_config_item_name(name, sizeof(name), origin, "apiKeys", i, "permissions");
  if (perms == NULL) return rt_errbuf_set(err, RT_ECONFIG, "%s is missing", name);
  if (!json_is_array(perms)) {
    rt_config_describe_json(perms, 1, got, sizeof(got));
    return rt_errbuf_set(err, RT_ECONFIG, "%s must be an array of strings (got %s)", name, got);
  }
  k->permission_count = json_array_size(perms);
  k->permissions = k->permission_count > 0 ? pk->ptrs : NULL;
  size_t j;
  json_t *perm;
  json_array_foreach(perms, j, perm) {
    if (!json_is_string(perm)) {
      permission_name(name, sizeof(name), origin, i, j);
      rt_config_describe_json(perm, 1, got, sizeof(got));
      return rt_errbuf_set(err, RT_ECONFIG, "%s must be a string (got %s)", name, got);
    }
    *pk->ptrs++ = pack_string(pk, perm);
  }
  return 0;
}

/*
 * Fills entries[i] from the JSON entry: an object with exactly "key",
 * "name" and "permissions". An unknown member is not named, since someone
 * may have written the key itself as a member name.
 */
static int pack_api_key(packer_t *pk, rt_api_key_config_t *entries, size_t i, const json_t *entry,
                        const char *origin, rt_errbuf_t *err) {
  static const char *const members[] = {"key", "name", "permissions", NULL};
  char name[RT_CONFIG_KEY_MAX + 256];
  rt_config_item_name(name, sizeof(name), origin, "apiKeys", i, NULL);
  if (!json_is_object(entry)) {
    return rt_errbuf_set(err, RT_ECONFIG,
                         "%s must be an object with \"key\", \"name\" and \"permissions\" (got %s)",
                         name, rt_config_json_type_name(entry));
  }
  if (find_unknown_member(entry, members) != NULL) {
    return rt_errbuf_set(err, RT_ECONFIG,
                         "%s has an unknown member (allowed: \"key\", \"name\", \"permissions\")",
                         name);
  }
  rt_api_key_config_t *k = &entries[i];
  rt_config_item_name(name, sizeof(name), origin, "apiKeys", i, "key");
  int rc = pack_member(pk, entry, "key", name, MEMBER_SECRET, &k->key, err);
  rt_config_item_name(name, sizeof(name), origin, "apiKeys", i, "name");
  if (rc == 0) rc = pack_member(pk, entry, "name", name, 0, &k->name, err);
  if (rc == 0) rc = pack_permissions(pk, entry, i, origin, k, err);
  return rc != 0 ? rc : check_api_key(entries, i, origin, err);
}

/*
 * apiKeys in the file, packed into one allocation (entries, then the
 * permission pointer arrays, then the strings) so the store frees it with
 * one call. The entries are checked as they are filled, in file order, and
 * repeated keys once all are in.
 */
int rt_config_pack_api_keys(const json_t *v, const char *origin, const char *who,
                            rt_api_key_config_t **out, size_t *count, rt_errbuf_t *err) {
  size_t n = json_array_size(v), ptr_count, char_count;
  measure_api_keys(v, &ptr_count, &char_count);
  rt_api_key_config_t *entries = NULL;
  if (n > 0) {
    entries = rt_calloc(1, n * sizeof(*entries) + ptr_count * sizeof(char *) + char_count);
    if (entries == NULL) return rt_errbuf_set(err, RT_ENOMEM, "%s: out of memory", who);
    const char **ptrs = (const char **)(entries + n);
    packer_t pk = {ptrs, (char *)(ptrs + ptr_count)};
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
      rc = pack_api_key(&pk, entries, i, json_array_get(v, i), origin, err);
    }
    if (rc == 0) rc = find_duplicate_key(entries, n, origin, err);
    if (rc != 0) {
      rt_free(entries);
      return rc;
    }
  }
  *out = entries;
  *count = n;
  return 0;
}

/* -------------------------------------------------------------- queries */

#define QUERY_NAME_RULE "1-%d characters of A-Z a-z 0-9 _ . : -"

/*
 * Clients subscribe to a query by this name and stats report it: the
 * channel alphabet without '/' and '@', short enough for a log line.
 */
static int valid_query_name(const char *name) { return valid_name(name, QUERY_NAME_MAX, "_.:-"); }

/* `origin: "queries.<name>.<member>"`, or without the member when it is NULL. */
static void query_path(char *who, size_t cap, const char *origin, const char *name,
                       const char *member) {
  snprintf(who, cap, "%s%s\"queries.%s%s%s\"", origin, *origin ? ": " : "", name,
           member != NULL ? "." : "", member != NULL ? member : "");
}

/* A string member that may not be empty (sql always, key when given); `who` names it. */
static int nonempty_error(const char *who, const char *value, rt_errbuf_t *err) {
  return rt_errbuf_set(err, RT_ECONFIG, "%s must be a non-empty string (got %s)", who,
                       value == NULL ? "NULL" : "\"\"");
}

/*
 * Checks entry i of queries[] on its own (repeated names are
 * find_duplicate's). The name is checked first, by index, so that every
 * other message can name the entry by its path: "queries.orders.sql".
 * Whether the SQL prepares, reads only, and has the key column is for the
 * live query module to find out against the database.
 */
static int check_query(const rt_query_config_t *queries, size_t i, const char *origin,
                       rt_errbuf_t *err) {
  const rt_query_config_t *q = &queries[i];
  char name[RT_CONFIG_KEY_MAX + 256], got[RT_CONFIG_GOT_TEXT_MAX + 8];
  if (!valid_query_name(q->name)) {
    rt_config_item_name(name, sizeof(name), origin, "queries", i, "name");
    if (q->name != NULL) rt_config_quote_text(got, sizeof(got), q->name);
    return rt_errbuf_set(err, RT_ECONFIG, "%s must be " QUERY_NAME_RULE " (got %s)", name,
                         QUERY_NAME_MAX, q->name != NULL ? got : "NULL");
  }
  if (q->sql == NULL || q->sql[0] == '\0') {
    query_path(name, sizeof(name), origin, q->name, "sql");
    return nonempty_error(name, q->sql, err);
  }
  if (q->permission != NULL && !rt_perm_valid(q->permission)) {
    query_path(name, sizeof(name), origin, q->name, "permission");
    return permission_error(name, q->permission, err);
  }
  if (q->key != NULL && q->key[0] == '\0') {
    query_path(name, sizeof(name), origin, q->name, "key");
    return nonempty_error(name, q->key, err);
  }
  return 0;
}

/*
 * For configs built in code. A file cannot repeat a name: the JSON loader
 * refuses duplicate object keys before this module sees them.
 */
int rt_config_check_queries(const rt_query_config_t *queries, size_t n, const char *origin,
                            rt_errbuf_t *err) {
  if (n > 0 && queries == NULL) {
    return rt_errbuf_set(err, RT_ECONFIG, "\"queries\" must be set (got NULL with %zu entries)", n);
  }
  for (size_t i = 0; i < n; i++) {
    int rc = check_query(queries, i, origin, err);
    if (rc != 0) return rc;
  }
  return find_duplicate(queries, n, sizeof(*queries), offsetof(rt_query_config_t, name), "queries",
                        "name", origin, err);
}

/* String bytes of the block for a "queries" object: each name and string member with its NUL. */
static size_t measure_queries(const json_t *obj) {
  size_t chars = 0;
  const char *name;
  json_t *entry;
  json_object_foreach((json_t *)obj, name, entry) {
    chars += strlen(name) + 1;
    chars += string_size(json_object_get(entry, "sql"));
    chars += string_size(json_object_get(entry, "permission"));
    chars += string_size(json_object_get(entry, "key"));
  }
  return chars;
}

/* The string members of one query entry: "sql" required, the others may be absent. */
static int pack_query_members(packer_t *pk, const json_t *entry, const char *origin,
                              rt_query_config_t *q, rt_errbuf_t *err) {
  static const struct {
    const char *member;  /* JSON member name */
    size_t off;          /* its const char * in rt_query_config_t */
    unsigned flags;      /* MEMBER_NULLABLE: may be absent */
  } members[] = {
      {"sql", offsetof(rt_query_config_t, sql), 0},
      {"permission", offsetof(rt_query_config_t, permission), MEMBER_NULLABLE},
      {"key", offsetof(rt_query_config_t, key), MEMBER_NULLABLE},
  };
  for (size_t m = 0; m < sizeof(members) / sizeof(members[0]); m++) {
    char who[RT_CONFIG_KEY_MAX + 256];
    query_path(who, sizeof(who), origin, q->name, members[m].member);
    const char **out = (const char **)((char *)q + members[m].off);
    int rc = pack_member(pk, entry, members[m].member, who, members[m].flags, out, err);
    if (rc != 0) return rc;
  }
  return 0;
}

/*
 * Fills entries[i] from member `name` of the "queries" object: an object
 * with "sql" and optionally "permission" and "key", all strings; then the
 * rules of check_query(). Messages name the path of what is wrong, and an
 * unknown member by name, since nothing here is secret.
 */
static int pack_query(packer_t *pk, rt_query_config_t *entries, size_t i, const char *name,
                      const json_t *entry, const char *origin, rt_errbuf_t *err) {
  static const char *const members[] = {"sql", "permission", "key", NULL};
  char who[RT_CONFIG_KEY_MAX + 256], got[RT_CONFIG_GOT_TEXT_MAX + 8];
  if (!valid_query_name(name)) {
    rt_config_quote_text(got, sizeof(got), name);
    return rt_errbuf_set(err, RT_ECONFIG, "%s: \"queries\" names must be " QUERY_NAME_RULE
                         " (got %s)", origin, QUERY_NAME_MAX, got);
  }
  query_path(who, sizeof(who), origin, name, NULL);
  if (!json_is_object(entry)) {
    rt_config_describe_json(entry, 1, got, sizeof(got));
    return rt_errbuf_set(err, RT_ECONFIG,
                         "%s must be an object with \"sql\" and optional \"permission\" and "
                         "\"key\" (got %s)",
                         who, got);
  }
  const char *unknown = find_unknown_member(entry, members);
  if (unknown != NULL) {
    rt_config_quote_text(got, sizeof(got), unknown);
    return rt_errbuf_set(err, RT_ECONFIG,
                         "%s has an unknown member %s (allowed: \"sql\", \"permission\", \"key\")",
                         who, got);
  }
  rt_query_config_t *q = &entries[i];
  q->name = pack_chars(pk, name, strlen(name));
  int rc = pack_query_members(pk, entry, origin, q, err);
  return rc != 0 ? rc : check_query(entries, i, origin, err);
}

/*
 * queries in the file: an object, so names are unique by construction, packed
 * like apiKeys into one allocation (entries in file order, then the strings)
 * that the store frees with one call. An empty object packs no queries.
 */
int rt_config_pack_queries(const json_t *v, const char *origin, const char *who,
                           rt_query_config_t **out, size_t *count, rt_errbuf_t *err) {
  size_t n = json_object_size(v);
  rt_query_config_t *entries = NULL;
  if (n > 0) {
    entries = rt_calloc(1, n * sizeof(*entries) + measure_queries(v));
    if (entries == NULL) return rt_errbuf_set(err, RT_ENOMEM, "%s: out of memory", who);
    packer_t pk = {NULL, (char *)(entries + n)};
    size_t i = 0;
    const char *name;
    json_t *entry;
    int rc = 0;
    json_object_foreach((json_t *)v, name, entry) {
      rc = pack_query(&pk, entries, i++, name, entry, origin, err);
      if (rc != 0) break;
    }
    if (rc != 0) {
      rt_free(entries);
      return rc;
    }
  }
  *out = entries;
  *count = n;
  return 0;
}
