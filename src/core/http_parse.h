/*
 * HTTP/1.1 request-head parser (RFC 9112), sans I/O. Parses the request line
 * and headers of one request; results point into the caller's buffer, which
 * must stay alive and unchanged while they are used. Stateless: call again on
 * the whole accumulated buffer when more bytes arrive.
 */
#ifndef RT_CORE_HTTP_PARSE_H
#define RT_CORE_HTTP_PARSE_H

#include <stddef.h>

#define RT_HTTP_MAX_HEADERS 64

typedef struct {
  const char *name; /* not NUL-terminated */
  size_t name_len;
  const char *value; /* leading/trailing whitespace trimmed */
  size_t value_len;
} rt_http_header_t;

typedef struct {
  const char *method;
  size_t method_len;
  const char *target; /* request-target as sent: path plus optional ?query */
  size_t target_len;
  int minor_version;  /* HTTP/1.<minor> */
  rt_http_header_t headers[RT_HTTP_MAX_HEADERS];
  size_t num_headers;
} rt_http_request_t;

/*
 * Parses buf[0..len). Returns the size of the head (> 0, through the blank
 * line) when complete, RT_EAGAIN when more bytes are needed, RT_ETOOLARGE
 * when the head is incomplete and len >= max_head (or has more than
 * RT_HTTP_MAX_HEADERS headers), or RT_EINVAL for a malformed head.
 */
int rt_http_parse_request(const char *buf, size_t len, size_t max_head, rt_http_request_t *req);

/* Case-insensitive lookup; returns the first header named `name` or NULL. */
const rt_http_header_t *rt_http_find_header(const rt_http_request_t *req, const char *name);

/* 1 when the comma-separated header value contains `token` (case-insensitive). */
int rt_http_has_token(const char *value, size_t len, const char *token);

#endif
