/*
 * One client connection over libuv: the state machine HTTP -> OPEN ->
 * CLOSING -> CLOSED (docs/architecture.md), the read path, and the
 * connection's side of the hub (its rt_peer_t).
 *
 * Reads land in the server's one read buffer and are decoded in place; the
 * pure modules decide (handshake, ws_codec, proto, hub) and this file acts:
 * it queues frames, starts close handshakes and closes sockets. A conn is
 * freed only from its uv_close callback, which libuv runs after the current
 * callbacks have returned, so no caller up the stack sees freed memory; code
 * here re-checks c->state after anything that can close it.
 */
#include <string.h>

#include <openssl/crypto.h>

#include "alloc.h"
#include "credentials.h"
#include "handshake.h"
#include "http_parse.h"
#include "log.h"
#include "proto.h"
#include "security.h"
#include "server_internal.h"
#include "worker.h"

/* How long we wait for the peer's close frame (or an HTTP client's EOF) before closing. */
#define CLOSE_TIMEOUT_MS 3000

static int conn_deliver(rt_peer_t *peer, const rt_slice_t *wire, const rt_hub_msg_t *msg);
static int conn_push(rt_peer_t *peer, rt_frame_t *frame);
static const rt_peer_ops_t conn_peer_ops = {conn_deliver, conn_push};

static rt_conn_t *conn_of_peer(rt_peer_t *p) { return RT_CONTAINER_OF(p, rt_conn_t, peer); }

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  rt_conn_t *c = h->data;
  *buf = uv_buf_init(c->worker->rbuf, sizeof(c->worker->rbuf));
}

static void on_close(uv_handle_t *h) {
  rt_conn_t *c = h->data;
  rt_server_t *srv = c->worker->srv;
  rt_worker_t *w = c->worker;
  rt_srv_lock(srv);
  if (c->ip_counted) rt_iplimit_release(srv->iplimit, RT_CONN_IP(c));
  rt_identity_destroy(&c->ident);
  rt_free(c->rl);
  rt_ws_decoder_free(c->dec);
  rt_sendq_destroy(&c->sendq);
  rt_free(c->head);
  rt_free(c);
  rt_worker_conn_freed(w);
  rt_srv_unlock(srv);
}

static void set_deadline(rt_conn_t *c, rt_link_t *list, uint64_t after_ms) {
  rt_link_remove(&c->timer_link);
  c->deadline_ms = uv_now(c->worker->loop) + after_ms;
  rt_link_push_back(list, &c->timer_link);
}

/* A client that completed the upgrade leaves: its presence goes, listeners hear of it. */
static void leave_everything(rt_conn_t *c) {
  rt_hub_unsubscribe_all(c->worker->hub, &c->peer);
  rt_live_drop_owner(c->worker->srv->live, c);
  if (c->connected_at_ms == 0) return;
  rt_srv_presence_drop_client(c->worker->srv, RT_CONN_ID_TEXT(c));
}

void rt_conn_abort(rt_conn_t *c) {
  if (c->state == CONN_CLOSED) return;
  if (c->state == CONN_OPEN) c->worker->open_count--;
  leave_everything(c);
  if (c->connected_at_ms != 0) {
    rt_event_t ev = {.type = RT_EVENT_DISCONNECTED,
                     .client_id = c->peer.id,
                     .address = RT_CONN_REMOTE(c),
                     .close_code = c->close_code ? c->close_code : 1006,
                     .reason = c->close_reason ? c->close_reason : ""};
    rt_events_emit(c->worker->srv, &ev);
  }
  rt_link_remove(&c->all_link);
  rt_link_remove(&c->timer_link);
  rt_link_remove(&c->pending_link);
  if (c->worker->srv->nworkers > 1)
    rt_strmap_remove(&c->worker->by_id, (const char *)&c->peer.id, sizeof(c->peer.id));
  c->state = CONN_CLOSED;
  uv_read_stop((uv_stream_t *)&c->tcp);
  uv_close((uv_handle_t *)&c->tcp, on_close);
}

