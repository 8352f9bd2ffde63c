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
#include <unistd.h>

#include "alloc.h"
#include "channel.h"
#include "log.h"
#include "proto.h"
#include "security.h"
#include "server_internal.h"
#include "worker.h"

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

static int make_workers(rt_server_t *srv) {
  srv->workers = rt_calloc(srv->nworkers, sizeof(*srv->workers));
  if (srv->workers == NULL) return RT_ENOMEM;
  if (srv->nworkers > 1 && (srv->chanstats = rt_hub_stats_new()) == NULL) return RT_ENOMEM;
  for (unsigned i = 0; i < srv->nworkers; i++) {
    if (rt_worker_new(srv, i, &srv->workers[i]) != 0) return RT_ENOMEM;
    if (srv->chanstats != NULL) rt_hub_share_stats(srv->workers[i]->hub, srv->chanstats);
  }
  if (srv->nworkers > 1 && uv_mutex_init_recursive(&srv->lock) != 0) {
    rt_free(srv->workers); /* nothing else refers to the lock yet */
    srv->workers = NULL;
    return RT_ENOMEM;
  }
  return 0;
}

int rt_server_new(const rt_config_t *cfg, rt_server_t **out) {
  *out = NULL;
  if (cfg == NULL || cfg->host == NULL || cfg->path == NULL || cfg->path[0] != '/' ||
      cfg->port < 0 || cfg->port > 65535 || cfg->max_message_size == 0 ||
      cfg->max_queued_bytes == 0 || cfg->max_header_size < 256 || cfg->max_json_depth == 0 ||
      cfg->workers < 1 || cfg->workers > RT_WORKERS_MAX)
    return RT_EINVAL;
  rt_server_t *srv = rt_calloc(1, sizeof(*srv));
  if (srv == NULL) return RT_ENOMEM;
  srv->cfg = *cfg;
  srv->nworkers = cfg->workers;
  if (make_workers(srv) != 0 || copy_str(&srv->host, cfg->host) || copy_str(&srv->path, cfg->path) ||
      copy_str(&srv->jwt_secret, cfg->jwt_secret)) {
    rt_server_free(srv);
    return RT_ENOMEM;
  }
  srv->cfg.host = srv->host;
  srv->cfg.path = srv->path;
  srv->cfg.jwt_secret = srv->jwt_secret;
  rt_link_init(&srv->subs);
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
  int locked = srv->workers != NULL && srv->nworkers > 1; /* the lock exists */
  if (srv->workers != NULL && srv->workers[0] != NULL)
    while (!rt_link_empty(&srv->subs))
      rt_server_unsubscribe(srv, RT_CONTAINER_OF(srv->subs.next, rt_subscription_t, link));
  rt_live_free(srv->live);
  for (unsigned i = 0; srv->workers != NULL && i < srv->nworkers; i++) {
    if (srv->workers[i] == NULL) continue;
    rt_worker_join(srv->workers[i]);
    rt_worker_free(srv->workers[i]);
  }
  rt_free(srv->workers);
  rt_hub_stats_free(srv->chanstats); /* after the hubs that share it */
  rt_presence_free(srv->presence);
  rt_events_free(srv);
  rt_security_free(srv);
  if (locked) uv_mutex_destroy(&srv->lock);
  if (srv->owns_loop) uv_loop_close(&srv->own_loop);
  rt_free(srv->host);
  rt_free(srv->path);
  rt_free(srv->jwt_secret);
  rt_free(srv);
}

/* State changes are atomic stores: rt_server_stop_async and publish_async read it from other threads. */
static void set_state(rt_server_t *srv, rt_srv_state_t st) {
  __atomic_store_n(&srv->state, st, __ATOMIC_SEQ_CST);
}

static rt_srv_state_t get_state(const rt_server_t *srv) {
  return __atomic_load_n(&srv->state, __ATOMIC_SEQ_CST);
}

/* Called on worker 0 when its connections are gone and when a worker thread ends. */
void rt_server_maybe_stopped(rt_server_t *srv) {
  rt_worker_t *w0 = srv->workers[0];
  if (!w0->finished || atomic_load(&srv->workers_done) < srv->nworkers - 1) return;
  for (unsigned i = 1; i < srv->nworkers; i++) rt_worker_join(srv->workers[i]);
  rt_worker_close_last(w0);
}

static int resolve(const rt_server_t *srv, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof(*ss));
  if (uv_ip4_addr(srv->host, srv->cfg.port, (struct sockaddr_in *)ss) == 0) return 0;
  if (uv_ip6_addr(srv->host, srv->cfg.port, (struct sockaddr_in6 *)ss) == 0) return 0;
  return RT_EADDR;
}

