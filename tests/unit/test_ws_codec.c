/*
 * Unit tests for the RFC 6455 frame decoder and encoders (src/core/ws_codec.h).
 *
 * Every decoder case goes through run_case(), which feeds the same bytes
 * whole, byte by byte and in seeded random splits (feed_split) and expects
 * the same events each time; each chunk is a fresh allocation of exactly its
 * size, so ASan catches any read past what was fed. Cases that end in an
 * ERROR also check that the decoder stays failed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/utf8.h"
#include "core/ws_codec.h"
#include "realtime/realtime.h"

#define FIN 0x80
#define RSV1 0x40
#define RSV2 0x20
#define RSV3 0x10
#define TEXT RT_WS_OP_TEXT
#define BIN RT_WS_OP_BINARY
#define CONT RT_WS_OP_CONT
#define PING RT_WS_OP_PING
#define PONG RT_WS_OP_PONG
#define CLOSE RT_WS_OP_CLOSE
#define MIB (1024 * 1024)

/* ------------------------------------------------------------ frame builder */

typedef struct {
  uint8_t *p;
  size_t len, cap;
} bytes_t;

static void put(bytes_t *b, const void *p, size_t n) {
  if (b->len + n > b->cap) {
    b->cap = (b->len + n) * 2 + 64;
    b->p = realloc(b->p, b->cap);
    assert_non_null(b->p);
  }
  if (n > 0) memcpy(b->p + b->len, p, n);
  b->len += n;
}

static void put_byte(bytes_t *b, uint8_t x) { put(b, &x, 1); }

static void bytes_free(bytes_t *b) {
  free(b->p);
  memset(b, 0, sizeof(*b));
}

enum { LEN_MIN, LEN_16, LEN_64 };

/* Appends a length field in the given form (RFC 6455 5.2), with the MASK bit as asked. */
static void put_length(bytes_t *b, uint64_t n, int form, int masked) {
  uint8_t m = masked ? 0x80 : 0;
  if (form == LEN_MIN) form = n < 126 ? LEN_MIN : n <= 0xffff ? LEN_16 : LEN_64;
  if (form == LEN_MIN) {
    put_byte(b, (uint8_t)(m | n));
  } else if (form == LEN_16) {
    put_byte(b, m | 126);
    put_byte(b, (uint8_t)(n >> 8));
    put_byte(b, (uint8_t)n);
  } else {
    put_byte(b, m | 127);
    for (int i = 7; i >= 0; i--) put_byte(b, (uint8_t)(n >> (8 * i)));
  }
}

/*
 * Appends a client frame: b0 carries FIN/RSV/opcode, the payload is masked
 * with a key that changes from frame to frame (so unmasking with the wrong
 * key or phase shows).
 */
static void put_frame_ex(bytes_t *b, uint8_t b0, const void *payload, size_t n, int form, int masked) {
  static unsigned frame_no;
  uint8_t key[4];
  for (int i = 0; i < 4; i++) key[i] = (uint8_t)(0x5b + 71 * frame_no + 29 * i);
  frame_no++;
  put_byte(b, b0);
  put_length(b, n, form, masked);
  if (masked) put(b, key, 4);
  const uint8_t *src = payload;
  for (size_t i = 0; i < n; i++) put_byte(b, masked ? src[i] ^ key[i & 3] : src[i]);
}

static void put_frame(bytes_t *b, uint8_t b0, const void *payload, size_t n) {
  put_frame_ex(b, b0, payload, n, LEN_MIN, 1);
}

static void put_str(bytes_t *b, uint8_t b0, const char *s) { put_frame(b, b0, s, strlen(s)); }

/* Appends a close frame with a 2-byte code and a reason. */
static void put_close(bytes_t *b, uint16_t code, const void *reason, size_t n) {
  uint8_t body[125];
  body[0] = (uint8_t)(code >> 8);
  body[1] = (uint8_t)code;
  memcpy(body + 2, reason, n);
  put_frame(b, FIN | CLOSE, body, 2 + n);
}

/* n bytes of valid UTF-8 with 1- to 4-byte sequences, so splits land inside code points. */
static uint8_t *make_text(size_t n) {
  static const char unit[] = "a\xce\xba\xe2\x82\xac\xf0\x9f\x98\x80"; /* 10 bytes */
  uint8_t *p = malloc(n ? n : 1);
  assert_non_null(p);
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)unit[i % 10];
  for (size_t i = n - n % 10; i < n; i++) p[i] = 'z';
  assert_true(rt_utf8_valid(p, n));
  return p;
}

/* ------------------------------------------------------------ feeding */

typedef struct {
  rt_ws_event_type_t type;
  uint16_t code;
  uint8_t *data;
  size_t len;
} rec_t;

typedef struct {
  rec_t ev[64];
  size_t n;
  size_t ooms; /* feeds that returned RT_ENOMEM (and were retried) */
} trace_t;

#define SPLIT_WHOLE 0u
#define SPLIT_BYTES 1u
#define RANDOM_SEEDS 8u

static void record(trace_t *t, const rt_ws_event_t *ev) {
  assert_true(t->n < sizeof(t->ev) / sizeof(t->ev[0]));
  rec_t *r = &t->ev[t->n++];
  r->type = ev->type;
  r->code = ev->close_code;
  r->len = ev->len;
  assert_non_null(ev->payload);
  r->data = malloc(ev->len ? ev->len : 1);
  assert_non_null(r->data);
  memcpy(r->data, ev->payload, ev->len);
  if (ev->type == RT_WS_EV_ERROR) {
    assert_non_null(ev->reason);
    assert_true(strlen(ev->reason) > 0);
  }
}

static int failed(const trace_t *t) { return t->n > 0 && t->ev[t->n - 1].type == RT_WS_EV_ERROR; }

/*
 * Feeds one chunk until it is used up. A feed that fails with RT_ENOMEM must
 * consume nothing and leave the bytes as they were; the allocator is then
 * healed and the same bytes fed again.
 */
static void feed_chunk(rt_ws_decoder_t *dec, uint8_t *chunk, size_t n, const uint8_t *orig, trace_t *t) {
  size_t pos = 0;
  while (pos < n && !failed(t)) {
    size_t used = 12345;
    rt_ws_event_t ev;
    int rc = rt_ws_decoder_feed(dec, chunk + pos, n - pos, &used, &ev);
    if (rc == RT_ENOMEM) {
      assert_int_equal(used, 0);
      assert_memory_equal(chunk + pos, orig + pos, n - pos);
      t->ooms++;
      rt_alloc_fail_after(-1);
      continue;
    }
    assert_int_equal(rc, 0);
    assert_true(used <= n - pos);
    if (ev.type == RT_WS_EV_NONE) {
      assert_int_equal(used, n - pos);
    } else {
      assert_true(used > 0);
      record(t, &ev);
    }
    pos += used;
  }
}

static size_t chunk_len(unsigned seed, uint32_t *rng, size_t left) {
  if (seed == SPLIT_WHOLE) return left;
  if (seed == SPLIT_BYTES) return 1;
  *rng = *rng * 1103515245u + 12345u;
  uint32_t r = *rng >> 8;
  size_t n = 1 + r % ((r & 1) ? 9 : 5000);
  return n < left ? n : left;
}

/* Borrows from the lender; a borrow that fails (OOM) is counted, the allocator healed, and retried. */
static rt_ws_decoder_t *borrow(rt_ws_lender_t *l, rt_ws_decoder_t *own, trace_t *t) {
  rt_ws_decoder_t *d = rt_ws_lender_borrow(l, own);
  if (d == NULL) {
    assert_null(own);
    t->ooms++;
    rt_alloc_fail_after(-1);
    d = rt_ws_lender_borrow(l, own);
  }
  assert_non_null(d);
  return d;
}

/* Another stream's read between two of ours: a whole ping, so it stays idle and holds nothing. */
static void other_stream_read(rt_ws_lender_t *l, trace_t *t) {
  uint8_t ping[] = {FIN | PING, 0x81, 1, 2, 3, 4, 'o' ^ 1};
  rt_ws_decoder_t *own = NULL;
  rt_ws_decoder_t *d = borrow(l, own, t);
  size_t used;
  rt_ws_event_t ev;
  assert_int_equal(rt_ws_decoder_feed(d, ping, sizeof(ping), &used, &ev), 0);
  assert_int_equal(ev.type, RT_WS_EV_PING);
  assert_memory_equal(ev.payload, "o", 1);
  rt_ws_lender_settle(l, &own, d);
  assert_null(own);
}

