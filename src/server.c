/*
 * The public rt_server_* API: lifecycle (new, start, run, stop, free), the
 * server-side publish/subscribe calls, statistics, and the one thread-safe
 * entry point (publish_async). It wires the pure hub to the libuv edges in
 * src/io/.
 *
 * Shutdown is a sequence, not a call: stop closes the listener, sends close
 * 1001 to every client behind what is already queued (so queued messages go
 * out first), and arms a timer of shutdown_timeout_ms. When the last
 * connection is freed, or the timer fires and aborts the stragglers, the
 * server's own handles are closed and the loop has nothing left to run.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "channel.h"
#include "log.h"
#include "proto.h"
#include "security.h"
#include "server_internal.h"

#define TICK_MS 100

struct rt_subscription_s {
  rt_peer_t peer;       /* hub subscriber (id 0: server-side) */
  rt_server_t *srv;     /* owner */
  rt_message_cb cb;     /* user callback */
  void *user_data;      /* passed to cb */
  char *channel;        /* owned name */
  rt_link_t link;       /* in srv->subs */
};

int64_t rt_mono_ms(void) { return (int64_t)(uv_hrtime() / 1000000); }

int64_t rt_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int copy_str(char **dst, const char *src) {
  if (src == NULL) return 0;
  *dst = rt_strdup(src);
  return *dst == NULL ? RT_ENOMEM : 0;
}

int rt_server_new(const rt_config_t *cfg, rt_server_t **out) {
  *out = NULL;
  if (cfg == NULL || cfg->host == NULL || cfg->path == NULL || cfg->path[0] != '/' ||
      cfg->port < 0 || cfg->port > 65535 || cfg->max_message_size == 0 ||
      cfg->max_queued_bytes == 0 || cfg->max_header_size < 256 || cfg->max_json_depth == 0)
    return RT_EINVAL;
  rt_server_t *srv = rt_calloc(1, sizeof(*srv));
  if (srv == NULL) return RT_ENOMEM;
  srv->cfg = *cfg;
  rt_ws_lender_init(&srv->decoders, cfg->max_message_size);
  srv->hub = rt_hub_new(NULL, NULL);
  if (srv->hub == NULL || copy_str(&srv->host, cfg->host) || copy_str(&srv->path, cfg->path) ||
      copy_str(&srv->jwt_secret, cfg->jwt_secret)) {
    rt_server_free(srv);
    return RT_ENOMEM;
  }
  srv->cfg.host = srv->host;
  srv->cfg.path = srv->path;
  srv->cfg.jwt_secret = srv->jwt_secret;
  rt_link_init(&srv->conns);
  rt_link_init(&srv->handshaking);
  rt_link_init(&srv->closing);
  rt_link_init(&srv->pending);
  rt_link_init(&srv->subs);
  rt_link_init(&srv->authwait);
  srv->state = SRV_NEW;
  rt_presence_limits_t pl = {cfg->max_presence_data_size, cfg->max_presence_per_channel,
                             cfg->presence_timeout_ms};
  srv->presence = rt_presence_new(&pl);
  if (srv->presence == NULL) {
    rt_server_free(srv);
    return RT_ENOMEM;
  }
  rt_errbuf_t err = {{0}};
  int r = rt_security_init(srv, &err);
  if (r == 0) r = rt_live_new(srv, &srv->live, &err);
  if (r != 0) {
    rt_log(RT_LOG_ERROR, "%s", err.msg[0] ? err.msg : rt_strerror(r));
    rt_server_free(srv);
    return r;
  }
  *out = srv;
  return 0;
}