/*
 * Queues a frame we own one reference to. Past max_queued_bytes the client
 * is a slow consumer and is cut off (unless `force`, used for the close
 * frame itself): what it has not started receiving is dropped, so one stuck
 * reader costs at most the cap, and everyone else carries on.
 */
/* Out of line: its address text buffer stays off the per-delivery path's stack frame. */
static __attribute__((noinline, cold)) void cut_slow_consumer(rt_conn_t *c) {
  c->worker->srv->totals.slow_consumers_closed++;
  rt_log(RT_LOG_WARN, "client=%llu ip=%s slow consumer: %zu bytes unsent, closing",
         (unsigned long long)c->peer.id, RT_CONN_REMOTE(c), c->sendq.bytes);
  rt_flush_drop_unsent(c);
  rt_conn_fail(c, RT_CLOSE_POLICY, "Slow consumer: too many unsent bytes");
}

/* 1 when n more bytes fit under the send cap; else the client is cut off and 0. */
static int within_cap(rt_conn_t *c, size_t n) {
  if (c->sendq.bytes + n <= c->worker->srv->cfg.max_queued_bytes) return 1;
  cut_slow_consumer(c);
  return 0;
}

static int send_frame(rt_conn_t *c, rt_frame_t *f, int force) {
  size_t n = rt_frame_wire_len(f);
  if (c->state == CONN_CLOSED || (!force && c->state != CONN_OPEN)) goto drop;
  if (!force && !within_cap(c, n)) goto drop;
  if (rt_sendq_push(&c->sendq, f) != 0) {
    rt_conn_abort(c);
    goto drop;
  }
  c->bytes_out += n;
  rt_flush_schedule(c);
  return 0;
drop:
  rt_frame_unref(f);
  return RT_ESTATE;
}

/* A frame for another worker's conn: a copy goes to its inbox, by id (the conn may go first). */
static int send_foreign(rt_conn_t *c, rt_frame_t *f) {
  rt_inbox_msg_t *m = rt_inbox_msg_new(RT_INBOX_SEND, NULL, 0, 0);
  rt_frame_t *copy = m != NULL && f != NULL ? rt_frame_copy(f) : NULL;
  rt_frame_unref(f);
  if (copy == NULL) {
    rt_inbox_msg_free(m);
    rt_conn_end(c, RT_CLOSE_HOW_ABORT, 0, ""); /* as a local send would on OOM */
    return RT_ENOMEM;
  }
  m->conn_id = c->peer.id;
  m->frame = copy;
  return rt_worker_post(c->worker, m);
}

int rt_conn_send(rt_conn_t *c, rt_frame_t *f) {
  if (!rt_worker_is_current(c->worker)) return send_foreign(c, f);
  if (f == NULL) {
    rt_conn_abort(c);
    return RT_ENOMEM;
  }
  int r = send_frame(c, f, 0);
  if (r == 0) c->messages_out++;
  return r;
}

/*
 * Queues a close frame and stops deliveries. With `fail` (RFC 6455 7.1.7,
 * "Fail the WebSocket Connection": protocol errors, slow or dead peers) we
 * do not wait for the peer's close: once the frame is out the socket is
 * half-closed and whatever the peer still sends is discarded until its EOF,
 * so it reads our close code instead of a reset. Otherwise (shutdown) we
 * wait for the peer's close frame, bounded by CLOSE_TIMEOUT_MS either way.
 */
