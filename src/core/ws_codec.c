#include "ws_codec.h"

#include <assert.h>
#include <string.h>

#include "alloc.h"
#include "realtime/realtime.h"
#include "utf8.h"

#define MAX_HEADER 14    /* 2 + 8-byte length + 4-byte mask key (RFC 6455 5.2) */
#define MAX_CONTROL 125  /* RFC 6455 5.5 */
#define MAX_CLOSE_REASON (MAX_CONTROL - 2)
#define MIN_BUFFER 256   /* first allocation for a buffered message */
#define KEEP_BUFFER 4096 /* a message buffer this small is kept for the next message */

typedef enum { STAGE_HEADER, STAGE_PAYLOAD } stage_t;

/* The frame being decoded. Plain data, copied whole to roll back a feed on OOM. */
typedef struct {
  stage_t stage;           /* reading the header or the payload */
  uint8_t hdr[MAX_HEADER]; /* header bytes received so far */
  size_t hdr_len;          /* bytes in hdr */
  int fin;                 /* FIN bit */
  int opcode;              /* RT_WS_OP_* */
  uint64_t len;            /* declared payload length */
  uint64_t got;            /* payload bytes consumed so far */
  uint8_t key[4];          /* masking key */
} frame_state_t;

/* The data message being assembled. Also copied whole for the OOM rollback. */
typedef struct {
  int opcode;    /* TEXT or BINARY while a message is open, else 0 */
  size_t len;    /* bytes of it held in the decoder's buffer */
  uint32_t utf8; /* validator state across fragments and feeds (TEXT) */
} msg_state_t;

struct rt_ws_decoder_s {
  size_t max_message_size; /* bound on a whole message, checked against declared lengths */
  frame_state_t f;         /* current frame */
  msg_state_t m;           /* current message */
  uint8_t *buf;            /* message bytes when they cannot be served from the input,
                              then a split control payload (buf + m.len) */
  size_t cap;              /* allocated size of buf */
  int release;             /* the last event pointed into buf: empty it on the next feed */
  uint16_t err_code;       /* nonzero once failed: the close code to report again */
  const char *err_reason;  /* static text that goes with err_code */
};

static const uint8_t empty_payload[1];

static int is_control(int opcode) { return (opcode & 0x8) != 0; }

/*
 * XORs n bytes of src with the masking key into dst (dst may be src), the
 * first byte taking key byte `phase` (RFC 6455 5.3: octet i uses key[i % 4]).
 * Eight bytes go per step through a 64-bit key laid out in memory order, so
 * the result does not depend on endianness; memcpy makes the unaligned loads
 * and stores legal and compiles to plain moves.
 */
static void unmask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t key[4], size_t phase) {
  uint8_t k[8];
  for (size_t j = 0; j < 8; j++) k[j] = key[(phase + j) & 3];
  uint64_t k64;
  memcpy(&k64, k, sizeof(k64));
  size_t i = 0;
  for (; n - i >= 8; i += 8) {
    uint64_t w;
    memcpy(&w, src + i, sizeof(w));
    w ^= k64;
    memcpy(dst + i, &w, sizeof(w));
  }
  for (; i < n; i++) dst[i] = src[i] ^ k[i & 7];
}

static void set_event(rt_ws_event_t *ev, rt_ws_event_type_t type, const uint8_t *p, size_t n) {
  ev->type = type;
  ev->payload = n > 0 ? p : empty_payload;
  ev->len = n;
}

static void report_error(const rt_ws_decoder_t *d, rt_ws_event_t *ev) {
  set_event(ev, RT_WS_EV_ERROR, NULL, 0);
  ev->close_code = d->err_code;
  ev->reason = d->err_reason;
}

/* Fails the connection for good (RFC 6455 7.1.7): every later feed reports the same error. */
static void fail(rt_ws_decoder_t *d, rt_ws_event_t *ev, uint16_t code, const char *reason) {
  d->err_code = code;
  d->err_reason = reason;
  report_error(d, ev);
}