void rt_server_free(rt_server_t *srv) {
  if (srv == NULL) return;
  while (!rt_link_empty(&srv->subs))
    rt_server_unsubscribe(srv, RT_CONTAINER_OF(srv->subs.next, rt_subscription_t, link));
  rt_hub_free(srv->hub);
  rt_flusher_free(srv->flusher);
  rt_live_free(srv->live);
  rt_presence_free(srv->presence);
  rt_events_free(srv);
  rt_security_free(srv);
  rt_ws_lender_destroy(&srv->decoders);
  rt_async_msg_t *m = srv->async_head;
  while (m != NULL) {
    rt_async_msg_t *next = m->next;
    rt_free(m);
    m = next;
  }
  if (srv->state != SRV_NEW) uv_mutex_destroy(&srv->async_mu);
  if (srv->owns_loop) uv_loop_close(&srv->own_loop);
  rt_free(srv->host);
  rt_free(srv->path);
  rt_free(srv->jwt_secret);
  rt_free(srv);
}

static void on_handle_closed(uv_handle_t *h) {
  rt_server_t *srv = h->data;
  srv->handles_open--;
  if (srv->handles_open == 0) {
    srv->state = SRV_STOPPED;
    rt_log(RT_LOG_INFO, "server stopped");
  }
}

static void close_handle(rt_server_t *srv, uv_handle_t *h) {
  if (uv_is_closing(h)) return;
  h->data = srv;
  uv_close(h, on_handle_closed);
}

/* Last step of a stop: every connection is gone; release the server's own handles. */
static void finish_stop(rt_server_t *srv) {
  close_handle(srv, (uv_handle_t *)&srv->flush_prep);
  close_handle(srv, (uv_handle_t *)&srv->tick);
  close_handle(srv, (uv_handle_t *)&srv->ping);
  close_handle(srv, (uv_handle_t *)&srv->stop_timer);
  close_handle(srv, (uv_handle_t *)&srv->async);
  if (srv->live != NULL) close_handle(srv, rt_live_handle(srv->live));
}

void rt_server_conn_freed(rt_server_t *srv) {
  if (srv->state == SRV_STOPPING && rt_link_empty(&srv->conns)) finish_stop(srv);
}

static void drain_async(rt_server_t *srv);

static void on_async(uv_async_t *h) {
  rt_server_t *srv = h->data;
  drain_async(srv);
  if (srv->stop_requested) rt_server_stop(srv);
}

static void on_prepare(uv_prepare_t *h) { rt_flush_pending(h->data); }
static void on_tick(uv_timer_t *h) {
  rt_server_t *srv = h->data;
  rt_conn_sweep_deadlines(srv);
  rt_srv_presence_sweep(srv);
  /* Only JWT identities expire: without a verifier there is nothing to walk for. */
  if (++srv->ticks % (1000 / TICK_MS) == 0 && srv->jwt != NULL) rt_conn_check_expiry(srv);
}
static void on_ping(uv_timer_t *h) { rt_conn_ping_all(h->data); }

static int resolve(const rt_server_t *srv, struct sockaddr_storage *ss) {
  if (uv_ip4_addr(srv->host, srv->cfg.port, (struct sockaddr_in *)ss) == 0) return 0;
  if (uv_ip6_addr(srv->host, srv->cfg.port, (struct sockaddr_in6 *)ss) == 0) return 0;
  return RT_EADDR;
}

static int listen_socket(rt_server_t *srv) {
  struct sockaddr_storage ss;
  if (resolve(srv, &ss) != 0) {
    rt_log(RT_LOG_ERROR, "invalid listen address \"%s\" (an IPv4 or IPv6 literal)", srv->host);
    return RT_EADDR;
  }
  uv_tcp_init(srv->loop, &srv->listener);
  srv->listener.data = srv;
  srv->handles_open++;
  int r = uv_tcp_bind(&srv->listener, (struct sockaddr *)&ss, 0);
  if (r == 0) r = uv_listen((uv_stream_t *)&srv->listener, 1024, rt_conn_on_accept);
  if (r != 0) {
    rt_log(RT_LOG_ERROR, "cannot listen on %s:%d: %s", srv->host, srv->cfg.port, uv_strerror(r));
    close_handle(srv, (uv_handle_t *)&srv->listener);
    return RT_EADDR;
  }
  struct sockaddr_storage bound;
  int len = sizeof(bound);
  uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &len);
  srv->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
  return 0;
}