static int bound_port(uv_os_sock_t fd, struct sockaddr_storage *ss) {
  struct sockaddr_storage bound;
  socklen_t len = sizeof(bound);
  if (getsockname(fd, (struct sockaddr *)&bound, &len) != 0) return -1;
  int port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                               : ((struct sockaddr_in *)&bound)->sin_port);
  if (ss->ss_family == AF_INET6)
    ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
  else
    ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
  return port;
}

/*
 * With SO_REUSEPORT a second server of the same user could join our port
 * and silently take half the connections. A plain bind first (no
 * SO_REUSEPORT) fails when anything listens there, which keeps "port in
 * use" an error with several workers too.
 */
static int port_in_use(const struct sockaddr_storage *ss) {
  uv_os_sock_t fd;
  int r = rt_listen_socket((const struct sockaddr *)ss, 0, &fd);
  if (r == 0) close(fd);
  return r;
}

/* Binds every worker's socket: worker 0 first, the others to the port it got (port 0). */
static int bind_all(rt_server_t *srv) {
  struct sockaddr_storage ss;
  if (resolve(srv, &ss) != 0) {
    rt_log(RT_LOG_ERROR, "invalid listen address \"%s\" (an IPv4 or IPv6 literal)", srv->host);
    return RT_EADDR;
  }
  int r = srv->nworkers > 1 && srv->cfg.port != 0 ? port_in_use(&ss) : 0;
  for (unsigned i = 0; r == 0 && i < srv->nworkers; i++) {
    r = rt_worker_bind(srv->workers[i], (struct sockaddr *)&ss);
    if (r == 0 && i == 0) srv->port = bound_port(srv->workers[0]->listen_fd, &ss);
  }
  if (r == 0) return 0;
  rt_log(RT_LOG_ERROR, "cannot listen on %s:%d: %s", srv->host, srv->cfg.port, uv_strerror(r));
  for (unsigned i = 0; i < srv->nworkers; i++) {
    rt_worker_t *w = srv->workers[i];
    if (w->listen_fd >= 0) close(w->listen_fd);
    w->listen_fd = -1;
  }
  return RT_EADDR;
}

/*
 * A worker could not start: stop the ones that did, inline for those
 * without a thread, and run worker 0's loop (when ours) until its handles
 * are closed, so the server can be freed.
 */
static int abort_start(rt_server_t *srv, int r) {
  set_state(srv, SRV_STOPPING);
  for (unsigned i = 1; i < srv->nworkers; i++) {
    rt_worker_t *w = srv->workers[i];
    if (w->thread_started) {
      rt_worker_wake(w, RT_WAKE_STOP);
      rt_worker_join(w);
    } else if (w->started) {
      rt_worker_stop(w);
      uv_run(w->loop, UV_RUN_DEFAULT);
      uv_loop_close(w->loop);
    }
  }
  atomic_store(&srv->workers_done, srv->nworkers - 1);
  rt_worker_stop(srv->workers[0]);
  if (srv->owns_loop) uv_run(srv->loop, UV_RUN_DEFAULT);
  set_state(srv, SRV_STOPPED);
  return r;
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
  set_state(srv, SRV_STOPPED); /* until the listeners are up, free must not expect handles */
  int r = bind_all(srv);
  if (r != 0) return r;
  for (unsigned i = 0; i < srv->nworkers; i++)
    if ((r = rt_worker_init(srv->workers[i])) != 0) return abort_start(srv, r);
  if (srv->live != NULL) rt_live_start(srv->live);
  srv->started_at_ms = rt_wall_ms();
  set_state(srv, SRV_RUNNING); /* before the threads: they read it */
  for (unsigned i = 1; i < srv->nworkers; i++)
    if (rt_worker_spawn(srv->workers[i]) != 0) return abort_start(srv, RT_ENOMEM);
  rt_log(RT_LOG_INFO, "listening on %s:%d%s (%u worker%s)", srv->host, srv->port, srv->path,
         srv->nworkers, srv->nworkers == 1 ? "" : "s");
  rt_log(RT_LOG_DEBUG, "flushing with %s",
         rt_flusher_uses_io_uring(srv->workers[0]->flusher) ? "io_uring" : "writev");
  return 0;
}

int rt_server_port(const rt_server_t *srv) { return srv->port; }

int rt_server_run(rt_server_t *srv) {
  if (!srv->owns_loop || srv->state == SRV_NEW) return RT_ESTATE;
  return uv_run(srv->loop, UV_RUN_DEFAULT) < 0 ? RT_EIO : 0;
}

