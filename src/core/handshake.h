/*
 * WebSocket opening handshake (RFC 6455 4.2), sans I/O: given a parsed
 * request, decides between an upgrade, the health endpoint, or an HTTP error,
 * and writes the exact response bytes.
 */
#ifndef RT_CORE_HANDSHAKE_H
#define RT_CORE_HANDSHAKE_H

#include <stddef.h>

#include "http_parse.h"

typedef enum {
  RT_HS_UPGRADE = 0, /* 101 written: the connection is now a WebSocket */
  RT_HS_HEALTH,      /* GET /health: caller writes rt_handshake_health() and closes */
  RT_HS_REJECT,      /* 4xx written: caller sends it and closes */
} rt_hs_result_t;

typedef struct {
  int status;         /* HTTP status of the response (101, 200, 400, 404, 405, 426, 431) */
  const char *reason; /* short static explanation, for logs and the response body */
} rt_hs_info_t;

/*
 * Validates `req` against RFC 6455 4.2.1 for endpoint `path`: GET,
 * HTTP/1.1 or later, Host present, Upgrade: websocket, Connection containing
 * the upgrade token, Sec-WebSocket-Key decoding to 16 bytes, and
 * Sec-WebSocket-Version 13 (else 426 naming 13). The target's path (before any
 * '?') must equal `path` (else 404); "/health" gives RT_HS_HEALTH.
 * Writes the response head (and small body for errors) into out[0..cap) and
 * sets *out_len; cap >= 512 is always enough. Returns the decision.
 */
rt_hs_result_t rt_handshake_process(const rt_http_request_t *req, const char *path, char *out,
                                    size_t cap, size_t *out_len, rt_hs_info_t *info);

/* Writes an error response (e.g. 431 before a request could be parsed). */
size_t rt_handshake_error(int status, const char *reason, char *out, size_t cap);

/*
 * Writes the 200 response of GET /health with `body` (a JSON object, borrowed).
 */
size_t rt_handshake_health(const char *body, char *out, size_t cap);

/* Computes Sec-WebSocket-Accept for a key (28 chars + NUL into out). */
void rt_handshake_accept_key(const char *key, size_t key_len, char out[29]);

#endif