/* Ends the current frame: the next byte starts a header. */
static void end_frame(rt_ws_decoder_t *d) {
  d->f.stage = STAGE_HEADER;
  d->f.hdr_len = 0;
}

/* Closes the open message after its last byte was delivered. */
static void end_message(rt_ws_decoder_t *d) {
  d->m.opcode = 0;
  d->m.utf8 = RT_UTF8_ACCEPT;
}

rt_ws_decoder_t *rt_ws_decoder_new(size_t max_message_size) {
  rt_ws_decoder_t *d = rt_calloc(1, sizeof(*d));
  if (d == NULL) return NULL;
  d->max_message_size = max_message_size;
  d->f.stage = STAGE_HEADER;
  d->m.utf8 = RT_UTF8_ACCEPT;
  return d;
}

void rt_ws_decoder_free(rt_ws_decoder_t *d) {
  if (d == NULL) return;
  rt_free(d->buf);
  rt_free(d);
}

size_t rt_ws_decoder_buffered(const rt_ws_decoder_t *d) { return d->cap + d->f.hdr_len; }

int rt_ws_decoder_idle(const rt_ws_decoder_t *d) {
  return d->f.stage == STAGE_HEADER && d->f.hdr_len == 0 && d->m.opcode == 0 && d->err_code == 0;
}

void rt_ws_lender_init(rt_ws_lender_t *l, size_t max_message_size) {
  l->spare = NULL;
  l->max_message_size = max_message_size;
}

void rt_ws_lender_destroy(rt_ws_lender_t *l) {
  rt_ws_decoder_free(l->spare);
  l->spare = NULL;
}

/* The spare leaves the lender while lent, so a nested borrow can never get it twice. */
rt_ws_decoder_t *rt_ws_lender_borrow(rt_ws_lender_t *l, rt_ws_decoder_t *own) {
  if (own != NULL) return own;
  rt_ws_decoder_t *d = l->spare;
  if (d == NULL) return rt_ws_decoder_new(l->max_message_size);
  l->spare = NULL;
  return d;
}

/*
 * An idle decoder goes back whole, its small message buffer (<= KEEP_BUFFER)
 * included: the next feed forgets the last message (release_message).
 */
void rt_ws_lender_settle(rt_ws_lender_t *l, rt_ws_decoder_t **own, rt_ws_decoder_t *d) {
  if (!rt_ws_decoder_idle(d)) {
    *own = d;
    return;
  }
  *own = NULL;
  if (l->spare == NULL)
    l->spare = d;
  else
    rt_ws_decoder_free(d);
}

/*
 * Copies header bytes until hdr holds `upto` of them. Returns 1 when it does.
 * Headers are at most 14 bytes, so copying them (rather than parsing in the
 * input when possible) costs nothing and gives one path for split headers.
 */
static int fill_header(frame_state_t *f, const uint8_t *in, size_t len, size_t *pos, size_t upto) {
  size_t n = len - *pos;
  if (f->hdr_len >= upto) return 1;
  if (n > upto - f->hdr_len) n = upto - f->hdr_len;
  memcpy(f->hdr + f->hdr_len, in + *pos, n);
  f->hdr_len += n;
  *pos += n;
  return f->hdr_len == upto;
}

static int known_opcode(int op) {
  return op == RT_WS_OP_CONT || op == RT_WS_OP_TEXT || op == RT_WS_OP_BINARY ||
         op == RT_WS_OP_CLOSE || op == RT_WS_OP_PING || op == RT_WS_OP_PONG;
}

/*
 * Checks what the first two header bytes decide, so a bad frame fails before
 * the rest of its header arrives. Returns the reason for a 1002, or NULL.
 */
