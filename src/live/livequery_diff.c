/*
 * Live-query results, diffs and push frames (livequery.h: the diff rules).
 * Knows nothing of subscriptions or instances: livequery.c hands it two
 * cached results and gets back the body of the push (none, ack, full result
 * or keyed diff), then has it framed once per subscriber.
 *
 * A cached result is at most two allocations whatever its size: the text
 * (columns, rows joined as pushed, keys) and the numbers (row and key
 * offsets, the key hash index). A keyed diff is classified in one pass over
 * each side through those indexes, sized exactly, and written into one
 * buffer; when it would be larger than the full result, the full result is
 * pushed instead.
 */
#include "livequery_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "hash.h"
#include "proto.h"
#include "ws_codec.h"

#define PREFIX_MAX 128 /* per-subscriber frame prefix: type, "id", "subscription" */

#define LIT(s) (s), (sizeof(s) - 1)

/* ---------------------------------------------------------------- results */

void rt_lq_cached_destroy(rt_lq_cached_t *r) {
  rt_free(r->text);
  rt_free(r->nums);
  memset(r, 0, sizeof(*r));
}

static size_t row_len(const rt_lq_cached_t *r, size_t i) { return r->off[i + 1] - r->off[i] - 1; }
static const char *row_at(const rt_lq_cached_t *r, size_t i) { return r->rows + r->off[i]; }
static size_t key_len(const rt_lq_cached_t *r, size_t i) { return r->koff[i + 1] - r->koff[i]; }
static const char *key_at(const rt_lq_cached_t *r, size_t i) { return r->keys + r->koff[i]; }

/* Row index of `key` in a keyed result, or SIZE_MAX. */
static size_t find_key(uint64_t seed, const rt_lq_cached_t *r, const char *key, size_t n) {
  size_t mask = r->icap - 1;
  for (size_t i = (size_t)rt_hash_bytes(seed, key, n) & mask;; i = (i + 1) & mask) {
    size_t row = r->index[i];
    if (row == 0) return SIZE_MAX;
    if (key_len(r, row - 1) == n && memcmp(key_at(r, row - 1), key, n) == 0) return row - 1;
  }
}

/* Fills the key index; a duplicate key makes the result unkeyed. */
static void index_keys(uint64_t seed, rt_lq_cached_t *r) {
  size_t mask = r->icap - 1;
  for (size_t row = 0; row < r->nrows; row++) {
    if (find_key(seed, r, key_at(r, row), key_len(r, row)) != SIZE_MAX) {
      r->keyed = 0;
      return;
    }
    size_t i = (size_t)rt_hash_bytes(seed, key_at(r, row), key_len(r, row)) & mask;
    while (r->index[i] != 0) i = (i + 1) & mask;
    r->index[i] = row + 1;
  }
}

static int add_size(size_t *acc, size_t n) {
  if (n > SIZE_MAX / 4 - *acc) return RT_ENOMEM;
  *acc += n;
  return 0;
}

/* Bytes of the rows array text and of the keys; *keyed cleared when a key is missing. */
static int measure_input(const rt_lq_result_t *in, size_t *rows_len, size_t *keys_len,
                         int *keyed) {
  *rows_len = 2 + (in->nrows > 0 ? in->nrows - 1 : 0);
  *keys_len = 0;
  *keyed = in->keyed;
  for (size_t i = 0; i < in->nrows; i++) {
    if (in->rows[i] == NULL || add_size(rows_len, in->row_lens[i]) != 0) return RT_EINVAL;
    if (*keyed && in->keys[i] == NULL) {
      *keyed = 0;
      *keys_len = 0;
    }
    if (*keyed && add_size(keys_len, in->key_lens[i]) != 0) return RT_EINVAL;
  }
  return 0;
}

static int check_input(const rt_lq_result_t *in) {
  if (in->columns == NULL || in->columns_len == 0) return RT_EINVAL;
  if (in->nrows > 0 && (in->rows == NULL || in->row_lens == NULL)) return RT_EINVAL;
  if (in->keyed && in->nrows > 0 && (in->keys == NULL || in->key_lens == NULL)) return RT_EINVAL;
  return 0;
}