static void close_conn(rt_conn_t *c, uint16_t code, const char *reason, int fail) {
  if (c->state == CONN_HTTP) {
    rt_conn_abort(c);
    return;
  }
  if (c->state != CONN_OPEN) return;
  c->state = CONN_CLOSING;
  c->worker->open_count--;
  c->close_code = code;
  c->close_reason = reason;
  leave_everything(c);
  rt_log(RT_LOG_DEBUG, "client=%llu ip=%s closing: %u %s", (unsigned long long)c->peer.id,
         RT_CONN_REMOTE(c), code, reason);
  rt_frame_t *f = rt_ws_close_frame_new(code, reason);
  if (f == NULL || send_frame(c, f, 1) != 0) {
    rt_conn_abort(c);
    return;
  }
  c->linger = c->close_after_flush = fail ? 1 : 0;
  set_deadline(c, &c->worker->closing, CLOSE_TIMEOUT_MS);
}

void rt_conn_close(rt_conn_t *c, uint16_t code, const char *reason) {
  close_conn(c, code, reason, 0);
}

void rt_conn_fail(rt_conn_t *c, uint16_t code, const char *reason) {
  close_conn(c, code, reason, 1);
}

void rt_conn_end(rt_conn_t *c, rt_close_how_t how, uint16_t code, const char *reason) {
  if (!rt_worker_is_current(c->worker)) {
    rt_inbox_msg_t *m = rt_inbox_msg_new(RT_INBOX_CLOSE, NULL, 0, 0);
    if (m == NULL) return;
    m->conn_id = c->peer.id;
    m->how = how;
    m->close_code = code;
    m->close_reason = reason;
    rt_worker_post(c->worker, m);
    return;
  }
  if (how == RT_CLOSE_HOW_ABORT)
    rt_conn_abort(c);
  else
    close_conn(c, code, reason, how == RT_CLOSE_HOW_FAIL);
}

static void on_close_frame(rt_conn_t *c, const rt_ws_event_t *ev) {
  c->close_received = 1;
  if (c->state == CONN_CLOSING) { /* our close was first: the handshake is complete */
    rt_conn_abort(c);
    return;
  }
  /* RFC 6455 5.5.1: echo the status code, then close the TCP connection (server first). */
  c->state = CONN_CLOSING;
  c->worker->open_count--;
  c->close_code = ev->close_code;
  c->close_reason = "";
  leave_everything(c);
  rt_frame_t *f = ev->close_code == RT_CLOSE_NO_STATUS
                      ? rt_ws_frame_new(RT_WS_OP_CLOSE, NULL, 0)
                      : rt_ws_close_frame_new(ev->close_code, "");
  if (f == NULL || send_frame(c, f, 1) != 0) {
    rt_conn_abort(c);
    return;
  }
  c->close_after_flush = 1;
  set_deadline(c, &c->worker->closing, CLOSE_TIMEOUT_MS);
}

static void handle_event(rt_conn_t *c, const rt_ws_event_t *ev) {
  switch (ev->type) {
    case RT_WS_EV_TEXT:
      if (c->state != CONN_OPEN) return; /* data after our close frame is discarded */
      c->messages_in++;
      c->bytes_in += ev->len;
      c->last_activity_ms = rt_wall_ms();
      rt_conn_handle_command(c, (const char *)ev->payload, ev->len);
      break;
    case RT_WS_EV_BINARY:
      rt_conn_fail(c, RT_CLOSE_UNSUPPORTED,
                    "Binary messages are not supported: send JSON text messages");
      break;
    case RT_WS_EV_PING:
      if (c->state == CONN_OPEN) rt_conn_send(c, rt_ws_frame_new(RT_WS_OP_PONG, ev->payload, ev->len));
      break;
    case RT_WS_EV_PONG: /* the keep-alive answer also keeps the client's presence alive */
      c->awaiting_pong = 0;
      rt_presence_touch_client(c->worker->srv->presence, RT_CONN_ID_TEXT(c), rt_mono_ms());
      break;
    case RT_WS_EV_CLOSE:
      on_close_frame(c, ev);
      break;
    case RT_WS_EV_ERROR:
      c->worker->srv->totals.protocol_errors++;
      rt_log(RT_LOG_DEBUG, "client=%llu ip=%s protocol error: %s", (unsigned long long)c->peer.id,
             RT_CONN_REMOTE(c), ev->reason);
      if (c->state == CONN_OPEN)
        rt_conn_fail(c, ev->close_code, ev->reason);
      else
        rt_conn_abort(c);
      break;
    case RT_WS_EV_NONE:
      break;
  }
}