static const char *check_first_bytes(const rt_ws_decoder_t *d, uint8_t b0, uint8_t b1) {
  int op = b0 & 0x0f;
  /* 5.2: RSV1-3 must be 0 unless an extension says otherwise; we negotiate none. */
  if (b0 & 0x70) return "reserved bits set without a negotiated extension";
  /* 5.2: opcodes 3-7 and B-F are reserved. */
  if (!known_opcode(op)) return "reserved opcode";
  /* 5.1: a server must close the connection on an unmasked client frame. */
  if (!(b1 & 0x80)) return "client frame not masked";
  if (is_control(op)) {
    /* 5.5: control frames are never fragmented and carry at most 125 bytes. */
    if (!(b0 & 0x80)) return "fragmented control frame";
    if ((b1 & 0x7f) > MAX_CONTROL) return "control frame payload over 125 bytes";
    return NULL;
  }
  /* 5.4: continuations follow an unfinished message; a new message waits for its end. */
  if (op == RT_WS_OP_CONT && d->m.opcode == 0) return "continuation frame without a message";
  if (op != RT_WS_OP_CONT && d->m.opcode != 0) return "new data frame inside a fragmented message";
  return NULL;
}

/* Extended-length bytes implied by the 7-bit length (RFC 6455 5.2). */
static size_t ext_len_size(uint8_t b1) {
  uint8_t n7 = b1 & 0x7f;
  return n7 == 126 ? 2 : n7 == 127 ? 8 : 0;
}

/*
 * Decodes the payload length once its bytes are in hdr and checks it: the
 * 64-bit form must have its top bit clear (5.2), and a data frame must keep
 * the whole message within max_message_size. That check runs here, on the
 * declared length, before a single payload byte is buffered or allocated.
 * Non-minimal encodings are accepted: 5.2 says "minimal number of bytes" but
 * refusing a valid length protects nothing. Returns 0 or fails the decoder.
 */
static int take_length(rt_ws_decoder_t *d, rt_ws_event_t *ev) {
  frame_state_t *f = &d->f;
  size_t ext = ext_len_size(f->hdr[1]);
  uint64_t n = f->hdr[1] & 0x7f;
  if (ext > 0) n = 0;
  for (size_t i = 0; i < ext; i++) n = (n << 8) | f->hdr[2 + i];
  if (n >> 63) {
    fail(d, ev, RT_CLOSE_PROTOCOL_ERROR, "64-bit payload length with the top bit set");
    return -1;
  }
  if (!is_control(f->hdr[0] & 0x0f) && n > d->max_message_size - d->m.len) {
    fail(d, ev, RT_CLOSE_TOO_BIG, "message too big");
    return -1;
  }
  f->len = n;
  return 0;
}

/* Commits a complete header: the frame's fields, and a new message for TEXT/BINARY. */
static void start_payload(rt_ws_decoder_t *d) {
  frame_state_t *f = &d->f;
  f->fin = (f->hdr[0] & 0x80) != 0;
  f->opcode = f->hdr[0] & 0x0f;
  memcpy(f->key, f->hdr + f->hdr_len - 4, 4);
  f->hdr_len = 0;
  f->got = 0;
  f->stage = STAGE_PAYLOAD;
  if (f->opcode == RT_WS_OP_TEXT || f->opcode == RT_WS_OP_BINARY) {
    d->m.opcode = f->opcode;
    d->m.len = 0;
    d->m.utf8 = RT_UTF8_ACCEPT;
  }
}

/*
 * Consumes header bytes in three steps (first two bytes, extended length,
 * masking key) so each check runs as soon as its bytes are there, however the
 * header is split across feeds. The checks are pure, so re-running them when
 * a later feed completes the header is harmless.
 */
static void read_header(rt_ws_decoder_t *d, const uint8_t *in, size_t len, size_t *pos,
                        rt_ws_event_t *ev) {
  frame_state_t *f = &d->f;
  if (!fill_header(f, in, len, pos, 2)) return;
  const char *bad = check_first_bytes(d, f->hdr[0], f->hdr[1]);
  if (bad != NULL) {
    fail(d, ev, RT_CLOSE_PROTOCOL_ERROR, bad);
    return;
  }
  size_t len_end = 2 + ext_len_size(f->hdr[1]);
  if (!fill_header(f, in, len, pos, len_end)) return;
  if (take_length(d, ev) != 0) return;
  if (!fill_header(f, in, len, pos, len_end + 4)) return;
  start_payload(d);
}

