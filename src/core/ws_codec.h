/*
 * RFC 6455 frame decoder (server side) and encoders. Sans I/O: bytes go in,
 * events come out; the caller owns every buffer.
 *
 * The decoder unmasks in place and, when a whole unfragmented frame is in the
 * caller's input, points the event straight into that input (zero copy). It
 * copies only an incomplete frame's bytes or a fragmented message's pieces
 * into its own buffer, and checks the declared length against
 * max_message_size before allocating anything.
 */
#ifndef RT_CORE_WS_CODEC_H
#define RT_CORE_WS_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

enum {
  RT_WS_OP_CONT = 0x0,
  RT_WS_OP_TEXT = 0x1,
  RT_WS_OP_BINARY = 0x2,
  RT_WS_OP_CLOSE = 0x8,
  RT_WS_OP_PING = 0x9,
  RT_WS_OP_PONG = 0xA,
};

/* WebSocket close codes we send (RFC 6455 7.4.1, and our 3xxx/4xxx). */
typedef enum {
  RT_CLOSE_NORMAL = 1000,
  RT_CLOSE_GOING_AWAY = 1001,     /* server shutdown/restart: reconnect with backoff */
  RT_CLOSE_PROTOCOL_ERROR = 1002, /* framing error: do not reconnect blindly */
  RT_CLOSE_UNSUPPORTED = 1003,    /* binary messages: not part of protocol v1 */
  RT_CLOSE_NO_STATUS = 1005,      /* never sent: a close frame without a code */
  RT_CLOSE_INVALID_DATA = 1007,   /* text that is not UTF-8 */
  RT_CLOSE_POLICY = 1008,         /* slow consumer, abuse */
  RT_CLOSE_TOO_BIG = 1009,        /* message over max_message_size */
  RT_CLOSE_INTERNAL = 1011,       /* server error: reconnect with backoff */
  RT_CLOSE_PING_TIMEOUT = 3001,   /* no pong in time: reconnect (3000-3499) */
  RT_CLOSE_TOKEN_EXPIRED = 3005,  /* token expired, no fresh auth: reconnect with a new token */
  RT_CLOSE_TOKEN_REVOKED = 3500,  /* API key revoked: do not reconnect (3500-3999) */
  RT_CLOSE_AUTH_TIMEOUT = 4001,   /* requireAuth and no auth in time: do not reconnect as is */
} rt_close_code_t;

typedef enum {
  RT_WS_EV_NONE = 0, /* need more input */
  RT_WS_EV_TEXT,     /* a complete, UTF-8-valid text message */
  RT_WS_EV_BINARY,   /* a complete binary message */
  RT_WS_EV_PING,     /* payload = ping application data (<= 125 bytes) */
  RT_WS_EV_PONG,
  RT_WS_EV_CLOSE,    /* close_code (RT_CLOSE_NO_STATUS if none), payload = reason */
  RT_WS_EV_ERROR,    /* fatal: close with close_code; reason is a static string */
} rt_ws_event_type_t;

typedef struct {
  rt_ws_event_type_t type;
  const uint8_t *payload; /* valid until the next feed or destroy */
  size_t len;
  uint16_t close_code;    /* CLOSE: received code; ERROR: code to send */
  const char *reason;     /* ERROR only: static human text for the close frame */
} rt_ws_event_t;

typedef struct rt_ws_decoder_s rt_ws_decoder_t;

/* Returns a new decoder or NULL. max_message_size bounds a whole message. */
rt_ws_decoder_t *rt_ws_decoder_new(size_t max_message_size);
void rt_ws_decoder_free(rt_ws_decoder_t *d);

/*
 * Feeds input (modified in place: unmasked). Consumes bytes up to and
 * including the first complete event and stores it in *ev, setting *consumed.
 * When no event completes, all input is consumed (buffered) and ev->type is
 * RT_WS_EV_NONE. Call again with the rest (in + *consumed) until it is used up.
 * After an ERROR event the decoder refuses further input (ERROR again).
 * Returns 0, or RT_ENOMEM (nothing consumed).
 */
int rt_ws_decoder_feed(rt_ws_decoder_t *d, uint8_t *in, size_t len, size_t *consumed,
                       rt_ws_event_t *ev);

/* Bytes held in the decoder's own buffers (for memory accounting). */
size_t rt_ws_decoder_buffered(const rt_ws_decoder_t *d);

/*
 * 1 when the decoder holds nothing a later feed depends on: no partial
 * frame, no fragmented message open, not failed. An idle decoder may serve
 * another stream next (the last event's payload is then no longer valid).
 */
int rt_ws_decoder_idle(const rt_ws_decoder_t *d);

/*
 * Decoders lent to streams (connections) between messages. Most reads carry
 * whole frames, and then a stream needs no decoder state of its own: one
 * idle decoder per loop serves them all, and a stream owns a decoder only
 * while a frame or fragmented message spans its reads (or after it failed,
 * so the error sticks). For each read:
 *
 *   d = rt_ws_lender_borrow(&l, own);      own: the stream's decoder or NULL
 *   ... rt_ws_decoder_feed(d, ...) ...
 *   rt_ws_lender_settle(&l, &own, d);
 *
 * Keeping a partial frame allocates nothing (the stream keeps the lent
 * decoder); the next borrow that finds no spare allocates one.
 */
typedef struct {
  rt_ws_decoder_t *spare;  /* idle decoder ready to lend, or NULL */
  size_t max_message_size; /* for the decoders it allocates */
} rt_ws_lender_t;

void rt_ws_lender_init(rt_ws_lender_t *l, size_t max_message_size);
void rt_ws_lender_destroy(rt_ws_lender_t *l);
/* own when non-NULL, else the spare (allocated if there is none). NULL on OOM. */
rt_ws_decoder_t *rt_ws_lender_borrow(rt_ws_lender_t *l, rt_ws_decoder_t *own);
/*
 * Ends a borrow: a busy d becomes *own; an idle one is given back (as the
 * spare, or freed when there is one already) and *own becomes NULL.
 */
void rt_ws_lender_settle(rt_ws_lender_t *l, rt_ws_decoder_t **own, rt_ws_decoder_t *d);

/*
 * Returns a new sealed frame (refcnt 1) of `opcode` with the given payload
 * (<= 125 bytes for control frames), or NULL on OOM.
 */
rt_frame_t *rt_ws_frame_new(int opcode, const void *payload, size_t len);
/* A close frame carrying `code` and a reason cut to fit 123 bytes (on a UTF-8 boundary). */
rt_frame_t *rt_ws_close_frame_new(uint16_t code, const char *reason);
/* 1 when a received close code is valid on the wire (RFC 6455 7.4). */
int rt_ws_close_code_valid(uint16_t code);

#endif
