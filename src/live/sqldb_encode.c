/*
 * Row encoding (sqldb.h: rt_sqldb_result_row) and the results it fills.
 *
 * A run encodes each row once, straight from sqlite3_column_* into one
 * growing text buffer: the `"name":` prefixes are escaped once per run, not
 * per row, and the limits are checked as bytes are added, so an oversized
 * value is refused before it is copied. Rows and keys are kept as spans
 * into that text, so a result is a handful of allocations however many rows
 * it has, and it holds no reference to the connection.
 */
#include "sqldb_encode.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

/* Where one row or key lies in a result's text. */
struct span {
  size_t off; /* first byte */
  size_t len; /* bytes, without the NUL that follows */
};

struct rt_sqldb_result_s {
  size_t ncols;          /* columns */
  rt_strbuf_t names;     /* unique column names, each followed by a NUL */
  size_t *name_off;      /* start of column i's name in names */
  size_t nrows;          /* rows */
  size_t cap;            /* rows (and keys) allocated */
  struct span *rows;     /* row i's JSON in text */
  rt_strbuf_t text;      /* row JSON objects, each followed by a NUL */
  struct span *keys;     /* row i's key in keytext; NULL when the result has no keys */
  rt_strbuf_t keytext;   /* key JSON texts, each followed by a NUL */
  int has_keys;          /* every row has a distinct key */
  int schema_changed;    /* the statement was re-prepared during the run */
};

/* -------------------------------------------------------------------- runs */

int rt_sqldb_run_init(rt_sqldb_run_t *run, sqlite3_stmt *stmt, const rt_sqldb_limits_t *limits) {
  *run = (rt_sqldb_run_t){.stmt = stmt, .key_col = -1};
  run->r = rt_calloc(1, sizeof(rt_sqldb_result_t));
  if (run->r == NULL) return RT_ENOMEM;
  if (limits != NULL) run->lim = *limits;
  return 0;
}

void rt_sqldb_run_mark_schema_changed(rt_sqldb_run_t *run) { run->r->schema_changed = 1; }

rt_sqldb_result_t *rt_sqldb_run_finish(rt_sqldb_run_t *run, int keep) {
  rt_sqldb_result_t *r = run->r;
  rt_strbuf_destroy(&run->prefixes);
  rt_free(run->prefix_off);
  run->prefix_off = NULL;
  run->r = NULL;
  if (keep) return r;
  rt_sqldb_result_free(r);
  return NULL;
}

static int append_str(rt_strbuf_t *b, const char *s) { return rt_strbuf_append(b, s, strlen(s)); }

/*
 * The shortest of %.15g..%.17g that reads back to the same double (15
 * digits always do for values typed as decimals, like 0.1), with ".0" added
 * to integral values so a REAL stays recognisable. JSON has no NaN or
 * infinity: those become null.
 */
static int append_real(rt_strbuf_t *b, double v) {
  char text[40];
  if (!isfinite(v)) return append_str(b, "null");
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(text, sizeof(text), "%.*g", prec, v);
    if (strtod(text, NULL) == v) break;
  }
  if (strpbrk(text, ".e") == NULL) strcat(text, ".0");
  return append_str(b, text);
}

static int append_base64(rt_strbuf_t *b, const unsigned char *p, size_t n) {
  static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char chunk[256];
  size_t k = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                 (i + 2 < n ? p[i + 2] : 0);
    chunk[k++] = digits[v >> 18 & 63];
    chunk[k++] = digits[v >> 12 & 63];
    chunk[k++] = i + 1 < n ? digits[v >> 6 & 63] : '=';
    chunk[k++] = i + 2 < n ? digits[v & 63] : '=';
    if (k == sizeof(chunk)) {
      if (rt_strbuf_append(b, chunk, k) != 0) return RT_ENOMEM;
      k = 0;
    }
  }
  return rt_strbuf_append(b, chunk, k);
}