/*
 * Handles a complete close frame (RFC 6455 5.5.1): empty means "no status"
 * (1005, 7.1.5); otherwise a 2-byte code valid per 7.4 followed by a UTF-8
 * reason (5.5.1: the body "is not guaranteed to be human readable" but is
 * UTF-8; invalid data is 1007 per 8.1).
 */
static void finish_close(rt_ws_decoder_t *d, const uint8_t *p, size_t n, rt_ws_event_t *ev) {
  if (n == 0) {
    set_event(ev, RT_WS_EV_CLOSE, p, 0);
    ev->close_code = RT_CLOSE_NO_STATUS;
    return;
  }
  uint16_t code = n >= 2 ? (uint16_t)(p[0] << 8 | p[1]) : 0;
  if (n == 1) {
    fail(d, ev, RT_CLOSE_PROTOCOL_ERROR, "close frame with a 1-byte payload");
  } else if (!rt_ws_close_code_valid(code)) {
    fail(d, ev, RT_CLOSE_PROTOCOL_ERROR, "invalid close code");
  } else if (!rt_utf8_valid(p + 2, n - 2)) {
    fail(d, ev, RT_CLOSE_INVALID_DATA, "close reason is not valid UTF-8");
  } else {
    set_event(ev, RT_WS_EV_CLOSE, p + 2, n - 2);
    ev->close_code = code;
  }
}

/* Reports a complete control frame at once, whatever message is open (RFC 6455 5.4, 5.5). */
static void finish_control(rt_ws_decoder_t *d, const uint8_t *p, size_t n, rt_ws_event_t *ev) {
  end_frame(d);
  if (d->f.opcode == RT_WS_OP_CLOSE)
    finish_close(d, p, n, ev);
  else
    set_event(ev, d->f.opcode == RT_WS_OP_PING ? RT_WS_EV_PING : RT_WS_EV_PONG, p, n);
}

static int reserve(rt_ws_decoder_t *d, size_t need, size_t limit);

/*
 * Control payloads are at most 125 bytes: served from the input when whole,
 * otherwise gathered in buf right after the open message's bytes (room for
 * the whole payload is reserved when its first byte arrives, so only that
 * step allocates). A decoder carries no control buffer of its own: a split
 * control frame is rare, and every idle connection would pay for one.
 * Returns 0 or RT_ENOMEM.
 */
static int read_control(rt_ws_decoder_t *d, uint8_t *in, size_t len, size_t *pos,
                        rt_ws_event_t *ev) {
  frame_state_t *f = &d->f;
  size_t avail = len - *pos;
  size_t left = (size_t)(f->len - f->got);
  if (f->got == 0 && avail >= left) {
    uint8_t *p = in + *pos;
    unmask(p, p, left, f->key, 0);
    *pos += left;
    finish_control(d, p, left, ev);
    return 0;
  }
  size_t end = d->m.len + (size_t)f->len;
  if (reserve(d, end, end) != 0) return RT_ENOMEM;
  uint8_t *ctl = d->buf + d->m.len;
  size_t n = avail < left ? avail : left;
  unmask(ctl + f->got, in + *pos, n, f->key, (size_t)f->got);
  f->got += n;
  *pos += n;
  if (f->got == f->len) finish_control(d, ctl, (size_t)f->len, ev);
  return 0;
}