static size_t pow2_at_least(size_t n) {
  size_t c = 2;
  while (c < n) c *= 2;
  return c;
}

/* Allocates r's two blocks for n rows; the key part only when keyed. */
static int result_alloc(rt_lq_cached_t *r, size_t text_len, size_t n, int keyed) {
  size_t icap = keyed ? pow2_at_least(n * 2) : 0;
  size_t nnums = (n + 1) * (keyed ? 2 : 1) + icap;
  r->text = rt_malloc(text_len);
  r->nums = rt_calloc(nnums, sizeof(size_t));
  if (r->text == NULL || r->nums == NULL) {
    rt_lq_cached_destroy(r);
    return RT_ENOMEM;
  }
  r->icap = icap;
  r->keyed = keyed;
  r->nrows = n;
  return 0;
}

/* Copies the rows into "[r0,r1,...]" at dst and records each row's start. */
static void copy_rows(const rt_lq_result_t *in, char *dst, size_t *off) {
  size_t pos = 1;
  dst[0] = '[';
  for (size_t i = 0; i < in->nrows; i++) {
    off[i] = pos;
    memcpy(dst + pos, in->rows[i], in->row_lens[i]);
    pos += in->row_lens[i];
    dst[pos++] = i + 1 < in->nrows ? ',' : ']';
  }
  off[in->nrows] = pos;
  if (in->nrows == 0) dst[pos++] = ']';
}

static void copy_keys(const rt_lq_result_t *in, char *dst, size_t *koff) {
  size_t pos = 0;
  for (size_t i = 0; i < in->nrows; i++) {
    koff[i] = pos;
    memcpy(dst + pos, in->keys[i], in->key_lens[i]);
    pos += in->key_lens[i];
  }
  koff[in->nrows] = pos;
}

/*
 * Builds a cached result from the caller's: the rows joined into the array
 * text pushed as is, the keys with a hash index. Two allocations.
 */
int rt_lq_cached_from_result(uint64_t seed, const rt_lq_result_t *in, rt_lq_cached_t *r) {
  size_t rows_len, keys_len, text_len = in->columns_len;
  int keyed;
  rt_strbuf_t key = {0}; /* ,"key":"<column>" after the columns: part of the ack's column section */
  memset(r, 0, sizeof(*r));
  if (check_input(in) != 0 || measure_input(in, &rows_len, &keys_len, &keyed) != 0 ||
      add_size(&text_len, rows_len) != 0 || add_size(&text_len, keys_len) != 0)
    return RT_EINVAL;
  if (keyed && in->key_column != NULL &&
      (rt_strbuf_append(&key, ",\"key\":", 7) != 0 ||
       rt_strbuf_append_json_string(&key, in->key_column, strlen(in->key_column)) != 0 ||
       add_size(&text_len, key.len) != 0)) {
    rt_strbuf_destroy(&key);
    return RT_ENOMEM;
  }
  size_t clen = in->columns_len + key.len;
  if (result_alloc(r, text_len, in->nrows, keyed) != 0) {
    rt_strbuf_destroy(&key);
    return RT_ENOMEM;
  }
  memcpy(r->text, in->columns, in->columns_len);
  if (key.len > 0) memcpy(r->text + in->columns_len, key.p, key.len);
  rt_strbuf_destroy(&key);
  r->columns = r->text;
  r->columns_len = clen;
  r->rows = r->text + clen;
  r->rows_len = rows_len;
  r->off = r->nums;
  copy_rows(in, r->text + clen, r->nums);
  if (keyed) {
    r->keys = r->rows + rows_len;
    r->koff = r->nums + in->nrows + 1;
    r->index = r->nums + 2 * (in->nrows + 1);
    copy_keys(in, r->text + clen + rows_len, r->nums + in->nrows + 1);
    index_keys(seed, r);
  }
  return 0;
}