/* Refuses, before encoding it, a value whose raw size alone would pass max_bytes. */
static int check_value_size(rt_sqldb_run_t *run, size_t row_start, size_t n, rt_errbuf_t *err) {
  size_t used = run->bytes + (run->r->text.len - row_start);
  if (run->lim.max_bytes != 0 && (n > run->lim.max_bytes || used > run->lim.max_bytes - n))
    return rt_errbuf_set(err, RT_EQLIMIT, "The result is larger than %zu bytes",
                         run->lim.max_bytes);
  return 0;
}

/* Text and blob bytes; NULL from SQLite with a non-empty value means it ran out of memory. */
static int column_bytes(sqlite3_stmt *s, int i, int type, const void **p, size_t *n) {
  *p = type == SQLITE_TEXT ? (const void *)sqlite3_column_text(s, i) : sqlite3_column_blob(s, i);
  *n = (size_t)sqlite3_column_bytes(s, i);
  if (*p == NULL && (type == SQLITE_TEXT || *n > 0)) return RT_ENOMEM;
  return 0;
}

/* Appends column i of the current row as JSON (sqldb.h: rt_sqldb_result_row). */
static int append_value(rt_sqldb_run_t *run, int i, size_t row_start, rt_errbuf_t *err) {
  sqlite3_stmt *s = run->stmt;
  rt_strbuf_t *b = &run->r->text;
  int type = sqlite3_column_type(s, i);
  char num[24];
  const void *p;
  size_t n;
  switch (type) {
    case SQLITE_INTEGER:
      snprintf(num, sizeof(num), "%" PRId64, (int64_t)sqlite3_column_int64(s, i));
      return append_str(b, num);
    case SQLITE_FLOAT: return append_real(b, sqlite3_column_double(s, i));
    case SQLITE_NULL: return append_str(b, "null");
    default: break;
  }
  if (column_bytes(s, i, type, &p, &n) != 0) return RT_ENOMEM;
  int rc = check_value_size(run, row_start, n, err);
  if (rc != 0) return rc;
  if (type == SQLITE_TEXT) return rt_strbuf_append_json_string(b, p, n);
  if (append_str(b, "{\"$base64\":\"") != 0 || append_base64(b, p, n) != 0) return RT_ENOMEM;
  return append_str(b, "\"}");
}

/* Room for one more row (and its key when the run has keys). */
static int grow_rows(rt_sqldb_result_t *r, int with_keys) {
  if (r->nrows < r->cap) return 0;
  size_t cap = r->cap ? r->cap * 2 : 16;
  struct span *rows = rt_realloc(r->rows, cap * sizeof(*rows));
  if (rows == NULL) return RT_ENOMEM;
  r->rows = rows;
  if (with_keys) {
    struct span *keys = rt_realloc(r->keys, cap * sizeof(*keys));
    if (keys == NULL) return RT_ENOMEM;
    r->keys = keys;
  }
  r->cap = cap;
  return 0;
}

static int append_key(rt_sqldb_result_t *r, size_t from) {
  struct span k = {r->keytext.len, r->text.len - from};
  if (rt_strbuf_append(&r->keytext, r->text.p + from, k.len) != 0 ||
      rt_strbuf_append(&r->keytext, "", 1) != 0)
    return RT_ENOMEM;
  r->keys[r->nrows] = k;
  return 0;
}

static int row_error(int rc, rt_errbuf_t *err) {
  return rc == RT_ENOMEM ? rt_errbuf_set(err, rc, "Out of memory") : rc;
}