/*
 * The calling worker stops first (its inbox is drained, so what it forwards
 * to the others is queued before their stop bit is seen); the others get a
 * wake-up. Worker 0 ends last: it joins the threads and closes the loop's
 * remaining handles.
 */
void rt_server_stop(rt_server_t *srv) {
  rt_srv_lock(srv);
  if (srv->state == SRV_RUNNING) {
    set_state(srv, SRV_STOPPING);
    rt_log(RT_LOG_INFO, "stopping: closing %zu connections", rt_server_active_connections(srv));
    rt_worker_t *self = rt_worker_current(srv);
    rt_worker_stop(self);
    for (unsigned i = 0; i < srv->nworkers; i++)
      if (srv->workers[i] != self) rt_worker_wake(srv->workers[i], RT_WAKE_STOP);
  }
  rt_srv_unlock(srv);
}

/* Async-signal-safe in practice: an atomic store and uv_async_send (documented as such). */
void rt_server_stop_async(rt_server_t *srv) {
  atomic_store(&srv->stop_requested, 1);
  if (get_state(srv) == SRV_RUNNING) uv_async_send(&srv->workers[0]->async);
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
  rt_srv_enter(srv);
  int64_t d = rt_workers_publish(srv, channel, strlen(channel), json + start, vlen, 0);
  if (d >= 0) {
    rt_event_t ev = {.type = RT_EVENT_PUBLISHED, .channel = channel, .size = vlen, .delivered = d};
    rt_events_emit(srv, &ev);
  }
  rt_srv_unlock(srv);
  return d;
}

/* Worker 0 publishes it, in the order of the calls (its inbox is a FIFO). */
int rt_server_publish_async(rt_server_t *srv, const char *channel, const char *json, size_t len) {
  int r = check_publish(srv, channel, len);
  if (r != 0) return r;
  if (get_state(srv) != SRV_RUNNING) return RT_ESTATE;
  size_t clen = strlen(channel);
  rt_inbox_msg_t *m = rt_inbox_msg_new(RT_INBOX_API_PUBLISH, channel, clen, len);
  if (m == NULL) return RT_ENOMEM;
  memcpy(m->channel + clen + 1, json, len);
  m->data_len = len;
  return rt_worker_post(srv->workers[0], m);
}

/* ------------------------------------------------- server-side subscribers */

/*
 * Server-side subscriptions live in worker 0's hub, so their callbacks run
 * on worker 0's thread (the embedder's loop thread): publishes made on
 * other workers reach them through worker 0's inbox.
 */
static int sub_deliver(rt_peer_t *peer, const rt_slice_t *wire, const rt_hub_msg_t *msg) {
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
  rt_srv_enter(srv);
  int r = rt_hub_subscribe(srv->workers[0]->hub, &s->peer, channel, strlen(channel));
  if (r == 0) rt_link_push_back(&srv->subs, &s->link);
  rt_srv_unlock(srv);
  if (r != 0) {
    rt_free(s->channel);
    rt_free(s);
    return r;
  }
  *out = s;
  return 0;
}

void rt_server_unsubscribe(rt_server_t *srv, rt_subscription_t *sub) {
  if (sub == NULL) return;
  rt_srv_lock(srv);
  rt_hub_unsubscribe_all(srv->workers[0]->hub, &sub->peer);
  rt_link_remove(&sub->link);
  rt_srv_unlock(srv);
  rt_free(sub->channel);
  rt_free(sub);
}

/* ------------------------------------------------------------ statistics */

/*
 * Channel statistics over the workers' hubs. Their counters are one shared
 * record per channel (rt_hub_stats_t), so every hub reports the same
 * figures for a channel except its own subscribers, which add up.
 */
static void merge_channel(rt_channel_stats_t *a, const rt_channel_stats_t *b) {
  a->subscribers += b->subscribers;
}

typedef struct {
  rt_channel_stats_t *arr; /* merged entries */
  size_t n;                /* entries in arr */
  size_t cap;              /* capacity of arr */
  rt_strmap_t index;       /* name -> entry index + 1 */
} merged_t;

