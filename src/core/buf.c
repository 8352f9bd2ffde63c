#include "buf.h"

#include <assert.h>
#include <string.h>

#include "alloc.h"
#include "realtime/realtime.h"

rt_frame_t *rt_frame_new(size_t cap) {
  rt_frame_t *f = rt_malloc(sizeof(*f) + RT_FRAME_HEADROOM + cap);
  if (f == NULL) return NULL;
  f->refcnt = 1;
  f->off = RT_FRAME_HEADROOM;
  f->len = 0;
  f->cap = cap;
  return f;
}

void rt_frame_append(rt_frame_t *f, const void *p, size_t n) {
  assert(f->len + n <= f->cap);
  memcpy(rt_frame_payload(f) + f->len, p, n);
  f->len += n;
}

/*
 * RFC 6455 5.2: server frames are unmasked; the length takes 7, 7+16 or
 * 7+64 bits. Writes the header for an n-byte payload at p; returns its size.
 */
static size_t write_header(uint8_t *p, int opcode, size_t n) {
  size_t h = rt_frame_header_len(n);
  p[0] = (uint8_t)(0x80 | (opcode & 0x0f));
  if (h == 2) {
    p[1] = (uint8_t)n;
  } else if (h == 4) {
    p[1] = 126;
    p[2] = (uint8_t)(n >> 8);
    p[3] = (uint8_t)n;
  } else {
    p[1] = 127;
    for (int i = 0; i < 8; i++) p[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
  }
  return h;
}

void rt_frame_seal(rt_frame_t *f, int opcode) {
  uint8_t *p = rt_frame_payload(f) - rt_frame_header_len(f->len);
  write_header(p, opcode, f->len);
  f->off = (uint32_t)(p - f->bytes);
}

void rt_frame_append_header(rt_frame_t *f, int opcode, size_t payload_len) {
  assert(f->len + rt_frame_header_len(payload_len) <= f->cap);
  f->len += write_header(rt_frame_payload(f) + f->len, opcode, payload_len);
}

rt_frame_t *rt_frame_copy(const rt_frame_t *f) {
  size_t n = sizeof(*f) + RT_FRAME_HEADROOM + f->cap;
  rt_frame_t *c = rt_malloc(n);
  if (c == NULL) return NULL;
  memcpy(c, f, n);
  c->refcnt = 1;
  return c;
}

void rt_frame_unref(rt_frame_t *f) {
  if (f == NULL) return;
  assert(f->refcnt > 0);
  if (--f->refcnt == 0) rt_free(f);
}

void rt_sendq_init(rt_sendq_t *q) { memset(q, 0, sizeof(*q)); }

void rt_sendq_destroy(rt_sendq_t *q) {
  for (size_t i = 0; i < q->count; i++) rt_frame_unref(rt_sendq_at(q, i)->s.frame);
  rt_free(q->ring);
  rt_sendq_init(q);
}

/* Out of line, so the inline pushes stay a handful of instructions. */
__attribute__((noinline)) int rt_sendq_grow(rt_sendq_t *q) {
  /* One slot first (24 bytes, the smallest malloc chunk): an idle client's queue
   * holds its handshake reply, then an ack; a busy one doubles to its need once. */
  size_t ncap = q->cap ? q->cap * 2 : 1;
  rt_sendq_entry_t *nr = rt_malloc(ncap * sizeof(*nr));
  if (nr == NULL) return RT_ENOMEM;
  for (size_t i = 0; i < q->count; i++) nr[i] = *rt_sendq_at(q, i);
  rt_free(q->ring);
  q->ring = nr;
  q->cap = ncap;
  q->head = 0;
  return 0;
}

/* The whole queue went out (the common case of a flush): no per-entry length arithmetic. */
static size_t consume_all(rt_sendq_t *q) {
  size_t frames = 0;
  for (size_t i = 0; i < q->count; i++) {
    rt_sendq_entry_t *e = rt_sendq_at(q, i);
    frames += e->frames;
    rt_frame_unref(e->s.frame);
  }
  q->head = (q->head + q->count) & (q->cap - 1);
  q->count = 0;
  q->pinned = 0;
  q->bytes = 0;
  return frames;
}

size_t rt_sendq_consume(rt_sendq_t *q, size_t n) {
  assert(n <= q->bytes);
  if (n == q->bytes && n > 0) return consume_all(q);
  size_t frames = 0;
  q->bytes -= n;
  while (n > 0) {
    rt_sendq_entry_t *e = rt_sendq_at(q, 0);
    if (n < e->s.len) {
      e->s.off += (uint32_t)n;
      e->s.len -= (uint32_t)n;
      rt_sendq_pin(q, 1);
      break;
    }
    n -= e->s.len;
    frames += e->frames;
    rt_frame_unref(e->s.frame);
    q->head = (q->head + 1) & (q->cap - 1);
    q->count--;
    if (q->pinned > 0) q->pinned--;
  }
  return frames;
}

void rt_sendq_drop_unpinned(rt_sendq_t *q) {
  while (q->count > q->pinned) {
    rt_sendq_entry_t *e = rt_sendq_at(q, q->count - 1);
    q->count--;
    q->bytes -= e->s.len;
    rt_frame_unref(e->s.frame);
  }
}
