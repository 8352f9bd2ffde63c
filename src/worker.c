/*
 * Workers: N event loops sharing the listening port (docs/architecture.md,
 * "Workers"). This file holds a worker's lifecycle (socket, handles, thread,
 * stop), its inbox, and the two cross-worker fan-outs (publish and push).
 *
 * The inbox is an MPSC FIFO under a small mutex of its own, woken by an
 * uv_async_t: other threads post whole messages (a copied frame, a
 * connection id), the worker runs them in order under the server lock. So
 * two messages posted by one thread reach the worker in the order posted,
 * which is what keeps one publisher's messages in order on every worker.
 * Wake-up bits (stop, live-query job, a peer's end) need no allocation and
 * so cannot be lost to OOM.
 */
#include "worker.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "alloc.h"
#include "log.h"
#include "proto.h"

#define TICK_MS 100
#define LISTEN_BACKLOG 1024

/* The worker whose loop this thread runs (workers 1..N-1 set it); NULL on other threads. */
static _Thread_local rt_worker_t *tl_worker;

rt_worker_t *rt_worker_current(rt_server_t *srv) {
  rt_worker_t *w = tl_worker;
  return w != NULL && w->srv == srv ? w : srv->workers[0];
}

int rt_worker_new(rt_server_t *srv, unsigned index, rt_worker_t **out) {
  rt_worker_t *w = rt_calloc(1, sizeof(*w));
  *out = NULL;
  if (w == NULL) return RT_ENOMEM;
  w->srv = srv;
  w->index = index;
  w->listen_fd = -1;
  w->inbox_closed = 1; /* until rt_worker_init: a post before start is dropped */
  rt_link_init(&w->conns);
  rt_link_init(&w->handshaking);
  rt_link_init(&w->closing);
  rt_link_init(&w->pending);
  rt_link_init(&w->authwait);
  rt_strmap_init(&w->by_id, rt_strmap_hash(0, (const char *)&w, sizeof(w), 0), 0);
  rt_ws_lender_init(&w->decoders, srv->cfg.max_message_size);
  if ((w->hub = rt_hub_new(NULL, NULL)) == NULL || uv_mutex_init(&w->inbox_mu) != 0) {
    rt_hub_free(w->hub);
    rt_free(w);
    return RT_ENOMEM;
  }
  *out = w;
  return 0;
}

void rt_worker_free(rt_worker_t *w) {
  if (w == NULL) return;
  rt_inbox_msg_t *m = w->inbox_head;
  while (m != NULL) { /* posted after the worker's last drain */
    rt_inbox_msg_t *next = m->next;
    rt_inbox_msg_free(m);
    m = next;
  }
  if (w->listen_fd >= 0) close(w->listen_fd);
  rt_flusher_free(w->flusher);
  rt_ws_lender_destroy(&w->decoders);
  rt_hub_free(w->hub);
  rt_strmap_destroy(&w->by_id);
  uv_mutex_destroy(&w->inbox_mu);
  rt_free(w);
}

/* ------------------------------------------------------------- sockets */

/*
 * libuv 1.44 has no UV_TCP_REUSEPORT, so the socket is made here and handed
 * to libuv with uv_tcp_open. SO_REUSEADDR as uv_tcp_bind sets it;
 * SO_REUSEPORT only with several workers, so a single worker's port stays
 * exclusive as before.
 */
int rt_listen_socket(const struct sockaddr *addr, int reuseport, uv_os_sock_t *out) {
  int on = 1, fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  socklen_t len = addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                              : sizeof(struct sockaddr_in);
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
      (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0) ||
      bind(fd, addr, len) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
    int e = -errno;
    close(fd);
    return e;
  }
  *out = fd;
  return 0;
}

int rt_worker_bind(rt_worker_t *w, const struct sockaddr *addr) {
  return rt_listen_socket(addr, w->srv->nworkers > 1, &w->listen_fd);
}

/* ------------------------------------------------------------- callbacks */