/*
 * The feeding loop: seed 0 feeds `bytes` whole, seed 1 byte by byte, other
 * seeds in pseudo-random chunks. Each chunk is copied into its own exact-size
 * allocation (the decoder unmasks in place). With a lender (dec NULL), each
 * chunk is one read as conn.c does it (borrow, feed, settle, *own the
 * stream's decoder), and another stream reads from the same lender between
 * two chunks. Stops at the first ERROR. Returns the events seen, payloads
 * copied (free with trace_free).
 */
static trace_t *split_feed(rt_ws_decoder_t *dec, rt_ws_lender_t *l, rt_ws_decoder_t **own,
                           const uint8_t *bytes, size_t len, unsigned seed) {
  trace_t *t = calloc(1, sizeof(*t));
  assert_non_null(t);
  uint32_t rng = seed * 2654435761u;
  size_t off = 0;
  while (off < len && !failed(t)) {
    size_t n = chunk_len(seed, &rng, len - off);
    uint8_t *chunk = malloc(n);
    assert_non_null(chunk);
    memcpy(chunk, bytes + off, n);
    rt_ws_decoder_t *d = l != NULL ? borrow(l, *own, t) : dec;
    feed_chunk(d, chunk, n, bytes + off, t);
    if (l != NULL) {
      rt_ws_lender_settle(l, own, d);
      assert_true(*own == NULL || !rt_ws_decoder_idle(*own));
      other_stream_read(l, t);
    }
    free(chunk);
    off += n;
  }
  return t;
}

static trace_t *feed_split(rt_ws_decoder_t *dec, const uint8_t *bytes, size_t len, unsigned seed) {
  return split_feed(dec, NULL, NULL, bytes, len, seed);
}

static trace_t *feed_lent(rt_ws_lender_t *l, rt_ws_decoder_t **own, const uint8_t *bytes, size_t len,
                          unsigned seed) {
  return split_feed(NULL, l, own, bytes, len, seed);
}

static void trace_free(trace_t *t) {
  for (size_t i = 0; i < t->n; i++) free(t->ev[i].data);
  free(t);
}

typedef struct {
  rt_ws_event_type_t type;
  uint16_t code; /* CLOSE: received code; ERROR: code to send */
  const void *data;
  size_t len;
} exp_t;

#define E_TEXT(s) {RT_WS_EV_TEXT, 0, s, sizeof(s) - 1}
#define E_BIN(s) {RT_WS_EV_BINARY, 0, s, sizeof(s) - 1}
#define E_PING(s) {RT_WS_EV_PING, 0, s, sizeof(s) - 1}
#define E_PONG(s) {RT_WS_EV_PONG, 0, s, sizeof(s) - 1}
#define E_CLOSE(c, s) {RT_WS_EV_CLOSE, c, s, sizeof(s) - 1}
#define E_ERR(c) {RT_WS_EV_ERROR, c, "", 0}

static void check_trace(const trace_t *t, const exp_t *exp, size_t nexp, unsigned seed) {
  if (t->n != nexp) print_error("seed %u: %zu events, expected %zu\n", seed, t->n, nexp);
  assert_int_equal(t->n, nexp);
  for (size_t i = 0; i < nexp; i++) {
    assert_int_equal(t->ev[i].type, exp[i].type);
    if (exp[i].type == RT_WS_EV_ERROR || exp[i].type == RT_WS_EV_CLOSE)
      assert_int_equal(t->ev[i].code, exp[i].code);
    assert_int_equal(t->ev[i].len, exp[i].len);
    assert_memory_equal(t->ev[i].data, exp[i].data, exp[i].len);
  }
}

/* After an ERROR every feed reports it again, consuming everything. */
static void check_sticky(rt_ws_decoder_t *d, uint16_t code) {
  uint8_t ping[] = {FIN | PING, 0x80, 1, 2, 3, 4};
  size_t used = 0;
  rt_ws_event_t ev;
  assert_int_equal(rt_ws_decoder_feed(d, ping, sizeof(ping), &used, &ev), 0);
  assert_int_equal(ev.type, RT_WS_EV_ERROR);
  assert_int_equal(ev.close_code, code);
  assert_int_equal(used, sizeof(ping));
}

/*
 * The same through a lender, each chunk one read with another stream's read
 * in between: the events must not change, and a failed stream keeps its
 * decoder (so the error sticks) while an idle one holds none.
 */
static void run_case_lent(const bytes_t *in, size_t max, const exp_t *exp, size_t nexp, unsigned seed) {
  rt_ws_lender_t l;
  rt_ws_lender_init(&l, max);
  rt_ws_decoder_t *own = NULL;
  trace_t *t = feed_lent(&l, &own, in->p, in->len, seed);
  assert_int_equal(t->ooms, 0);
  check_trace(t, exp, nexp, seed);
  if (nexp > 0 && exp[nexp - 1].type == RT_WS_EV_ERROR) {
    assert_non_null(own);
    check_sticky(own, exp[nexp - 1].code);
  }
  if (in->len > 0) assert_non_null(l.spare); /* the other stream's reads gave one back */
  trace_free(t);
  rt_ws_decoder_free(own);
  rt_ws_lender_destroy(&l);
}

/*
 * Runs one case whole, byte by byte and with RANDOM_SEEDS random splits,
 * each on a decoder of its own and through a lender, expecting the same events.
 */
static void run_case(const bytes_t *in, size_t max, const exp_t *exp, size_t nexp) {
  for (unsigned seed = 0; seed < 2 + RANDOM_SEEDS; seed++) {
    rt_ws_decoder_t *d = rt_ws_decoder_new(max);
    assert_non_null(d);
    trace_t *t = feed_split(d, in->p, in->len, seed);
    assert_int_equal(t->ooms, 0);
    check_trace(t, exp, nexp, seed);
    if (nexp > 0 && exp[nexp - 1].type == RT_WS_EV_ERROR) check_sticky(d, exp[nexp - 1].code);
    trace_free(t);
    rt_ws_decoder_free(d);
    run_case_lent(in, max, exp, nexp, seed);
  }
}

#define RUN(in, max, ...)                                        \
  do {                                                           \
    const exp_t e_[] = {__VA_ARGS__};                            \
    run_case((in), (max), e_, sizeof(e_) / sizeof(e_[0]));       \
  } while (0)
#define RUN_NO_EVENT(in, max) run_case((in), (max), NULL, 0)

/* Builds a one-frame input and expects one event (or none when ex.type is NONE). */
static void run_one(uint8_t b0, const void *payload, size_t n, size_t max, exp_t ex) {
  bytes_t b = {0};
  put_frame(&b, b0, payload, n);
  run_case(&b, max, &ex, ex.type == RT_WS_EV_NONE ? 0 : 1);
  bytes_free(&b);
}

/* ------------------------------------------------------------ basic frames */

static void test_single_text(void **state) {
  (void)state;
  bytes_t b = {0};
  put_str(&b, FIN | TEXT, "Hello");
  RUN(&b, MIB, E_TEXT("Hello"));
  bytes_free(&b);
}

static void test_empty_messages(void **state) {
  (void)state;
  bytes_t b = {0};
  put_str(&b, FIN | TEXT, "");
  put_str(&b, FIN | BIN, "");
  put_str(&b, FIN | PING, "");
  RUN(&b, MIB, E_TEXT(""), E_BIN(""), E_PING(""));
  bytes_free(&b);
}

/* Binary is reported as such, never UTF-8 checked (the connection refuses it with 1003). */
static void test_binary_message(void **state) {
  (void)state;
  bytes_t b = {0};
  put_frame(&b, FIN | BIN, "\xff\x00\xc0\x80", 4);
  RUN(&b, MIB, E_BIN("\xff\x00\xc0\x80"));
  bytes_free(&b);
}

