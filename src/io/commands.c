/*
 * The protocol commands of one open connection (docs/protocol.md): parse,
 * charge the client's rate limits, check authentication and permissions,
 * run the command and reply. The connection's lifecycle, the read path and
 * the HTTP side stay in conn.c; this file only acts through the
 * connection's exported calls (rt_conn_send, rt_conn_fail, ...) and the
 * server's modules (hub, presence, live queries, security, events).
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "alloc.h"
#include "log.h"
#include "proto.h"
#include "security.h"
#include "server_internal.h"
#include "worker.h"

static void reply_error(rt_conn_t *c, const rt_cmd_t *cmd, int err, const char *msg) {
  const char *text = msg[0] ? msg : rt_strerror(err);
  rt_event_t ev = {.type = RT_EVENT_ERROR, .client_id = c->peer.id, .code = rt_err_name(err),
                   .reason = text};
  rt_events_emit(c->worker->srv, &ev);
  rt_conn_send(c, rt_proto_error(cmd->has_id, cmd->id, err, text));
}

static void emit_channel_event(rt_conn_t *c, rt_event_type_t type, const rt_cmd_t *cmd) {
  rt_event_t ev = {.type = type, .client_id = c->peer.id, .channel = cmd->channel};
  rt_events_emit(c->worker->srv, &ev);
}

static void do_subscribe(rt_conn_t *c, const rt_cmd_t *cmd) {
  rt_hub_t *hub = c->worker->hub;
  uint32_t max = c->worker->srv->cfg.max_subscriptions;
  if (rt_peer_subscription_count(&c->peer) >= max &&
      !rt_hub_is_subscribed(hub, &c->peer, cmd->channel, cmd->channel_len)) {
    char msg[96];
    snprintf(msg, sizeof(msg), "Too many subscriptions (limit %u per client)", max);
    reply_error(c, cmd, RT_ELIMIT, msg);
    return;
  }
  int r = rt_hub_subscribe(hub, &c->peer, cmd->channel, cmd->channel_len);
  if (r == 0) emit_channel_event(c, RT_EVENT_SUBSCRIBED, cmd);
  if (r == 0 || r == RT_EEXIST)
    rt_conn_send(c, rt_proto_ack(cmd->has_id, cmd->id, -1));
  else
    reply_error(c, cmd, r, "");
}

static void reply_rate_limited(rt_conn_t *c, const rt_cmd_t *cmd, const rt_rate_verdict_t *v) {
  if (v->disconnect) {
    rt_log(RT_LOG_WARN, "client=%llu ip=%s rate limit exceeded repeatedly (%s), closing",
           (unsigned long long)c->peer.id, RT_CONN_REMOTE(c), rt_rate_op_name(v->op));
    rt_conn_fail(c, RT_CLOSE_POLICY, "Rate limit exceeded");
    return;
  }
  rt_conn_send(c, rt_proto_error_retry(cmd->has_id, cmd->id, RT_ERATE, NULL, v->retry_after_ms));
}

/* Loop time on the owner's thread; another worker's loop clock is not ours to read. */
int rt_conn_rate_take(rt_conn_t *c, rt_rate_op_t op, rt_rate_verdict_t *out) {
  rt_server_t *srv = c->worker->srv;
  int64_t now = rt_worker_is_current(c->worker) ? (int64_t)uv_now(c->worker->loop) : rt_mono_ms();
  if (c->rl == NULL) {
    if (!rt_rate_policy_limited(&srv->rate_policy)) return 0;
    if ((c->rl = rt_malloc(sizeof(*c->rl))) == NULL) return RT_ENOMEM;
    rt_ratelimit_init(c->rl, &srv->rate_policy, now);
  }
  return rt_ratelimit_take(c->rl, &srv->rate_policy, op, now, out);
}

/* Charges the command to the client's limits; 0 when it may run (else the reply is sent). */
static int charge(rt_conn_t *c, const rt_cmd_t *cmd, rt_rate_op_t op) {
  rt_rate_verdict_t v;
  int r = rt_conn_rate_take(c, op, &v);
  if (r == 0) return 0;
  if (r == RT_ERATE)
    reply_rate_limited(c, cmd, &v);
  else
    reply_error(c, cmd, r, "");
  return -1;
}

/* A refusal names the channel and the permission that would allow it. */
static int permitted(rt_conn_t *c, const rt_cmd_t *cmd, rt_perm_action_t action) {
  if (rt_security_allows(c->worker->srv, &c->ident, c->authenticated, action, cmd->channel,
                         cmd->channel_len))
    return 1;
  char msg[RT_CHANNEL_MAX * 2 + 96];
  const char *verb = action == RT_PERM_READ ? "subscribe to" : "publish to";
  const char *perm = action == RT_PERM_READ ? "read" : "write";
  snprintf(msg, sizeof(msg), "Permission denied: %s \"%s\" requires %s:%s", verb, cmd->channel,
           perm, cmd->channel);
  reply_error(c, cmd, RT_EFORBIDDEN, msg);
  return 0;
}

