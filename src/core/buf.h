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

#include "realtime/realtime.h"

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
 * Appends an unmasked WebSocket header (FIN set, `opcode`) for a payload of
 * `payload_len` bytes to the payload area: how a batch frame (one buffer
 * holding several complete frames, see rt_slice_t) gets each frame's header.
 */
void rt_frame_append_header(rt_frame_t *f, int opcode, size_t payload_len);
/* Bytes of the header rt_frame_append_header writes for that payload (2, 4 or 10). */
static inline size_t rt_frame_header_len(size_t payload_len) {
  return payload_len < 126 ? 2 : payload_len <= 0xffff ? 4 : 10;
}

/*
 * A byte range of a frame: the wire bytes of one message or of several
 * consecutive ones. A publish's message is a slice of its channel's batch
 * frame, which holds the complete WebSocket frames of the channel's messages
 * of one loop iteration back to back (src/core/hub.c); every other frame is
 * one slice covering its whole wire (rt_frame_wire). Bytes inside a slice
 * that a subscriber can see never change: a batch only grows past its end.
 */
typedef struct {
  rt_frame_t *frame; /* the buffer (whether a reference is owned is said where it is passed) */
  uint32_t off;      /* first byte within frame->bytes */
  uint32_t len;      /* bytes */
} rt_slice_t;

/*
 * Send queue: a growable ring of slices, each holding one frame reference.
 * When a message's slice continues the tail entry's (same frame, starting
 * where the entry ends), the entry grows instead: the consecutive messages a
 * subscriber gets from one batch frame are one entry, so one iovec of the
 * send (rt_sendq_append). A partial write advances the head entry's `off`.
 * The ring grows by doubling so a steady state allocates nothing.
 */
typedef struct {
  rt_slice_t s;    /* unsent bytes of the entry (one frame reference owned) */
  uint32_t frames; /* WebSocket frames ending in the entry (rt_sendq_consume's count) */
} rt_sendq_entry_t;

typedef struct {
  rt_sendq_entry_t *ring; /* capacity `cap`, a power of two */
  size_t cap;             /* ring slots */
  size_t head;            /* index of the oldest entry */
  size_t count;           /* entries queued */
  size_t pinned;          /* head entries partly written or handed to a write in flight: never
                             extended, and kept when the unsent rest is dropped */
  size_t bytes;           /* unsent wire bytes across the queue */
} rt_sendq_t;

void rt_sendq_init(rt_sendq_t *q);
/* Unrefs every queued frame and frees the ring. */
void rt_sendq_destroy(rt_sendq_t *q);
/* Doubles the ring (the slow path of a push). Returns 0 or RT_ENOMEM. */
int rt_sendq_grow(rt_sendq_t *q);

/* The i-th queued entry (0 = head), borrowed. */
static inline rt_sendq_entry_t *rt_sendq_at(const rt_sendq_t *q, size_t i) {
  return &q->ring[(q->head + i) & (q->cap - 1)];
}

/* Pushes a new entry for `s`, taking over the reference the caller owns. 0 or RT_ENOMEM. */
static inline int rt_sendq_push_slice(rt_sendq_t *q, const rt_slice_t *s) {
  if (q->count == q->cap) {
    int r = rt_sendq_grow(q);
    if (r != 0) return r;
  }
  rt_sendq_entry_t *e = &q->ring[(q->head + q->count) & (q->cap - 1)];
  e->s = *s;
  e->frames = 1;
  q->count++;
  q->bytes += s->len;
  return 0;
}

/*
 * Queues a whole sealed frame. Takes ownership of one reference to `f`.
 * Returns 0, or RT_ENOMEM (ref not taken); RT_ETOOLARGE for a frame of 4 GiB
 * or more (slices count in 32 bits; no server frame comes near).
 * Inline: it runs once per ack or push, and a call cost as much as the push.
 */
static inline int rt_sendq_push(rt_sendq_t *q, rt_frame_t *f) {
  size_t n = rt_frame_wire_len(f);
  if (n > UINT32_MAX) return RT_ETOOLARGE;
  rt_slice_t s = {f, f->off, (uint32_t)n};
  return rt_sendq_push_slice(q, &s);
}

/*
 * Queues the message bytes `s` (borrowed). When they continue the tail
 * entry (same frame, starting where it ends) and the tail is not pinned,
 * the entry grows: no new entry, no new reference. Otherwise a new entry
 * takes its own reference. Returns 0 or RT_ENOMEM (nothing queued).
 * Inline: it runs once per delivery.
 */
static inline int rt_sendq_append(rt_sendq_t *q, const rt_slice_t *s) {
  if (q->count > q->pinned) {
    rt_sendq_entry_t *t = rt_sendq_at(q, q->count - 1);
    if (t->s.frame == s->frame && t->s.off + t->s.len == s->off) {
      t->s.len += s->len;
      t->frames++;
      q->bytes += s->len;
      return 0;
    }
  }
  int r = rt_sendq_push_slice(q, s);
  if (r == 0) rt_frame_ref(s->frame);
  return r;
}

/*
 * Marks `n` bytes as written: pops (and unrefs) every entry completed by
 * them and advances the next one's offset (which pins it). `n` must not
 * exceed q->bytes. Returns the WebSocket frames of the completed entries.
 */
size_t rt_sendq_consume(rt_sendq_t *q, size_t n);

/* Pins the first `n` entries (a write in flight carries them). */
static inline void rt_sendq_pin(rt_sendq_t *q, size_t n) {
  if (n > q->pinned) q->pinned = n;
}

/*
 * Drops every entry but the pinned ones (newest first): what the slow-
 * consumer cut does, so that frames already partly on the wire complete and
 * the close frame after them is well framed. Pinned entries were never
 * extended, so what is kept is exactly what was started.
 */
void rt_sendq_drop_unpinned(rt_sendq_t *q);

#endif