/* Encodes the current row as {"col":value,...} and its key, within the limits. */
int rt_sqldb_run_row(rt_sqldb_run_t *run, rt_errbuf_t *err) {
  rt_sqldb_result_t *r = run->r;
  int key_col = run->key_col;
  if (run->lim.max_rows != 0 && r->nrows == run->lim.max_rows)
    return rt_errbuf_set(err, RT_EQLIMIT, "The result has more than %zu rows", run->lim.max_rows);
  int rc = grow_rows(r, key_col >= 0);
  size_t start = r->text.len;
  if (rc == 0) rc = rt_strbuf_append(&r->text, "{", 1);
  for (size_t i = 0; rc == 0 && i < r->ncols; i++) {
    size_t off = run->prefix_off[i], plen = run->prefix_off[i + 1] - off;
    if (i > 0) rc = rt_strbuf_append(&r->text, ",", 1);
    if (rc == 0) rc = rt_strbuf_append(&r->text, run->prefixes.p + off, plen);
    size_t vstart = r->text.len;
    if (rc == 0) rc = append_value(run, (int)i, start, err);
    if (rc == 0 && (int)i == key_col) rc = append_key(r, vstart);
  }
  if (rc == 0) rc = rt_strbuf_append(&r->text, "}", 1);
  if (rc == 0) rc = check_value_size(run, start, 0, err);
  if (rc != 0) return row_error(rc, err);
  r->rows[r->nrows] = (struct span){start, r->text.len - start};
  run->bytes += r->rows[r->nrows].len;
  r->nrows++;
  return row_error(rt_strbuf_append(&r->text, "", 1), err);
}

/* --------------------------------------------------------------- columns */

static int name_taken(const rt_sqldb_result_t *r, size_t upto, const char *name) {
  for (size_t i = 0; i < upto; i++)
    if (strcmp(r->names.p + r->name_off[i], name) == 0) return 1;
  return 0;
}

/* Appends column i's name, suffixed ":2", ":3"... while an earlier column has it. */
static int append_unique_name(rt_sqldb_result_t *r, size_t i, const char *base) {
  size_t blen = strlen(base);
  char *name = rt_malloc(blen + 16);
  if (name == NULL) return RT_ENOMEM;
  memcpy(name, base, blen + 1);
  for (unsigned k = 2; name_taken(r, i, name); k++) snprintf(name + blen, 16, ":%u", k);
  r->name_off[i] = r->names.len;
  int rc = rt_strbuf_append(&r->names, name, strlen(name) + 1);
  rt_free(name);
  return rc;
}

/* Column names and their escaped `"name":` prefixes, for the statement as prepared now. */
int rt_sqldb_run_columns(rt_sqldb_run_t *run, int key_col) {
  rt_sqldb_result_t *r = run->r;
  sqlite3_stmt *s = run->stmt;
  run->key_col = key_col;
  r->ncols = (size_t)sqlite3_column_count(s);
  r->name_off = rt_calloc(r->ncols, sizeof(size_t));
  run->prefix_off = rt_calloc(r->ncols + 1, sizeof(size_t));
  if (r->name_off == NULL || run->prefix_off == NULL) return RT_ENOMEM;
  for (size_t i = 0; i < r->ncols; i++) {
    const char *base = sqlite3_column_name(s, (int)i);
    if (base == NULL || append_unique_name(r, i, base) != 0) return RT_ENOMEM;
    const char *name = r->names.p + r->name_off[i];
    if (rt_strbuf_append_json_string(&run->prefixes, name, strlen(name)) != 0 ||
        rt_strbuf_append(&run->prefixes, ":", 1) != 0)
      return RT_ENOMEM;
    run->prefix_off[i + 1] = run->prefixes.len;
  }
  return 0;
}

/* -------------------------------------------------------------------- keys */

/* A key's bytes, for sorting. */
struct keyref {
  const char *p; /* first byte */
  size_t len;    /* bytes */
};

static int compare_keys(const void *a, const void *b) {
  const struct keyref *x = a, *y = b;
  size_t n = x->len < y->len ? x->len : y->len;
  int c = memcmp(x->p, y->p, n);
  return c != 0 ? c : (x->len > y->len) - (x->len < y->len);
}