static void test_several_frames_in_one_input(void **state) {
  (void)state;
  bytes_t b = {0};
  put_str(&b, FIN | TEXT, "one");
  put_str(&b, FIN | PING, "p");
  put_frame(&b, FIN | BIN, "\x01\x02", 2);
  put_str(&b, FIN | PONG, "q");
  put_close(&b, 1000, "bye", 3);
  RUN(&b, MIB, E_TEXT("one"), E_PING("p"), E_BIN("\x01\x02"), E_PONG("q"), E_CLOSE(1000, "bye"));
  bytes_free(&b);
}

/* RFC 6455 5.1: a client frame without the MASK bit fails with 1002, detected from its first two bytes. */
static void test_unmasked_rejected(void **state) {
  (void)state;
  bytes_t b = {0};
  put_frame_ex(&b, FIN | TEXT, "Hello", 5, LEN_MIN, 0);
  RUN(&b, MIB, E_ERR(1002));
  bytes_free(&b);
  put_frame_ex(&b, FIN | PING, "", 0, LEN_MIN, 0);
  RUN(&b, MIB, E_ERR(1002));
  bytes_free(&b);
  put_frame_ex(&b, FIN | TEXT, "Hello", 5, LEN_MIN, 0);
  b.len = 2;
  RUN(&b, MIB, E_ERR(1002));
  bytes_free(&b);
}

/* ------------------------------------------------------------ lengths */

static void check_length(size_t n, int form) {
  uint8_t *text = make_text(n);
  bytes_t b = {0};
  put_frame_ex(&b, FIN | TEXT, text, n, form, 1);
  exp_t ex = {RT_WS_EV_TEXT, 0, text, n};
  run_case(&b, MIB, &ex, 1);
  bytes_free(&b);
  free(text);
}

/* RFC 6455 5.2: 7-bit lengths up to 125, 16-bit up to 65535, 64-bit beyond. */
static void test_length_forms(void **state) {
  (void)state;
  check_length(125, LEN_MIN);
  check_length(126, LEN_MIN);
  check_length(65535, LEN_MIN);
  check_length(65536, LEN_MIN);
  check_length(70000, LEN_MIN);
}

static void test_frame_header_sizes(void **state) {
  (void)state;
  static const struct { size_t n, header; } cases[] = {{125, 6}, {126, 8}, {65535, 8}, {65536, 14}};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    uint8_t *text = make_text(cases[i].n);
    bytes_t b = {0};
    put_frame(&b, FIN | TEXT, text, cases[i].n);
    assert_int_equal(b.len, cases[i].header + cases[i].n);
    bytes_free(&b);
    free(text);
  }
}

/* Non-minimal length encodings are accepted for data frames. */
static void test_non_minimal_lengths_accepted(void **state) {
  (void)state;
  check_length(5, LEN_16);
  check_length(5, LEN_64);
  check_length(0, LEN_64);
  check_length(300, LEN_64);
}

/* RFC 6455 5.2: the most significant bit of a 64-bit length must be 0 (1002, not 1009). */
static void test_64bit_top_bit_rejected(void **state) {
  (void)state;
  static const uint8_t lens[][8] = {
      {0x80, 0, 0, 0, 0, 0, 0, 5}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};
  for (size_t i = 0; i < 2; i++) {
    bytes_t b = {0};
    put_byte(&b, FIN | TEXT);
    put_byte(&b, 0x80 | 127);
    put(&b, lens[i], 8);
    put(&b, "\x01\x02\x03\x04hello", 9);
    RUN(&b, SIZE_MAX, E_ERR(1002));
    bytes_free(&b);
  }
}

/* ------------------------------------------------------------ reserved bits and opcodes */

static void test_reserved_bits_rejected(void **state) {
  (void)state;
  static const uint8_t rsv[] = {RSV1, RSV2, RSV3, RSV1 | RSV3};
  for (size_t i = 0; i < sizeof(rsv); i++) {
    run_one((uint8_t)(FIN | rsv[i] | TEXT), "x", 1, MIB, (exp_t)E_ERR(1002));
    run_one((uint8_t)(FIN | rsv[i] | PING), "x", 1, MIB, (exp_t)E_ERR(1002));
    bytes_t b = {0};
    put_str(&b, TEXT, "a");
    put_frame(&b, (uint8_t)(FIN | rsv[i] | CONT), "b", 1);
    RUN(&b, MIB, E_ERR(1002));
    bytes_free(&b);
  }
}

static void test_reserved_opcodes_rejected(void **state) {
  (void)state;
  static const uint8_t ops[] = {3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf};
  for (size_t i = 0; i < sizeof(ops); i++) {
    run_one((uint8_t)(FIN | ops[i]), "x", 1, MIB, (exp_t)E_ERR(1002));
    run_one(ops[i], "", 0, MIB, (exp_t)E_ERR(1002));
  }
}

/* ------------------------------------------------------------ control frames */

static void test_control_frames(void **state) {
  (void)state;
  uint8_t big[125];
  for (size_t i = 0; i < sizeof(big); i++) big[i] = (uint8_t)(i * 7);
  bytes_t b = {0};
  put_str(&b, FIN | PING, "abc");
  put_str(&b, FIN | PONG, "def");
  put_frame(&b, FIN | PING, big, sizeof(big));
  put_frame(&b, FIN | PONG, big, sizeof(big));
  exp_t ex[] = {E_PING("abc"), E_PONG("def"), {RT_WS_EV_PING, 0, big, 125}, {RT_WS_EV_PONG, 0, big, 125}};
  run_case(&b, MIB, ex, 4);
  bytes_free(&b);
}

/* RFC 6455 5.5: control frames must not be fragmented. */
static void test_fragmented_control_rejected(void **state) {
  (void)state;
  run_one(PING, "a", 1, MIB, (exp_t)E_ERR(1002));
  run_one(PONG, "a", 1, MIB, (exp_t)E_ERR(1002));
  run_one(CLOSE, "\x03\xe8", 2, MIB, (exp_t)E_ERR(1002));
}

/* RFC 6455 5.5: control payloads are at most 125 bytes, whatever the length encoding. */
static void test_long_control_rejected(void **state) {
  (void)state;
  uint8_t big[126] = {0};
  run_one(FIN | PING, big, 126, MIB, (exp_t)E_ERR(1002));
  run_one(FIN | PONG, big, 126, MIB, (exp_t)E_ERR(1002));
  big[0] = 0x03, big[1] = 0xe8;
  run_one(FIN | CLOSE, big, 126, MIB, (exp_t)E_ERR(1002));
  bytes_t b = {0};
  put_frame_ex(&b, FIN | PING, "hi", 2, LEN_16, 1);
  RUN(&b, MIB, E_ERR(1002));
  bytes_free(&b);
  /* Two bytes decide it: the rest of the frame need not arrive. */
  put_frame(&b, FIN | PING, big, 126);
  b.len = 2;
  RUN(&b, MIB, E_ERR(1002));
  bytes_free(&b);
}

/* ------------------------------------------------------------ fragmentation */

static void test_fragmented_text(void **state) {
  (void)state;
  bytes_t b = {0};
  put_str(&b, TEXT, "Hel");
  put_str(&b, CONT, "lo");
  put_str(&b, FIN | CONT, ", world");
  RUN(&b, MIB, E_TEXT("Hello, world"));
  bytes_free(&b);
  put_frame(&b, BIN, "\xff", 1);
  put_frame(&b, FIN | CONT, "\xfe", 1);
  RUN(&b, MIB, E_BIN("\xff\xfe"));
  bytes_free(&b);
}

static void test_empty_fragments(void **state) {
  (void)state;
  bytes_t b = {0};
  put_str(&b, TEXT, "");
  put_str(&b, CONT, "");
  put_str(&b, FIN | CONT, "");
  put_str(&b, TEXT, "");
  put_str(&b, FIN | CONT, "x");
  RUN(&b, MIB, E_TEXT(""), E_TEXT("x"));
  bytes_free(&b);
}

/* RFC 6455 5.4: control frames may be injected between fragments and do not disturb the message. */
static void test_control_between_fragments(void **state) {
  (void)state;
  bytes_t b = {0};
  put_str(&b, TEXT, "Hel");
  put_str(&b, FIN | PING, "p");
  put_str(&b, CONT, "lo");
  put_str(&b, FIN | PONG, "q");
  put_close(&b, 1001, "away", 4);
  put_str(&b, FIN | CONT, "!");
  RUN(&b, MIB, E_PING("p"), E_PONG("q"), E_CLOSE(1001, "away"), E_TEXT("Hello!"));
  bytes_free(&b);
}