static void on_handle_closed(uv_handle_t *h) {
  rt_worker_t *w = h->data;
  rt_server_t *srv = w->srv;
  rt_srv_lock(srv);
  if (--w->handles_open == 0 && w->index == 0) {
    __atomic_store_n(&srv->state, SRV_STOPPED, __ATOMIC_SEQ_CST); /* read by stop_async */
    rt_log(RT_LOG_INFO, "server stopped");
  }
  rt_srv_unlock(srv);
}

static void close_handle(rt_worker_t *w, uv_handle_t *h) {
  if (uv_is_closing(h)) return;
  h->data = w;
  uv_close(h, on_handle_closed);
}

/* Refuses further posts, then closes the async handle (no send can race the close). */
static void close_inbox(rt_worker_t *w) {
  uv_mutex_lock(&w->inbox_mu);
  w->inbox_closed = 1;
  uv_mutex_unlock(&w->inbox_mu);
  close_handle(w, (uv_handle_t *)&w->async);
}

/* A held flush is due: the prepare handle that follows this iteration's timers flushes. */
static void on_flush_due(uv_timer_t *h) { (void)h; }

/* Flush before sleep: the write path runs without the server lock. */
static void on_prepare(uv_prepare_t *h) {
  rt_worker_t *w = h->data;
  uint64_t wait_ms = rt_flush_pending(w);
  if (wait_ms == 0 || uv_is_active((uv_handle_t *)&w->flush_timer)) return;
  uv_update_time(w->loop); /* the timer counts from now, not from the iteration's start */
  uv_timer_start(&w->flush_timer, on_flush_due, wait_ms, 0);
}

static void on_tick(uv_timer_t *h) {
  rt_worker_t *w = h->data;
  rt_server_t *srv = w->srv;
  rt_srv_enter(srv);
  rt_conn_sweep_deadlines(w);
  if (w->index == 0) rt_srv_presence_sweep(srv); /* presence is shared: one sweeper */
  /* Only JWT identities expire: without a verifier there is nothing to walk for. */
  if (++w->ticks % (1000 / TICK_MS) == 0 && srv->jwt != NULL) rt_conn_check_expiry(w);
  rt_srv_unlock(srv);
}

static void on_ping(uv_timer_t *h) {
  rt_worker_t *w = h->data;
  rt_srv_enter(w->srv);
  rt_conn_ping_all(w);
  rt_srv_unlock(w->srv);
}

static void on_async(uv_async_t *h) {
  rt_worker_t *w = h->data;
  rt_server_t *srv = w->srv;
  rt_srv_lock(srv);
  unsigned wake = atomic_exchange(&w->wake, 0);
  rt_worker_drain(w);
  if (w->index == 0 && atomic_load(&srv->stop_requested)) rt_server_stop(srv);
  if (wake & RT_WAKE_STOP) rt_worker_stop(w);
  if ((wake & RT_WAKE_LIVE) && srv->state == SRV_RUNNING) rt_live_kick(srv->live);
  if (wake & RT_WAKE_PEER_DONE) rt_server_maybe_stopped(srv);
  rt_srv_unlock(srv);
}