/* Delivers a finished data message, or fails it if its text ends mid code point (8.1). */
static void deliver_message(rt_ws_decoder_t *d, const uint8_t *p, size_t n, rt_ws_event_t *ev) {
  int text = d->m.opcode == RT_WS_OP_TEXT;
  if (text && d->m.utf8 != RT_UTF8_ACCEPT) {
    fail(d, ev, RT_CLOSE_INVALID_DATA, "text message is not valid UTF-8");
    return;
  }
  set_event(ev, text ? RT_WS_EV_TEXT : RT_WS_EV_BINARY, p, n);
  end_message(d);
}

/*
 * Grows buf to hold `need` bytes. Capacity doubles (from MIN_BUFFER) but
 * never past `limit`, the declared end of the current frame: memory follows
 * the bytes actually received, so a peer cannot make us allocate a whole
 * max_message_size by sending one header. Returns 0 or RT_ENOMEM.
 */
static int reserve(rt_ws_decoder_t *d, size_t need, size_t limit) {
  if (need <= d->cap) return 0;
  size_t cap = d->cap * 2 > MIN_BUFFER ? d->cap * 2 : MIN_BUFFER;
  if (cap > limit) cap = limit;
  if (cap < need) cap = need;
  uint8_t *nb = rt_realloc(d->buf, cap);
  if (nb == NULL) return RT_ENOMEM;
  d->buf = nb;
  d->cap = cap;
  return 0;
}

/*
 * Appends the available part of a data frame to the message buffer,
 * unmasking on the copy (the input is left as it was, which is what lets a
 * feed that hits OOM leave no trace). Text is validated chunk by chunk, so
 * invalid UTF-8 fails the connection as soon as it arrives (8.1).
 */
static int buffer_data(rt_ws_decoder_t *d, const uint8_t *in, size_t len, size_t *pos,
                       rt_ws_event_t *ev) {
  frame_state_t *f = &d->f;
  size_t avail = len - *pos;
  size_t left = (size_t)(f->len - f->got);
  size_t n = avail < left ? avail : left;
  if (reserve(d, d->m.len + n, d->m.len + left) != 0) return RT_ENOMEM;
  if (n > 0) {
    uint8_t *dst = d->buf + d->m.len;
    unmask(dst, in + *pos, n, f->key, (size_t)f->got);
    *pos += n;
    f->got += n;
    d->m.len += n;
    if (d->m.opcode == RT_WS_OP_TEXT && rt_utf8_feed(&d->m.utf8, dst, n) == RT_UTF8_REJECT) {
      fail(d, ev, RT_CLOSE_INVALID_DATA, "text message is not valid UTF-8");
      return 0;
    }
  }
  if (f->got < f->len) return 0;
  end_frame(d);
  if (f->fin) {
    d->release = 1;
    deliver_message(d, d->buf, d->m.len, ev);
  }
  return 0;
}

/*
 * Payload bytes of the current frame. The hot path is a whole unfragmented
 * data frame present in the input: it is unmasked in place and the event
 * points into the caller's bytes (zero copy). Everything else is buffered.
 * Returns 0 or RT_ENOMEM.
 */
static int read_payload(rt_ws_decoder_t *d, uint8_t *in, size_t len, size_t *pos,
                        rt_ws_event_t *ev) {
  frame_state_t *f = &d->f;
  if (is_control(f->opcode)) return read_control(d, in, len, pos, ev);
  size_t avail = len - *pos;
  if (f->got == 0 && f->fin && f->opcode != RT_WS_OP_CONT && avail >= f->len) {
    uint8_t *p = in + *pos;
    size_t n = (size_t)f->len;
    unmask(p, p, n, f->key, 0);
    *pos += n;
    end_frame(d);
    if (d->m.opcode == RT_WS_OP_TEXT && !rt_utf8_valid(p, n)) d->m.utf8 = RT_UTF8_REJECT;
    deliver_message(d, p, n, ev);
    return 0;
  }
  return buffer_data(d, in, len, pos, ev);
}