/* Keys count only when all differ: sorted, equal keys end up side by side. */
int rt_sqldb_run_check_keys(rt_sqldb_run_t *run) {
  rt_sqldb_result_t *r = run->r;
  struct keyref *sorted = rt_malloc((r->nrows ? r->nrows : 1) * sizeof(*sorted));
  if (sorted == NULL) return RT_ENOMEM;
  for (size_t i = 0; i < r->nrows; i++)
    sorted[i] = (struct keyref){r->keytext.p + r->keys[i].off, r->keys[i].len};
  qsort(sorted, r->nrows, sizeof(*sorted), compare_keys);
  r->has_keys = 1;
  for (size_t i = 1; i < r->nrows && r->has_keys; i++)
    r->has_keys = compare_keys(&sorted[i - 1], &sorted[i]) != 0;
  rt_free(sorted);
  if (!r->has_keys) {
    rt_free(r->keys);
    r->keys = NULL;
    rt_strbuf_destroy(&r->keytext);
  }
  return 0;
}

/* ----------------------------------------------------------------- results */

void rt_sqldb_result_free(rt_sqldb_result_t *r) {
  if (r == NULL) return;
  rt_strbuf_destroy(&r->names);
  rt_free(r->name_off);
  rt_free(r->rows);
  rt_strbuf_destroy(&r->text);
  rt_free(r->keys);
  rt_strbuf_destroy(&r->keytext);
  rt_free(r);
}

size_t rt_sqldb_result_column_count(const rt_sqldb_result_t *r) { return r->ncols; }

const char *rt_sqldb_result_column(const rt_sqldb_result_t *r, size_t i) {
  assert(i < r->ncols);
  return r->names.p + r->name_off[i];
}

size_t rt_sqldb_result_row_count(const rt_sqldb_result_t *r) { return r->nrows; }

const char *rt_sqldb_result_row(const rt_sqldb_result_t *r, size_t i, size_t *len) {
  assert(i < r->nrows);
  if (len != NULL) *len = r->rows[i].len;
  return r->text.p + r->rows[i].off;
}

int rt_sqldb_result_has_keys(const rt_sqldb_result_t *r) { return r->has_keys; }

const char *rt_sqldb_result_key(const rt_sqldb_result_t *r, size_t i, size_t *len) {
  assert(i < r->nrows);
  if (!r->has_keys) return NULL;
  if (len != NULL) *len = r->keys[i].len;
  return r->keytext.p + r->keys[i].off;
}

int rt_sqldb_result_schema_changed(const rt_sqldb_result_t *r) { return r->schema_changed; }

/* Sized exactly first: one allocation for what may be a large result. */
char *rt_sqldb_result_rows_json(const rt_sqldb_result_t *r, size_t *len) {
  size_t n = 2 + (r->nrows > 0 ? r->nrows - 1 : 0);
  for (size_t i = 0; i < r->nrows; i++) n += r->rows[i].len;
  char *out = rt_malloc(n + 1), *w = out;
  if (out == NULL) return NULL;
  *w++ = '[';
  for (size_t i = 0; i < r->nrows; i++) {
    if (i > 0) *w++ = ',';
    memcpy(w, r->text.p + r->rows[i].off, r->rows[i].len);
    w += r->rows[i].len;
  }
  *w++ = ']';
  *w = '\0';
  if (len != NULL) *len = n;
  return out;
}

char *rt_sqldb_result_columns_json(const rt_sqldb_result_t *r, size_t *len) {
  rt_strbuf_t b = {0};
  int rc = rt_strbuf_append(&b, "[", 1);
  for (size_t i = 0; rc == 0 && i < r->ncols; i++) {
    const char *name = rt_sqldb_result_column(r, i);
    if (i > 0) rc = rt_strbuf_append(&b, ",", 1);
    if (rc == 0) rc = rt_strbuf_append_json_string(&b, name, strlen(name));
  }
  if (rc == 0) rc = rt_strbuf_append(&b, "]", 1);
  if (rc != 0) {
    rt_strbuf_destroy(&b);
    return NULL;
  }
  if (len != NULL) *len = b.len;
  return b.p;
}
