#include "handshake.h"

#include "credentials.h"
#include "sha1.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define ACCEPT_KEY_MAX 256 /* longest key rt_handshake_accept_key hashes */
#define HEALTH_PATH "/health"
#define STATS_PATH "/stats"

/*
 * Appends into out[0..cap) without a terminating NUL and remembers whether
 * anything was cut, so a response is either written whole (an exact fit
 * included) or reported as not fitting (length 0).
 */
typedef struct {
  char *out;    /* caller's buffer (borrowed) */
  size_t cap;   /* its size */
  size_t len;   /* bytes written so far */
  int overflow; /* 1 once an append did not fit */
} writer_t;

static void put_mem(writer_t *w, const char *s, size_t n) {
  if (w->overflow || n > w->cap - w->len) {
    w->overflow = 1;
    return;
  }
  memcpy(w->out + w->len, s, n);
  w->len += n;
}

static void put(writer_t *w, const char *s) { put_mem(w, s, strlen(s)); }

static void put_num(writer_t *w, size_t v) {
  char digits[24];
  int n = snprintf(digits, sizeof(digits), "%zu", v);
  put_mem(w, digits, (size_t)n);
}

/* Length written, or 0 when the response did not fit (out is then unspecified). */
static size_t finish(const writer_t *w) { return w->overflow ? 0 : w->len; }

