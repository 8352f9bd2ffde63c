/*
 * Internal to the live-query module: what the registry (livequery.c) and the
 * results, diffs and frames (livequery_diff.c) share. Not part of the
 * library's API; the loop-thread rules of livequery.h apply.
 */
#ifndef RT_LIVE_LIVEQUERY_INTERNAL_H
#define RT_LIVE_LIVEQUERY_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "livequery.h"

/* A cached result: the rows text exactly as pushed, plus a key index when keyed. */
typedef struct {
  char *text;          /* one allocation: columns, rows, keys */
  size_t *nums;        /* one allocation: off, koff, index (NULL for notified rows) */
  const char *columns; /* JSON array of column names */
  size_t columns_len;  /* bytes of columns */
  const char *rows;    /* "[r0,r1,...]" */
  size_t rows_len;     /* bytes of rows */
  size_t nrows;        /* rows (0 when not split, i.e. notified) */
  const size_t *off;   /* nrows + 1 starts: row i is rows[off[i] .. off[i+1] - 1) */
  const char *keys;    /* keys concatenated (keyed only) */
  const size_t *koff;  /* nrows + 1 starts: key i is keys[koff[i] .. koff[i+1]) */
  size_t *index;       /* key hash table: row + 1, 0 = empty (keyed only) */
  size_t icap;         /* slots in index, a power of two */
  int keyed;           /* every row has a key and the keys are distinct */
} rt_lq_cached_t;

/* One piece of a push body, borrowed from a cached result, a literal or a diff text. */
typedef struct {
  const char *p; /* bytes */
  size_t n;      /* length */
} rt_lq_seg_t;

/* The shared part of a push: what follows the per-subscriber prefix. */
typedef struct {
  rt_lq_push_kind_t kind; /* ack, result or diff; 0 = nothing to push */
  rt_lq_seg_t seg[5];     /* body pieces, in order */
  size_t nseg;            /* pieces used */
} rt_lq_body_t;

static inline int rt_lq_same_text(const char *a, size_t alen, const char *b, size_t blen) {
  return alen == blen && memcmp(a, b, alen) == 0;
}

/* Frees what a cached result holds and zeroes it; a zeroed one is fine. */
void rt_lq_cached_destroy(rt_lq_cached_t *r);

/*
 * Builds a cached result from the caller's `in` (borrowed, copied), its keys
 * indexed with the registry's hash `seed`. Returns 0, RT_EINVAL for an
 * inconsistent `in` or RT_ENOMEM; on error *r holds nothing to free.
 */
int rt_lq_cached_from_result(uint64_t seed, const rt_lq_result_t *in, rt_lq_cached_t *r);

/*
 * Builds a notified result: `rows` (len bytes, a validated JSON array) as is,
 * unsplit and unkeyed, with the columns of `prev` ([] when NULL). Returns 0
 * or RT_ENOMEM.
 */
int rt_lq_cached_from_rows(const rt_lq_cached_t *prev, const char *rows, size_t len,
                           rt_lq_cached_t *r);

/*
 * Sets *b to the body of an ack (columns and rows) or, for any other kind,
 * of a full result. The body borrows r's text: it is valid while r lives.
 */
void rt_lq_body_result(rt_lq_body_t *b, rt_lq_push_kind_t kind, const rt_lq_cached_t *r);

/*
 * One subscriber's sealed text frame: the prefix naming `id` (and the
 * request id for an ack when has_req_id), then a copy of the body. Returns
 * a new reference, or NULL on OOM.
 */
rt_frame_t *rt_lq_frame_build(const rt_lq_body_t *b, const char *id, int has_req_id,
                              int64_t req_id);

/*
 * Chooses the push from `old` (NULL when the instance has no result yet:
 * an ack) to `nw` by the diff rules of livequery.h, into *b (b->kind 0: no
 * push). A diff body is written into *text, a new rt_malloc'd buffer the
 * caller frees after the push (left untouched otherwise; start it at NULL).
 * Returns 0 or RT_ENOMEM.
 */
int rt_lq_plan_push(uint64_t seed, const rt_lq_cached_t *old, const rt_lq_cached_t *nw,
                    rt_lq_body_t *b, char **text);

#endif
