#include "http_parse.h"

#include <limits.h>
#include <string.h>

#include "realtime/realtime.h"

/*
 * The request head is read through a cursor that never looks at or past
 * `end`. Running out of bytes anywhere is RT_EAGAIN, never an error, so every
 * prefix of a valid head asks for more; a byte that no valid head could hold
 * at that place is RT_EINVAL as soon as it is seen.
 */
typedef struct {
  const char *buf; /* start of the caller's buffer (borrowed) */
  size_t end;      /* bytes the parser may examine: min(len, max_head) */
  size_t pos;      /* next byte to examine */
} cursor_t;

/* RFC 9110 5.6.2 tchar: ALPHA, DIGIT and the punctuation below. */
static int is_tchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
  return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int is_ows(unsigned char c) { return c == ' ' || c == '\t'; }

/* RFC 9110 5.5: field-vchar (VCHAR / obs-text), SP and HTAB; no other controls, no DEL. */
static int is_field_char(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

/* Printable ASCII: any origin-, absolute-, authority- or asterisk-form target byte. */
static int is_target_char(unsigned char c) { return c > 0x20 && c < 0x7f; }

static unsigned char peek(const cursor_t *c) { return (unsigned char)c->buf[c->pos]; }

static int at_end(const cursor_t *c) { return c->pos >= c->end; }

/*
 * Consumes CRLF. A bare LF or a CR followed by anything but LF is refused:
 * RFC 9112 2.2 only allows tolerating bare LF, and since every WebSocket
 * client sends CRLF, refusing it removes a class of line-splitting ambiguity.
 */
static int expect_crlf(cursor_t *c) {
  if (at_end(c)) return RT_EAGAIN;
  if (peek(c) != '\r') return RT_EINVAL;
  c->pos++;
  if (at_end(c)) return RT_EAGAIN;
  if (peek(c) != '\n') return RT_EINVAL;
  c->pos++;
  return 0;
}

/* Consumes a non-empty token that must be followed by `delim` (also consumed). */
static int parse_token(cursor_t *c, char delim, const char **out, size_t *out_len) {
  size_t start = c->pos;
  while (!at_end(c) && is_tchar(peek(c))) c->pos++;
  if (at_end(c)) return RT_EAGAIN;
  if (c->pos == start || peek(c) != delim) return RT_EINVAL;
  *out = c->buf + start;
  *out_len = c->pos - start;
  c->pos++;
  return 0;
}

static int parse_target(cursor_t *c, rt_http_request_t *req) {
  size_t start = c->pos;
  while (!at_end(c) && is_target_char(peek(c))) c->pos++;
  if (at_end(c)) return RT_EAGAIN;
  if (c->pos == start || peek(c) != ' ') return RT_EINVAL;
  req->target = c->buf + start;
  req->target_len = c->pos - start;
  c->pos++;
  return 0;
}

/* HTTP-version = "HTTP/1." DIGIT, case-sensitive (RFC 9112 2.3); other majors are refused. */
static int parse_version(cursor_t *c, rt_http_request_t *req) {
  static const char prefix[] = "HTTP/1.";
  for (size_t i = 0; i < sizeof(prefix) - 1; i++, c->pos++) {
    if (at_end(c)) return RT_EAGAIN;
    if (peek(c) != (unsigned char)prefix[i]) return RT_EINVAL;
  }
  if (at_end(c)) return RT_EAGAIN;
  if (peek(c) < '0' || peek(c) > '9') return RT_EINVAL;
  req->minor_version = peek(c) - '0';
  c->pos++;
  return expect_crlf(c);
}

/* request-line = method SP request-target SP HTTP-version CRLF, single spaces only. */
static int parse_request_line(cursor_t *c, rt_http_request_t *req) {
  int rc = parse_token(c, ' ', &req->method, &req->method_len);
  if (rc == 0) rc = parse_target(c, req);
  if (rc == 0) rc = parse_version(c, req);
  return rc;
}

/*
 * field-line = field-name ":" OWS field-value OWS CRLF. Whitespace before the
 * colon is refused (RFC 9112 5.1), as is any control byte in the value; the
 * stored value has its surrounding OWS removed.
 */
static int parse_header(cursor_t *c, rt_http_header_t *h) {
  int rc = parse_token(c, ':', &h->name, &h->name_len);
  if (rc != 0) return rc;
  while (!at_end(c) && is_ows(peek(c))) c->pos++;
  size_t start = c->pos;
  while (!at_end(c) && is_field_char(peek(c))) c->pos++;
  if (at_end(c)) return RT_EAGAIN;
  size_t stop = c->pos;
  while (stop > start && is_ows((unsigned char)c->buf[stop - 1])) stop--;
  h->value = c->buf + start;
  h->value_len = stop - start;
  return expect_crlf(c);
}

/*
 * Reads header lines up to the empty line. A line starting with whitespace is
 * obs-fold (or whitespace before the first field) and is refused (RFC 9112
 * 5.2 allows rejecting it; unfolding would need a copy). A 65th field is
 * RT_ETOOLARGE as soon as its first byte is seen.
 */
static int parse_headers(cursor_t *c, rt_http_request_t *req) {
  for (;;) {
    if (at_end(c)) return RT_EAGAIN;
    if (peek(c) == '\r') return expect_crlf(c);
    if (is_ows(peek(c))) return RT_EINVAL;
    if (req->num_headers == RT_HTTP_MAX_HEADERS) return RT_ETOOLARGE;
    int rc = parse_header(c, &req->headers[req->num_headers]);
    if (rc != 0) return rc;
    req->num_headers++;
  }
}

/*
 * Only the first max_head bytes are examined, so the answer for a given
 * stream of bytes does not depend on how it was split into reads: a head
 * that does not end within max_head bytes is RT_ETOOLARGE whether it arrives
 * in one piece or byte by byte, and a complete head of exactly max_head bytes
 * is accepted. A syntax error inside the limit wins over the size error.
 * On failure the contents of *req are unspecified.
 */
int rt_http_parse_request(const char *buf, size_t len, size_t max_head, rt_http_request_t *req) {
  if (max_head > INT_MAX) max_head = INT_MAX;
  cursor_t c = {.buf = buf, .end = len < max_head ? len : max_head, .pos = 0};
  req->num_headers = 0;
  int rc = parse_request_line(&c, req);
  if (rc == 0) rc = parse_headers(&c, req);
  if (rc == RT_EAGAIN && len >= max_head) return RT_ETOOLARGE;
  if (rc != 0) return rc;
  return (int)c.pos;
}

static int ascii_lower(unsigned char c) { return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c; }

/* Case-insensitive equality of a[0..n) and the NUL-terminated b. */
static int equal_nocase(const char *a, size_t n, const char *b) {
  for (size_t i = 0; i < n; i++)
    if (b[i] == '\0' || ascii_lower((unsigned char)a[i]) != ascii_lower((unsigned char)b[i]))
      return 0;
  return b[n] == '\0';
}

const rt_http_header_t *rt_http_find_header(const rt_http_request_t *req, const char *name) {
  for (size_t i = 0; i < req->num_headers; i++)
    if (equal_nocase(req->headers[i].name, req->headers[i].name_len, name)) return &req->headers[i];
  return NULL;
}

/*
 * RFC 9110 5.6.1 list: elements separated by commas with optional whitespace
 * around them; empty elements are allowed and skipped. An element matches
 * only when it equals the token as a whole ("upgraded" is not "upgrade").
 */
int rt_http_has_token(const char *value, size_t len, const char *token) {
  size_t i = 0;
  while (i < len) {
    size_t start = i;
    while (i < len && value[i] != ',') i++;
    size_t stop = i;
    while (start < stop && is_ows((unsigned char)value[start])) start++;
    while (stop > start && is_ows((unsigned char)value[stop - 1])) stop--;
    if (stop > start && equal_nocase(value + start, stop - start, token)) return 1;
    i++;
  }
  return 0;
}
