/*
 * Query parameters (sqldb.h: rt_sqldb_query_new). The params text is
 * syntax-checked once with rt_json_validate, then walked in place by a small
 * cursor that only finds where members start and end, since the text is
 * known to be valid. The statement's placeholders decide whether params must
 * be an array ($N, ?, ?NNN) or an object (:name, @name, $name), and the shape
 * and count are checked before anything is bound.
 */
#include "sqldb_params.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "proto.h"

#define PARAMS_MAX_DEPTH 8   /* nesting the params syntax check accepts (then refused clearly) */
#define DOLLAR_MAX 1000000   /* highest $N accepted */

/* Where one member's key or value lies in the params text. */
struct span {
  size_t off; /* first byte */
  size_t len; /* bytes */
};

/* A walk over a JSON array or object that rt_json_validate accepted. */
struct cursor {
  const char *p; /* the text */
  size_t len;    /* its length */
  size_t pos;    /* next byte */
};

static int is_ws(char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r'; }

static void skip_ws(struct cursor *c) {
  while (c->pos < c->len && is_ws(c->p[c->pos])) c->pos++;
}

static size_t string_end(const struct cursor *c, size_t i) {
  for (i++; c->p[i] != '"'; i++)
    if (c->p[i] == '\\') i++;
  return i + 1;
}

/* End of the value at pos: past its closing quote or bracket, or at the next delimiter. */
static size_t value_end(const struct cursor *c) {
  size_t i = c->pos;
  if (c->p[i] == '"') return string_end(c, i);
  if (c->p[i] == '[' || c->p[i] == '{') {
    int depth = 0;
    do {
      if (c->p[i] == '"') i = string_end(c, i) - 1;
      depth += c->p[i] == '[' || c->p[i] == '{';
      depth -= c->p[i] == ']' || c->p[i] == '}';
      i++;
    } while (depth > 0);
    return i;
  }
  while (i < c->len && c->p[i] != ',' && c->p[i] != ']' && c->p[i] != '}' && !is_ws(c->p[i])) i++;
  return i;
}

/* The next member: its key literal (objects only) and its value. Returns 1, or 0 at the end. */
static int next_member(struct cursor *c, struct span *key, struct span *val) {
  skip_ws(c);
  if (c->p[c->pos] == ',') c->pos++;
  skip_ws(c);
  if (c->p[c->pos] == ']' || c->p[c->pos] == '}') return 0;
  if (key != NULL) {
    *key = (struct span){c->pos, value_end(c) - c->pos};
    c->pos += key->len;
    skip_ws(c);
    c->pos++;
    skip_ws(c);
  }
  *val = (struct span){c->pos, value_end(c) - c->pos};
  c->pos += val->len;
  return 1;
}

/* Decodes a JSON string literal into a new rt_malloc'd buffer (not NUL-terminated). */
static char *decode_literal(const char *lit, size_t n, size_t *out_len) {
  char *buf = rt_malloc(n + 1);
  if (buf == NULL) return NULL;
  long dl = rt_proto_decode_string(lit, n, buf, n);
  assert(dl >= 0);
  buf[dl] = '\0';
  *out_len = (size_t)dl;
  return buf;
}

/*
 * Our code for a failed sqlite3_bind_*: they fail only for lack of memory,
 * an oversized value or a misuse, never for a lock, so sqldb.c's wider
 * mapping reduces to this.
 */
static int bind_code(int rc) { return (rc & 0xFF) == SQLITE_NOMEM ? RT_ENOMEM : RT_EQUERY; }

static int bind_number(sqlite3_stmt *s, int idx, const char *v, size_t n) {
  char *text = rt_strndup(v, n);
  if (text == NULL) return SQLITE_NOMEM;
  int rc;
  errno = 0;
  long long i = strtoll(text, NULL, 10);
  if (strpbrk(text, ".eE") == NULL && errno == 0)
    rc = sqlite3_bind_int64(s, idx, i);
  else
    rc = sqlite3_bind_double(s, idx, strtod(text, NULL));
  rt_free(text);
  return rc;
}

/* Binds one JSON scalar; `what` names the parameter in messages ("1", ":name"). */
static int bind_value(sqlite3_stmt *s, int idx, const char *v, size_t n, const char *what,
                      rt_errbuf_t *err) {
  int rc;
  size_t dl = 0;
  char *text;
  switch (v[0]) {
    case '"':
      text = decode_literal(v, n, &dl);
      if (text == NULL) return rt_errbuf_set(err, RT_ENOMEM, "Out of memory");
      rc = sqlite3_bind_text64(s, idx, text, dl, rt_free, SQLITE_UTF8);
      break;
    case 't': rc = sqlite3_bind_int(s, idx, 1); break;
    case 'f': rc = sqlite3_bind_int(s, idx, 0); break;
    case 'n': rc = sqlite3_bind_null(s, idx); break;
    case '[':
    case '{':
      return rt_errbuf_set(err, RT_EQUERY,
                           "Parameter %s must be a string, number, boolean or null", what);
    default: rc = bind_number(s, idx, v, n); break;
  }
  if (rc == SQLITE_OK) return 0;
  return rt_errbuf_set(err, bind_code(rc), "Parameter %s: %s", what, sqlite3_errstr(rc));
}

enum style { STYLE_NONE, STYLE_DOLLAR, STYLE_POSITIONAL, STYLE_NAMED };

static const char *const style_names[] = {"none", "$1", "?", ":name"};

/* $N placeholders as the seed writes them: "$" then decimal digits only. */
static int dollar_number(const char *name) {
  if (name[0] != '$' || name[1] < '0' || name[1] > '9') return -1;
  long k = 0;
  for (const char *p = name + 1; *p != '\0'; p++) {
    if (*p < '0' || *p > '9') return -1;
    k = k * 10 + (*p - '0');
    if (k > DOLLAR_MAX) return 0;
  }
  return (int)k;
}

/* The one placeholder style of the statement, and for $N the highest N (*count). */
static int find_style(sqlite3_stmt *s, enum style *out, int *count, rt_errbuf_t *err) {
  int n = sqlite3_bind_parameter_count(s);
  enum style style = STYLE_NONE;
  *count = n;
  int max_dollar = 0;
  for (int i = 1; i <= n; i++) {
    const char *name = sqlite3_bind_parameter_name(s, i);
    int k = name != NULL ? dollar_number(name) : -1;
    enum style st = name == NULL || name[0] == '?' ? STYLE_POSITIONAL
                    : k >= 0                       ? STYLE_DOLLAR
                                                   : STYLE_NAMED;
    if (k == 0)
      return rt_errbuf_set(err, RT_EQUERY, "Bad parameter %.32s: $N counts from $1 to $%d", name,
                           DOLLAR_MAX);
    if (st == STYLE_DOLLAR && k > max_dollar) max_dollar = k;
    if (style != STYLE_NONE && st != style)
      return rt_errbuf_set(err, RT_EQUERY,
                           "The query mixes %s and %s parameters; use one style",
                           style_names[style], style_names[st]);
    style = st;
  }
  if (style == STYLE_DOLLAR) *count = max_dollar;
  *out = style;
  return 0;
}

static size_t count_members(struct cursor c, int is_object) {
  struct span key, val;
  size_t n = 0;
  while (next_member(&c, is_object ? &key : NULL, &val)) n++;
  return n;
}

/* Array params: element k goes to ?k / ?NNN=k, or to $k when the statement uses it. */
static int bind_array(sqlite3_stmt *s, struct cursor c, enum style style, rt_errbuf_t *err) {
  struct span val;
  for (int k = 1; next_member(&c, NULL, &val); k++) {
    char what[16];
    snprintf(what, sizeof(what), "%s%d", style == STYLE_DOLLAR ? "$" : "", k);
    int idx = style == STYLE_DOLLAR ? sqlite3_bind_parameter_index(s, what) : k;
    if (idx == 0) continue;
    int rc = bind_value(s, idx, c.p + val.off, val.len, what, err);
    if (rc != 0) return rc;
  }
  return 0;
}

/*
 * Binds the value to every placeholder the key names: ":key", "@key" and
 * "$key", or only the key itself when it is written with its prefix.
 */
static int bind_named(sqlite3_stmt *s, const char *key, const char *v, size_t n, char *bound,
                      rt_errbuf_t *err) {
  size_t klen = strlen(key);
  char *name = rt_malloc(klen + 2);
  if (name == NULL) return rt_errbuf_set(err, RT_ENOMEM, "Out of memory");
  int explicit_prefix = key[0] == ':' || key[0] == '@' || key[0] == '$';
  int found = 0, twice = 0, rc = 0;
  for (const char *pfx = ":@$"; rc == 0 && *pfx != '\0'; pfx++) {
    name[0] = *pfx;
    memcpy(name + 1, key, klen + 1);
    int idx = sqlite3_bind_parameter_index(s, explicit_prefix ? key : name);
    if (idx == 0 || bound[idx]) {
      twice |= idx != 0;
      continue;
    }
    bound[idx] = 1;
    found = 1;
    rc = bind_value(s, idx, v, n, sqlite3_bind_parameter_name(s, idx), err);
  }
  rt_free(name);
  if (rc != 0 || found) return rc;
  if (twice) return rt_errbuf_set(err, RT_EQUERY, "params names \"%.64s\" twice", key);
  return rt_errbuf_set(err, RT_EQUERY, "params has \"%.64s\", which the query does not use", key);
}

static int missing_named(sqlite3_stmt *s, const char *bound, rt_errbuf_t *err) {
  for (int i = 1; i <= sqlite3_bind_parameter_count(s); i++)
    if (!bound[i])
      return rt_errbuf_set(err, RT_EQUERY, "Missing parameter %.64s in params",
                           sqlite3_bind_parameter_name(s, i));
  return 0;
}

/* Object params: each key binds the placeholders of that name; all must be bound. */
static int bind_object(sqlite3_stmt *s, struct cursor c, rt_errbuf_t *err) {
  char *bound = rt_calloc((size_t)sqlite3_bind_parameter_count(s) + 1, 1);
  if (bound == NULL) return rt_errbuf_set(err, RT_ENOMEM, "Out of memory");
  struct span key, val;
  int rc = 0;
  while (rc == 0 && next_member(&c, &key, &val)) {
    size_t klen;
    char *k = decode_literal(c.p + key.off, key.len, &klen);
    if (k == NULL)
      rc = rt_errbuf_set(err, RT_ENOMEM, "Out of memory");
    else if (klen == 0 || strlen(k) != klen)
      rc = rt_errbuf_set(err, RT_EQUERY, "Bad parameter name in params");
    else
      rc = bind_named(s, k, c.p + val.off, val.len, bound, err);
    rt_free(k);
  }
  if (rc == 0) rc = missing_named(s, bound, err);
  rt_free(bound);
  return rc;
}

/* Checks the container against the style and the member count against the placeholders. */
static int check_shape(enum style style, int want, int is_object, size_t have, rt_errbuf_t *err) {
  if (style == STYLE_NAMED && !is_object)
    return rt_errbuf_set(err, RT_EQUERY,
                         "The query has named parameters (:name): params must be a JSON object");
  if ((style == STYLE_DOLLAR || style == STYLE_POSITIONAL) && is_object)
    return rt_errbuf_set(err, RT_EQUERY,
                         "The query has numbered parameters (%s): params must be a JSON array",
                         style_names[style]);
  if (style != STYLE_NAMED && have != (size_t)want)
    return rt_errbuf_set(err, RT_EQUERY, "The query takes %d parameter%s but params has %zu",
                         want, want == 1 ? "" : "s", have);
  return 0;
}

/*
 * Binds params[0..len) (a JSON array or object, or nothing) to the
 * statement's placeholders. The shape and count are checked before binding;
 * a wrong name fails while binding, and the caller then discards the
 * statement, so a failed check never leaves half-bound state behind.
 */
int rt_sqldb_bind_params(sqlite3_stmt *s, const char *params, size_t len, rt_errbuf_t *err) {
  enum style style = STYLE_NONE;
  int want = 0;
  int rc = find_style(s, &style, &want, err);
  if (rc != 0) return rc;
  struct cursor c = {"[]", 2, 1};
  if (params != NULL && len > 0) {
    size_t start, vlen;
    rt_errbuf_t jerr = {""};
    if (rt_json_validate(params, len, PARAMS_MAX_DEPTH, &start, &vlen, &jerr) != 0)
      return rt_errbuf_set(err, RT_EQUERY, "params: %s", jerr.msg);
    if (params[start] != '[' && params[start] != '{')
      return rt_errbuf_set(err, RT_EQUERY, "params must be a JSON array or object");
    c = (struct cursor){params, start + vlen, start + 1};
  }
  int is_object = c.p[c.pos - 1] == '{';
  rc = check_shape(style, want, is_object, count_members(c, is_object), err);
  if (rc != 0 || style == STYLE_NONE) return rc;
  return style == STYLE_NAMED ? bind_object(s, c, err) : bind_array(s, c, style, err);
}