static void init_handles(rt_server_t *srv) {
  uv_prepare_init(srv->loop, &srv->flush_prep);
  uv_timer_init(srv->loop, &srv->tick);
  uv_timer_init(srv->loop, &srv->ping);
  uv_timer_init(srv->loop, &srv->stop_timer);
  uv_async_init(srv->loop, &srv->async, on_async);
  srv->flush_prep.data = srv->tick.data = srv->ping.data = srv->stop_timer.data = srv;
  srv->async.data = srv;
  srv->handles_open += 5;
  uv_prepare_start(&srv->flush_prep, on_prepare);
  uv_timer_start(&srv->tick, on_tick, TICK_MS, TICK_MS);
  if (srv->cfg.ping_interval_ms > 0)
    uv_timer_start(&srv->ping, on_ping, srv->cfg.ping_interval_ms, srv->cfg.ping_interval_ms);
}

int rt_server_start(rt_server_t *srv) {
  if (srv->state != SRV_NEW) return RT_ESTATE;
  if (srv->cfg.loop != NULL) {
    srv->loop = srv->cfg.loop;
  } else {
    if (uv_loop_init(&srv->own_loop) != 0) return RT_ENOMEM;
    srv->loop = &srv->own_loop;
    srv->owns_loop = 1;
  }
  if (uv_mutex_init(&srv->async_mu) != 0) return RT_ENOMEM;
  srv->flusher = rt_flusher_new(srv->cfg.io_uring);
  if (srv->flusher == NULL) return RT_ENOMEM;
  srv->state = SRV_STOPPED; /* until the listener is up, free must not expect handles */
  int r = listen_socket(srv);
  if (r != 0) {
    if (srv->owns_loop) uv_run(srv->loop, UV_RUN_DEFAULT); /* runs the listener's close cb */
    return r;
  }
  init_handles(srv);
  if (srv->live != NULL) {
    rt_live_start(srv->live);
    srv->handles_open++;
  }
  srv->state = SRV_RUNNING;
  srv->started_at_ms = rt_wall_ms();
  rt_log(RT_LOG_INFO, "listening on %s:%d%s", srv->host, srv->port, srv->path);
  rt_log(RT_LOG_DEBUG, "flushing with %s",
         rt_flusher_uses_io_uring(srv->flusher) ? "io_uring" : "writev");
  return 0;
}

int rt_server_port(const rt_server_t *srv) { return srv->port; }

int rt_server_run(rt_server_t *srv) {
  if (!srv->owns_loop || srv->state == SRV_NEW) return RT_ESTATE;
  return uv_run(srv->loop, UV_RUN_DEFAULT) < 0 ? RT_EIO : 0;
}

static void on_stop_timeout(uv_timer_t *h) {
  rt_server_t *srv = h->data;
  rt_log(RT_LOG_WARN, "shutdown timeout: closing remaining connections");
  while (!rt_link_empty(&srv->conns))
    rt_conn_abort(RT_CONTAINER_OF(srv->conns.next, rt_conn_t, all_link));
}

void rt_server_stop(rt_server_t *srv) {
  if (srv->state != SRV_RUNNING) return;
  srv->state = SRV_STOPPING;
  rt_log(RT_LOG_INFO, "stopping: closing %zu connections", srv->open_count);
  close_handle(srv, (uv_handle_t *)&srv->listener);
  drain_async(srv);
  rt_link_t *l = srv->conns.next;
  while (l != &srv->conns) {
    rt_conn_t *c = RT_CONTAINER_OF(l, rt_conn_t, all_link);
    l = l->next;
    if (c->state == CONN_OPEN) rt_conn_close(c, RT_CLOSE_GOING_AWAY, "Server shutting down");
    else if (c->state == CONN_HTTP) rt_conn_abort(c);
  }
  if (rt_link_empty(&srv->conns)) {
    finish_stop(srv);
    return;
  }
  uv_timer_start(&srv->stop_timer, on_stop_timeout, srv->cfg.shutdown_timeout_ms, 0);
}

