/*
 * libFuzzer target for the frame decoder (src/core/ws_codec.h).
 *
 * Input layout:
 *   byte 0      low 3 bits: max_message_size (table below);
 *               high 5 bits: k > 0 makes the allocator fail after k - 1
 *               allocations (each RT_ENOMEM is healed and the feed retried)
 *   byte 1      low 3 bits: n, the number of chunk lengths that follow
 *   n bytes     chunk lengths, used in turn (0 means 1)
 *   the rest    the client byte stream
 *
 * The stream is decoded twice: whole, and in the chunks the input names (each
 * chunk its own exact-size allocation, so ASan sees over-reads), each chunk
 * one read through a decoder lender (borrow, feed, settle, as conn.c does)
 * with another stream's whole-frame read from the same lender in between,
 * so an idle decoder serves both. Both runs
 * must give the same events, and every event must keep the decoder's
 * promises: text is valid UTF-8, messages fit the limit, control payloads fit
 * 125 bytes, close codes are valid, errors use 1002/1007/1009 and stick, and
 * a feed that fails with RT_ENOMEM consumes and modifies nothing.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/utf8.h"
#include "core/ws_codec.h"
#include "realtime/realtime.h"

#define MAX_EVENTS 4096

typedef struct {
  int type;
  unsigned code;
  size_t len;
  uint64_t hash;
} rec_t;

typedef struct {
  rec_t ev[MAX_EVENTS];
  size_t n;
  int failed;
} trace_t;

static const size_t max_sizes[8] = {0, 1, 125, 126, 1000, 65536, 70000, 1 << 20};

static trace_t whole_run, chunked_run;

static uint64_t fnv1a(const uint8_t *p, size_t n) {
  uint64_t h = 1469598103934665603u;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211u;
  return h;
}

/*
 * Answers the event as the connection layer would (a pong echoing a ping, a
 * close echoing the code and reason) and checks the encoders' output.
 */
static void check_reply(const rt_ws_event_t *ev) {
  rt_frame_t *f = NULL;
  if (ev->type == RT_WS_EV_PING) {
    f = rt_ws_frame_new(RT_WS_OP_PONG, ev->payload, ev->len);
    if (f != NULL && (rt_frame_wire_len(f) != 2 + ev->len || rt_frame_wire(f)[0] != 0x8a ||
                      memcmp(rt_frame_wire(f) + 2, ev->payload, ev->len) != 0))
      abort();
  } else if (ev->type == RT_WS_EV_CLOSE) {
    char reason[126];
    memcpy(reason, ev->payload, ev->len);
    reason[ev->len] = '\0';
    f = rt_ws_close_frame_new(ev->close_code, reason);
    if (f != NULL) {
      const uint8_t *w = rt_frame_wire(f);
      size_t body = rt_frame_wire_len(f) - 2;
      if (w[0] != 0x88 || w[1] != body || body > 125) abort();
      if (ev->close_code == RT_CLOSE_NO_STATUS ? body != 0 : body < 2 || !rt_utf8_valid(w + 4, body - 2))
        abort();
    }
  }
  rt_frame_unref(f);
}

/* Checks one event against the decoder's contract and records it. */
static void check_event(const rt_ws_event_t *ev, size_t max, trace_t *t) {
  if (ev->payload == NULL) abort();
  switch (ev->type) {
    case RT_WS_EV_TEXT:
      if (!rt_utf8_valid(ev->payload, ev->len) || ev->len > max) abort();
      break;
    case RT_WS_EV_BINARY:
      if (ev->len > max) abort();
      break;
    case RT_WS_EV_PING:
    case RT_WS_EV_PONG:
      if (ev->len > 125) abort();
      break;
    case RT_WS_EV_CLOSE:
      if (ev->close_code == RT_CLOSE_NO_STATUS ? ev->len != 0 : !rt_ws_close_code_valid(ev->close_code))
        abort();
      if (ev->len > 123 || !rt_utf8_valid(ev->payload, ev->len)) abort();
      break;
    case RT_WS_EV_ERROR:
      if (ev->close_code != 1002 && ev->close_code != 1007 && ev->close_code != 1009) abort();
      if (ev->reason == NULL || ev->reason[0] == '\0') abort();
      t->failed = 1;
      break;
    default:
      abort();
  }
  check_reply(ev);
  if (t->n < MAX_EVENTS) {
    rec_t *r = &t->ev[t->n++];
    r->type = ev->type;
    r->code = ev->close_code;
    r->len = ev->len;
    r->hash = fnv1a(ev->payload, ev->len);
  }
}