static void test_continuation_without_message(void **state) {
  (void)state;
  run_one(FIN | CONT, "x", 1, MIB, (exp_t)E_ERR(1002));
  run_one(CONT, "x", 1, MIB, (exp_t)E_ERR(1002));
  bytes_t b = {0};
  put_str(&b, FIN | TEXT, "a");
  put_str(&b, FIN | CONT, "b");
  RUN(&b, MIB, E_TEXT("a"), E_ERR(1002));
  bytes_free(&b);
}

static void test_new_message_inside_fragmented(void **state) {
  (void)state;
  static const uint8_t second[] = {FIN | TEXT, TEXT, FIN | BIN, BIN};
  for (size_t i = 0; i < sizeof(second); i++) {
    bytes_t b = {0};
    put_str(&b, TEXT, "a");
    put_str(&b, FIN | PING, "");
    put_str(&b, second[i], "b");
    RUN(&b, MIB, E_PING(""), E_ERR(1002));
    bytes_free(&b);
  }
}

static void test_many_fragments_with_pings(void **state) {
  (void)state;
  size_t n = 70000, piece = 70;
  uint8_t *text = make_text(n);
  bytes_t b = {0};
  for (size_t off = 0; off < n; off += piece) {
    uint8_t op = off == 0 ? TEXT : CONT;
    put_frame(&b, (uint8_t)(off + piece >= n ? FIN | op : op), text + off, piece);
    if (off % 7000 == 0) put_str(&b, FIN | PING, "tick");
  }
  exp_t ex[11];
  for (size_t i = 0; i < 10; i++) ex[i] = (exp_t)E_PING("tick");
  ex[10] = (exp_t){RT_WS_EV_TEXT, 0, text, n};
  run_case(&b, MIB, ex, 11);
  bytes_free(&b);
  free(text);
}

/* A 70,000-byte message in fragments using the 16- and 64-bit forms. */
static void test_large_fragmented_message(void **state) {
  (void)state;
  size_t n = 70000;
  uint8_t *text = make_text(n);
  bytes_t b = {0};
  put_frame_ex(&b, TEXT, text, 65536, LEN_64, 1);
  put_frame_ex(&b, FIN | CONT, text + 65536, n - 65536, LEN_16, 1);
  exp_t ex = {RT_WS_EV_TEXT, 0, text, n};
  run_case(&b, MIB, &ex, 1);
  bytes_free(&b);
  free(text);
}

/* ------------------------------------------------------------ UTF-8 */

static const char kosme[] = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 \xf0\x9f\x98\x80 \xe2\x82\xac!";

/* Autobahn 6.x: valid text split into fragments at every point (and every pair of points). */
static void test_utf8_split_across_fragments(void **state) {
  (void)state;
  size_t n = sizeof(kosme) - 1;
  exp_t ex = {RT_WS_EV_TEXT, 0, kosme, n};
  for (size_t cut = 0; cut <= n; cut++) {
    bytes_t b = {0};
    put_frame(&b, TEXT, kosme, cut);
    put_frame(&b, FIN | CONT, kosme + cut, n - cut);
    run_case(&b, MIB, &ex, 1);
    bytes_free(&b);
  }
  for (size_t c1 = 0; c1 <= n; c1++)
    for (size_t c2 = c1; c2 <= n; c2 += 3) {
      bytes_t b = {0};
      put_frame(&b, TEXT, kosme, c1);
      put_frame(&b, CONT, kosme + c1, c2 - c1);
      put_frame(&b, FIN | CONT, kosme + c2, n - c2);
      run_case(&b, MIB, &ex, 1);
      bytes_free(&b);
    }
}

static const struct {
  const char *s;
  size_t len;
} bad_utf8[] = {
    {"\xc0\x80", 2},         {"\xc1\xbf", 2},         {"\xe0\x80\x80", 3},     {"\xe0\x9f\xbf", 3},
    {"\xf0\x80\x80\x80", 4}, {"\xf0\x8f\xbf\xbf", 4}, {"\xed\xa0\x80", 3},     {"\xed\xbf\xbf", 3},
    {"\xf4\x90\x80\x80", 4}, {"\xf5\x80\x80\x80", 4}, {"\xff", 1},             {"\x80", 1},
    {"\xc2\x41", 2},         {"\xe1\x80\x41", 3},     {"\xf8\x88\x80\x80\x80", 5},
};

/* Each invalid class fails with 1007, in a single frame or in any fragment, split anywhere. */
static void test_utf8_invalid_classes(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++) {
    bytes_t msg = {0};
    put(&msg, "ab\xce\xba", 4);
    put(&msg, bad_utf8[i].s, bad_utf8[i].len);
    put(&msg, "cd", 2);
    bytes_t b = {0};
    put_frame(&b, FIN | TEXT, msg.p, msg.len);
    RUN(&b, MIB, E_ERR(1007));
    bytes_free(&b);
    for (size_t cut = 0; cut <= msg.len; cut++) {
      put_frame(&b, TEXT, msg.p, cut);
      put_frame(&b, FIN | CONT, msg.p + cut, msg.len - cut);
      RUN(&b, MIB, E_ERR(1007));
      bytes_free(&b);
    }
    bytes_free(&msg);
  }
}

/* RFC 6455 8.1: fail as soon as the text cannot be UTF-8, before the frame or message ends. */
static void test_utf8_fails_fast(void **state) {
  (void)state;
  bytes_t b = {0};
  uint8_t payload[100];
  memset(payload, 'a', sizeof(payload));
  payload[2] = 0xff;
  put_frame(&b, FIN | TEXT, payload, sizeof(payload));
  b.len = 6 + 3; /* header and "aa\xff" only */
  RUN(&b, MIB, E_ERR(1007));
  bytes_free(&b);
  put_frame(&b, TEXT, "ok\xed\xa0\x80", 5); /* no continuation ever comes */
  RUN(&b, MIB, E_ERR(1007));
  bytes_free(&b);
}

/* A code point cut off by the end of the message is invalid; cut by a fragment boundary it is not. */
static void test_utf8_incomplete_at_end(void **state) {
  (void)state;
  bytes_t b = {0};
  put_frame(&b, FIN | TEXT, "ab\xe2\x82", 4);
  RUN(&b, MIB, E_ERR(1007));
  bytes_free(&b);
  put_frame(&b, TEXT, "ab\xe2", 3);
  put_frame(&b, FIN | CONT, "\x82", 1);
  RUN(&b, MIB, E_ERR(1007));
  bytes_free(&b);
  put_frame(&b, TEXT, "ab\xe2", 3);
  RUN_NO_EVENT(&b, MIB);
  put_frame(&b, FIN | CONT, "\x82\xac", 2);
  RUN(&b, MIB, E_TEXT("ab\xe2\x82\xac"));
  bytes_free(&b);
}

/* ------------------------------------------------------------ message size */

static void test_max_size_single_frame(void **state) {
  (void)state;
  uint8_t *text = make_text(70001);
  exp_t ok = {RT_WS_EV_TEXT, 0, text, 70000};
  run_one(FIN | TEXT, text, 70000, 70000, ok);
  run_one(FIN | TEXT, text, 70001, 70000, (exp_t)E_ERR(1009));
  ok.len = 1000;
  run_one(FIN | TEXT, text, 1000, 1000, ok);
  run_one(FIN | BIN, text, 1001, 1000, (exp_t)E_ERR(1009));
  free(text);
}

/* The limit is on the whole message: the sum of its fragments. */
static void test_max_size_fragmented(void **state) {
  (void)state;
  uint8_t *text = make_text(1001);
  bytes_t b = {0};
  put_frame(&b, TEXT, text, 600);
  put_str(&b, FIN | PING, "");
  put_frame(&b, FIN | CONT, text + 600, 400);
  exp_t ok[] = {E_PING(""), {RT_WS_EV_TEXT, 0, text, 1000}};
  run_case(&b, 1000, ok, 2);
  bytes_free(&b);
  put_frame(&b, TEXT, text, 600);
  put_frame(&b, FIN | CONT, text + 600, 401);
  RUN(&b, 1000, E_ERR(1009));
  /* Decided by the declared length: the oversize fragment's payload need not arrive. */
  b.len -= 401;
  RUN(&b, 1000, E_ERR(1009));
  bytes_free(&b);
  free(text);
}