/* A notified result: the given rows array text, unsplit and unkeyed, with kept columns. */
int rt_lq_cached_from_rows(const rt_lq_cached_t *prev, const char *rows, size_t len,
                           rt_lq_cached_t *r) {
  const char *cols = prev != NULL ? prev->columns : "[]";
  size_t cols_len = prev != NULL ? prev->columns_len : 2;
  memset(r, 0, sizeof(*r));
  r->text = rt_malloc(cols_len + len);
  if (r->text == NULL) return RT_ENOMEM;
  memcpy(r->text, cols, cols_len);
  memcpy(r->text + cols_len, rows, len);
  r->columns = r->text;
  r->columns_len = cols_len;
  r->rows = r->text + cols_len;
  r->rows_len = len;
  return 0;
}

/* ---------------------------------------------------------------- frames */

static void body_add(rt_lq_body_t *b, const char *p, size_t n) {
  b->seg[b->nseg++] = (rt_lq_seg_t){p, n};
}

/* `"columns":C,"rows":R}` for an ack, `"rows":R}` for a full result. */
void rt_lq_body_result(rt_lq_body_t *b, rt_lq_push_kind_t kind, const rt_lq_cached_t *r) {
  b->kind = kind;
  b->nseg = 0;
  if (kind == RT_LQ_PUSH_ACK) {
    body_add(b, LIT("\"columns\":"));
    body_add(b, r->columns, r->columns_len);
    body_add(b, LIT(",\"rows\":"));
  } else {
    body_add(b, LIT("\"rows\":"));
  }
  body_add(b, r->rows, r->rows_len);
  body_add(b, LIT("}"));
}

static char *put(char *p, const char *s, size_t n) {
  memcpy(p, s, n);
  return p + n;
}

/* Writes `{"type":"...",["id":N,]"subscription":"<id>",` and returns its length. */
static size_t write_prefix(char *out, rt_lq_push_kind_t kind, const char *id, int has_req_id,
                           int64_t req_id) {
  char *p = out;
  if (kind == RT_LQ_PUSH_ACK) {
    p = put(p, LIT("{\"type\":\"ack\","));
    if (has_req_id) p += snprintf(p, 32, "\"id\":%" PRId64 ",", req_id);
  } else if (kind == RT_LQ_PUSH_DIFF) {
    p = put(p, LIT("{\"type\":\"query_diff\","));
  } else {
    p = put(p, LIT("{\"type\":\"query_result\","));
  }
  p = put(p, LIT("\"subscription\":\""));
  p = put(p, id, strlen(id));
  p = put(p, LIT("\","));
  return (size_t)(p - out);
}

/* One subscriber's sealed frame: its prefix, then a copy of the shared body. */
rt_frame_t *rt_lq_frame_build(const rt_lq_body_t *b, const char *id, int has_req_id,
                              int64_t req_id) {
  char prefix[PREFIX_MAX];
  size_t plen = write_prefix(prefix, b->kind, id, has_req_id, req_id), total = plen;
  for (size_t i = 0; i < b->nseg; i++) total += b->seg[i].n;
  rt_frame_t *f = rt_frame_new(total);
  if (f == NULL) return NULL;
  rt_frame_append(f, prefix, plen);
  for (size_t i = 0; i < b->nseg; i++) rt_frame_append(f, b->seg[i].p, b->seg[i].n);
  rt_frame_seal(f, RT_WS_OP_TEXT);
  return f;
}

/* ---------------------------------------------------------------- diffs */

/* What one keyed diff holds: per-row marks and the exact encoded size. */
typedef struct {
  unsigned char *mark; /* per new row: 1 inserted, 2 updated; then per old row: 1 deleted */
  size_t count[3];     /* inserted, updated, deleted */
  size_t bytes[3];     /* their item bytes, commas excluded */
} diff_t;

static void classify(uint64_t seed, const rt_lq_cached_t *old, const rt_lq_cached_t *nw,
                     diff_t *d) {
  unsigned char *old_mark = d->mark + nw->nrows;
  for (size_t i = 0; i < nw->nrows; i++) {
    size_t j = find_key(seed, old, key_at(nw, i), key_len(nw, i));
    if (j != SIZE_MAX &&
        rt_lq_same_text(row_at(nw, i), row_len(nw, i), row_at(old, j), row_len(old, j)))
      continue;
    unsigned char m = j == SIZE_MAX ? 1 : 2;
    d->mark[i] = m;
    d->count[m - 1]++;
    d->bytes[m - 1] += row_len(nw, i);
  }
  for (size_t j = 0; j < old->nrows; j++) {
    if (find_key(seed, nw, key_at(old, j), key_len(old, j)) != SIZE_MAX) continue;
    old_mark[j] = 1;
    d->count[2]++;
    d->bytes[2] += key_len(old, j);
  }
}