int rt_worker_init(rt_worker_t *w) {
  if (w->index > 0) {
    if (uv_loop_init(&w->own_loop) != 0) return RT_ENOMEM;
    w->loop = &w->own_loop;
  } else {
    w->loop = w->srv->loop;
  }
  /* io_uring rings are per loop thread: each worker gets its own (or writev). */
  const rt_config_t *cfg = &w->srv->cfg;
  if ((w->flusher = rt_flusher_new(cfg->io_uring, cfg->flush_interval_ms)) == NULL) {
    if (w->index > 0) uv_loop_close(&w->own_loop);
    return RT_ENOMEM;
  }
  w->started = 1;
  uv_tcp_init(w->loop, &w->listener);
  uv_prepare_init(w->loop, &w->flush_prep);
  uv_timer_init(w->loop, &w->tick);
  uv_timer_init(w->loop, &w->ping);
  uv_timer_init(w->loop, &w->stop_timer);
  uv_timer_init(w->loop, &w->flush_timer);
  uv_async_init(w->loop, &w->async, on_async);
  w->listener.data = w->flush_prep.data = w->tick.data = w->ping.data = w->stop_timer.data = w;
  w->flush_timer.data = w->async.data = w;
  w->handles_open = 7;
  uv_mutex_lock(&w->inbox_mu);
  w->inbox_closed = 0;
  uv_mutex_unlock(&w->inbox_mu);
  int r = uv_tcp_open(&w->listener, w->listen_fd);
  if (r == 0) w->listen_fd = -1; /* the handle owns it now */
  if (r == 0) r = uv_listen((uv_stream_t *)&w->listener, LISTEN_BACKLOG, rt_conn_on_accept);
  if (r != 0) {
    rt_log(RT_LOG_ERROR, "worker %u cannot listen: %s", w->index, uv_strerror(r));
    return RT_EADDR;
  }
  uv_prepare_start(&w->flush_prep, on_prepare);
  uv_timer_start(&w->tick, on_tick, TICK_MS, TICK_MS);
  uint32_t ping = w->srv->cfg.ping_interval_ms;
  if (ping > 0) uv_timer_start(&w->ping, on_ping, ping, ping);
  return 0;
}

/* A worker thread: runs its loop until its stop has closed every handle. */
static void run(void *arg) {
  rt_worker_t *w = arg;
  tl_worker = w;
  uv_run(w->loop, UV_RUN_DEFAULT);
  if (uv_loop_close(w->loop) != 0) rt_log(RT_LOG_WARN, "worker %u: loop not empty", w->index);
  rt_server_t *srv = w->srv;
  atomic_fetch_add(&srv->workers_done, 1);
  rt_worker_wake(srv->workers[0], RT_WAKE_PEER_DONE);
}

int rt_worker_spawn(rt_worker_t *w) {
  if (uv_thread_create(&w->thread, run, w) != 0) return RT_ENOMEM;
  w->thread_started = 1;
  return 0;
}

void rt_worker_join(rt_worker_t *w) {
  if (!w->thread_started) return;
  uv_thread_join(&w->thread);
  w->thread_started = 0;
}

/* ---------------------------------------------------------------- stop */

/* The worker's connections are gone: close its handles (worker 0 waits for the others). */
static void finish(rt_worker_t *w) {
  if (w->finished) return;
  w->finished = 1;
  close_handle(w, (uv_handle_t *)&w->flush_prep);
  close_handle(w, (uv_handle_t *)&w->tick);
  close_handle(w, (uv_handle_t *)&w->ping);
  close_handle(w, (uv_handle_t *)&w->stop_timer);
  close_handle(w, (uv_handle_t *)&w->flush_timer);
  close_handle(w, (uv_handle_t *)&w->listener);
  if (w->index > 0) {
    close_inbox(w);
    return;
  }
  if (w->srv->live != NULL) {
    w->handles_open++;
    close_handle(w, rt_live_handle(w->srv->live));
  }
  rt_server_maybe_stopped(w->srv);
}

/* Called by worker 0 once every worker thread has ended: its inbox goes last. */
void rt_worker_close_last(rt_worker_t *w0) { close_inbox(w0); }

static void on_stop_timeout(uv_timer_t *h) {
  rt_worker_t *w = h->data;
  rt_srv_lock(w->srv);
  rt_log(RT_LOG_WARN, "shutdown timeout: closing remaining connections");
  while (!rt_link_empty(&w->conns))
    rt_conn_abort(RT_CONTAINER_OF(w->conns.next, rt_conn_t, all_link));
  rt_srv_unlock(w->srv);
}

/*
 * Messages already in the inbox go out first (they were sent before the
 * stop), then every client gets close 1001 behind what it has queued.
 */