/* Replaces the client's identity after a successful auth (a refresh keeps the subscriptions). */
static void do_auth(rt_conn_t *c, const rt_cmd_t *cmd) {
  char secret[RT_JWT_MAX_TOKEN_LEN + 1];
  rt_errbuf_t err;
  err.msg[0] = '\0';
  long n = rt_proto_decode_string(cmd->cred, cmd->cred_len, secret, sizeof(secret));
  if (n <= 0) {
    reply_error(c, cmd, RT_ETOKEN, n == 0 ? "Invalid token: empty" : "Invalid token: too long");
    return;
  }
  rt_identity_t id;
  int r = cmd->cred_is_key ? rt_security_check(c->worker->srv, NULL, 0, secret, (size_t)n, &id, &err)
                           : rt_security_check(c->worker->srv, secret, (size_t)n, NULL, 0, &id, &err);
  OPENSSL_cleanse(secret, sizeof(secret)); /* secrets do not linger on the stack */
  if (r != 0) {
    reply_error(c, cmd, r, err.msg);
    return;
  }
  rt_identity_destroy(&c->ident);
  c->ident = id;
  c->authenticated = 1;
  c->expiry_pushed = 0;
  if (c->timer_link.next != &c->timer_link && c->state == CONN_OPEN) rt_link_remove(&c->timer_link);
  rt_log(RT_LOG_DEBUG, "client=%llu ip=%s authenticated as %s", (unsigned long long)c->peer.id,
         RT_CONN_REMOTE(c), id.user_id ? id.user_id : "(no user id)");
  rt_conn_send(c, rt_proto_auth_ack(cmd->has_id, cmd->id, id.user_id,
                                    (const char *const *)id.permissions, id.permission_count));
}

static void do_publish(rt_conn_t *c, const rt_cmd_t *cmd) {
  rt_server_t *srv = c->worker->srv;
  rt_errbuf_t err;
  err.msg[0] = '\0';
  if (!permitted(c, cmd, RT_PERM_WRITE)) return;
  int r = rt_security_validate(srv, cmd->data, cmd->data_len, &err);
  if (r != 0) {
    reply_error(c, cmd, r, err.msg);
    return;
  }
  int64_t d = rt_workers_publish(srv, cmd->channel, cmd->channel_len, cmd->data, cmd->data_len,
                                 c->peer.id);
  if (d < 0) {
    reply_error(c, cmd, (int)d, "");
    return;
  }
  rt_event_t ev = {.type = RT_EVENT_PUBLISHED, .client_id = c->peer.id, .channel = cmd->channel,
                   .size = cmd->data_len, .delivered = d};
  rt_events_emit(srv, &ev);
  rt_conn_send(c, rt_proto_ack(cmd->has_id, cmd->id, d));
}

/* presence: join or update; the push to subscribers goes out before the ack. */
static void do_presence(rt_conn_t *c, const rt_cmd_t *cmd) {
  rt_errbuf_t err;
  err.msg[0] = '\0';
  if (!permitted(c, cmd, RT_PERM_READ)) return;
  const char *data = cmd->data != NULL ? cmd->data : "null";
  size_t len = cmd->data != NULL ? cmd->data_len : 4;
  int r = rt_srv_presence_set(c->worker->srv, cmd->channel, cmd->channel_len, RT_CONN_ID_TEXT(c),
                              c->ident.user_id, data, len, &err);
  if (r != 0)
    reply_error(c, cmd, r, err.msg);
  else
    rt_conn_send(c, rt_proto_ack(cmd->has_id, cmd->id, -1));
}

static void do_presence_get(rt_conn_t *c, const rt_cmd_t *cmd) {
  if (!permitted(c, cmd, RT_PERM_READ)) return;
  rt_conn_send(c, rt_srv_presence_list(c->worker->srv, cmd->channel, cmd->channel_len, cmd->has_id,
                                       cmd->id));
}

/*
 * query_subscribe: the ack (subscription id, columns, rows) comes from the
 * live-query layer, at once when the result is cached, else after the
 * first evaluation on the worker; errors found before that are replied here.
 */
static void do_query_subscribe(rt_conn_t *c, const rt_cmd_t *cmd) {
  char text[64 * 1024];
  rt_errbuf_t err;
  err.msg[0] = '\0';
  long n = rt_proto_decode_string(cmd->cred, cmd->cred_len, text, sizeof(text));
  if (n < 0 || memchr(text, '\0', (size_t)n) != NULL) {
    reply_error(c, cmd, RT_EQUERY, n < 0 ? "Query text too long (64 KiB at most)" : "NUL in query");
    return;
  }
  text[n] = '\0';
  int r = rt_live_subscribe(c->worker->srv->live, c, text, cmd->cred_is_key ? RT_LIVE_RAW : RT_LIVE_NAMED,
                            cmd->data, cmd->data_len, cmd->has_id, cmd->id, NULL, &err);
  if (r != 0) reply_error(c, cmd, r, err.msg);
}