static size_t diff_body_len(const diff_t *d) {
  size_t n = sizeof("\"inserted\":[],\"updated\":[],\"deleted\":[]}") - 1;
  for (int k = 0; k < 3; k++) n += d->bytes[k] + (d->count[k] > 0 ? d->count[k] - 1 : 0);
  return n;
}

static char *put_items(char *p, const rt_lq_cached_t *r, const unsigned char *mark, unsigned char m,
                       int keys) {
  int first = 1;
  for (size_t i = 0; i < r->nrows; i++) {
    if (mark[i] != m) continue;
    if (!first) *p++ = ',';
    first = 0;
    p = keys ? put(p, key_at(r, i), key_len(r, i)) : put(p, row_at(r, i), row_len(r, i));
  }
  return p;
}

static void write_diff(char *p, const rt_lq_cached_t *old, const rt_lq_cached_t *nw,
                       const diff_t *d) {
  p = put(p, LIT("\"inserted\":["));
  p = put_items(p, nw, d->mark, 1, 0);
  p = put(p, LIT("],\"updated\":["));
  p = put_items(p, nw, d->mark, 2, 0);
  p = put(p, LIT("],\"deleted\":["));
  p = put_items(p, old, d->mark + nw->nrows, 1, 1);
  put(p, LIT("]}"));
}

/*
 * Plans the push from `old` to `nw` (both keyed, same columns): no push
 * (kind 0), a full result when the diff frame would be larger, else the diff
 * body in *text (rt_malloc'd). The frames differ only in their type word
 * ("query_diff" vs "query_result") and body, so those decide.
 */
static int plan_diff(uint64_t seed, const rt_lq_cached_t *old, const rt_lq_cached_t *nw,
                     rt_lq_body_t *b, char **text) {
  diff_t d = {0};
  d.mark = rt_calloc(nw->nrows + old->nrows, 1);
  if (d.mark == NULL) return RT_ENOMEM;
  classify(seed, old, nw, &d);
  size_t len = diff_body_len(&d);
  size_t full = sizeof("query_result\"rows\":}") - 1 + nw->rows_len;
  int rc = 0;
  if (d.count[0] + d.count[1] + d.count[2] == 0) {
    b->kind = 0;
  } else if (len + sizeof("query_diff") - 1 > full) {
    rt_lq_body_result(b, RT_LQ_PUSH_RESULT, nw);
  } else if ((*text = rt_malloc(len)) == NULL) {
    rc = RT_ENOMEM;
  } else {
    write_diff(*text, old, nw, &d);
    b->kind = RT_LQ_PUSH_DIFF;
    b->nseg = 0;
    body_add(b, *text, len);
  }
  rt_free(d.mark);
  return rc;
}

/*
 * Chooses the push for a new result; b->kind 0 means none. *text receives a
 * diff body to free.
 */
int rt_lq_plan_push(uint64_t seed, const rt_lq_cached_t *old, const rt_lq_cached_t *nw,
                    rt_lq_body_t *b, char **text) {
  if (old == NULL) {
    rt_lq_body_result(b, RT_LQ_PUSH_ACK, nw);
    return 0;
  }
  int same_cols = rt_lq_same_text(old->columns, old->columns_len, nw->columns, nw->columns_len);
  if (same_cols && old->keyed && nw->keyed) return plan_diff(seed, old, nw, b, text);
  if (same_cols && rt_lq_same_text(old->rows, old->rows_len, nw->rows, nw->rows_len)) {
    b->kind = 0;
    return 0;
  }
  rt_lq_body_result(b, RT_LQ_PUSH_RESULT, nw);
  return 0;
}