/* Takes st (one hub's array): entries merge into `m` (names moved or freed). */
static int merge_hub(merged_t *m, rt_channel_stats_t *st, size_t n) {
  int r = 0;
  for (size_t i = 0; i < n; i++) {
    if (r != 0) {
      rt_free(st[i].name);
      continue;
    }
    uintptr_t at = (uintptr_t)rt_strmap_find(&m->index, st[i].name, strlen(st[i].name));
    if (at != 0) {
      merge_channel(&m->arr[at - 1], &st[i]);
      rt_free(st[i].name);
      continue;
    }
    if (m->n == m->cap) {
      size_t cap = m->cap ? m->cap * 2 : 16;
      rt_channel_stats_t *p = rt_realloc(m->arr, cap * sizeof(*p));
      if (p == NULL || rt_strmap_reserve(&m->index) != 0) {
        if (p != NULL) m->arr = p, m->cap = cap;
        r = RT_ENOMEM;
        rt_free(st[i].name);
        continue;
      }
      m->arr = p;
      m->cap = cap;
    } else if (rt_strmap_reserve(&m->index) != 0) {
      r = RT_ENOMEM;
      rt_free(st[i].name);
      continue;
    }
    m->arr[m->n] = st[i];
    rt_strmap_insert(&m->index, st[i].name, strlen(st[i].name), (void *)(uintptr_t)(m->n + 1));
    m->n++;
  }
  rt_free(st);
  return r;
}

/* Channel statistics over every worker's hub (lock held). */
static int channel_stats(rt_server_t *srv, const char *name, rt_channel_stats_t **out,
                         size_t *count) {
  *out = NULL;
  *count = 0;
  if (srv->nworkers == 1) return rt_hub_channel_stats(srv->workers[0]->hub, name, out, count);
  merged_t m = {0};
  rt_strmap_init(&m.index, 0, 0);
  int r = 0;
  for (unsigned i = 0; r == 0 && i < srv->nworkers; i++) {
    rt_channel_stats_t *st;
    size_t n;
    int h = rt_hub_channel_stats(srv->workers[i]->hub, name, &st, &n);
    if (h == RT_ENOENT) continue;
    r = h != 0 ? h : merge_hub(&m, st, n);
  }
  rt_strmap_destroy(&m.index);
  if (r == 0 && name != NULL && m.n == 0) r = RT_ENOENT;
  if (r != 0) {
    rt_channel_stats_free(m.arr, m.n);
    return r;
  }
  *out = m.arr;
  *count = m.n;
  return 0;
}

int rt_server_channel_stats(rt_server_t *srv, const char *name, rt_channel_stats_t **out,
                            size_t *count) {
  rt_srv_lock(srv);
  int r = channel_stats(srv, name, out, count);
  for (size_t i = 0; r == 0 && i < *count; i++)
    (*out)[i].presence = rt_presence_count(srv->presence, (*out)[i].name, strlen((*out)[i].name));
  rt_srv_unlock(srv);
  return r;
}