void rt_worker_stop(rt_worker_t *w) {
  if (w->stopping || !w->started) return;
  w->stopping = 1;
  close_handle(w, (uv_handle_t *)&w->listener);
  rt_worker_drain(w);
  rt_link_t *l = w->conns.next;
  while (l != &w->conns) {
    rt_conn_t *c = RT_CONTAINER_OF(l, rt_conn_t, all_link);
    l = l->next;
    if (c->state == CONN_OPEN) rt_conn_close(c, RT_CLOSE_GOING_AWAY, "Server shutting down");
    else if (c->state == CONN_HTTP) rt_conn_abort(c);
  }
  if (rt_link_empty(&w->conns)) {
    finish(w);
    return;
  }
  uv_timer_start(&w->stop_timer, on_stop_timeout, w->srv->cfg.shutdown_timeout_ms, 0);
}

void rt_worker_conn_freed(rt_worker_t *w) {
  if (w->stopping && rt_link_empty(&w->conns)) finish(w);
}

/* --------------------------------------------------------------- inbox */

rt_inbox_msg_t *rt_inbox_msg_new(rt_inbox_kind_t kind, const char *channel, size_t channel_len,
                                 size_t extra) {
  rt_inbox_msg_t *m = rt_calloc(1, sizeof(*m) + channel_len + 1 + extra);
  if (m == NULL) return NULL;
  m->kind = kind;
  m->channel_len = channel_len;
  if (channel_len > 0) memcpy(m->channel, channel, channel_len);
  return m;
}

void rt_inbox_msg_free(rt_inbox_msg_t *m) {
  if (m == NULL) return;
  rt_frame_unref(m->frame);
  rt_free(m);
}

/* uv_async_send under the inbox mutex: close_inbox cannot close the handle in between. */
int rt_worker_post(rt_worker_t *w, rt_inbox_msg_t *m) {
  m->next = NULL;
  uv_mutex_lock(&w->inbox_mu);
  if (w->inbox_closed) {
    uv_mutex_unlock(&w->inbox_mu);
    rt_inbox_msg_free(m);
    return RT_ESTATE;
  }
  if (w->inbox_tail != NULL)
    w->inbox_tail->next = m;
  else
    w->inbox_head = m;
  w->inbox_tail = m;
  atomic_store_explicit(&w->inbox_nonempty, 1, memory_order_release);
  uv_async_send(&w->async);
  uv_mutex_unlock(&w->inbox_mu);
  return 0;
}

void rt_worker_wake(rt_worker_t *w, unsigned bits) {
  atomic_fetch_or(&w->wake, bits);
  uv_mutex_lock(&w->inbox_mu);
  if (!w->inbox_closed) uv_async_send(&w->async);
  uv_mutex_unlock(&w->inbox_mu);
}

static void run_msg(rt_worker_t *w, rt_inbox_msg_t *m) {
  rt_conn_t *c;
  switch (m->kind) {
    case RT_INBOX_PUBLISH: {
      rt_hub_msg_t msg = {m->channel, m->channel_len,
                          rt_proto_message_data(m->frame, m->channel_len), m->data_len, m->meta};
      rt_hub_deliver(w->hub, m->frame, &msg);
      break;
    }
    case RT_INBOX_PUSH:
      rt_hub_push(w->hub, m->channel, m->channel_len, m->frame);
      break;
    case RT_INBOX_SEND:
      if ((c = rt_conn_by_id(w, m->conn_id)) != NULL) {
        rt_conn_send(c, m->frame);
        m->frame = NULL;
      }
      break;
    case RT_INBOX_CLOSE:
      if ((c = rt_conn_by_id(w, m->conn_id)) != NULL)
        rt_conn_end(c, m->how, m->close_code, m->close_reason);
      break;
    case RT_INBOX_API_PUBLISH: {
      int64_t r = rt_server_publish(w->srv, m->channel, m->channel + m->channel_len + 1,
                                    m->data_len);
      if (r < 0)
        rt_log(RT_LOG_WARN, "async publish to \"%s\" refused: %s", m->channel, rt_strerror((int)r));
      break;
    }
  }
}

void rt_worker_drain(rt_worker_t *w) {
  uv_mutex_lock(&w->inbox_mu);
  rt_inbox_msg_t *m = w->inbox_head;
  w->inbox_head = w->inbox_tail = NULL;
  atomic_store_explicit(&w->inbox_nonempty, 0, memory_order_relaxed);
  uv_mutex_unlock(&w->inbox_mu);
  int outer = !w->draining;
  w->draining = 1;
  while (m != NULL) {
    rt_inbox_msg_t *next = m->next;
    run_msg(w, m);
    rt_inbox_msg_free(m);
    m = next;
  }
  if (outer) w->draining = 0;
}