/* Async-signal-safe in practice: an atomic store and uv_async_send (documented as such). */
void rt_server_stop_async(rt_server_t *srv) {
  srv->stop_requested = 1;
  atomic_thread_fence(memory_order_seq_cst);
  if (srv->state == SRV_RUNNING) uv_async_send(&srv->async);
}

/* ------------------------------------------------------------ publishing */

static int check_publish(const rt_server_t *srv, const char *channel, size_t len) {
  if (channel == NULL || !rt_channel_valid(channel, strlen(channel))) return RT_ECHANNEL;
  if (len > srv->cfg.max_publish_size) return RT_ETOOLARGE;
  return 0;
}

int64_t rt_server_publish(rt_server_t *srv, const char *channel, const char *json, size_t len) {
  int r = check_publish(srv, channel, len);
  if (r != 0) return r;
  size_t start, vlen;
  r = rt_json_validate(json, len, srv->cfg.max_json_depth, &start, &vlen, NULL);
  if (r != 0) return r;
  int64_t d = rt_hub_publish(srv->hub, channel, strlen(channel), json + start, vlen, 0);
  if (d >= 0) {
    rt_event_t ev = {.type = RT_EVENT_PUBLISHED, .channel = channel, .size = vlen, .delivered = d};
    rt_events_emit(srv, &ev);
  }
  return d;
}

int rt_server_publish_async(rt_server_t *srv, const char *channel, const char *json, size_t len) {
  int r = check_publish(srv, channel, len);
  if (r != 0) return r;
  if (srv->state != SRV_RUNNING) return RT_ESTATE;
  size_t clen = strlen(channel);
  rt_async_msg_t *m = rt_malloc(sizeof(*m) + clen + 1 + len);
  if (m == NULL) return RT_ENOMEM;
  m->next = NULL;
  m->channel_len = clen;
  m->data_len = len;
  memcpy(m->bytes, channel, clen + 1);
  memcpy(m->bytes + clen + 1, json, len);
  uv_mutex_lock(&srv->async_mu);
  if (srv->async_tail != NULL)
    srv->async_tail->next = m;
  else
    srv->async_head = m;
  srv->async_tail = m;
  uv_mutex_unlock(&srv->async_mu);
  uv_async_send(&srv->async);
  return 0;
}

static void drain_async(rt_server_t *srv) {
  uv_mutex_lock(&srv->async_mu);
  rt_async_msg_t *m = srv->async_head;
  srv->async_head = srv->async_tail = NULL;
  uv_mutex_unlock(&srv->async_mu);
  while (m != NULL) {
    rt_async_msg_t *next = m->next;
    int64_t r = rt_server_publish(srv, m->bytes, m->bytes + m->channel_len + 1, m->data_len);
    if (r < 0)
      rt_log(RT_LOG_WARN, "async publish to \"%s\" refused: %s", m->bytes, rt_strerror((int)r));
    rt_free(m);
    m = next;
  }
}

/* ------------------------------------------------- server-side subscribers */

static int sub_deliver(rt_peer_t *peer, rt_frame_t *frame, const rt_hub_msg_t *msg) {
  rt_subscription_t *s = RT_CONTAINER_OF(peer, rt_subscription_t, peer);
  s->cb(msg->channel, msg->data, msg->data_len, &msg->meta, s->user_data);
  return 0;
}

static const rt_peer_ops_t sub_ops = {sub_deliver, NULL};

int rt_server_subscribe(rt_server_t *srv, const char *channel, rt_message_cb cb, void *user_data,
                        rt_subscription_t **out) {
  *out = NULL;
  if (cb == NULL) return RT_EINVAL;
  if (channel == NULL || !rt_channel_valid(channel, strlen(channel))) return RT_ECHANNEL;
  rt_subscription_t *s = rt_calloc(1, sizeof(*s));
  if (s == NULL || (s->channel = rt_strdup(channel)) == NULL) {
    rt_free(s);
    return RT_ENOMEM;
  }
  rt_peer_init(&s->peer, &sub_ops, 0);
  s->srv = srv;
  s->cb = cb;
  s->user_data = user_data;
  int r = rt_hub_subscribe(srv->hub, &s->peer, channel, strlen(channel));
  if (r != 0) {
    rt_free(s->channel);
    rt_free(s);
    return r;
  }
  rt_link_push_back(&srv->subs, &s->link);
  *out = s;
  return 0;
}