/* The size check comes before any allocation: a huge declared length with a failing allocator is 1009. */
static void test_size_checked_before_allocating(void **state) {
  (void)state;
  static const uint64_t lens[] = {MIB + 1, UINT64_C(0x7fffffffffffffff)};
  for (size_t i = 0; i < 2; i++) {
    rt_ws_decoder_t *d = rt_ws_decoder_new(MIB);
    assert_non_null(d);
    bytes_t b = {0};
    put_byte(&b, TEXT);
    put_length(&b, lens[i], LEN_64, 1);
    put(&b, "\x01\x02\x03\x04", 4);
    rt_alloc_fail_after(0);
    trace_t *t = feed_split(d, b.p, b.len, SPLIT_WHOLE);
    rt_alloc_fail_after(-1);
    exp_t ex = E_ERR(1009);
    check_trace(t, &ex, 1, 0);
    assert_int_equal(t->ooms, 0);
    trace_free(t);
    bytes_free(&b);
    rt_ws_decoder_free(d);
  }
}

/* Buffered memory follows the bytes received, not the length a header claims. */
static void test_buffer_follows_received_bytes(void **state) {
  (void)state;
  uint8_t *text = make_text(MIB);
  bytes_t b = {0};
  put_frame(&b, FIN | TEXT, text, MIB);
  rt_ws_decoder_t *d = rt_ws_decoder_new(MIB);
  assert_non_null(d);
  trace_t *t = feed_split(d, b.p, 14 + 100, SPLIT_WHOLE);
  assert_int_equal(t->n, 0);
  assert_true(rt_ws_decoder_buffered(d) >= 100);
  assert_true(rt_ws_decoder_buffered(d) <= 4096);
  trace_free(t);
  t = feed_split(d, b.p + 114, b.len - 114, 2);
  exp_t ex = {RT_WS_EV_TEXT, 0, text, MIB};
  check_trace(t, &ex, 1, 2);
  trace_free(t);
  rt_ws_decoder_free(d);
  bytes_free(&b);
  free(text);
}

/* ------------------------------------------------------------ close frames */

static void test_close_frames(void **state) {
  (void)state;
  bytes_t b = {0};
  put_frame(&b, FIN | CLOSE, "", 0);
  RUN(&b, MIB, E_CLOSE(RT_CLOSE_NO_STATUS, ""));
  bytes_free(&b);
  put_close(&b, 1000, "", 0);
  RUN(&b, MIB, E_CLOSE(1000, ""));
  bytes_free(&b);
  put_close(&b, 4999, "bye \xce\xba", 6);
  RUN(&b, MIB, E_CLOSE(4999, "bye \xce\xba"));
  bytes_free(&b);
  uint8_t reason[123];
  memset(reason, 'r', sizeof(reason));
  put_close(&b, 1001, reason, sizeof(reason));
  exp_t ex = {RT_WS_EV_CLOSE, 1001, reason, sizeof(reason)};
  run_case(&b, MIB, &ex, 1);
  bytes_free(&b);
}

static void test_close_one_byte_rejected(void **state) {
  (void)state;
  run_one(FIN | CLOSE, "\x03", 1, MIB, (exp_t)E_ERR(1002));
}

static void test_close_codes_on_the_wire(void **state) {
  (void)state;
  static const uint16_t good[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                                  1012, 1013, 1014, 3000, 3999, 4000, 4999};
  static const uint16_t bad[] = {0,    1,    999,  1004, 1005, 1006, 1015, 1016,
                                 1100, 2000, 2999, 5000, 6000, 65535};
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    bytes_t b = {0};
    put_close(&b, good[i], "x", 1);
    exp_t ex = {RT_WS_EV_CLOSE, good[i], "x", 1};
    run_case(&b, MIB, &ex, 1);
    bytes_free(&b);
  }
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    bytes_t b = {0};
    put_close(&b, bad[i], "x", 1);
    RUN(&b, MIB, E_ERR(1002));
    bytes_free(&b);
  }
}

static void test_close_reason_must_be_utf8(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++) {
    bytes_t b = {0};
    put_close(&b, 1000, bad_utf8[i].s, bad_utf8[i].len);
    RUN(&b, MIB, E_ERR(1007));
    bytes_free(&b);
  }
  bytes_t b = {0};
  put_close(&b, 1000, "ab\xe2\x82", 4); /* truncated code point */
  RUN(&b, MIB, E_ERR(1007));
  bytes_free(&b);
}