void rt_worker_catch_up(rt_worker_t *w) {
  if (!w->draining && atomic_load_explicit(&w->inbox_nonempty, memory_order_acquire))
    rt_worker_drain(w);
}

void rt_srv_enter(rt_server_t *srv) {
  if (srv->nworkers == 1) return;
  uv_mutex_lock(&srv->lock);
  rt_worker_t *w = rt_worker_current(srv);
  if (w->started) rt_worker_catch_up(w);
}

/* ------------------------------------------------------ cross-worker fan-out */

/*
 * Subscriber counts of the other workers' hubs (readable: hubs change only
 * under the server lock, which the caller holds). Returns whether any
 * worker, self included, has the channel.
 */
static int count_others(rt_server_t *srv, rt_worker_t *self, const char *channel, size_t len,
                        size_t *counts) {
  int any = rt_hub_subscriber_count(self->hub, channel, len) > 0;
  for (unsigned i = 0; i < srv->nworkers; i++) {
    rt_worker_t *w = srv->workers[i];
    counts[i] = w == self ? 0 : rt_hub_subscriber_count(w->hub, channel, len);
    if (counts[i] > 0) any = 1;
  }
  return any;
}

/* Posts a copy of f to each worker with a count; returns the counts of the posted ones. */
static int64_t forward(rt_server_t *srv, rt_inbox_kind_t kind, rt_frame_t *f,
                       const rt_hub_msg_t *msg, const size_t *counts) {
  int64_t sent = 0;
  for (unsigned i = 0; i < srv->nworkers; i++) {
    if (counts[i] == 0) continue;
    rt_inbox_msg_t *m = rt_inbox_msg_new(kind, msg->channel, msg->channel_len, 0);
    rt_frame_t *copy = m != NULL ? rt_frame_copy(f) : NULL;
    if (copy == NULL) {
      rt_inbox_msg_free(m);
      continue;
    }
    m->frame = copy;
    m->meta = msg->meta;
    m->data_len = msg->data_len;
    if (rt_worker_post(srv->workers[i], m) == 0) sent += (int64_t)counts[i];
  }
  return sent;
}

int64_t rt_workers_publish(rt_server_t *srv, const char *channel, size_t len, const char *data,
                           size_t data_len, uint64_t publisher_id) {
  rt_worker_t *self = rt_worker_current(srv);
  size_t counts[RT_WORKERS_MAX];
  if (!count_others(srv, self, channel, len, counts)) return 0;
  rt_frame_t *f = rt_proto_message(channel, len, data, data_len);
  if (f == NULL) return RT_ENOMEM;
  rt_hub_msg_t msg = {channel, len, data, data_len, {publisher_id, rt_wall_ms()}};
  if (srv->chanstats != NULL) /* counted once, here; each hub counts its deliveries */
    rt_hub_stats_publish(srv->chanstats, channel, len, data_len, msg.meta.timestamp_ms);
  int64_t delivered = forward(srv, RT_INBOX_PUBLISH, f, &msg, counts);
  int64_t local = rt_hub_deliver(self->hub, f, &msg);
  rt_frame_unref(f);
  if (local < 0) return local; /* one worker only: shared figures need no allocation */
  srv->published++;
  return delivered + local;
}

void rt_workers_push(rt_server_t *srv, const char *channel, size_t len, rt_frame_t *frame) {
  rt_worker_t *self = rt_worker_current(srv);
  size_t counts[RT_WORKERS_MAX];
  if (!count_others(srv, self, channel, len, counts)) return;
  rt_hub_msg_t msg = {channel, len, NULL, 0, {0, 0}};
  forward(srv, RT_INBOX_PUSH, frame, &msg, counts);
  rt_hub_push(self->hub, channel, len, frame);
}
