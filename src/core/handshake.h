/*
 * WebSocket opening handshake (RFC 6455 4.2), sans I/O: given a parsed
 * request, decides between an upgrade, the health endpoint, or an HTTP error,
 * and writes the exact response bytes.
 */
#ifndef RT_CORE_HANDSHAKE_H
#define RT_CORE_HANDSHAKE_H

#include <stddef.h>

#include "http_parse.h"

/* Retry-After of a 429 (too many connections from one address), in seconds. */
#define RT_HS_RETRY_AFTER_S "5"

typedef enum {
  RT_HS_UPGRADE = 0, /* 101 written: the connection is now a WebSocket */
  RT_HS_HEALTH,      /* GET /health: caller writes rt_handshake_health() and closes */
  RT_HS_STATS,       /* GET /stats: caller checks access, writes the JSON and closes */
  RT_HS_REJECT,      /* 4xx written: caller sends it and closes */
} rt_hs_result_t;

typedef struct {
  int status;         /* HTTP status of the response (101, 200, 400, 404, 405, 426, 431) */
  const char *reason; /* short static explanation, for logs and the response body */
} rt_hs_info_t;

/*
 * Validates `req` against RFC 6455 4.2.1 for endpoint `path` (borrowed,
 * non-NULL). Checks, first failure wins:
 *   1. target path (before any '?') "/health" or "/stats": GET gives
 *      RT_HS_HEALTH or RT_HS_STATS (200)
 *      and writes nothing (*out_len = 0; the caller sends
 *      rt_handshake_health()); any other method gives 405.
 *   2. path != `path` (byte for byte): 404.
 *   3. method != GET: 405 with `Allow: GET`.
 *   4. HTTP/1.0: 400.  5. no Host, or more than one (RFC 9112 3.2): 400.
 *   6. Upgrade (any of its lines) lacks the `websocket` token: 426, not 400,
 *      because 426 is the status for "this resource needs another protocol"
 *      (RFC 9110 15.5.22): a plain HTTP GET on the endpoint learns what to do.
 *   7. Connection (any of its lines) lacks the `upgrade` token: 400.
 *   8. Sec-WebSocket-Version not sent exactly once as "13": 426.
 *   9. Sec-WebSocket-Key missing, repeated, or not 22 base64 characters
 *      plus "==" (16 bytes): 400.
 * Token matches are case-insensitive over comma lists. Every 426 carries
 * `Upgrade: websocket`, `Sec-WebSocket-Version: 13` and
 * `Connection: Upgrade, close` (a sender of Upgrade must name it in
 * Connection, RFC 9110 7.8); other errors carry `Connection: close`.
 * Writes the response head (and small body for errors) into out[0..cap) and
 * sets *out_len; cap >= 512 is always enough, and a response that does not
 * fit gives *out_len = 0 with the same decision. `info` may be NULL; its
 * reason is static. Returns the decision.
 */
rt_hs_result_t rt_handshake_process(const rt_http_request_t *req, const char *path, char *out,
                                    size_t cap, size_t *out_len, rt_hs_info_t *info);

/*
 * Writes an error response (e.g. 431 before a request could be parsed):
 * status line, text/plain body "<reason>\n" (the reason phrase if reason is
 * NULL), Connection: close, plus the headers the status needs (405: Allow;
 * 426: as above). Returns its length, or 0 if it does not fit in cap or
 * status is outside 100-599. No NUL is written.
 */
size_t rt_handshake_error(int status, const char *reason, char *out, size_t cap);

/*
 * Writes the 200 response of GET /health with `body` (a JSON object,
 * borrowed; NULL means "{}"), application/json, Connection: close. Returns its
 * length, or 0 if it does not fit in cap. No NUL is written.
 */
size_t rt_handshake_health(const char *body, char *out, size_t cap);

/*
 * Computes Sec-WebSocket-Accept for a key as sent (28 chars + NUL into out).
 * Keys longer than 256 bytes (a valid one has 24) give "" without hashing,
 * so the call never allocates.
 */
void rt_handshake_accept_key(const char *key, size_t key_len, char out[29]);

#endif