static void do_query_unsubscribe(rt_conn_t *c, const rt_cmd_t *cmd) {
  char id[64];
  long n = rt_proto_decode_string(cmd->cred, cmd->cred_len, id, sizeof(id) - 1);
  if (n >= 0) id[n] = '\0';
  if (n < 0 || rt_live_unsubscribe(c->worker->srv->live, c, id) != 0) {
    reply_error(c, cmd, RT_EQUNKNOWN, "Unknown query subscription");
    return;
  }
  rt_conn_send(c, rt_proto_ack(cmd->has_id, cmd->id, -1));
}

static const rt_rate_op_t op_of[] = {
    [RT_CMD_SUBSCRIBE] = RT_RATE_SUBSCRIBE, [RT_CMD_UNSUBSCRIBE] = RT_RATE_MESSAGE,
    [RT_CMD_PUBLISH] = RT_RATE_PUBLISH,     [RT_CMD_AUTH] = RT_RATE_MESSAGE,
    [RT_CMD_PRESENCE] = RT_RATE_PRESENCE,   [RT_CMD_PRESENCE_LEAVE] = RT_RATE_MESSAGE,
    [RT_CMD_PRESENCE_GET] = RT_RATE_PRESENCE,
    [RT_CMD_QUERY_SUBSCRIBE] = RT_RATE_QUERY, [RT_CMD_QUERY_UNSUBSCRIBE] = RT_RATE_MESSAGE,
};

/*
 * Parses and runs one command. Every message counts against the client's
 * rate limits, a malformed one too (else garbage would be a free flood);
 * unsubscribe only against the message limit, since it frees resources. A
 * bad command gets an error reply; the connection stays.
 */
void rt_conn_handle_command(rt_conn_t *c, const char *msg, size_t len) {
  rt_server_t *srv = c->worker->srv;
  rt_cmd_t cmd;
  rt_errbuf_t err;
  err.msg[0] = '\0';
  int r = rt_proto_parse(msg, len, srv->cfg.max_json_depth, srv->cfg.max_publish_size, &cmd, &err);
  if (charge(c, &cmd, r < 0 ? RT_RATE_MESSAGE : op_of[cmd.type]) != 0) return;
  int gated = srv->cfg.require_auth && !c->authenticated && cmd.type != RT_CMD_AUTH;
  if (r < 0 && !(gated && r != RT_EJSON && r != RT_EDEPTH)) {
    reply_error(c, &cmd, r, err.msg);
    return;
  }
  /* Unauthenticated, any command but auth (well-formed JSON, known type or not) gets this. */
  if (gated) {
    reply_error(c, &cmd, RT_EAUTHREQ, "Authentication required for WebSocket connection");
    return;
  }
  switch (cmd.type) {
    case RT_CMD_AUTH:
      do_auth(c, &cmd);
      break;
    case RT_CMD_SUBSCRIBE:
      if (permitted(c, &cmd, RT_PERM_READ)) do_subscribe(c, &cmd);
      break;
    case RT_CMD_UNSUBSCRIBE: /* leaving a channel also leaves its presence */
      if (rt_hub_unsubscribe(c->worker->hub, &c->peer, cmd.channel, cmd.channel_len) == 0)
        emit_channel_event(c, RT_EVENT_UNSUBSCRIBED, &cmd);
      rt_srv_presence_leave(srv, cmd.channel, cmd.channel_len, RT_CONN_ID_TEXT(c));
      rt_conn_send(c, rt_proto_ack(cmd.has_id, cmd.id, -1));
      break;
    case RT_CMD_PUBLISH:
      do_publish(c, &cmd);
      break;
    case RT_CMD_PRESENCE:
      do_presence(c, &cmd);
      break;
    case RT_CMD_PRESENCE_LEAVE:
      rt_srv_presence_leave(srv, cmd.channel, cmd.channel_len, RT_CONN_ID_TEXT(c));
      rt_conn_send(c, rt_proto_ack(cmd.has_id, cmd.id, -1));
      break;
    case RT_CMD_PRESENCE_GET:
      do_presence_get(c, &cmd);
      break;
    case RT_CMD_QUERY_SUBSCRIBE:
      do_query_subscribe(c, &cmd);
      break;
    case RT_CMD_QUERY_UNSUBSCRIBE:
      do_query_unsubscribe(c, &cmd);
      break;
  }
}
