/*
 * Where a client's credentials travel on the upgrade request (docs/security.md):
 * `Authorization: Bearer <jwt>`, a `bearer.<jwt>` entry of
 * Sec-WebSocket-Protocol (browsers cannot set Authorization on a WebSocket),
 * `?token=<jwt>`, and for API keys `X-API-Key: <key>` or `?api_key=<key>`.
 * Sans I/O: reads a parsed request, never logs, never copies a secret except
 * percent-decoding a query value into the caller's scratch buffer.
 */
#ifndef RT_CORE_CREDENTIALS_H
#define RT_CORE_CREDENTIALS_H

#include <stddef.h>

#include "http_parse.h"

/* The subprotocol the server speaks; echoed when offered. */
#define RT_SUBPROTOCOL "realtime.v1"
/* Prefix of the Sec-WebSocket-Protocol entry carrying a token. */
#define RT_BEARER_PROTOCOL_PREFIX "bearer."

typedef struct {
  const char *token;   /* JWT, or NULL; points into the request or the scratch buffer */
  size_t token_len;
  const char *api_key; /* API key, or NULL; same storage rules */
  size_t api_key_len;
} rt_credentials_t;

/*
 * Finds the credentials of `req` (borrowed; results point into it or into
 * scratch[0..cap), so both must outlive *out). A token is looked for in
 * Authorization, then the subprotocol list, then ?token=; a key in
 * X-API-Key, then ?api_key=. Returns 0 (fields NULL when absent) or
 * RT_ETOKEN when a credential is present but malformed (an Authorization
 * scheme other than Bearer, bad percent-encoding, a repeated header, or a
 * value that does not fit in scratch).
 */
int rt_credentials_extract(const rt_http_request_t *req, char *scratch, size_t cap,
                           rt_credentials_t *out);

/* 1 when the client offered RT_SUBPROTOCOL in Sec-WebSocket-Protocol. */
int rt_credentials_offers_subprotocol(const rt_http_request_t *req);

#endif