size_t rt_srv_channel_count(rt_server_t *srv) {
  if (srv->nworkers == 1) return rt_hub_channel_count(srv->workers[0]->hub);
  rt_channel_stats_t *st;
  size_t n = 0;
  if (channel_stats(srv, NULL, &st, &n) != 0) return 0;
  rt_channel_stats_free(st, n);
  return n;
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

/* Fills arr from worker w's open conns (all, or the one with `id`); returns the new count or -1. */
static long collect_info(rt_worker_t *w, uint64_t id, rt_client_info_t *arr, size_t i, size_t n) {
  for (rt_link_t *l = w->conns.next; l != &w->conns && i < n; l = l->next) {
    rt_conn_t *c = RT_CONTAINER_OF(l, rt_conn_t, all_link);
    if (c->state != CONN_OPEN || (id != 0 && c->peer.id != id)) continue;
    if (fill_info(c, &arr[i]) != 0) {
      rt_client_info_free(arr, i);
      return -1;
    }
    i++;
  }
  return (long)i;
}

static int client_info(rt_server_t *srv, uint64_t id, rt_client_info_t **out, size_t *count) {
  size_t n = id != 0 ? 1 : rt_server_active_connections(srv);
  rt_client_info_t *arr = rt_calloc(n ? n : 1, sizeof(*arr));
  if (arr == NULL) return RT_ENOMEM;
  long i = 0;
  for (unsigned k = 0; k < srv->nworkers; k++)
    if ((i = collect_info(srv->workers[k], id, arr, (size_t)i, n)) < 0) return RT_ENOMEM;
  if (id != 0 && i == 0) {
    rt_free(arr);
    return RT_ENOENT;
  }
  *out = arr;
  *count = (size_t)i;
  return 0;
}

int rt_server_client_info(rt_server_t *srv, uint64_t id, rt_client_info_t **out, size_t *count) {
  *out = NULL;
  *count = 0;
  rt_srv_lock(srv);
  int r = client_info(srv, id, out, count);
  rt_srv_unlock(srv);
  return r;
}

void rt_client_info_free(rt_client_info_t *info, size_t count) {
  if (info == NULL) return;
  for (size_t i = 0; i < count; i++) {
    for (size_t j = 0; j < info[i].subscription_count; j++) rt_free(info[i].subscriptions[j]);
    rt_free(info[i].subscriptions);
  }
  rt_free(info);
}

size_t rt_server_active_connections(const rt_server_t *srv) {
  size_t n = 0;
  rt_srv_lock(srv);
  for (unsigned i = 0; i < srv->nworkers; i++) n += srv->workers[i]->open_count;
  rt_srv_unlock(srv);
  return n;
}

void rt_server_totals(const rt_server_t *srv, rt_server_totals_t *out) {
  rt_srv_lock(srv);
  *out = srv->totals;
  out->messages_published = srv->published;
  out->messages_delivered = 0;
  out->socket_writes = out->frames_written = 0;
  for (unsigned i = 0; i < srv->nworkers; i++) {
    rt_worker_t *w = srv->workers[i];
    uint64_t d;
    rt_hub_totals(w->hub, NULL, &d);
    out->messages_delivered += d;
    out->socket_writes += atomic_load_explicit(&w->socket_writes, memory_order_relaxed);
    out->frames_written += atomic_load_explicit(&w->frames_written, memory_order_relaxed);
  }
  rt_srv_unlock(srv);
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

/* "workers":N,"workerConnections":[a,b,...] */
static int stats_workers(rt_server_t *srv, rt_strbuf_t *out) {
  char buf[64];
  int k = snprintf(buf, sizeof(buf), ",\"workers\":%u,\"workerConnections\":[", srv->nworkers);
  int r = rt_strbuf_append(out, buf, (size_t)k);
  for (unsigned i = 0; r == 0 && i < srv->nworkers; i++) {
    k = snprintf(buf, sizeof(buf), "%s%zu", i ? "," : "", srv->workers[i]->open_count);
    r = rt_strbuf_append(out, buf, (size_t)k);
  }
  return r == 0 ? rt_strbuf_append(out, "]", 1) : r;
}

static int stats_json(rt_server_t *srv, rt_strbuf_t *out) {
  rt_channel_stats_t *st;
  size_t n;
  char buf[512];
  if (rt_server_channel_stats(srv, NULL, &st, &n) != 0) return RT_ENOMEM;
  int k = snprintf(buf, sizeof(buf), "{\"uptimeMs\":%lld,\"connections\":%zu",
                   (long long)(rt_wall_ms() - srv->started_at_ms), rt_server_active_connections(srv));
  int r = rt_strbuf_append(out, buf, (size_t)k);
  if (r == 0) r = stats_workers(srv, out);
  if (r == 0) r = rt_strbuf_append(out, ",\"channels\":[", 13);
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

int rt_srv_stats_json(rt_server_t *srv, rt_strbuf_t *out) {
  rt_srv_lock(srv);
  int r = stats_json(srv, out);
  rt_srv_unlock(srv);
  return r;
}

/* ------------------------------------------------------------ live queries */

int rt_server_subscribe_query(rt_server_t *srv, uint64_t client_id, const char *sql,
                              const char *params_json, char sub_id[24]) {
  rt_srv_lock(srv);
  rt_conn_t *c = rt_conn_find(srv, client_id);
  rt_errbuf_t err = {{0}};
  int r = c == NULL     ? RT_ENOENT
          : sql == NULL ? RT_EINVAL
                        : rt_live_subscribe(srv->live, c, sql, RT_LIVE_TRUSTED, params_json,
                                        params_json != NULL ? strlen(params_json) : 0, 0, 0,
                                        sub_id, &err);
  rt_srv_unlock(srv);
  if (r != 0 && r != RT_ENOENT && r != RT_EINVAL)
    rt_log(RT_LOG_WARN, "subscribe_query for client=%llu: %s", (unsigned long long)client_id,
           err.msg);
  return r;
}

int rt_server_unsubscribe_query(rt_server_t *srv, const char *sub_id) {
  if (sub_id == NULL) return RT_EINVAL;
  rt_srv_lock(srv);
  int r = rt_live_unsubscribe_id(srv->live, sub_id);
  rt_srv_unlock(srv);
  return r;
}

int64_t rt_server_notify_query_update(rt_server_t *srv, const char *sql, const char *rows_json,
                                      size_t len) {
  if (sql == NULL || rows_json == NULL) return RT_EINVAL;
  rt_srv_lock(srv);
  int64_t r = rt_live_notify(srv->live, sql, rows_json, len);
  rt_srv_unlock(srv);
  return r;
}
