/*
 * Unit tests for refcounted frames and the send queue (src/core/buf.h):
 * rt_frame_seal's header bytes at each length-form boundary (RFC 6455 5.2),
 * reference counting, and the queue's byte accounting across partial writes.
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

/* Partial writes advance head_sent; a completed frame is popped and unreffed. */
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
  rt_sendq_consume(&q, 5);
  assert_int_equal(q.head_sent, 5);
  assert_int_equal(q.count, 2);
  rt_sendq_consume(&q, 7 + 100);
  assert_int_equal(q.count, 1);
  assert_ptr_equal(rt_sendq_at(&q, 0), b);
  assert_int_equal(q.head_sent, 100);
  assert_int_equal(q.bytes, 104);
  assert_int_equal(a->refcnt, 1);
  rt_sendq_consume(&q, 104);
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
  assert_int_equal(q.head_sent, 0);
  assert_int_equal(a->refcnt, 1);
  assert_int_equal(b->refcnt, 1);
  assert_int_equal(rt_sendq_push(&q, rt_frame_ref(b)), 0);
  assert_int_equal(rt_sendq_push(&q, rt_frame_ref(a)), 0);
  assert_ptr_equal(rt_sendq_at(&q, 0), b);
  assert_ptr_equal(rt_sendq_at(&q, 1), a);
  rt_sendq_consume(&q, 0); /* nothing written: nothing changes */
  assert_int_equal(q.count, 2);
  rt_sendq_destroy(&q);
  rt_frame_unref(a);
  rt_frame_unref(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_seal_header_bytes),
      cmocka_unit_test(test_seal_opcode),
      cmocka_unit_test(test_frame_refcount),
      cmocka_unit_test(test_sendq_partial_writes),
      cmocka_unit_test(test_sendq_grow_and_destroy),
      cmocka_unit_test(test_sendq_consume_all),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
