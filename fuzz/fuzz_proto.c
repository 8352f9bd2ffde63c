/*
 * libFuzzer target for the protocol parser and the JSON scanner.
 *
 * Each input is parsed as a command twice (default limits, and small limits
 * derived from the input so depth and size errors are reached) and validated
 * as a bare JSON value. Beyond "no crash", it checks properties that tie the
 * pieces together:
 *  - an accepted publish's `data` is itself exactly one JSON value with no
 *    surrounding whitespace, and the message envelope built from it is valid;
 *  - a syntax error of the parser is the one rt_json_validate reports, and a
 *    field error only happens on syntactically valid JSON;
 *  - a proper prefix of an accepted command (cut where the input says) fails
 *    with "unexpected end of input" at its own end;
 *  - every error becomes a reply that jansson reads back with the same code
 *    and message (so messages are valid UTF-8 and correctly escaped), and
 *    any bytes escape to a JSON string that decodes back to them;
 *  - jansson and rt_json_validate agree on what is JSON, except for limits
 *    jansson has and RFC 8259 does not (numbers out of its range, its depth).
 * The parser takes whole messages (the codec reassembles fragments), so the
 * input is not split; the prefix cut plays that role.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/proto.h"
#include "core/validate.h"

#define DEPTH 64
#define MAX_DATA 65536

#define CHECK(cond)                                                         \
  do {                                                                      \
    if (!(cond)) {                                                          \
      fprintf(stderr, "%s:%d: failed: %s\n", __FILE__, __LINE__, #cond);    \
      abort();                                                              \
    }                                                                       \
  } while (0)

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static json_t *load_payload(const rt_frame_t *f) {
  json_error_t jerr;
  const uint8_t *w = rt_frame_wire(f);
  size_t hdr = rt_frame_wire_len(f) - f->len;
  CHECK(w[0] == 0x81);
  return json_loadb((const char *)w + hdr, f->len, 0, &jerr);
}

/* The error reply carries the code and message intact. */
static void check_error_reply(const rt_cmd_t *cmd, int rc, const rt_errbuf_t *err) {
  rt_frame_t *f = rt_proto_error(cmd->has_id, cmd->id, rc, err->msg);
  CHECK(f != NULL);
  json_t *o = load_payload(f);
  CHECK(o != NULL);
  CHECK(strcmp(json_string_value(json_object_get(o, "code")), rt_err_name(rc)) == 0);
  CHECK(strcmp(json_string_value(json_object_get(o, "message")), err->msg) == 0);
  json_t *id = json_object_get(o, "id");
  CHECK((id != NULL) == (cmd->has_id != 0));
  CHECK(id == NULL || json_integer_value(id) == cmd->id);
  json_decref(o);
  rt_frame_unref(f);
}

/* A parse syntax error is exactly what the plain scanner says about the same text. */
static void check_syntax_error(const char *msg, size_t len, uint32_t depth, int rc,
                               const rt_errbuf_t *err) {
  rt_errbuf_t verr = {{0}};
  int vrc = rt_json_validate(msg, len, depth, NULL, NULL, &verr);
  if (strstr(err->msg, "expected an object") != NULL || strstr(err->msg, "duplicate key") != NULL)
    return;
  CHECK(vrc == rc);
  const char *tail = strstr(err->msg, "unexpected data after the object");
  if (tail == NULL) {
    CHECK(strcmp(verr.msg, err->msg) == 0);
  } else {
    size_t head = (size_t)(tail - err->msg);
    CHECK(strncmp(verr.msg, err->msg, head) == 0);
    CHECK(strcmp(verr.msg + head, "unexpected data after the value") == 0);
  }
}

static void check_accepted(const char *msg, size_t len, uint32_t depth, size_t max_data,
                           const rt_cmd_t *cmd) {
  CHECK(cmd->type >= RT_CMD_SUBSCRIBE && cmd->type <= RT_CMD_QUERY_UNSUBSCRIBE);
  int literal = cmd->type == RT_CMD_AUTH || cmd->type == RT_CMD_QUERY_SUBSCRIBE ||
                cmd->type == RT_CMD_QUERY_UNSUBSCRIBE;
  if (cmd->type == RT_CMD_QUERY_SUBSCRIBE && cmd->data != NULL) /* params: an array or object */
    CHECK(cmd->data >= msg && (cmd->data[0] == '[' || cmd->data[0] == '{') &&
          rt_json_validate(cmd->data, cmd->data_len, depth, NULL, NULL, NULL) == 0);
  if (literal) { /* the name, SQL or credential is a string literal inside the message */
    char out[256];
    CHECK(cmd->cred >= msg && cmd->cred_len >= 2 && cmd->cred <= msg + len - cmd->cred_len);
    CHECK(cmd->cred[0] == '"' && cmd->cred[cmd->cred_len - 1] == '"');
    long n = rt_proto_decode_string(cmd->cred, cmd->cred_len, out, sizeof(out));
    CHECK(n == RT_ETOOLARGE || (n >= 0 && (size_t)n <= cmd->cred_len - 2));
    return;
  }
  CHECK(cmd->channel_len == strlen(cmd->channel));
  CHECK(rt_channel_valid(cmd->channel, cmd->channel_len));
  CHECK(rt_json_validate(msg, len, depth, NULL, NULL, NULL) == 0);
  if (cmd->type != RT_CMD_PUBLISH && cmd->type != RT_CMD_PRESENCE) {
    CHECK(cmd->data == NULL);
    return;
  }
  if (cmd->data == NULL) { /* presence without data */
    CHECK(cmd->type == RT_CMD_PRESENCE);
    return;
  }
  size_t start = 1, vlen = 0;
  CHECK(cmd->data >= msg && cmd->data_len <= len && cmd->data <= msg + len - cmd->data_len);
  CHECK(cmd->data_len <= max_data && cmd->data_len > 0);
  CHECK(!is_ws(cmd->data[0]) && !is_ws(cmd->data[cmd->data_len - 1]));
  CHECK(rt_json_validate(cmd->data, cmd->data_len, depth, &start, &vlen, NULL) == 0);
  CHECK(start == 0 && vlen == cmd->data_len);
  rt_frame_t *f = rt_proto_message(cmd->channel, cmd->channel_len, cmd->data, cmd->data_len);
  CHECK(f != NULL);
  CHECK(rt_json_validate((const char *)rt_frame_payload(f), f->len, depth, NULL, NULL, NULL) == 0);
  rt_frame_unref(f);
  /* The XSS policy walks the same untrusted data: any verdict, never a crash. */
  rt_errbuf_t verr = {{0}};
  rt_validate_config_t vc = {1, depth, max_data};
  int vr = rt_validate_data(cmd->data, cmd->data_len, &vc, &verr);
  CHECK(vr == 0 || vr == RT_EMESSAGE || vr == RT_EDEPTH || vr == RT_ETOOLARGE);
  CHECK(vr == 0 || verr.msg[0] != '\0');
}