static const char *status_phrase(int status) {
  switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

/*
 * Headers a status needs beyond the common ones: 405 names the allowed
 * method (RFC 9110 15.5.6); 401 carries the bearer challenge and 429 a
 * Retry-After; 426 names the required protocol and, because a
 * sender of Upgrade must list it in Connection (RFC 9110 7.8), also carries
 * the "Upgrade" connection option, plus the one WebSocket version we speak
 * (RFC 6455 4.4).
 */
static void put_status_headers(writer_t *w, int status) {
  if (status == 426) {
    put(w, "Connection: Upgrade, close\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
    return;
  }
  put(w, "Connection: close\r\n");
  if (status == 405) put(w, "Allow: GET\r\n");
  /* RFC 6750 3: the challenge for a refused bearer token or key. */
  if (status == 401) put(w, "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n");
  /* RFC 6585 4: a connection slot of this IP frees when one of its connections closes. */
  if (status == 429) put(w, "Retry-After: " RT_HS_RETRY_AFTER_S "\r\n");
}

/*
 * Every error response closes the connection and carries a one-line
 * text/plain body (`reason` and a newline, or the reason phrase when reason
 * is NULL). Statuses outside 100-599 cannot form a valid status line and
 * return 0.
 */
size_t rt_handshake_error(int status, const char *reason, char *out, size_t cap) {
  if (status < 100 || status > 599) return 0;
  const char *body = reason != NULL ? reason : status_phrase(status);
  writer_t w = {.out = out, .cap = cap};
  put(&w, "HTTP/1.1 ");
  put_num(&w, (size_t)status);
  put(&w, " ");
  put(&w, status_phrase(status));
  put(&w, "\r\nContent-Type: text/plain\r\nContent-Length: ");
  put_num(&w, strlen(body) + 1);
  put(&w, "\r\n");
  put_status_headers(&w, status);
  put(&w, "\r\n");
  put(&w, body);
  put(&w, "\n");
  return finish(&w);
}

size_t rt_handshake_health(const char *body, char *out, size_t cap) {
  if (body == NULL) body = "{}";
  writer_t w = {.out = out, .cap = cap};
  put(&w, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ");
  put_num(&w, strlen(body));
  put(&w, "\r\nConnection: close\r\n\r\n");
  put(&w, body);
  return finish(&w);
}

/*
 * RFC 6455 4.2.2 step 5.4: base64(SHA-1(key || GUID)). The key is hashed as
 * sent, without trimming. One stack buffer holds the concatenation, so there
 * is no allocation to fail; a key longer than ACCEPT_KEY_MAX (a valid one is
 * 24 bytes) yields the empty string, which matches no client's expectation.
 */
void rt_handshake_accept_key(const char *key, size_t key_len, char out[29]) {
  unsigned char input[ACCEPT_KEY_MAX + sizeof(WS_GUID) - 1];
  unsigned char digest[RT_SHA1_LEN];
  if (key_len > ACCEPT_KEY_MAX) {
    out[0] = '\0';
    return;
  }
  memcpy(input, key, key_len);
  memcpy(input + key_len, WS_GUID, sizeof(WS_GUID) - 1);
  rt_sha1(input, key_len + sizeof(WS_GUID) - 1, digest);
  EVP_EncodeBlock((unsigned char *)out, digest, RT_SHA1_LEN);
}

static int is_b64_char(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

/*
 * RFC 6455 4.2.1 item 5: the key must decode to exactly 16 bytes, which in
 * padded base64 is 22 alphabet characters and "==". The shape is checked by
 * hand because EVP_DecodeBlock decodes '=' as a zero digit anywhere, skips
 * trailing junk and reports padded length (18 for 16 bytes). The unused low
 * bits of the 22nd character are not required to be zero, as in the npm
 * `ws` server.
 */
static int key_valid(const char *key, size_t len) {
  unsigned char decoded[18];
  if (len != 24 || key[22] != '=' || key[23] != '=') return 0;
  for (size_t i = 0; i < 22; i++)
    if (!is_b64_char((unsigned char)key[i])) return 0;
  return EVP_DecodeBlock(decoded, (const unsigned char *)key, 24) - 2 == 16;
}

static int lower(unsigned char c) { return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c; }

/* ASCII case-insensitive name match, independent of the process locale. */
static int name_is(const rt_http_header_t *h, const char *name) {
  size_t n = strlen(name);
  if (h->name_len != n) return 0;
  for (size_t i = 0; i < n; i++)
    if (lower((unsigned char)h->name[i]) != lower((unsigned char)name[i])) return 0;
  return 1;
}

/* Number of header lines named `name`; *first gets the first one (or NULL). */
static size_t count_headers(const rt_http_request_t *req, const char *name,
                            const rt_http_header_t **first) {
  size_t n = 0;
  *first = NULL;
  for (size_t i = 0; i < req->num_headers; i++) {
    if (!name_is(&req->headers[i], name)) continue;
    if (n++ == 0) *first = &req->headers[i];
  }
  return n;
}

/* A list-valued field may be split over several lines (RFC 9110 5.3): search them all. */
static int any_has_token(const rt_http_request_t *req, const char *name, const char *token) {
  for (size_t i = 0; i < req->num_headers; i++) {
    const rt_http_header_t *h = &req->headers[i];
    if (name_is(h, name) && rt_http_has_token(h->value, h->value_len, token)) return 1;
  }
  return 0;
}

static int method_is_get(const rt_http_request_t *req) {
  return req->method_len == 3 && memcmp(req->method, "GET", 3) == 0;
}

/*
 * Status for the WebSocket fields of RFC 6455 4.2.1 (items 3-6). The version
 * is checked before the key, so a client speaking another version is told
 * "13" (426) even when its key would not pass either.
 */
static int check_ws_fields(const rt_http_request_t *req, const char **reason) {
  const rt_http_header_t *h;
  if (!any_has_token(req, "Upgrade", "websocket")) {
    *reason = "Upgrade: websocket required";
    return 426;
  }
  if (!any_has_token(req, "Connection", "upgrade")) {
    *reason = "Connection: Upgrade required";
    return 400;
  }
  if (count_headers(req, "Sec-WebSocket-Version", &h) != 1 || h->value_len != 2 ||
      memcmp(h->value, "13", 2) != 0) {
    *reason = "unsupported Sec-WebSocket-Version (expected 13)";
    return 426;
  }
  size_t keys = count_headers(req, "Sec-WebSocket-Key", &h);
  if (keys != 1 || !key_valid(h->value, h->value_len)) {
    *reason = keys == 0 ? "missing Sec-WebSocket-Key" : "invalid Sec-WebSocket-Key";
    return 400;
  }
  *reason = "upgrade";
  return 101;
}

/*
 * Decides the response status, in this order: GET /health; unknown path
 * (404); method (405, also for /health, which exists but only for GET);
 * HTTP/1.1 (400); exactly one Host (400, RFC 9112 3.2); then the WebSocket
 * fields. The path is the target before any '?', compared byte for byte, so
 * a query string never changes the route.
 */
static int decide(const rt_http_request_t *req, const char *path, const char **reason) {
  const rt_http_header_t *h;
  const char *q = memchr(req->target, '?', req->target_len);
  size_t plen = q != NULL ? (size_t)(q - req->target) : req->target_len;
  int health = plen == strlen(HEALTH_PATH) && memcmp(req->target, HEALTH_PATH, plen) == 0;
  int stats = plen == strlen(STATS_PATH) && memcmp(req->target, STATS_PATH, plen) == 0;
  if ((health || stats) && method_is_get(req)) {
    *reason = health ? "health" : "stats";
    return 200;
  }
  health |= stats; /* both exist, for GET only (405 below) */
  if (!health && (plen != strlen(path) || memcmp(req->target, path, plen) != 0)) {
    *reason = "no WebSocket endpoint at this path";
    return 404;
  }
  if (!method_is_get(req)) {
    *reason = "only GET is allowed";
    return 405;
  }
  if (req->minor_version < 1) {
    *reason = "HTTP/1.1 required";
    return 400;
  }
  size_t hosts = count_headers(req, "Host", &h);
  if (hosts != 1) {
    *reason = hosts == 0 ? "missing Host header" : "duplicate Host header";
    return 400;
  }
  return check_ws_fields(req, reason);
}

static size_t write_upgrade(const rt_http_request_t *req, char *out, size_t cap) {
  char accept[29];
  const rt_http_header_t *key = rt_http_find_header(req, "Sec-WebSocket-Key");
  rt_handshake_accept_key(key->value, key->value_len, accept);
  writer_t w = {.out = out, .cap = cap};
  put(&w, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: ");
  put(&w, accept);
  /* Browsers fail a handshake whose offered protocols get no answer (RFC 6455 4.1). */
  if (rt_credentials_offers_subprotocol(req)) put(&w, "\r\nSec-WebSocket-Protocol: " RT_SUBPROTOCOL);
  put(&w, "\r\n\r\n");
  return finish(&w);
}

/*
 * Pure decision plus response bytes. For RT_HS_HEALTH nothing is written
 * (*out_len = 0) because only the caller knows the body. When the response
 * does not fit in cap, *out_len is 0 and the decision is still returned.
 */
rt_hs_result_t rt_handshake_process(const rt_http_request_t *req, const char *path, char *out,
                                    size_t cap, size_t *out_len, rt_hs_info_t *info) {
  const char *reason = NULL;
  int status = decide(req, path, &reason);
  rt_hs_result_t result = status == 101   ? RT_HS_UPGRADE
                          : status == 200 ? (strcmp(reason, "stats") == 0 ? RT_HS_STATS : RT_HS_HEALTH)
                                          : RT_HS_REJECT;
  if (info != NULL) {
    info->status = status;
    info->reason = reason;
  }
  if (result == RT_HS_UPGRADE)
    *out_len = write_upgrade(req, out, cap);
  else if (result == RT_HS_REJECT)
    *out_len = rt_handshake_error(status, reason, out, cap);
  else
    *out_len = 0;
  return result;
}