void rt_server_unsubscribe(rt_server_t *srv, rt_subscription_t *sub) {
  if (sub == NULL) return;
  rt_hub_unsubscribe_all(srv->hub, &sub->peer);
  rt_link_remove(&sub->link);
  rt_free(sub->channel);
  rt_free(sub);
}

/* ------------------------------------------------------------ statistics */

int rt_server_channel_stats(rt_server_t *srv, const char *name, rt_channel_stats_t **out,
                            size_t *count) {
  int r = rt_hub_channel_stats(srv->hub, name, out, count);
  for (size_t i = 0; r == 0 && i < *count; i++)
    (*out)[i].presence = rt_presence_count(srv->presence, (*out)[i].name, strlen((*out)[i].name));
  return r;
}

_Static_assert(sizeof(((rt_client_info_t *)0)->remote_addr) == RT_ADDR_TEXT,
               "client_info's remote_addr holds rt_conn_remote's text");

static int fill_info(rt_conn_t *c, rt_client_info_t *ci) {
  ci->id = c->peer.id;
  rt_conn_remote(c, ci->remote_addr);
  ci->connected_at_ms = c->connected_at_ms;
  ci->messages_in = c->messages_in;
  ci->messages_out = c->messages_out;
  ci->bytes_in = c->bytes_in;
  ci->bytes_out = c->bytes_out;
  ci->last_activity_ms = c->last_activity_ms;
  snprintf(ci->user_id, sizeof(ci->user_id), "%s", c->ident.user_id ? c->ident.user_id : "");
  return rt_hub_peer_channels(&c->peer, &ci->subscriptions, &ci->subscription_count);
}

int rt_server_client_info(rt_server_t *srv, uint64_t id, rt_client_info_t **out, size_t *count) {
  *out = NULL;
  *count = 0;
  size_t n = id != 0 ? 1 : srv->open_count;
  rt_client_info_t *arr = rt_calloc(n ? n : 1, sizeof(*arr));
  if (arr == NULL) return RT_ENOMEM;
  size_t i = 0;
  for (rt_link_t *l = srv->conns.next; l != &srv->conns && i < n; l = l->next) {
    rt_conn_t *c = RT_CONTAINER_OF(l, rt_conn_t, all_link);
    if (c->state != CONN_OPEN || (id != 0 && c->peer.id != id)) continue;
    if (fill_info(c, &arr[i]) != 0) {
      rt_client_info_free(arr, i);
      return RT_ENOMEM;
    }
    i++;
  }
  if (id != 0 && i == 0) {
    rt_free(arr);
    return RT_ENOENT;
  }
  *out = arr;
  *count = i;
  return 0;
}

void rt_client_info_free(rt_client_info_t *info, size_t count) {
  if (info == NULL) return;
  for (size_t i = 0; i < count; i++) {
    for (size_t j = 0; j < info[i].subscription_count; j++) rt_free(info[i].subscriptions[j]);
    rt_free(info[i].subscriptions);
  }
  rt_free(info);
}

size_t rt_server_active_connections(const rt_server_t *srv) { return srv->open_count; }

void rt_server_totals(const rt_server_t *srv, rt_server_totals_t *out) {
  *out = srv->totals;
  rt_hub_totals(srv->hub, &out->messages_published, &out->messages_delivered);
}