static int close_code_reference(unsigned c) {
  return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

static void test_close_code_valid(void **state) {
  (void)state;
  for (unsigned c = 0; c <= 0xffff; c++)
    assert_int_equal(rt_ws_close_code_valid((uint16_t)c), close_code_reference(c));
}

/* ------------------------------------------------------------ errors */

static void test_error_is_sticky(void **state) {
  (void)state;
  rt_ws_decoder_t *d = rt_ws_decoder_new(MIB);
  assert_non_null(d);
  uint8_t bad[] = {FIN | RSV1 | TEXT, 0x80, 0, 0, 0, 0};
  size_t used;
  rt_ws_event_t ev;
  assert_int_equal(rt_ws_decoder_feed(d, bad, sizeof(bad), &used, &ev), 0);
  assert_int_equal(ev.type, RT_WS_EV_ERROR);
  assert_int_equal(ev.close_code, 1002);
  const char *reason = ev.reason;
  for (int i = 0; i < 3; i++) {
    bytes_t b = {0};
    put_str(&b, FIN | TEXT, "fine");
    assert_int_equal(rt_ws_decoder_feed(d, b.p, b.len, &used, &ev), 0);
    assert_int_equal(ev.type, RT_WS_EV_ERROR);
    assert_int_equal(ev.close_code, 1002);
    assert_string_equal(ev.reason, reason);
    assert_int_equal(used, b.len);
    bytes_free(&b);
  }
  assert_int_equal(rt_ws_decoder_feed(d, bad, 0, &used, &ev), 0);
  assert_int_equal(ev.type, RT_WS_EV_ERROR);
  rt_ws_decoder_free(d);
}

/* ------------------------------------------------------------ zero copy */

static int points_into(const uint8_t *p, size_t n, const uint8_t *buf, size_t len) {
  return p >= buf && p + n <= buf + len;
}

static void test_zero_copy_whole_frame(void **state) {
  (void)state;
  bytes_t b = {0};
  put_str(&b, FIN | TEXT, "first message");
  size_t first = b.len;
  put_str(&b, FIN | PING, "ping!");
  rt_ws_decoder_t *d = rt_ws_decoder_new(MIB);
  assert_non_null(d);
  size_t used;
  rt_ws_event_t ev;
  assert_int_equal(rt_ws_decoder_feed(d, b.p, b.len, &used, &ev), 0);
  assert_int_equal(ev.type, RT_WS_EV_TEXT);
  assert_int_equal(used, first);
  assert_true(points_into(ev.payload, ev.len, b.p, b.len));
  assert_memory_equal(ev.payload, "first message", 13);
  assert_int_equal(rt_ws_decoder_buffered(d), 0);
  assert_int_equal(rt_ws_decoder_feed(d, b.p + used, b.len - used, &used, &ev), 0);
  assert_int_equal(ev.type, RT_WS_EV_PING);
  assert_true(points_into(ev.payload, ev.len, b.p, b.len));
  assert_int_equal(rt_ws_decoder_buffered(d), 0);
  rt_ws_decoder_free(d);
  bytes_free(&b);
}

/*
 * A control payload split across feeds is gathered in the message buffer
 * behind an open message's bytes (the decoder has no control buffer of its
 * own); an allocation failure there consumes nothing and a retry succeeds.
 */
static void test_split_control_is_gathered_behind_the_message(void **state) {
  (void)state;
  uint8_t ping[100];
  for (size_t i = 0; i < sizeof(ping); i++) ping[i] = (uint8_t)('a' + i % 26);
  bytes_t b = {0};
  put_frame(&b, TEXT, "abc", 3);
  size_t ping_at = b.len;
  put_frame(&b, FIN | PING, ping, sizeof(ping));
  size_t cont_at = b.len;
  put_frame(&b, FIN | CONT, "def", 3);
  rt_ws_decoder_t *d = rt_ws_decoder_new(MIB);
  assert_non_null(d);
  size_t used;
  rt_ws_event_t ev;
  size_t split = ping_at + 6 + 50; /* header (2 + 4 mask bytes) and half the payload */
  assert_int_equal(rt_ws_decoder_feed(d, b.p, ping_at, &used, &ev), 0);
  assert_int_equal(ev.type, RT_WS_EV_NONE);
  rt_alloc_fail_after(0);
  assert_int_equal(rt_ws_decoder_feed(d, b.p + ping_at, split - ping_at, &used, &ev), RT_ENOMEM);
  assert_int_equal(used, 0);
  rt_alloc_fail_after(-1);
  assert_int_equal(rt_ws_decoder_feed(d, b.p + ping_at, split - ping_at, &used, &ev), 0);
  assert_int_equal(ev.type, RT_WS_EV_NONE);
  assert_int_equal(used, split - ping_at);
  assert_true(rt_ws_decoder_buffered(d) >= 3 + sizeof(ping));
  assert_int_equal(rt_ws_decoder_feed(d, b.p + split, cont_at - split, &used, &ev), 0);
  assert_int_equal(ev.type, RT_WS_EV_PING);
  assert_int_equal(ev.len, sizeof(ping));
  assert_memory_equal(ev.payload, ping, sizeof(ping));
  assert_int_equal(rt_ws_decoder_feed(d, b.p + cont_at, b.len - cont_at, &used, &ev), 0);
  assert_int_equal(ev.type, RT_WS_EV_TEXT);
  assert_int_equal(ev.len, 6);
  assert_memory_equal(ev.payload, "abcdef", 6);
  rt_ws_decoder_free(d);
  bytes_free(&b);
}

/* A header split across feeds does not force a copy when the payload then arrives whole. */
static void test_zero_copy_after_split_header(void **state) {
  (void)state;
  uint8_t *text = make_text(300);
  bytes_t b = {0};
  put_frame(&b, FIN | TEXT, text, 300);
  rt_ws_decoder_t *d = rt_ws_decoder_new(MIB);
  assert_non_null(d);
  size_t used;
  rt_ws_event_t ev;
  assert_int_equal(rt_ws_decoder_feed(d, b.p, 3, &used, &ev), 0);
  assert_int_equal(ev.type, RT_WS_EV_NONE);
  assert_int_equal(used, 3);
  assert_int_equal(rt_ws_decoder_buffered(d), 3);
  assert_int_equal(rt_ws_decoder_feed(d, b.p + 3, b.len - 3, &used, &ev), 0);
  assert_int_equal(ev.type, RT_WS_EV_TEXT);
  assert_true(points_into(ev.payload, ev.len, b.p + 3, b.len - 3));
  assert_memory_equal(ev.payload, text, 300);
  assert_int_equal(rt_ws_decoder_buffered(d), 0);
  rt_ws_decoder_free(d);
  bytes_free(&b);
  free(text);
}

/* A split payload is gathered in the decoder; a big buffer is released once the next feed starts. */
static void test_split_payload_is_buffered_then_released(void **state) {
  (void)state;
  uint8_t *text = make_text(10000);
  bytes_t b = {0};
  put_frame(&b, FIN | TEXT, text, 10000);
  put_str(&b, FIN | TEXT, "next");
  rt_ws_decoder_t *d = rt_ws_decoder_new(MIB);
  assert_non_null(d);
  size_t used, half = 5000;
  rt_ws_event_t ev;
  uint8_t *copy = malloc(b.len);
  memcpy(copy, b.p, b.len);
  assert_int_equal(rt_ws_decoder_feed(d, copy, half, &used, &ev), 0);
  assert_int_equal(ev.type, RT_WS_EV_NONE);
  assert_memory_equal(copy, b.p, half); /* buffered bytes are unmasked on the copy, input kept */
  assert_int_equal(rt_ws_decoder_feed(d, copy + half, b.len - half, &used, &ev), 0);
  assert_int_equal(ev.type, RT_WS_EV_TEXT);
  assert_false(points_into(ev.payload, ev.len, copy, b.len));
  assert_memory_equal(ev.payload, text, 10000);
  assert_true(rt_ws_decoder_buffered(d) >= 10000);
  size_t rest = half + used;
  assert_int_equal(rt_ws_decoder_feed(d, copy + rest, b.len - rest, &used, &ev), 0);
  assert_int_equal(ev.type, RT_WS_EV_TEXT);
  assert_memory_equal(ev.payload, "next", 4);
  assert_true(rt_ws_decoder_buffered(d) <= 4096);
  free(copy);
  rt_ws_decoder_free(d);
  bytes_free(&b);
  free(text);
}

/* ------------------------------------------------------------ OOM */

/*
 * Fails the allocator after n successful allocations, for n = 0, 1, ...,
 * until a run needs no retry. Every run must either fail cleanly (decoder_new
 * NULL, or feeds returning RT_ENOMEM with nothing consumed, which feed_split
 * retries) and still produce exactly the expected events, leak-free.
 */
static void run_oom_loop(const bytes_t *in, size_t max, const exp_t *exp, size_t nexp, unsigned seed) {
  long n;
  size_t injected = 0;
  for (n = 0; n < 10000; n++) {
    rt_alloc_fail_after(n);
    rt_ws_decoder_t *d = rt_ws_decoder_new(max);
    if (d == NULL) {
      rt_alloc_fail_after(-1);
      injected++;
      continue;
    }
    trace_t *t = feed_split(d, in->p, in->len, seed);
    rt_alloc_fail_after(-1);
    check_trace(t, exp, nexp, seed);
    size_t ooms = t->ooms;
    injected += ooms;
    trace_free(t);
    rt_ws_decoder_free(d);
    if (ooms == 0) break;
  }
  assert_true(n < 10000);
  assert_true(injected >= 2);
}

/* The same through a lender: failures now also hit the borrows that must allocate a spare. */
static void run_oom_loop_lent(const bytes_t *in, size_t max, const exp_t *exp, size_t nexp, unsigned seed) {
  long n;
  size_t injected = 0;
  for (n = 0; n < 10000; n++) {
    rt_ws_lender_t l;
    rt_ws_lender_init(&l, max);
    rt_ws_decoder_t *own = NULL;
    rt_alloc_fail_after(n);
    trace_t *t = feed_lent(&l, &own, in->p, in->len, seed);
    rt_alloc_fail_after(-1);
    check_trace(t, exp, nexp, seed);
    size_t ooms = t->ooms;
    injected += ooms;
    trace_free(t);
    rt_ws_decoder_free(own);
    rt_ws_lender_destroy(&l);
    if (ooms == 0) break;
  }
  assert_true(n < 10000);
  assert_true(injected >= 2);
}

static void test_oom_injection(void **state) {
  (void)state;
  uint8_t *text = make_text(70000);
  bytes_t b = {0};
  put_frame(&b, TEXT, text, 20000);
  put_str(&b, FIN | PING, "p");
  put_frame(&b, CONT, text + 20000, 30000);
  put_frame(&b, FIN | CONT, text + 50000, 20000);
  put_frame(&b, FIN | TEXT, text, 70000);
  exp_t ex[] = {E_PING("p"), {RT_WS_EV_TEXT, 0, text, 70000}, {RT_WS_EV_TEXT, 0, text, 70000}};
  for (unsigned seed = 1; seed < 2 + RANDOM_SEEDS; seed += 3) {
    run_oom_loop(&b, MIB, ex, 3, seed);
    run_oom_loop_lent(&b, MIB, ex, 3, seed);
  }
  bytes_free(&b);
  free(text);
}

/* ------------------------------------------------------------ lending */

/* One read of a stream as conn.c does it: borrow, feed `n` bytes (a copy) once, settle. */
static int lent_read(rt_ws_lender_t *l, rt_ws_decoder_t **own, const uint8_t *bytes, size_t n,
                     size_t *used, rt_ws_event_t *ev) {
  rt_ws_decoder_t *d = rt_ws_lender_borrow(l, *own);
  if (d == NULL) return RT_ENOMEM;
  uint8_t *copy = malloc(n);
  assert_non_null(copy);
  memcpy(copy, bytes, n);
  int rc = rt_ws_decoder_feed(d, copy, n, used, ev);
  if (ev->type != RT_WS_EV_NONE && ev->type != RT_WS_EV_ERROR) assert_non_null(ev->payload);
  free(copy); /* the tests below only look at the event's type and length */
  rt_ws_lender_settle(l, own, d);
  return rc;
}

/* Whole frames: the stream never holds a decoder, and one spare serves every read. */
static void test_lender_whole_frames_hold_nothing(void **state) {
  (void)state;
  bytes_t b = {0};
  put_str(&b, FIN | TEXT, "hello");
  rt_ws_lender_t l;
  rt_ws_lender_init(&l, MIB);
  assert_null(l.spare);
  rt_ws_decoder_t *own = NULL;
  size_t used;
  rt_ws_event_t ev;
  assert_int_equal(lent_read(&l, &own, b.p, b.len, &used, &ev), 0);
  assert_int_equal(ev.type, RT_WS_EV_TEXT);
  assert_null(own);
  rt_ws_decoder_t *spare = l.spare;
  assert_non_null(spare);
  assert_true(rt_ws_decoder_idle(spare));
  rt_alloc_fail_after(0); /* from now on a whole frame costs no allocation */
  for (int i = 0; i < 3; i++) {
    assert_int_equal(lent_read(&l, &own, b.p, b.len, &used, &ev), 0);
    assert_int_equal(ev.type, RT_WS_EV_TEXT);
    assert_int_equal(used, b.len);
    assert_null(own);
    assert_ptr_equal(l.spare, spare);
  }
  rt_alloc_fail_after(-1);
  rt_ws_lender_destroy(&l);
  assert_null(l.spare);
  rt_ws_lender_destroy(&l); /* twice is harmless */
  bytes_free(&b);
}

/*
 * A partial frame is kept by moving the lent decoder to the stream: that
 * allocates nothing, even with the allocator failing. The next stream to
 * borrow finds no spare and must allocate one: that is where an allocation
 * failure lands (conn.c aborts that connection), and the stream holding the
 * partial frame does not notice.
 */
static void test_lender_partial_frame_kept_without_allocating(void **state) {
  (void)state;
  bytes_t b = {0};
  put_str(&b, FIN | TEXT, "partial");
  rt_ws_lender_t l;
  rt_ws_lender_init(&l, MIB);
  rt_ws_decoder_t *a = NULL, *other = NULL;
  size_t used;
  rt_ws_event_t ev;
  assert_int_equal(lent_read(&l, &other, b.p, b.len, &used, &ev), 0); /* allocates the spare */
  rt_ws_decoder_t *spare = l.spare;
  rt_alloc_fail_after(0);
  assert_int_equal(lent_read(&l, &a, b.p, 3, &used, &ev), 0); /* half a header */
  assert_int_equal(ev.type, RT_WS_EV_NONE);
  assert_int_equal(used, 3);
  assert_ptr_equal(a, spare);
  assert_false(rt_ws_decoder_idle(a));
  assert_null(l.spare);
  assert_int_equal(lent_read(&l, &other, b.p, b.len, &used, &ev), RT_ENOMEM);
  assert_null(other);
  assert_null(l.spare);
  assert_int_equal(lent_read(&l, &a, b.p + 3, b.len - 3, &used, &ev), 0); /* the rest: zero copy */
  assert_int_equal(ev.type, RT_WS_EV_TEXT);
  assert_int_equal(ev.len, 7);
  assert_null(a);
  assert_ptr_equal(l.spare, spare); /* given back */
  assert_int_equal(lent_read(&l, &other, b.p, b.len, &used, &ev), 0); /* and lent again */
  assert_int_equal(ev.type, RT_WS_EV_TEXT);
  rt_alloc_fail_after(-1);
  assert_ptr_equal(l.spare, spare);
  rt_ws_lender_destroy(&l);
  bytes_free(&b);
}

/*
 * A partial payload must be buffered, and the buffer is an allocation. When
 * it fails the feed consumes nothing and leaves the decoder as it was (idle),
 * so it goes back to the lender; once memory is back the same read is kept.
 */
static void test_lender_partial_payload_oom(void **state) {
  (void)state;
  uint8_t *text = make_text(1000);
  bytes_t b = {0};
  put_frame(&b, FIN | TEXT, text, 1000);
  rt_ws_lender_t l;
  rt_ws_lender_init(&l, MIB);
  bytes_t w = {0};
  put_str(&w, FIN | TEXT, "w");
  rt_ws_decoder_t *a = NULL, *other = NULL;
  size_t used;
  rt_ws_event_t ev;
  assert_int_equal(lent_read(&l, &other, w.p, w.len, &used, &ev), 0); /* allocates the spare */
  rt_ws_decoder_t *d0 = l.spare;
  assert_non_null(d0);
  rt_alloc_fail_after(0);
  assert_int_equal(lent_read(&l, &a, b.p, 500, &used, &ev), RT_ENOMEM);
  assert_int_equal(used, 0);
  assert_null(a); /* nothing was kept: the decoder went back as it was */
  assert_ptr_equal(l.spare, d0);
  assert_true(rt_ws_decoder_idle(d0));
  rt_alloc_fail_after(-1);
  assert_int_equal(lent_read(&l, &a, b.p, 500, &used, &ev), 0);
  assert_int_equal(ev.type, RT_WS_EV_NONE);
  assert_ptr_equal(a, d0);
  assert_true(rt_ws_decoder_buffered(a) >= 500 - 8);
  assert_int_equal(lent_read(&l, &a, b.p + 500, b.len - 500, &used, &ev), 0);
  assert_int_equal(ev.type, RT_WS_EV_TEXT);
  assert_int_equal(ev.len, 1000);
  assert_null(a);
  assert_ptr_equal(l.spare, d0);
  rt_ws_lender_destroy(&l);
  bytes_free(&b);
  bytes_free(&w);
  free(text);
}

/* A stream that finishes its frame while the lender has a spare again frees its decoder. */
static void test_lender_keeps_one_spare(void **state) {
  (void)state;
  bytes_t b = {0};
  put_str(&b, FIN | TEXT, "x");
  rt_ws_lender_t l;
  rt_ws_lender_init(&l, MIB);
  rt_ws_decoder_t *a = NULL, *other = NULL;
  size_t used;
  rt_ws_event_t ev;
  assert_int_equal(lent_read(&l, &a, b.p, 2, &used, &ev), 0);
  rt_ws_decoder_t *da = a;
  assert_non_null(da);
  assert_null(l.spare);
  assert_int_equal(lent_read(&l, &other, b.p, b.len, &used, &ev), 0); /* allocates a second */
  rt_ws_decoder_t *d2 = l.spare;
  assert_non_null(d2);
  assert_ptr_not_equal(d2, da);
  assert_int_equal(lent_read(&l, &a, b.p + 2, b.len - 2, &used, &ev), 0);
  assert_int_equal(ev.type, RT_WS_EV_TEXT);
  assert_null(a); /* da was freed (ASan/LSan would see a leak or a double free) */
  assert_ptr_equal(l.spare, d2);
  rt_ws_lender_destroy(&l);
  bytes_free(&b);
}

/* A fragmented message spans reads even when each frame is whole; a failed decoder stays with its stream. */
static void test_lender_fragments_and_errors_are_kept(void **state) {
  (void)state;
  bytes_t first = {0}, last = {0}, bad = {0};
  put_str(&first, TEXT, "frag");
  put_str(&last, FIN | CONT, "ment");
  put_frame_ex(&bad, FIN | TEXT, "x", 1, 0, 0);
  rt_ws_lender_t l;
  rt_ws_lender_init(&l, MIB);
  rt_ws_decoder_t *a = NULL;
  size_t used;
  rt_ws_event_t ev;
  assert_int_equal(lent_read(&l, &a, first.p, first.len, &used, &ev), 0);
  assert_int_equal(ev.type, RT_WS_EV_NONE);
  assert_non_null(a);
  assert_false(rt_ws_decoder_idle(a));
  assert_int_equal(lent_read(&l, &a, last.p, last.len, &used, &ev), 0);
  assert_int_equal(ev.type, RT_WS_EV_TEXT);
  assert_int_equal(ev.len, 8);
  assert_null(a);
  assert_int_equal(lent_read(&l, &a, bad.p, bad.len, &used, &ev), 0);
  assert_int_equal(ev.type, RT_WS_EV_ERROR);
  assert_non_null(a);
  assert_false(rt_ws_decoder_idle(a));
  assert_null(l.spare);
  check_sticky(a, RT_CLOSE_PROTOCOL_ERROR);
  rt_ws_decoder_free(a);
  rt_ws_lender_destroy(&l);
  bytes_free(&first);
  bytes_free(&last);
  bytes_free(&bad);
}

/* ------------------------------------------------------------ encoders */

static void assert_wire(rt_frame_t *f, const void *bytes, size_t n) {
  assert_non_null(f);
  assert_int_equal(rt_frame_wire_len(f), n);
  assert_memory_equal(rt_frame_wire(f), bytes, n);
  assert_int_equal(f->refcnt, 1);
  rt_frame_unref(f);
}

static void test_frame_new(void **state) {
  (void)state;
  assert_wire(rt_ws_frame_new(TEXT, "hi", 2), "\x81\x02hi", 4);
  assert_wire(rt_ws_frame_new(PING, NULL, 0), "\x89\x00", 2);
  assert_wire(rt_ws_frame_new(PONG, "abc", 3), "\x8a\x03" "abc", 5);
  uint8_t big[200], want[204] = {0x82, 126, 0, 200};
  memset(big, 0xab, sizeof(big));
  memcpy(want + 4, big, 200);
  assert_wire(rt_ws_frame_new(BIN, big, sizeof(big)), want, sizeof(want));
  rt_alloc_fail_after(0);
  assert_null(rt_ws_frame_new(TEXT, "hi", 2));
  assert_null(rt_ws_close_frame_new(1000, "bye"));
  rt_alloc_fail_after(-1);
}

static void test_close_frame_new(void **state) {
  (void)state;
  assert_wire(rt_ws_close_frame_new(1000, "bye"), "\x88\x05\x03\xe8" "bye", 7);
  assert_wire(rt_ws_close_frame_new(3001, NULL), "\x88\x02\x0b\xb9", 4);
  assert_wire(rt_ws_close_frame_new(1009, ""), "\x88\x02\x03\xf1", 4);
  assert_wire(rt_ws_close_frame_new(RT_CLOSE_NO_STATUS, "ignored"), "\x88\x00", 2);
  char long_ascii[201];
  memset(long_ascii, 'x', 200);
  long_ascii[200] = '\0';
  rt_frame_t *f = rt_ws_close_frame_new(1001, long_ascii);
  assert_int_equal(f->len, 125);
  assert_int_equal(rt_frame_wire(f)[1], 125);
  rt_frame_unref(f);
}

/* The reason is cut to at most 123 bytes, never inside a code point, and as long as it can be. */
static void test_close_reason_truncated_on_boundary(void **state) {
  (void)state;
  static const char *units[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
  for (size_t u = 0; u < 3; u++) {
    size_t ul = strlen(units[u]);
    for (size_t k = 0; k < 8; k++) {
      char reason[300];
      memset(reason, 'a', k);
      size_t len = k;
      while (len + ul < sizeof(reason) - 1) {
        memcpy(reason + len, units[u], ul);
        len += ul;
      }
      reason[len] = '\0';
      rt_frame_t *f = rt_ws_close_frame_new(1000, reason);
      assert_non_null(f);
      size_t got = f->len - 2;
      assert_true(got <= 123);
      assert_true(got + ul > 123); /* the next code point would not have fit */
      assert_true(rt_utf8_valid(rt_frame_payload(f) + 2, got));
      assert_memory_equal(rt_frame_payload(f) + 2, reason, got);
      rt_frame_unref(f);
    }
  }
}

/* Masks a server frame as a client would send it, so encoder output can be fed to the decoder. */
static void mask_for_decoder(rt_frame_t *f, bytes_t *out) {
  const uint8_t *w = rt_frame_wire(f);
  size_t hl = w[1] == 126 ? 4 : w[1] == 127 ? 10 : 2;
  put_frame_ex(out, w[0], w + hl, rt_frame_wire_len(f) - hl, LEN_MIN, 1);
  rt_frame_unref(f);
}

static void test_round_trip(void **state) {
  (void)state;
  uint8_t *text = make_text(70000);
  bytes_t b = {0};
  mask_for_decoder(rt_ws_frame_new(TEXT, text, 70000), &b);
  mask_for_decoder(rt_ws_frame_new(PING, "keepalive", 9), &b);
  mask_for_decoder(rt_ws_close_frame_new(1000, "done"), &b);
  mask_for_decoder(rt_ws_close_frame_new(RT_CLOSE_NO_STATUS, NULL), &b);
  exp_t ex[] = {{RT_WS_EV_TEXT, 0, text, 70000}, E_PING("keepalive"), E_CLOSE(1000, "done"),
                E_CLOSE(RT_CLOSE_NO_STATUS, "")};
  run_case(&b, MIB, ex, 4);
  bytes_free(&b);
  free(text);
}

static void test_decoder_new_free(void **state) {
  (void)state;
  rt_ws_decoder_free(NULL);
  rt_alloc_fail_after(0);
  assert_null(rt_ws_decoder_new(MIB));
  rt_alloc_fail_after(-1);
  rt_ws_decoder_t *d = rt_ws_decoder_new(MIB);
  assert_non_null(d);
  assert_int_equal(rt_ws_decoder_buffered(d), 0);
  rt_ws_decoder_free(d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_single_text),
      cmocka_unit_test(test_empty_messages),
      cmocka_unit_test(test_binary_message),
      cmocka_unit_test(test_several_frames_in_one_input),
      cmocka_unit_test(test_unmasked_rejected),
      cmocka_unit_test(test_length_forms),
      cmocka_unit_test(test_frame_header_sizes),
      cmocka_unit_test(test_non_minimal_lengths_accepted),
      cmocka_unit_test(test_64bit_top_bit_rejected),
      cmocka_unit_test(test_reserved_bits_rejected),
      cmocka_unit_test(test_reserved_opcodes_rejected),
      cmocka_unit_test(test_control_frames),
      cmocka_unit_test(test_split_control_is_gathered_behind_the_message),
      cmocka_unit_test(test_fragmented_control_rejected),
      cmocka_unit_test(test_long_control_rejected),
      cmocka_unit_test(test_fragmented_text),
      cmocka_unit_test(test_empty_fragments),
      cmocka_unit_test(test_control_between_fragments),
      cmocka_unit_test(test_continuation_without_message),
      cmocka_unit_test(test_new_message_inside_fragmented),
      cmocka_unit_test(test_many_fragments_with_pings),
      cmocka_unit_test(test_large_fragmented_message),
      cmocka_unit_test(test_utf8_split_across_fragments),
      cmocka_unit_test(test_utf8_invalid_classes),
      cmocka_unit_test(test_utf8_fails_fast),
      cmocka_unit_test(test_utf8_incomplete_at_end),
      cmocka_unit_test(test_max_size_single_frame),
      cmocka_unit_test(test_max_size_fragmented),
      cmocka_unit_test(test_size_checked_before_allocating),
      cmocka_unit_test(test_buffer_follows_received_bytes),
      cmocka_unit_test(test_close_frames),
      cmocka_unit_test(test_close_one_byte_rejected),
      cmocka_unit_test(test_close_codes_on_the_wire),
      cmocka_unit_test(test_close_reason_must_be_utf8),
      cmocka_unit_test(test_close_code_valid),
      cmocka_unit_test(test_error_is_sticky),
      cmocka_unit_test(test_zero_copy_whole_frame),
      cmocka_unit_test(test_zero_copy_after_split_header),
      cmocka_unit_test(test_split_payload_is_buffered_then_released),
      cmocka_unit_test(test_oom_injection),
      cmocka_unit_test(test_lender_whole_frames_hold_nothing),
      cmocka_unit_test(test_lender_partial_frame_kept_without_allocating),
      cmocka_unit_test(test_lender_partial_payload_oom),
      cmocka_unit_test(test_lender_keeps_one_spare),
      cmocka_unit_test(test_lender_fragments_and_errors_are_kept),
      cmocka_unit_test(test_frame_new),
      cmocka_unit_test(test_close_frame_new),
      cmocka_unit_test(test_close_reason_truncated_on_boundary),
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_decoder_new_free),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
