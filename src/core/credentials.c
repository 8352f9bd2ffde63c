#include "credentials.h"

#include <string.h>

#include "realtime/realtime.h"

static int lower(unsigned char c) { return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c; }

static int ieq(const char *a, size_t n, const char *b) {
  if (strlen(b) != n) return 0;
  for (size_t i = 0; i < n; i++)
    if (lower((unsigned char)a[i]) != lower((unsigned char)b[i])) return 0;
  return 1;
}

/* The only header named `name`; RT_ETOKEN when it is repeated (ambiguous credentials). */
static int one_header(const rt_http_request_t *req, const char *name, const rt_http_header_t **h) {
  *h = NULL;
  for (size_t i = 0; i < req->num_headers; i++) {
    if (!ieq(req->headers[i].name, req->headers[i].name_len, name)) continue;
    if (*h != NULL) return RT_ETOKEN;
    *h = &req->headers[i];
  }
  return 0;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = lower((unsigned char)c);
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes v[0..n) into out (RFC 3986; '+' stays '+'). Returns the length or -1. */
static long pct_decode(const char *v, size_t n, char *out, size_t cap) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++, o++) {
    if (o >= cap) return -1;
    if (v[i] != '%') {
      out[o] = v[i];
      continue;
    }
    if (i + 2 >= n) return -1;
    int hi = hexval(v[i + 1]), lo = hexval(v[i + 2]);
    if (hi < 0 || lo < 0) return -1;
    out[o] = (char)(hi * 16 + lo);
    i += 2;
  }
  return (long)o;
}

/*
 * Finds `name`=value in the query of the request target, decodes it into
 * scratch at *used and advances *used. A repeated parameter is RT_ETOKEN.
 */
static int query_param(const rt_http_request_t *req, const char *name, char *scratch, size_t cap,
                       size_t *used, const char **val, size_t *vlen) {
  const char *q = memchr(req->target, '?', req->target_len);
  if (q == NULL) return 0;
  const char *end = req->target + req->target_len, *p = q + 1;
  size_t nlen = strlen(name);
  while (p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *pe = amp != NULL ? amp : end;
    if ((size_t)(pe - p) > nlen && memcmp(p, name, nlen) == 0 && p[nlen] == '=') {
      if (*val != NULL) return RT_ETOKEN;
      long n = pct_decode(p + nlen + 1, (size_t)(pe - p) - nlen - 1, scratch + *used,
                          cap - *used);
      if (n <= 0) return RT_ETOKEN;
      *val = scratch + *used;
      *vlen = (size_t)n;
      *used += (size_t)n;
    }
    p = pe + 1;
  }
  return 0;
}

/* `Authorization: Bearer <token>` (scheme case-insensitive, RFC 6750 2.1). */
static int bearer_header(const rt_http_request_t *req, rt_credentials_t *out) {
  const rt_http_header_t *h;
  if (one_header(req, "Authorization", &h) != 0) return RT_ETOKEN;
  if (h == NULL) return 0;
  if (h->value_len <= 7 || !ieq(h->value, 7, "bearer ")) return RT_ETOKEN;
  const char *t = h->value + 7;
  size_t n = h->value_len - 7;
  while (n > 0 && *t == ' ') t++, n--;
  if (n == 0) return RT_ETOKEN;
  out->token = t;
  out->token_len = n;
  return 0;
}

/* A `bearer.<token>` entry in the comma-separated Sec-WebSocket-Protocol list(s). */
static void bearer_protocol(const rt_http_request_t *req, rt_credentials_t *out) {
  size_t plen = strlen(RT_BEARER_PROTOCOL_PREFIX);
  for (size_t i = 0; i < req->num_headers && out->token == NULL; i++) {
    const rt_http_header_t *h = &req->headers[i];
    if (!ieq(h->name, h->name_len, "Sec-WebSocket-Protocol")) continue;
    const char *p = h->value, *end = h->value + h->value_len;
    while (p < end) {
      while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) p++;
      const char *e = p;
      while (e < end && *e != ',' && *e != ' ' && *e != '\t') e++;
      if ((size_t)(e - p) > plen && memcmp(p, RT_BEARER_PROTOCOL_PREFIX, plen) == 0) {
        out->token = p + plen;
        out->token_len = (size_t)(e - p) - plen;
        return;
      }
      p = e;
    }
  }
}

int rt_credentials_extract(const rt_http_request_t *req, char *scratch, size_t cap,
                           rt_credentials_t *out) {
  memset(out, 0, sizeof(*out));
  size_t used = 0;
  if (bearer_header(req, out) != 0) return RT_ETOKEN;
  bearer_protocol(req, out);
  if (out->token == NULL &&
      query_param(req, "token", scratch, cap, &used, &out->token, &out->token_len) != 0)
    return RT_ETOKEN;
  const rt_http_header_t *h;
  if (one_header(req, "X-API-Key", &h) != 0) return RT_ETOKEN;
  if (h != NULL) {
    if (h->value_len == 0) return RT_ETOKEN;
    out->api_key = h->value;
    out->api_key_len = h->value_len;
  } else if (query_param(req, "api_key", scratch, cap, &used, &out->api_key, &out->api_key_len) !=
             0) {
    return RT_ETOKEN;
  }
  return 0;
}

int rt_credentials_offers_subprotocol(const rt_http_request_t *req) {
  for (size_t i = 0; i < req->num_headers; i++) {
    const rt_http_header_t *h = &req->headers[i];
    if (ieq(h->name, h->name_len, "Sec-WebSocket-Protocol") &&
        rt_http_has_token(h->value, h->value_len, RT_SUBPROTOCOL))
      return 1;
  }
  return 0;
}
