/*
 * Wire protocol v1 (docs/protocol.md): one JSON object per text message.
 *
 * Parsing is our own strict RFC 8259 scanner rather than jansson, because a
 * publish must forward `data` as the exact bytes the client sent (jansson
 * would turn 2^64 or 0.1 into something else on a round trip) and because it
 * is the hot path: one pass, no allocation, no tree. The encoders write whole
 * sealed text frames, so a fan-out encodes its envelope once.
 */
#ifndef RT_CORE_PROTO_H
#define RT_CORE_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "channel.h"
#include "errors.h"

typedef enum {
  RT_CMD_SUBSCRIBE = 1,
  RT_CMD_UNSUBSCRIBE,
  RT_CMD_PUBLISH,
  RT_CMD_AUTH,
  RT_CMD_PRESENCE,       /* enter or update presence ("data" optional) */
  RT_CMD_PRESENCE_LEAVE, /* leave presence */
  RT_CMD_PRESENCE_GET,   /* list presence */
  RT_CMD_QUERY_SUBSCRIBE,   /* live query: cred = "query" name or "sql" literal, data = params */
  RT_CMD_QUERY_UNSUBSCRIBE, /* live query: cred = "subscription" literal */
} rt_cmd_type_t;

typedef struct {
  rt_cmd_type_t type;
  int has_id;                         /* the command carried an integer "id" */
  int64_t id;                         /* echoed in the reply */
  char channel[RT_CHANNEL_MAX + 1];   /* decoded, NUL-terminated, validated */
  size_t channel_len;
  const char *data;                   /* publish, presence: exact bytes of "data" (NULL if absent), */
  size_t data_len;                    /*   pointing into the parsed message */
  const char *cred;                   /* auth: "token"/"apiKey"; query_subscribe: "query"/"sql"; */
  size_t cred_len;                    /*   query_unsubscribe: "subscription" - a JSON string */
                                      /*   literal, quotes included (rt_proto_decode_string it) */
  int cred_is_key;                    /* auth: 1 for "apiKey"; query_subscribe: 1 for "sql" */
} rt_cmd_t;

/*
 * Parses one command from msg[0..len) (valid UTF-8, as the codec checked).
 * Returns 0, or an RT_E* whose snake name is the wire error code, with the
 * human message in *err: RT_EJSON (with the byte position), RT_EDEPTH
 * (nesting over max_depth), RT_EFIELD (a field of the wrong type, or a
 * non-integer/out-of-range id), RT_EMISSING (naming the field), RT_ETYPE
 * (naming the type), RT_ECHANNEL ("Invalid channel name format"),
 * RT_ETOOLARGE (publish data over max_data). An "auth" command needs
 * exactly one of "token" and "apiKey" (strings). cmd->has_id/id are set
 * whenever the id could be read, even on error, so the reply can echo it.
 * Unknown extra fields are ignored; duplicate keys are RT_EJSON.
 */
int rt_proto_parse(const char *msg, size_t len, uint32_t max_depth, size_t max_data, rt_cmd_t *cmd,
                   rt_errbuf_t *err);

/*
 * Decodes a JSON string literal that rt_proto_parse accepted (quotes
 * included) into out[0..cap). Returns the decoded length, or RT_ETOOLARGE
 * when it does not fit. Used for secrets, which stay out of rt_cmd_t.
 */
long rt_proto_decode_string(const char *lit, size_t len, char *out, size_t cap);

/*
 * Validates that p[0..len) is exactly one JSON value (surrounding whitespace
 * allowed) nested at most max_depth deep. On success sets *start and *vlen to the
 * value without the surrounding whitespace. Returns 0, RT_EJSON or RT_EDEPTH.
 */
int rt_json_validate(const char *p, size_t len, uint32_t max_depth, size_t *start, size_t *vlen,
                     rt_errbuf_t *err);

/* Appends s[0..n) as a JSON string literal (quotes included) to a growable buffer. */
typedef struct {
  char *p;    /* rt_malloc'd, NUL-terminated */
  size_t len; /* bytes used */
  size_t cap; /* bytes allocated */
} rt_strbuf_t;
int rt_strbuf_append(rt_strbuf_t *b, const char *s, size_t n);
int rt_strbuf_append_json_string(rt_strbuf_t *b, const char *s, size_t n);
void rt_strbuf_destroy(rt_strbuf_t *b);
/*
 * Ends a strbuf holding one JSON message: when ok, returns a new sealed
 * text frame with its text (NULL on OOM); NULL when !ok. Destroys b either
 * way, so `return rt_strbuf_to_frame(&b, ok);` ends every builder.
 */
rt_frame_t *rt_strbuf_to_frame(rt_strbuf_t *b, int ok);

/* Sealed text frames (refcnt 1), or NULL on OOM. */
/* {"type":"ack","id":N} and, when delivered >= 0, ,"delivered":D */
rt_frame_t *rt_proto_ack(int has_id, int64_t id, int64_t delivered);
/* {"type":"error","id":N,"code":"<rt_err_name(err)>","message":"<escaped message>"} */
rt_frame_t *rt_proto_error(int has_id, int64_t id, int err, const char *message);
/* The same with ,"retry_after_ms":N (rate_limited). */
rt_frame_t *rt_proto_error_retry(int has_id, int64_t id, int err, const char *message,
                                 uint32_t retry_after_ms);
/* {"type":"ack","id":N,"userId":"..."(if any),"permissions":[...]} after an auth command. */
rt_frame_t *rt_proto_auth_ack(int has_id, int64_t id, const char *user_id,
                              const char *const *perms, size_t n);
/* {"type":"token_expired","graceMs":G}: re-authenticate within G ms or be closed (3005). */
rt_frame_t *rt_proto_token_expired(uint32_t grace_ms);
/* {"type":"message","channel":"<channel>","data":<data bytes as given>}; channel must be valid. */
rt_frame_t *rt_proto_message(const char *channel, size_t channel_len, const char *data,
                             size_t data_len);
/* Where the data bytes start in a frame made by rt_proto_message (borrowed from f). */
const char *rt_proto_message_data(const rt_frame_t *f, size_t channel_len);
/* Payload bytes of that message (without the WebSocket header); 0 when the size overflows. */
size_t rt_proto_message_len(size_t channel_len, size_t data_len);
/*
 * Appends that message as a complete text frame (header, then payload) to
 * f's payload area: how a publish writes into its channel's batch frame.
 * f must have room for rt_frame_header_len(n) + n bytes, n = rt_proto_message_len.
 */
void rt_proto_message_append(rt_frame_t *f, const char *channel, size_t channel_len,
                             const char *data, size_t data_len);

#endif