/* One channel of GET /stats. Names are valid channel names: no escaping needed. */
static int stats_channel(rt_strbuf_t *b, const rt_channel_stats_t *st, int first) {
  char buf[RT_CHANNEL_MAX + 384];
  int n = snprintf(buf, sizeof(buf),
                   "%s{\"name\":\"%s\",\"subscribers\":%llu,\"presence\":%llu,"
                   "\"messagesPublished\":%llu,\"messagesDelivered\":%llu,\"bytesPublished\":%llu,"
                   "\"bytesDelivered\":%llu,\"messageRate\":%.3f,\"createdAt\":%lld,"
                   "\"lastActivity\":%lld}",
                   first ? "" : ",", st->name, (unsigned long long)st->subscribers,
                   (unsigned long long)st->presence, (unsigned long long)st->messages_published,
                   (unsigned long long)st->messages_delivered,
                   (unsigned long long)st->bytes_published, (unsigned long long)st->bytes_delivered,
                   st->message_rate, (long long)st->created_at_ms, (long long)st->last_activity_ms);
  return rt_strbuf_append(b, buf, (size_t)n);
}

int rt_srv_stats_json(rt_server_t *srv, rt_strbuf_t *out) {
  rt_channel_stats_t *st;
  size_t n;
  char buf[512];
  if (rt_server_channel_stats(srv, NULL, &st, &n) != 0) return RT_ENOMEM;
  int k = snprintf(buf, sizeof(buf), "{\"uptimeMs\":%lld,\"connections\":%zu,\"channels\":[",
                   (long long)(rt_wall_ms() - srv->started_at_ms), srv->open_count);
  int r = rt_strbuf_append(out, buf, (size_t)k);
  for (size_t i = 0; r == 0 && i < n; i++) r = stats_channel(out, &st[i], i == 0);
  rt_channel_stats_free(st, n);
  rt_server_totals_t t;
  rt_server_totals(srv, &t);
  size_t li, ls;
  uint64_t le;
  rt_live_stats(srv->live, &li, &ls, &le);
  k = snprintf(buf, sizeof(buf),
               "],\"totals\":{\"connectionsTotal\":%llu,\"messagesPublished\":%llu,"
               "\"messagesDelivered\":%llu,\"slowConsumersClosed\":%llu,\"protocolErrors\":%llu,"
               "\"presenceEntries\":%zu,\"liveQueries\":{\"instances\":%zu,"
               "\"subscriptions\":%zu,\"evaluations\":%llu},\"socketWrites\":%llu,"
               "\"framesWritten\":%llu}}",
               (unsigned long long)t.connections_total, (unsigned long long)t.messages_published,
               (unsigned long long)t.messages_delivered, (unsigned long long)t.slow_consumers_closed,
               (unsigned long long)t.protocol_errors, rt_presence_total(srv->presence), li, ls,
               (unsigned long long)le, (unsigned long long)t.socket_writes,
               (unsigned long long)t.frames_written);
  if (r == 0) r = rt_strbuf_append(out, buf, (size_t)k);
  return r;
}

/* ------------------------------------------------------------ live queries */

int rt_server_subscribe_query(rt_server_t *srv, uint64_t client_id, const char *sql,
                              const char *params_json, char sub_id[24]) {
  rt_conn_t *c = rt_conn_find(srv, client_id);
  if (c == NULL) return RT_ENOENT;
  if (sql == NULL) return RT_EINVAL;
  rt_errbuf_t err = {{0}};
  int r = rt_live_subscribe(srv->live, c, sql, RT_LIVE_TRUSTED, params_json,
                            params_json != NULL ? strlen(params_json) : 0, 0, 0, sub_id, &err);
  if (r != 0) rt_log(RT_LOG_WARN, "subscribe_query for client=%llu: %s",
                     (unsigned long long)client_id, err.msg);
  return r;
}

int rt_server_unsubscribe_query(rt_server_t *srv, const char *sub_id) {
  if (sub_id == NULL) return RT_EINVAL;
  return rt_live_unsubscribe_id(srv->live, sub_id);
}

int64_t rt_server_notify_query_update(rt_server_t *srv, const char *sql, const char *rows_json,
                                      size_t len) {
  if (sql == NULL || rows_json == NULL) return RT_EINVAL;
  return rt_live_notify(srv->live, sql, rows_json, len);
}