/* Feeds one chunk until used up, healing the allocator after each RT_ENOMEM and retrying. */
static void feed_chunk(rt_ws_decoder_t *d, const uint8_t *src, size_t n, size_t max, trace_t *t) {
  uint8_t *chunk = malloc(n ? n : 1);
  if (chunk == NULL) abort();
  memcpy(chunk, src, n);
  size_t pos = 0;
  while (pos < n && !t->failed) {
    size_t used = (size_t)-1;
    rt_ws_event_t ev;
    int rc = rt_ws_decoder_feed(d, chunk + pos, n - pos, &used, &ev);
    if (rc == RT_ENOMEM) {
      if (used != 0 || memcmp(chunk + pos, src + pos, n - pos) != 0) abort();
      rt_alloc_fail_after(-1);
      continue;
    }
    if (rc != 0 || used > n - pos) abort();
    if (ev.type == RT_WS_EV_NONE) {
      if (used != n - pos) abort();
    } else {
      if (used == 0) abort();
      check_event(&ev, max, t);
    }
    pos += used;
  }
  free(chunk);
}

/* A borrow that fails (OOM) heals the allocator and is retried. */
static rt_ws_decoder_t *borrow(rt_ws_lender_t *l, rt_ws_decoder_t *own) {
  rt_ws_decoder_t *d = rt_ws_lender_borrow(l, own);
  if (d == NULL) {
    rt_alloc_fail_after(-1);
    d = rt_ws_lender_borrow(l, own);
    if (d == NULL) abort();
  }
  return d;
}

/* Another stream's read of a whole ping: it must stay idle and give its decoder back. */
static void other_stream_read(rt_ws_lender_t *l) {
  uint8_t ping[7] = {0x89, 0x81, 1, 2, 3, 4, 'o' ^ 1};
  rt_ws_decoder_t *own = NULL, *d = borrow(l, own);
  size_t used;
  rt_ws_event_t ev;
  if (rt_ws_decoder_feed(d, ping, sizeof(ping), &used, &ev) == RT_ENOMEM) abort(); /* needs no memory */
  if (ev.type != RT_WS_EV_PING || ev.len != 1 || ev.payload[0] != 'o') abort();
  rt_ws_lender_settle(l, &own, d);
  if (own != NULL) abort();
}

/* Decodes `stream` in chunks of the given lengths (one whole chunk when nlens is 0), lent per chunk. */
static void run(const uint8_t *stream, size_t len, const uint8_t *lens, size_t nlens, size_t max,
                long fail_after, trace_t *t) {
  t->n = 0;
  t->failed = 0;
  rt_ws_lender_t l;
  rt_ws_lender_init(&l, max);
  rt_ws_decoder_t *d = NULL;
  rt_alloc_fail_after(fail_after);
  size_t off = 0;
  for (size_t i = 0; off < len && !t->failed; i++) {
    size_t n = nlens == 0 ? len : lens[i % nlens] ? lens[i % nlens] : 1;
    if (n > len - off) n = len - off;
    rt_ws_decoder_t *lent = borrow(&l, d);
    feed_chunk(lent, stream + off, n, max, t);
    rt_ws_lender_settle(&l, &d, lent);
    if (d != NULL && rt_ws_decoder_idle(d)) abort();
    if (nlens > 0) other_stream_read(&l);
    off += n;
  }
  rt_alloc_fail_after(-1);
  if (t->failed && d == NULL) abort(); /* a failed decoder stays with its stream */
  if (t->failed) {
    uint8_t more[6] = {0x89, 0x80, 1, 2, 3, 4};
    size_t used;
    rt_ws_event_t ev;
    if (rt_ws_decoder_feed(d, more, sizeof(more), &used, &ev) != 0 || ev.type != RT_WS_EV_ERROR ||
        ev.close_code != t->ev[t->n - 1].code || used != sizeof(more))
      abort();
  }
  rt_ws_decoder_free(d);
  rt_ws_lender_destroy(&l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  size_t max = max_sizes[data[0] & 7];
  long fail_after = (data[0] >> 3) ? (long)(data[0] >> 3) - 1 : -1;
  size_t nlens = data[1] & 7;
  if (size < 2 + nlens) return 0;
  const uint8_t *lens = data + 2;
  const uint8_t *stream = data + 2 + nlens;
  size_t len = size - 2 - nlens;

  run(stream, len, NULL, 0, max, -1, &whole_run);
  run(stream, len, lens, nlens, max, fail_after, &chunked_run);
  if (whole_run.n != chunked_run.n || whole_run.failed != chunked_run.failed) abort();
  for (size_t i = 0; i < whole_run.n; i++) {
    const rec_t *a = &whole_run.ev[i], *b = &chunked_run.ev[i];
    if (a->type != b->type || a->code != b->code || a->len != b->len || a->hash != b->hash) abort();
  }
  return 0;
}