/*
 * Decodes every event in `in` (unmasked in place); stops as soon as the conn
 * closes. The decoder is the conn's own while a frame spans reads, else the
 * loop's, lent for this read: an idle connection holds no decoder.
 */
static void handle_ws(rt_conn_t *c, uint8_t *in, size_t n) {
  rt_ws_decoder_t *d = rt_ws_lender_borrow(&c->worker->decoders, c->dec);
  if (d == NULL) {
    rt_conn_abort(c);
    return;
  }
  size_t off = 0;
  while (off < n && (c->state == CONN_OPEN || c->state == CONN_CLOSING) && !c->close_received) {
    rt_ws_event_t ev;
    size_t used = 0;
    if (rt_ws_decoder_feed(d, in + off, n - off, &used, &ev) != 0) {
      rt_conn_abort(c);
      break;
    }
    off += used;
    if (ev.type == RT_WS_EV_NONE) break;
    handle_event(c, &ev);
  }
  rt_ws_lender_settle(&c->worker->decoders, &c->dec, d);
}

static void health_body(rt_server_t *srv, char *out, size_t cap) {
  snprintf(out, cap,
           "{\"status\":\"ok\",\"version\":\"%s\",\"connections\":%zu,\"channels\":%zu,"
           "\"uptimeMs\":%lld}",
           RT_VERSION_STRING, rt_server_active_connections(srv), rt_srv_channel_count(srv),
           (long long)(rt_wall_ms() - srv->started_at_ms));
}

static void respond_frame(rt_conn_t *c, rt_frame_t *f);

/* Queues an HTTP response (not a WebSocket frame) and half-closes once it is sent. */
static void respond_and_close(rt_conn_t *c, const char *resp, size_t len) {
  rt_frame_t *f = rt_frame_new(len);
  if (f != NULL) rt_frame_append(f, resp, len); /* unsealed: the wire bytes are the payload */
  respond_frame(c, f);
}

/* Takes ownership of f (an HTTP response; NULL on OOM). */
static void respond_frame(rt_conn_t *c, rt_frame_t *f) {
  rt_free(c->head);
  c->head = NULL;
  if (f == NULL) {
    rt_conn_abort(c);
    return;
  }
  c->state = CONN_CLOSING;
  c->linger = 1;
  c->close_after_flush = 1;
  set_deadline(c, &c->worker->closing, CLOSE_TIMEOUT_MS);
  send_frame(c, f, 1);
}

static void upgrade(rt_conn_t *c, const char *resp, size_t len, size_t head_len) {
  rt_server_t *srv = c->worker->srv;
  rt_frame_t *f = rt_frame_new(len);
  if (f == NULL) {
    rt_conn_abort(c);
    return;
  }
  rt_frame_append(f, resp, len);
  rt_link_remove(&c->timer_link);
  c->state = CONN_OPEN;
  c->connected_at_ms = rt_wall_ms();
  if (srv->cfg.require_auth && !c->authenticated)
    set_deadline(c, &c->worker->authwait, srv->cfg.auth_timeout_ms);
  c->worker->open_count++;
  srv->totals.connections_total++;
  send_frame(c, f, 1);
  char remote[RT_ADDR_TEXT];
  rt_conn_remote(c, remote);
  rt_log(RT_LOG_DEBUG, "client=%llu ip=%s connected", (unsigned long long)c->peer.id, remote);
  rt_event_t ev = {.type = RT_EVENT_CONNECTED, .client_id = c->peer.id, .address = remote,
                   .user_id = c->ident.user_id};
  rt_events_emit(srv, &ev);
  if (c->state != CONN_OPEN) return; /* a listener closed it */
  /* Frames the client sent right behind its request head. */
  char *head = c->head;
  c->head = NULL;
  if (c->head_len > head_len) handle_ws(c, (uint8_t *)head + head_len, c->head_len - head_len);
  rt_free(head);
}