/* Forgets the message the previous event pointed at; a big buffer goes back to the allocator. */
static void release_message(rt_ws_decoder_t *d) {
  if (!d->release) return;
  d->release = 0;
  d->m.len = 0;
  if (d->cap > KEEP_BUFFER) {
    rt_free(d->buf);
    d->buf = NULL;
    d->cap = 0;
  }
}

/*
 * Runs the frame state machine until one event completes or the input is
 * used up. The only allocations are reserve() calls (buffer_data,
 * read_control), and input bytes are only modified by the step that
 * completes an event (which allocates nothing), so
 * on OOM restoring the two small state structs undoes the whole call: the
 * caller sees nothing consumed and may retry with the same bytes. An ERROR
 * consumes all input: nothing after a protocol error means anything.
 */
int rt_ws_decoder_feed(rt_ws_decoder_t *d, uint8_t *in, size_t len, size_t *consumed,
                       rt_ws_event_t *ev) {
  memset(ev, 0, sizeof(*ev));
  *consumed = 0;
  if (d->err_code != 0) {
    report_error(d, ev);
    *consumed = len;
    return 0;
  }
  release_message(d);
  frame_state_t f0 = d->f;
  msg_state_t m0 = d->m;
  size_t pos = 0;
  while (ev->type == RT_WS_EV_NONE) {
    if (d->f.stage == STAGE_HEADER) {
      if (pos == len) break;
      read_header(d, in, len, &pos, ev);
    } else {
      if (pos == len && d->f.got < d->f.len) break;
      if (read_payload(d, in, len, &pos, ev) != 0) {
        d->f = f0;
        d->m = m0;
        return RT_ENOMEM;
      }
    }
  }
  *consumed = ev->type == RT_WS_EV_ERROR ? len : pos;
  return 0;
}

rt_frame_t *rt_ws_frame_new(int opcode, const void *payload, size_t len) {
  assert(!is_control(opcode) || len <= MAX_CONTROL);
  rt_frame_t *f = rt_frame_new(len);
  if (f == NULL) return NULL;
  if (len > 0) rt_frame_append(f, payload, len);
  rt_frame_seal(f, opcode);
  return f;
}

/* Length of the longest prefix of s[0..n) within `max` bytes that ends on a code point boundary. */
static size_t utf8_prefix(const char *s, size_t n, size_t max) {
  if (n <= max) return n;
  n = max;
  while (n > 0 && ((uint8_t)s[n] & 0xc0) == 0x80) n--;
  return n;
}

/*
 * RFC 6455 5.5.1: a close body is a 2-byte big-endian code then a UTF-8
 * reason, all within 125 bytes. 1005 must never be sent (7.4.1), so asking
 * for it yields an empty close frame, which is what 1005 stands for.
 */
rt_frame_t *rt_ws_close_frame_new(uint16_t code, const char *reason) {
  if (code == RT_CLOSE_NO_STATUS) return rt_ws_frame_new(RT_WS_OP_CLOSE, NULL, 0);
  size_t n = reason != NULL ? utf8_prefix(reason, strlen(reason), MAX_CLOSE_REASON) : 0;
  rt_frame_t *f = rt_frame_new(2 + n);
  if (f == NULL) return NULL;
  uint8_t be[2] = {(uint8_t)(code >> 8), (uint8_t)code};
  rt_frame_append(f, be, 2);
  if (n > 0) rt_frame_append(f, reason, n);
  rt_frame_seal(f, RT_WS_OP_CLOSE);
  return f;
}

/*
 * RFC 6455 7.4: 1000-1003 and 1007-1011 are defined; 1012-1014 were since
 * registered with IANA (restart, try again later, bad gateway); 3000-4999
 * belong to libraries and applications. 1004 is reserved, and 1005, 1006 and
 * 1015 must never appear on the wire; everything else is unassigned.
 */
int rt_ws_close_code_valid(uint16_t code) {
  if (code >= 1000 && code <= 1003) return 1;
  if (code >= 1007 && code <= 1014) return 1;
  return code >= 3000 && code <= 4999;
}
