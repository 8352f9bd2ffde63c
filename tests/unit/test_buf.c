/*
 * Unit tests for refcounted frames and the send queue (src/core/buf.h):
 * rt_frame_seal's header bytes at each length-form boundary (RFC 6455 5.2),
 * reference counting, and the queue's byte accounting across partial writes;
 * batch frames (several complete frames in one buffer) and the queue's
 * ranges over them: extend vs push, pinning, the slow-consumer drop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "realtime/realtime.h"

static rt_frame_t *filled_frame(size_t n, int opcode) {
  rt_frame_t *f = rt_frame_new(n);
  assert_non_null(f);
  uint8_t chunk[256];
  for (size_t i = 0; i < sizeof(chunk); i++) chunk[i] = (uint8_t)i;
  for (size_t off = 0; off < n; off += sizeof(chunk))
    rt_frame_append(f, chunk, n - off < sizeof(chunk) ? n - off : sizeof(chunk));
  rt_frame_seal(f, opcode);
  return f;
}

static void check_seal(size_t n, const uint8_t *header, size_t hlen) {
  rt_frame_t *f = filled_frame(n, 0x1);
  assert_int_equal(rt_frame_wire_len(f), hlen + n);
  assert_memory_equal(rt_frame_wire(f), header, hlen);
  assert_ptr_equal(rt_frame_wire(f) + hlen, rt_frame_payload(f));
  for (size_t i = 0; i < n; i++) assert_int_equal(rt_frame_wire(f)[hlen + i], (uint8_t)i);
  rt_frame_unref(f);
}

/* FIN + opcode, then the length in the shortest form, unmasked (server to client). */
static void test_seal_header_bytes(void **state) {
  (void)state;
  check_seal(0, (const uint8_t *)"\x81\x00", 2);
  check_seal(125, (const uint8_t *)"\x81\x7d", 2);
  check_seal(126, (const uint8_t *)"\x81\x7e\x00\x7e", 4);
  check_seal(65535, (const uint8_t *)"\x81\x7e\xff\xff", 4);
  check_seal(65536, (const uint8_t *)"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
}

static void test_seal_opcode(void **state) {
  (void)state;
  rt_frame_t *f = filled_frame(3, 0x8);
  assert_int_equal(rt_frame_wire(f)[0], 0x88);
  rt_frame_unref(f);
  f = filled_frame(0, 0xa);
  assert_int_equal(rt_frame_wire(f)[0], 0x8a);
  rt_frame_unref(f);
}

static void test_frame_refcount(void **state) {
  (void)state;
  rt_frame_t *f = filled_frame(10, 0x1);
  assert_int_equal(f->refcnt, 1);
  assert_ptr_equal(rt_frame_ref(f), f);
  assert_int_equal(f->refcnt, 2);
  rt_frame_unref(f);
  assert_int_equal(f->refcnt, 1);
  rt_frame_unref(f);
  rt_frame_unref(NULL);
  rt_alloc_fail_after(0);
  assert_null(rt_frame_new(10));
  rt_alloc_fail_after(-1);
}

/* Partial writes advance the head entry (and pin it); a completed frame is popped and unreffed. */
static void test_sendq_partial_writes(void **state) {
  (void)state;
  rt_sendq_t q;
  rt_sendq_init(&q);
  rt_frame_t *a = filled_frame(10, 0x1);  /* 12 wire bytes */
  rt_frame_t *b = filled_frame(200, 0x1); /* 204 wire bytes */
  assert_int_equal(rt_sendq_push(&q, rt_frame_ref(a)), 0);
  assert_int_equal(rt_sendq_push(&q, rt_frame_ref(b)), 0);
  assert_int_equal(q.count, 2);
  assert_int_equal(q.bytes, 216);
  assert_int_equal(rt_sendq_consume(&q, 5), 0);
  assert_ptr_equal(rt_sendq_at(&q, 0)->s.frame->bytes + rt_sendq_at(&q, 0)->s.off,
                   rt_frame_wire(a) + 5);
  assert_int_equal(rt_sendq_at(&q, 0)->s.len, 12 - 5);
  assert_int_equal(q.pinned, 1);
  assert_int_equal(q.count, 2);
  assert_int_equal(rt_sendq_consume(&q, 7 + 100), 1);
  assert_int_equal(q.count, 1);
  assert_ptr_equal(rt_sendq_at(&q, 0)->s.frame, b);
  assert_int_equal(rt_sendq_at(&q, 0)->s.len, 204 - 100);
  assert_int_equal(q.pinned, 1);
  assert_int_equal(q.bytes, 104);
  assert_int_equal(a->refcnt, 1);
  assert_int_equal(rt_sendq_consume(&q, 104), 1);
  assert_int_equal(q.count, 0);
  assert_int_equal(q.bytes, 0);
  assert_int_equal(b->refcnt, 1);
  rt_frame_unref(a);
  rt_frame_unref(b);
  rt_sendq_destroy(&q);
}

/* Growing past the first ring keeps order; destroy drops every queued reference. */
static void test_sendq_grow_and_destroy(void **state) {
  (void)state;
  rt_sendq_t q;
  rt_sendq_init(&q);
  rt_frame_t *f = filled_frame(1, 0x1);
  for (int i = 0; i < 20; i++) assert_int_equal(rt_sendq_push(&q, rt_frame_ref(f)), 0);
  assert_int_equal(f->refcnt, 21);
  rt_sendq_consume(&q, 3 * 5);
  for (int i = 0; i < 10; i++) assert_int_equal(rt_sendq_push(&q, rt_frame_ref(f)), 0);
  assert_int_equal(q.count, 25);
  assert_int_equal(q.bytes, 25 * 3);
  rt_alloc_fail_after(0);
  for (int i = 0; i < 7; i++) assert_int_equal(rt_sendq_push(&q, rt_frame_ref(f)), 0);
  rt_frame_ref(f);
  assert_int_equal(rt_sendq_push(&q, f), RT_ENOMEM);
  rt_frame_unref(f);
  rt_alloc_fail_after(-1);
  rt_sendq_destroy(&q);
  assert_int_equal(f->refcnt, 1);
  assert_int_equal(q.count, 0);
  rt_frame_unref(f);
}

/*
 * Consuming exactly the queued bytes (the flush's common case) empties the
 * queue in one pass, also when the head was partly written and the ring
 * wrapped; pushes after it land in order.
 */
static void test_sendq_consume_all(void **state) {
  (void)state;
  rt_sendq_t q;
  rt_sendq_init(&q);
  rt_frame_t *a = filled_frame(10, 0x1); /* 12 wire bytes */
  rt_frame_t *b = filled_frame(1, 0x1);  /* 3 wire bytes */
  for (int i = 0; i < 3; i++) assert_int_equal(rt_sendq_push(&q, rt_frame_ref(a)), 0);
  rt_sendq_consume(&q, 12 + 4); /* head at slot 1, 4 bytes of it written */
  for (int i = 0; i < 2; i++) assert_int_equal(rt_sendq_push(&q, rt_frame_ref(b)), 0);
  assert_int_equal(q.cap, 4);
  assert_int_equal(q.bytes, 8 + 12 + 3 + 3);
  rt_sendq_consume(&q, q.bytes); /* wraps: slots 1, 2, 3, 0 */
  assert_int_equal(q.count, 0);
  assert_int_equal(q.bytes, 0);
  assert_int_equal(q.pinned, 0);
  assert_int_equal(a->refcnt, 1);
  assert_int_equal(b->refcnt, 1);
  assert_int_equal(rt_sendq_push(&q, rt_frame_ref(b)), 0);
  assert_int_equal(rt_sendq_push(&q, rt_frame_ref(a)), 0);
  assert_ptr_equal(rt_sendq_at(&q, 0)->s.frame, b);
  assert_ptr_equal(rt_sendq_at(&q, 1)->s.frame, a);
  rt_sendq_consume(&q, 0); /* nothing written: nothing changes */
  assert_int_equal(q.count, 2);
  rt_sendq_destroy(&q);
  rt_frame_unref(a);
  rt_frame_unref(b);
}

/* ------------------------------------------------------- batch frames and ranges */

/* A batch frame holding n text frames of payload sizes len[i] (byte values i+1), back to back. */
static rt_frame_t *batch_frame(const size_t *len, size_t n, rt_slice_t *slices) {
  size_t cap = 0;
  for (size_t i = 0; i < n; i++) cap += rt_frame_header_len(len[i]) + len[i];
  rt_frame_t *f = rt_frame_new(cap + 64);
  assert_non_null(f);
  uint8_t chunk[300];
  for (size_t i = 0; i < n; i++) {
    assert_true(len[i] <= sizeof(chunk));
    memset(chunk, (int)(i + 1), len[i]);
    slices[i].frame = f;
    slices[i].off = (uint32_t)(RT_FRAME_HEADROOM + f->len);
    rt_frame_append_header(f, 0x1, len[i]);
    rt_frame_append(f, chunk, len[i]);
    slices[i].len = (uint32_t)(RT_FRAME_HEADROOM + f->len - slices[i].off);
  }
  return f;
}

/* The three header forms, appended in place (what each message of a batch starts with). */
static void test_append_header(void **state) {
  (void)state;
  rt_frame_t *f = rt_frame_new(2 + 4 + 10);
  rt_frame_append_header(f, 0x1, 125);
  rt_frame_append_header(f, 0x1, 126);
  rt_frame_append_header(f, 0x2, 65536);
  assert_int_equal(f->len, 16);
  assert_memory_equal(rt_frame_payload(f),
                      "\x81\x7d" "\x81\x7e\x00\x7e" "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 16);
  assert_int_equal(rt_frame_header_len(0), 2);
  assert_int_equal(rt_frame_header_len(65535), 4);
  assert_int_equal(rt_frame_header_len(65536), 10);
  rt_frame_unref(f);
}

/*
 * A slice continuing the tail entry extends it (no entry, no reference);
 * one that does not (another frame, or a gap: a message this subscriber did
 * not get) pushes an entry with its own reference.
 */
static void test_sendq_append_extends(void **state) {
  (void)state;
  rt_slice_t s[4];
  rt_frame_t *f = batch_frame((const size_t[]){5, 200, 7, 1}, 4, s);
  rt_frame_t *other = filled_frame(3, 0x1); /* an ack: 5 wire bytes */
  rt_sendq_t q;
  rt_sendq_init(&q);
  assert_int_equal(rt_sendq_append(&q, &s[0]), 0);
  assert_int_equal(f->refcnt, 2);
  assert_int_equal(rt_sendq_append(&q, &s[1]), 0);
  assert_int_equal(q.count, 1);
  assert_int_equal(f->refcnt, 2);
  assert_int_equal(rt_sendq_at(&q, 0)->frames, 2);
  assert_int_equal(rt_sendq_at(&q, 0)->s.len, 7 + 204);
  assert_int_equal(q.bytes, 7 + 204);
  assert_int_equal(rt_sendq_push(&q, rt_frame_ref(other)), 0);
  assert_int_equal(rt_sendq_append(&q, &s[2]), 0); /* the tail is the ack: a new entry */
  assert_int_equal(q.count, 3);
  assert_int_equal(f->refcnt, 3);
  rt_sendq_t gap;
  rt_sendq_init(&gap);
  assert_int_equal(rt_sendq_append(&gap, &s[0]), 0);
  assert_int_equal(rt_sendq_append(&gap, &s[2]), 0); /* s[1] skipped: not contiguous */
  assert_int_equal(gap.count, 2);
  assert_int_equal(f->refcnt, 5);
  assert_int_equal(rt_sendq_consume(&gap, gap.bytes), 2);
  rt_sendq_destroy(&gap);
  assert_int_equal(q.bytes, 7 + 204 + 5 + 9);
  assert_int_equal(rt_sendq_consume(&q, q.bytes), 4);
  assert_int_equal(f->refcnt, 1);
  assert_int_equal(other->refcnt, 1);
  rt_sendq_destroy(&q);
  rt_frame_unref(f);
  rt_frame_unref(other);
}

/*
 * Partial writes across an extended entry: the offset advances inside it,
 * the bytes stay exact, and the partly written entry is pinned: the next
 * message gets an entry of its own, so dropping the unsent rest (the slow-
 * consumer cut) keeps exactly what was started.
 */
static void test_sendq_partial_extended(void **state) {
  (void)state;
  rt_slice_t s[4];
  rt_frame_t *f = batch_frame((const size_t[]){10, 20, 30, 40}, 4, s);
  rt_sendq_t q;
  rt_sendq_init(&q);
  for (int i = 0; i < 2; i++) assert_int_equal(rt_sendq_append(&q, &s[i]), 0);
  assert_int_equal(q.bytes, 12 + 22);
  assert_int_equal(rt_sendq_consume(&q, 15), 0); /* into the second message */
  const rt_sendq_entry_t *e = rt_sendq_at(&q, 0);
  assert_int_equal(e->s.off, s[0].off + 15);
  assert_int_equal(e->s.len, 12 + 22 - 15);
  assert_int_equal(q.bytes, 12 + 22 - 15);
  assert_int_equal(q.pinned, 1);
  assert_int_equal(rt_sendq_append(&q, &s[2]), 0);
  assert_int_equal(q.count, 2); /* not extended: the head is partly written */
  assert_int_equal(rt_sendq_append(&q, &s[3]), 0);
  assert_int_equal(q.count, 2); /* the new tail is not pinned: extended */
  assert_int_equal(q.bytes, 19 + 32 + 42);
  rt_sendq_drop_unpinned(&q);
  assert_int_equal(q.count, 1);
  assert_int_equal(q.bytes, 19);
  assert_int_equal(f->refcnt, 2);
  assert_int_equal(rt_sendq_consume(&q, 19), 2);
  assert_int_equal(q.pinned, 0);
  assert_int_equal(q.count, 0);
  rt_sendq_destroy(&q);
  assert_int_equal(f->refcnt, 1);
  rt_frame_unref(f);
}

/*
 * Entries handed to a write in flight are pinned (libuv holds their lengths):
 * they are not extended, the cut keeps exactly them, and completing the
 * write unpins them.
 */
static void test_sendq_pinned_in_flight(void **state) {
  (void)state;
  rt_slice_t s[3];
  rt_frame_t *f = batch_frame((const size_t[]){1, 2, 3}, 3, s);
  rt_sendq_t q;
  rt_sendq_init(&q);
  assert_int_equal(rt_sendq_append(&q, &s[0]), 0);
  rt_sendq_pin(&q, q.count);
  size_t inflight = q.bytes;
  assert_int_equal(rt_sendq_append(&q, &s[1]), 0);
  assert_int_equal(rt_sendq_append(&q, &s[2]), 0);
  assert_int_equal(q.count, 2);
  assert_int_equal(rt_sendq_at(&q, 1)->frames, 2);
  assert_int_equal(rt_sendq_consume(&q, inflight), 1);
  assert_int_equal(q.pinned, 0);
  assert_int_equal(q.bytes, 4 + 5);
  /* The cut while a write is in flight drops the rest and keeps the in-flight bytes. */
  rt_sendq_pin(&q, 1);
  rt_sendq_drop_unpinned(&q);
  assert_int_equal(q.count, 1);
  rt_sendq_destroy(&q);
  assert_int_equal(f->refcnt, 1);
  rt_frame_unref(f);
}

/* Extending the tail entry works across the ring's wrap-around. */
static void test_sendq_extend_wrapped(void **state) {
  (void)state;
  rt_slice_t s[6];
  rt_frame_t *f = batch_frame((const size_t[]){1, 1, 1, 1, 1, 1}, 6, s);
  rt_frame_t *a = filled_frame(1, 0x1);
  rt_sendq_t q;
  rt_sendq_init(&q);
  for (int i = 0; i < 4; i++) assert_int_equal(rt_sendq_push(&q, rt_frame_ref(a)), 0);
  assert_int_equal(q.cap, 4);
  assert_int_equal(rt_sendq_consume(&q, 3 * 3), 3); /* head at slot 3 */
  assert_int_equal(rt_sendq_append(&q, &s[0]), 0); /* slot 0 */
  for (int i = 1; i < 6; i++) assert_int_equal(rt_sendq_append(&q, &s[i]), 0);
  assert_int_equal(q.count, 2);
  assert_int_equal(q.cap, 4);
  assert_ptr_equal(rt_sendq_at(&q, 1), &q.ring[0]);
  assert_int_equal(rt_sendq_at(&q, 1)->frames, 6);
  assert_int_equal(rt_sendq_at(&q, 1)->s.len, 6 * 3);
  assert_int_equal(rt_sendq_consume(&q, q.bytes), 7);
  rt_sendq_destroy(&q);
  assert_int_equal(f->refcnt, 1);
  rt_frame_unref(f);
  rt_frame_unref(a);
}

/*
 * When the ring is full and cannot grow, a slice needing a new entry is
 * refused with nothing changed (no reference taken); one that extends the
 * tail needs no memory and still goes in.
 */
static void test_sendq_append_oom(void **state) {
  (void)state;
  rt_slice_t s[3];
  rt_frame_t *f = batch_frame((const size_t[]){1, 1, 1}, 3, s);
  rt_frame_t *a = filled_frame(1, 0x1);
  rt_sendq_t q;
  rt_sendq_init(&q);
  assert_int_equal(rt_sendq_push(&q, rt_frame_ref(a)), 0);
  assert_int_equal(rt_sendq_append(&q, &s[0]), 0); /* the ring is full: 2 of 2 */
  assert_int_equal(q.cap, 2);
  rt_alloc_fail_after(0);
  assert_int_equal(rt_sendq_append(&q, &s[1]), 0); /* extends */
  assert_int_equal(rt_sendq_push(&q, rt_frame_ref(a)), RT_ENOMEM);
  rt_frame_unref(a);
  assert_int_equal(rt_sendq_append(&q, &s[2]), 0); /* still extends: the ack was refused */
  rt_sendq_t fresh;
  rt_sendq_init(&fresh);
  assert_int_equal(rt_sendq_append(&fresh, &s[0]), RT_ENOMEM);
  rt_alloc_fail_after(-1);
  assert_int_equal(fresh.count, 0);
  assert_int_equal(fresh.bytes, 0);
  assert_int_equal(f->refcnt, 2);
  assert_int_equal(q.count, 2);
  assert_int_equal(q.bytes, 3 + 9);
  rt_sendq_destroy(&q);
  rt_sendq_destroy(&fresh);
  assert_int_equal(f->refcnt, 1);
  assert_int_equal(a->refcnt, 1);
  rt_frame_unref(f);
  rt_frame_unref(a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_seal_header_bytes),
      cmocka_unit_test(test_seal_opcode),
      cmocka_unit_test(test_frame_refcount),
      cmocka_unit_test(test_sendq_partial_writes),
      cmocka_unit_test(test_sendq_grow_and_destroy),
      cmocka_unit_test(test_sendq_consume_all),
      cmocka_unit_test(test_append_header),
      cmocka_unit_test(test_sendq_append_extends),
      cmocka_unit_test(test_sendq_partial_extended),
      cmocka_unit_test(test_sendq_pinned_in_flight),
      cmocka_unit_test(test_sendq_extend_wrapped),
      cmocka_unit_test(test_sendq_append_oom),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