/*
 * Admission at the upgrade, before any WebSocket state exists: the per-IP
 * connection limit (429), then credentials (401 when present but invalid;
 * the reason, never the secret, is in the body). On refusal the error
 * response replaces the 101 in resp and RT_EFORBIDDEN is returned.
 */
static int admit(rt_conn_t *c, const rt_http_request_t *req, char *resp, size_t cap, size_t *len) {
  rt_server_t *srv = c->worker->srv;
  char scratch[RT_JWT_MAX_TOKEN_LEN + 512];
  rt_credentials_t cr;
  rt_errbuf_t err;
  err.msg[0] = '\0';
  if (srv->iplimit != NULL) {
    int r = rt_iplimit_acquire(srv->iplimit, RT_CONN_IP(c));
    if (r != 0) {
      rt_log(RT_LOG_INFO, "ip=%s refused: too many connections", RT_CONN_IP(c));
      *len = rt_handshake_error(r == RT_ELIMIT ? 429 : 503, "Too many connections from this address",
                                resp, cap);
      return RT_EFORBIDDEN;
    }
    c->ip_counted = 1;
  }
  int r = rt_credentials_extract(req, scratch, sizeof(scratch), &cr);
  if (r == 0)
    r = rt_security_check(srv, cr.token, cr.token_len, cr.api_key, cr.api_key_len, &c->ident, &err);
  else
    rt_errbuf_set(&err, r, "Invalid credentials: malformed Authorization, token or api_key");
  OPENSSL_cleanse(scratch, sizeof(scratch));
  if (r == RT_ENOENT) return 0;
  if (r == 0) {
    c->authenticated = 1;
    return 0;
  }
  rt_log(RT_LOG_INFO, "ip=%s refused: %s", RT_CONN_IP(c), err.msg);
  *len = rt_handshake_error(r == RT_ENOMEM ? 503 : 401, err.msg, resp, cap);
  return RT_EFORBIDDEN;
}

/*
 * GET /stats: channels and totals as JSON. With requireAuth on it is only
 * for holders of an API key (X-API-Key or ?api_key=), as it shows channel
 * names and activity.
 */
static void serve_stats(rt_conn_t *c, const rt_http_request_t *req) {
  rt_server_t *srv = c->worker->srv;
  char resp[512];
  if (srv->cfg.require_auth) {
    char scratch[1024];
    rt_credentials_t cr;
    rt_identity_t id;
    int r = rt_credentials_extract(req, scratch, sizeof(scratch), &cr);
    if (r == 0) r = cr.api_key != NULL ? rt_security_check(srv, NULL, 0, cr.api_key, cr.api_key_len,
                                                         &id, NULL)
                                       : RT_EAUTHREQ;
    OPENSSL_cleanse(scratch, sizeof(scratch));
    if (r != 0) {
      respond_and_close(c, resp, rt_handshake_error(401, "An API key is required", resp, sizeof(resp)));
      return;
    }
    rt_identity_destroy(&id);
  }
  rt_strbuf_t body = {0};
  rt_frame_t *f = NULL;
  if (rt_srv_stats_json(srv, &body) == 0) {
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                     body.len);
    f = rt_frame_new((size_t)n + body.len);
    if (f != NULL) {
      rt_frame_append(f, resp, (size_t)n);
      rt_frame_append(f, body.p, body.len);
    }
  }
  rt_strbuf_destroy(&body);
  respond_frame(c, f);
}

