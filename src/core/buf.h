/*
 * Refcounted immutable frames and the per-connection send queue.
 *
 * An rt_frame_t is one allocation: a small header followed by the bytes. The
 * payload is written starting RT_FRAME_HEADROOM bytes in, so the WebSocket
 * header (2, 4 or 10 bytes) can be placed right before it without moving the
 * payload (rt_frame_seal). Once sealed and shared a frame is never modified;
 * every holder owns one reference. Refcounts are plain integers: a frame lives
 * on one loop thread; another worker gets a copy (rt_frame_copy).
 */
#ifndef RT_CORE_BUF_H
#define RT_CORE_BUF_H

#include <stddef.h>
#include <stdint.h>

#define RT_FRAME_HEADROOM 10

typedef struct rt_frame_s {
  uint32_t refcnt; /* holders; freed when it drops to 0 */
  uint32_t off;    /* first byte of the wire frame within bytes[] */
  size_t len;      /* bytes of the payload written so far (after the headroom) */
  size_t cap;      /* payload capacity */
  uint8_t bytes[]; /* RT_FRAME_HEADROOM + cap bytes */
} rt_frame_t;

/* Returns a new frame (refcnt 1) with room for `cap` payload bytes, or NULL. */
rt_frame_t *rt_frame_new(size_t cap);
/* Payload area (bytes + RT_FRAME_HEADROOM). */
static inline uint8_t *rt_frame_payload(rt_frame_t *f) { return f->bytes + RT_FRAME_HEADROOM; }
/* Appends bytes to the payload; the caller sized the frame, so overflow is a bug (asserted). */
void rt_frame_append(rt_frame_t *f, const void *p, size_t n);
/*
 * Writes the unmasked WebSocket header (FIN set, `opcode`) right before the
 * payload and sets `off`. After this the frame is immutable.
 */
void rt_frame_seal(rt_frame_t *f, int opcode);
/* The wire bytes of a sealed frame. */
static inline const uint8_t *rt_frame_wire(const rt_frame_t *f) { return f->bytes + f->off; }
static inline size_t rt_frame_wire_len(const rt_frame_t *f) {
  return RT_FRAME_HEADROOM - f->off + f->len;
}
/* Returns a new reference (the same pointer). */
static inline rt_frame_t *rt_frame_ref(rt_frame_t *f) { f->refcnt++; return f; }
/*
 * Returns a new frame (refcnt 1) with the same bytes, or NULL: how a frame
 * crosses to another worker's thread (refcounts are never shared across threads).
 */
rt_frame_t *rt_frame_copy(const rt_frame_t *f);
/* Drops one reference; frees at zero. NULL is a no-op. */
void rt_frame_unref(rt_frame_t *f);

/*
 * Send queue: a growable ring of frame references plus the number of bytes of
 * the head frame already written. Pushing takes a reference the caller hands
 * over; the ring grows by doubling so a steady state allocates nothing.
 */
typedef struct {
  rt_frame_t **ring; /* capacity `cap`, a power of two */
  size_t cap;        /* ring slots */
  size_t head;       /* index of the oldest frame */
  size_t count;      /* frames queued */
  size_t head_sent;  /* bytes of the head frame already written */
  size_t bytes;      /* unsent wire bytes across the queue */
} rt_sendq_t;

void rt_sendq_init(rt_sendq_t *q);
/* Unrefs every queued frame and frees the ring. */
void rt_sendq_destroy(rt_sendq_t *q);
/* Doubles the ring (the slow path of rt_sendq_push). Returns 0 or RT_ENOMEM. */
int rt_sendq_grow(rt_sendq_t *q);
/*
 * Takes ownership of one reference to `f`. Returns 0 or RT_ENOMEM (ref not
 * taken). Inline: it runs once per delivery, and a call with the growth path
 * folded in cost as much as the push itself (callgrind, scenario A).
 */
static inline int rt_sendq_push(rt_sendq_t *q, rt_frame_t *f) {
  if (q->count == q->cap) {
    int r = rt_sendq_grow(q);
    if (r != 0) return r;
  }
  q->ring[(q->head + q->count) & (q->cap - 1)] = f;
  q->count++;
  q->bytes += rt_frame_wire_len(f);
  return 0;
}
/* The i-th queued frame (0 = head), borrowed. */
static inline rt_frame_t *rt_sendq_at(const rt_sendq_t *q, size_t i) {
  return q->ring[(q->head + i) & (q->cap - 1)];
}
/*
 * Marks `n` bytes as written: pops (and unrefs) every frame completed by them
 * and advances head_sent within the next. `n` must not exceed q->bytes.
 */
void rt_sendq_consume(rt_sendq_t *q, size_t n);

/*
 * Keeps the first `keep` frames and unrefs the rest (newest first). The head
 * frame must be kept when it is partly written (head_sent > 0).
 */
void rt_sendq_truncate(rt_sendq_t *q, size_t keep);

#endif