/* A proper prefix of an accepted command, cut before its closing brace, ends too early. */
static void check_prefix(const char *msg, size_t len, size_t cut_seed) {
  size_t end = len;
  while (end > 0 && is_ws(msg[end - 1])) end--;
  if (end == 0) return;
  size_t cut = cut_seed % end;
  char *prefix = malloc(cut ? cut : 1);
  CHECK(prefix != NULL);
  memcpy(prefix, msg, cut);
  rt_cmd_t cmd;
  rt_errbuf_t err = {{0}}, expected = {{0}};
  int rc = rt_proto_parse(prefix, cut, DEPTH, MAX_DATA, &cmd, &err);
  snprintf(expected.msg, sizeof(expected.msg), "Invalid JSON at byte %zu: unexpected end of input",
           cut);
  CHECK(rc == RT_EJSON);
  CHECK(strcmp(err.msg, expected.msg) == 0);
  free(prefix);
}

static void check_parse(const char *msg, size_t len, uint32_t depth, size_t max_data,
                        size_t cut_seed) {
  rt_cmd_t cmd;
  rt_errbuf_t err = {{0}};
  int rc = rt_proto_parse(msg, len, depth, max_data, &cmd, &err);
  if (rc == 0) {
    check_accepted(msg, len, depth, max_data, &cmd);
    if (depth == DEPTH && max_data == MAX_DATA) check_prefix(msg, len, cut_seed);
    return;
  }
  CHECK(rc == RT_EJSON || rc == RT_EDEPTH || rc == RT_EFIELD || rc == RT_EMISSING ||
        rc == RT_ETYPE || rc == RT_ECHANNEL || rc == RT_ETOOLARGE);
  CHECK(err.msg[0] != '\0');
  if (rc == RT_EJSON || rc == RT_EDEPTH)
    check_syntax_error(msg, len, depth, rc, &err);
  else
    CHECK(rt_json_validate(msg, len, depth, NULL, NULL, NULL) == 0);
  check_error_reply(&cmd, rc, &err);
}

/*
 * jansson's own limits, which RFC 8259 does not have: number range,
 * nesting, and no \u0000 in object keys. It also stops reading at a NUL
 * byte outside a string and accepts what came before ("false\0"), so it
 * cannot vouch for inputs holding one.
 */
static int jansson_limit(const json_error_t *jerr) {
  return strstr(jerr->text, "too big") != NULL || strstr(jerr->text, "overflow") != NULL ||
         strstr(jerr->text, "depth") != NULL ||
         strstr(jerr->text, "NUL byte in object key") != NULL;
}

static void check_against_jansson(const char *text, size_t len) {
  int rc = rt_json_validate(text, len, UINT32_MAX, NULL, NULL, NULL);
  if (rc == RT_EDEPTH) return;
  json_error_t jerr;
  json_t *j = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
  if (rc == 0 && j == NULL && !jansson_limit(&jerr)) {
    fprintf(stderr, "jansson refuses what we accept: %s\n", jerr.text);
    abort();
  }
  if (rc != 0 && j != NULL && memchr(text, '\0', len) == NULL) {
    fprintf(stderr, "jansson accepts what we refuse\n");
    abort();
  }
  json_decref(j);
}

/* Any bytes escape to one JSON string; when they are valid UTF-8 it decodes back to them. */
static void check_escape(const char *text, size_t len) {
  rt_strbuf_t b = {NULL, 0, 0};
  CHECK(rt_strbuf_append_json_string(&b, text, len) == 0);
  CHECK(rt_json_validate(b.p, b.len, 0, NULL, NULL, NULL) == 0);
  json_error_t jerr;
  json_t *got = json_loadb(b.p, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
  CHECK(got != NULL);
  json_t *want = json_stringn(text, len);
  CHECK(want == NULL || json_equal(got, want));
  json_decref(want);
  json_decref(got);
  rt_strbuf_destroy(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *msg = (const char *)data;
  size_t seed = size > 0 ? (size_t)data[size - 1] * 131 + data[0] : 0;
  check_parse(msg, size, DEPTH, MAX_DATA, seed);
  check_parse(msg, size, (uint32_t)(seed % 6), seed % 40, seed);
  check_against_jansson(msg, size);
  check_escape(msg, size);
  return 0;
}