/* Accumulates the request head; once complete, answers it (upgrade, health or an error). */
static void handle_http(rt_conn_t *c, const char *data, size_t n) {
  rt_server_t *srv = c->worker->srv;
  char *nh = rt_realloc(c->head, c->head_len + n);
  if (nh == NULL) {
    rt_conn_abort(c);
    return;
  }
  c->head = nh;
  memcpy(c->head + c->head_len, data, n);
  c->head_len += n;

  rt_http_request_t req;
  char resp[1024];
  size_t len = 0;
  int r = rt_http_parse_request(c->head, c->head_len, srv->cfg.max_header_size, &req);
  if (r == RT_EAGAIN) return;
  if (r < 0) {
    int status = r == RT_ETOOLARGE ? 431 : 400;
    len = rt_handshake_error(status, status == 431 ? "Request header fields too large"
                                                   : "Malformed HTTP request",
                             resp, sizeof(resp));
    respond_and_close(c, resp, len);
    return;
  }
  rt_hs_info_t info;
  switch (rt_handshake_process(&req, srv->path, resp, sizeof(resp), &len, &info)) {
    case RT_HS_UPGRADE:
      if (admit(c, &req, resp, sizeof(resp), &len) == 0) {
        upgrade(c, resp, len, (size_t)r);
        return;
      }
      break;
    case RT_HS_STATS:
      serve_stats(c, &req);
      return;
    case RT_HS_HEALTH: {
      char body[256];
      health_body(srv, body, sizeof(body));
      len = rt_handshake_health(body, resp, sizeof(resp));
      break;
    }
    case RT_HS_REJECT:
      rt_log(RT_LOG_DEBUG, "ip=%s handshake refused: %d %s", RT_CONN_REMOTE(c), info.status,
             info.reason);
      break;
  }
  respond_and_close(c, resp, len);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  rt_conn_t *c = s->data;
  rt_server_t *srv = c->worker->srv;
  if (nread == 0) return;
  rt_srv_enter(srv);
  if (nread < 0)
    rt_conn_abort(c); /* EOF or reset: nothing left to say to this peer */
  else if (c->state == CONN_HTTP)
    handle_http(c, buf->base, (size_t)nread);
  else if (c->state == CONN_OPEN || (c->state == CONN_CLOSING && !c->linger))
    handle_ws(c, (uint8_t *)buf->base, (size_t)nread);
  /* A lingering conn (failed, or an HTTP reject) discards input until EOF. */
  rt_srv_unlock(srv);
}

/*
 * A published message: its bytes are a slice of the channel's batch frame,
 * which extends the queue's tail entry when the previous message queued
 * here was the one right before it in the same batch (rt_sendq_append), so
 * a flush sends a subscriber's messages of one channel as one iovec.
 */
static int conn_deliver(rt_peer_t *peer, const rt_slice_t *wire, const rt_hub_msg_t *msg) {
  rt_conn_t *c = conn_of_peer(peer);
  if (c->state != CONN_OPEN || !within_cap(c, wire->len)) return 1;
  if (rt_sendq_append(&c->sendq, wire) != 0) {
    rt_conn_abort(c);
    return 1;
  }
  c->bytes_out += wire->len;
  c->messages_out++;
  rt_flush_schedule(c);
  return 0;
}

static int conn_push(rt_peer_t *peer, rt_frame_t *frame) {
  rt_conn_t *c = conn_of_peer(peer);
  if (c->state != CONN_OPEN) return 1;
  return rt_conn_send(c, rt_frame_ref(frame)) == 0 ? 0 : 1;
}

static void remember_peer(rt_conn_t *c) {
  int len = sizeof(c->addr);
  if (uv_tcp_getpeername(&c->tcp, &c->addr.sa, &len) != 0) memset(&c->addr, 0, sizeof(c->addr));
}

const char *rt_conn_ip(const rt_conn_t *c, char buf[RT_IP_TEXT]) {
  int r = -1;
  if (c->addr.sa.sa_family == AF_INET6)
    r = uv_ip6_name(&c->addr.in6, buf, RT_IP_TEXT);
  else if (c->addr.sa.sa_family == AF_INET)
    r = uv_ip4_name(&c->addr.in4, buf, RT_IP_TEXT);
  if (r != 0) snprintf(buf, RT_IP_TEXT, "?");
  return buf;
}

