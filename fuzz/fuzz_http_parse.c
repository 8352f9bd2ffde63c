/*
 * libFuzzer target for the request-head parser and the handshake that
 * consumes it.
 *
 * Input layout: byte 0 picks max_head (1-4081), byte 1 the response capacity
 * (0-510, or 512 when odd, so both the overflow path and the documented
 * sufficient size run), byte 2 the number n (0-7) of read sizes that follow
 * in bytes 3..3+n; the rest is the byte stream a client sends. The stream is
 * delivered in reads of those sizes (cycled; 0 counts as 1; no sizes means
 * one read), and after each read the whole received prefix is parsed from an
 * exact-size copy, as the connection code does, so ASan sees any over-read.
 *
 * Checked beyond memory safety: the answer is one of the documented codes;
 * a complete head lies within the bytes received and max_head, ends in
 * CRLF CRLF, and its fields hold only what the grammar allows; re-parsing
 * exactly the head gives the same length and one byte less gives RT_EAGAIN;
 * and parsing the whole stream at once gives the same answer as the reads,
 * so the result never depends on how the bytes were split.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "credentials.h"
#include "handshake.h"
#include "http_parse.h"
#include "realtime/realtime.h"

#define CHECK(cond)   \
  do {                \
    if (!(cond)) abort(); \
  } while (0)

static int parse_copy(const uint8_t *s, size_t len, size_t max_head, rt_http_request_t *req,
                      char **copy) {
  *copy = rt_malloc(len > 0 ? len : 1);
  CHECK(*copy != NULL);
  if (len > 0) memcpy(*copy, s, len);
  return rt_http_parse_request(*copy, len, max_head, req);
}

static int inside(const char *p, size_t n, const char *buf, size_t len) {
  return p >= buf && n <= len && (size_t)(p - buf) <= len - n;
}

static int is_ows(char c) { return c == ' ' || c == '\t'; }

static void check_header(const rt_http_header_t *h, const char *buf, size_t head) {
  CHECK(h->name_len > 0 && inside(h->name, h->name_len, buf, head));
  CHECK(inside(h->value, h->value_len, buf, head));
  for (size_t i = 0; i < h->name_len; i++) CHECK(h->name[i] > 0x20 && h->name[i] != ':');
  if (h->value_len > 0) CHECK(!is_ows(h->value[0]) && !is_ows(h->value[h->value_len - 1]));
  for (size_t i = 0; i < h->value_len; i++) {
    unsigned char c = (unsigned char)h->value[i];
    CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
  }
  rt_http_has_token(h->value, h->value_len, "upgrade");
}

/* Credentials found point into the request or the scratch buffer, never elsewhere. */
static void check_credentials(const rt_http_request_t *req) {
  char scratch[512];
  rt_credentials_t c;
  int r = rt_credentials_extract(req, scratch, sizeof(scratch), &c);
  CHECK(r == 0 || r == RT_ETOKEN);
  if (r != 0) return;
  if (c.token != NULL) CHECK(c.token_len > 0);
  if (c.api_key != NULL) CHECK(c.api_key_len > 0);
  int in_scratch = c.token >= scratch && c.token < scratch + sizeof(scratch);
  if (c.token != NULL && in_scratch) CHECK(c.token + c.token_len <= scratch + sizeof(scratch));
  (void)rt_credentials_offers_subprotocol(req);
}

/* Runs the handshake into an exact-size buffer of `cap` bytes. */
static void check_handshake(const rt_http_request_t *req, size_t cap) {
  char *out = rt_malloc(cap > 0 ? cap : 1);
  CHECK(out != NULL);
  size_t out_len = 0;
  rt_hs_info_t info = {0, NULL};
  rt_hs_result_t r = rt_handshake_process(req, "/ws", out, cap, &out_len, &info);
  CHECK(out_len <= cap && info.reason != NULL);
  if (r == RT_HS_UPGRADE) CHECK(info.status == 101);
  /* /health and /stats: the caller writes the body, so nothing is written here. */
  int served = r == RT_HS_HEALTH || r == RT_HS_STATS;
  if (served) CHECK(info.status == 200 && out_len == 0);
  if (r == RT_HS_REJECT) CHECK(info.status >= 400 && info.status < 500);
  if (!served && cap >= 512) CHECK(out_len > 0);
  rt_free(out);
  check_credentials(req);
}

static void check_complete(const char *buf, size_t len, size_t max_head, int rc,
                           const rt_http_request_t *req, size_t cap) {
  size_t head = (size_t)rc;
  rt_http_request_t again;
  char *copy;
  CHECK(head <= len && head <= max_head && head >= 16);
  CHECK(memcmp(buf + head - 4, "\r\n\r\n", 4) == 0);
  CHECK(req->method_len > 0 && inside(req->method, req->method_len, buf, head));
  CHECK(req->target_len > 0 && inside(req->target, req->target_len, buf, head));
  CHECK(req->minor_version >= 0 && req->minor_version <= 9);
  CHECK(req->num_headers <= RT_HTTP_MAX_HEADERS);
  for (size_t i = 0; i < req->num_headers; i++) check_header(&req->headers[i], buf, head);
  check_handshake(req, cap);
  CHECK(parse_copy((const uint8_t *)buf, head, max_head, &again, &copy) == rc);
  rt_free(copy);
  CHECK(parse_copy((const uint8_t *)buf, head - 1, max_head, &again, &copy) == RT_EAGAIN);
  rt_free(copy);
}

/* Reads the stream in the input's chunk sizes; returns the first answer that is not RT_EAGAIN. */
static int feed(const uint8_t *s, size_t len, size_t max_head, const uint8_t *sizes, size_t n,
                size_t cap) {
  rt_http_request_t req;
  size_t got = 0;
  int rc = RT_EAGAIN;
  for (size_t i = 0; got < len && rc == RT_EAGAIN; i++) {
    size_t step = n == 0 ? len : (sizes[i % n] == 0 ? 1 : sizes[i % n]);
    got += step < len - got ? step : len - got;
    char *copy;
    rc = parse_copy(s, got, max_head, &req, &copy);
    CHECK(rc > 0 || rc == RT_EAGAIN || rc == RT_EINVAL || rc == RT_ETOOLARGE);
    if (rc > 0) check_complete(copy, got, max_head, rc, &req, cap);
    rt_free(copy);
  }
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 3) return 0;
  size_t max_head = 1 + (size_t)data[0] * 16;
  size_t cap = (data[1] & 1) ? 512 : (size_t)data[1] * 2;
  size_t n = data[2] % 8;
  if (size < 3 + n) return 0;
  const uint8_t *sizes = data + 3;
  const uint8_t *stream = data + 3 + n;
  size_t len = size - 3 - n;
  int rc = feed(stream, len, max_head, sizes, n, cap);
  rt_http_request_t req;
  char *copy;
  CHECK(parse_copy(stream, len, max_head, &req, &copy) == rc);
  rt_free(copy);
  char err[512];
  CHECK(rt_handshake_error(431, "request head too large", err, cap < 512 ? cap : 512) <= cap);
  return 0;
}