const char *rt_conn_remote(const rt_conn_t *c, char buf[RT_ADDR_TEXT]) {
  char ip[RT_IP_TEXT];
  int port = c->addr.sa.sa_family == AF_INET6  ? ntohs(c->addr.in6.sin6_port)
             : c->addr.sa.sa_family == AF_INET ? ntohs(c->addr.in4.sin_port)
                                               : 0;
  snprintf(buf, RT_ADDR_TEXT, "%s:%d", rt_conn_ip(c, ip), port);
  return buf;
}

const char *rt_conn_client_id(const rt_conn_t *c, char buf[RT_ID_TEXT]) {
  snprintf(buf, RT_ID_TEXT, "%llu", (unsigned long long)c->peer.id);
  return buf;
}

static void accept_conn(rt_worker_t *w, uv_stream_t *listener) {
  rt_server_t *srv = w->srv;
  int indexed = srv->nworkers > 1; /* only other threads look conns up by id */
  rt_conn_t *c = !indexed || rt_strmap_reserve(&w->by_id) == 0 ? rt_calloc(1, sizeof(*c)) : NULL;
  if (c == NULL) return; /* the connection stays in the backlog; libuv retries */
  c->worker = w;
  c->tcp.data = c;
  rt_link_init(&c->all_link);
  rt_link_init(&c->timer_link);
  rt_link_init(&c->pending_link);
  rt_sendq_init(&c->sendq);
  rt_peer_init(&c->peer, &conn_peer_ops, ++srv->next_client_id);
  if (indexed) rt_strmap_insert(&w->by_id, (const char *)&c->peer.id, sizeof(c->peer.id), c);
  uv_tcp_init(w->loop, &c->tcp);
  c->state = CONN_HTTP;
  rt_link_push_back(&w->conns, &c->all_link);
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0 || srv->state != SRV_RUNNING) {
    rt_conn_abort(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  remember_peer(c);
  set_deadline(c, &w->handshaking, srv->cfg.handshake_timeout_ms);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

void rt_conn_on_accept(uv_stream_t *listener, int status) {
  rt_worker_t *w = listener->data;
  if (status < 0) {
    rt_log(RT_LOG_WARN, "accept failed: %s", uv_strerror(status));
    return;
  }
  rt_srv_enter(w->srv);
  accept_conn(w, listener);
  rt_srv_unlock(w->srv);
}

/* Both lists are FIFO with one timeout each, so they are sorted: O(expired) per tick. */
static void expire(rt_link_t *list, uint64_t now, const char *what) {
  while (!rt_link_empty(list)) {
    rt_conn_t *c = RT_CONTAINER_OF(list->next, rt_conn_t, timer_link);
    if (c->deadline_ms > now) break;
    rt_log(RT_LOG_DEBUG, "client=%llu ip=%s %s timeout", (unsigned long long)c->peer.id,
           RT_CONN_REMOTE(c), what);
    rt_conn_abort(c);
  }
}

void rt_conn_sweep_deadlines(rt_worker_t *w) {
  uint64_t now = uv_now(w->loop);
  expire(&w->handshaking, now, "handshake");
  expire(&w->closing, now, "close");
  while (!rt_link_empty(&w->authwait)) {
    rt_conn_t *c = RT_CONTAINER_OF(w->authwait.next, rt_conn_t, timer_link);
    if (c->deadline_ms > now) break;
    rt_conn_fail(c, RT_CLOSE_AUTH_TIMEOUT, "Authentication timeout");
  }
}

/*
 * With several workers, a map whose keys are the bytes of each conn's
 * peer.id (immutable, inside the conn): inbox messages and API calls find
 * their conn in O(1). A single worker keeps no map (its memory per
 * connection stays as it was) and walks its list, as API calls did before.
 */
rt_conn_t *rt_conn_by_id(rt_worker_t *w, uint64_t id) {
  if (w->srv->nworkers > 1) return rt_strmap_find(&w->by_id, (const char *)&id, sizeof(id));
  for (rt_link_t *l = w->conns.next; l != &w->conns; l = l->next) {
    rt_conn_t *c = RT_CONTAINER_OF(l, rt_conn_t, all_link);
    if (c->peer.id == id) return c;
  }
  return NULL;
}

rt_conn_t *rt_conn_find(rt_server_t *srv, uint64_t id) {
  for (unsigned i = 0; i < srv->nworkers; i++) {
    rt_conn_t *c = rt_conn_by_id(srv->workers[i], id);
    if (c != NULL) return c->state == CONN_OPEN ? c : NULL;
  }
  return NULL;
}

/* Reading another worker's conns is safe under the lock: their state and identity change under it. */
void rt_conn_close_user(rt_server_t *srv, const char *user_id, uint16_t code, const char *reason) {
  for (unsigned i = 0; i < srv->nworkers && user_id != NULL; i++) {
    rt_worker_t *w = srv->workers[i];
    rt_link_t *l = w->conns.next;
    while (l != &w->conns) {
      rt_conn_t *c = RT_CONTAINER_OF(l, rt_conn_t, all_link);
      l = l->next;
      if (c->state == CONN_OPEN && c->ident.user_id != NULL && strcmp(c->ident.user_id, user_id) == 0)
        rt_conn_end(c, RT_CLOSE_HOW_FAIL, code, reason);
    }
  }
}

/*
 * Once a second: a client whose token has expired (past the leeway) is told
 * with a token_expired push and closed (3005) when the grace runs out
 * without a fresh auth. A walk over the open connections: tokens expire at
 * arbitrary times, and a second's walk over even 10,000 connections costs
 * microseconds, less than keeping an ordered structure up to date.
 */
void rt_conn_check_expiry(rt_worker_t *w) {
  rt_server_t *srv = w->srv;
  int64_t now = rt_wall_ms();
  int64_t leeway_ms = (int64_t)srv->cfg.jwt_leeway_s * 1000;
  rt_link_t *l = w->conns.next;
  while (l != &w->conns) {
    rt_conn_t *c = RT_CONTAINER_OF(l, rt_conn_t, all_link);
    l = l->next;
    if (c->state != CONN_OPEN || !c->authenticated || c->ident.expires_at == 0) continue;
    if (!c->expiry_pushed && now >= c->ident.expires_at * 1000 + leeway_ms) {
      c->expiry_pushed = 1;
      c->grace_deadline_ms = now + srv->cfg.token_grace_ms;
      rt_conn_send(c, rt_proto_token_expired(srv->cfg.token_grace_ms));
    } else if (c->expiry_pushed && now >= c->grace_deadline_ms) {
      rt_conn_fail(c, RT_CLOSE_TOKEN_EXPIRED, "Token expired");
    }
  }
}

/*
 * Keep-alive: one sweep per ping interval. A client that has not answered
 * the previous ping is closed (3001, reconnect allowed); the others get one
 * ping frame shared by all of them.
 */
void rt_conn_ping_all(rt_worker_t *w) {
  rt_frame_t *ping = rt_ws_frame_new(RT_WS_OP_PING, NULL, 0);
  if (ping == NULL) return;
  rt_link_t *l = w->conns.next;
  while (l != &w->conns) {
    rt_conn_t *c = RT_CONTAINER_OF(l, rt_conn_t, all_link);
    l = l->next;
    if (c->state != CONN_OPEN) continue;
    if (c->awaiting_pong) {
      rt_conn_fail(c, RT_CLOSE_PING_TIMEOUT, "Ping timeout");
      continue;
    }
    if (send_frame(c, rt_frame_ref(ping), 0) == 0) c->awaiting_pong = 1;
  }
  rt_frame_unref(ping);
}
