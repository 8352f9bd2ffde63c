/*
 * Workers (src/worker.c): one event loop each, for `--workers N`.
 *
 * A worker owns its loop, its listening socket (all workers bind the same
 * port with SO_REUSEPORT, so the kernel spreads connections over them), its
 * flush handle and timers, its hub (the subscriptions of ITS connections)
 * and its connection lists. Worker 0 runs on the server's loop (the
 * embedder's or the server's own); workers 1..N-1 run a loop of their own on
 * a thread of their own.
 *
 * Ownership rule: a connection belongs to its worker, and only that worker's
 * thread touches its socket, send queue and handles. Another thread reaches
 * it through the worker's inbox (a mutex-protected FIFO woken by an
 * uv_async_t), by connection id, with a copy of the frame (frame refcounts
 * stay plain integers of one thread). Shared state (presence, live queries,
 * keys, limits, listeners, counters) lives on rt_server_t under the one
 * server lock, which every worker callback takes except the write path.
 * docs/architecture.md ("Workers") has the picture.
 */
#ifndef RT_WORKER_H
#define RT_WORKER_H

#include <stdatomic.h>

#include "server_internal.h"
#include "strmap.h"

#define RT_WORKERS_MAX 64

typedef enum {
  RT_INBOX_PUBLISH, /* a message published on another worker: deliver to the channel */
  RT_INBOX_PUSH,    /* a server push (presence) for the channel's subscribers */
  RT_INBOX_SEND,    /* a frame for one connection, by id */
  RT_INBOX_CLOSE,   /* close, fail or abort one connection, by id */
  RT_INBOX_API_PUBLISH, /* rt_server_publish_async: channel NUL data, published here */
} rt_inbox_kind_t;

typedef struct rt_inbox_msg_s {
  struct rt_inbox_msg_s *next; /* FIFO link */
  rt_inbox_kind_t kind;        /* what to do */
  rt_frame_t *frame;           /* PUBLISH, PUSH, SEND: owned by the message (one reference) */
  uint64_t conn_id;            /* SEND, CLOSE: the target connection */
  rt_msg_meta_t meta;          /* PUBLISH: publisher and time */
  size_t data_len;             /* PUBLISH: data bytes in the frame; API_PUBLISH: after channel */
  rt_close_how_t how;          /* CLOSE */
  uint16_t close_code;         /* CLOSE */
  const char *close_reason;    /* CLOSE: static text */
  size_t channel_len;          /* PUBLISH, PUSH, API_PUBLISH: bytes of channel */
  char channel[];              /* NUL-terminated channel (API_PUBLISH: then the data) */
} rt_inbox_msg_t;

/* Wake-up reasons that need no allocation (so they cannot be lost to OOM). */
enum {
  RT_WAKE_STOP = 1,      /* begin this worker's part of a stop */
  RT_WAKE_LIVE = 2,      /* worker 0: start a live-query job (uv_queue_work is loop-bound) */
  RT_WAKE_PEER_DONE = 4, /* worker 0: a worker thread has ended; maybe finish the stop */
};

struct rt_worker_s {
  rt_server_t *srv;          /* owner */
  unsigned index;            /* 0..nworkers-1 */
  uv_loop_t *loop;           /* worker 0: srv->loop; others: &own_loop */
  uv_loop_t own_loop;        /* workers 1..N-1 */
  uv_thread_t thread;        /* workers 1..N-1: the thread running own_loop */
  int thread_started;        /* thread is valid and not yet joined */
  int started;               /* handles are initialised (start got this far) */
  int stopping;              /* this worker's stop has begun */
  int finished;              /* its connections are gone and its handles are closing */
  int handles_open;          /* uv handles not yet closed */
  uv_os_sock_t listen_fd;    /* bound socket before uv_tcp_open, or -1 */
  uv_tcp_t listener;         /* listening socket (shares the port with the other workers) */
  uv_prepare_t flush_prep;   /* flush-before-sleep */
  rt_flusher_t *flusher;     /* this loop's write-path state (its io_uring batch) */
  uv_timer_t tick;           /* deadlines, token expiry (and, worker 0, presence expiry) */
  uv_timer_t ping;           /* keep-alive pings */
  uv_timer_t stop_timer;     /* shutdown budget */
  uv_timer_t flush_timer;    /* brings back a flush held by flushInterval */
  uv_async_t async;          /* inbox and wake-ups */
  uv_mutex_t inbox_mu;       /* guards inbox_head/tail/closed */
  rt_inbox_msg_t *inbox_head; /* messages from other threads, oldest first */
  rt_inbox_msg_t *inbox_tail;
  int inbox_closed;          /* the async handle is closing: posts are dropped */
  atomic_int inbox_nonempty; /* set by a post, cleared by a drain: lets catch_up skip the mutex */
  int draining;              /* rt_worker_drain is running (no nested catch-up) */
  atomic_uint wake;          /* RT_WAKE_* bits, read and cleared by the inbox callback */
  rt_hub_t *hub;             /* the subscriptions of this worker's connections */
  rt_link_t conns;           /* all connections */
  rt_link_t handshaking;     /* CONN_HTTP conns, oldest first */
  rt_link_t closing;         /* conns waiting for the peer's close, oldest first */
  rt_link_t pending;         /* conns with frames to flush */
  rt_link_t authwait;        /* open conns that must still authenticate, oldest first */
  rt_strmap_t by_id;         /* client id (the bytes of peer.id) -> conn; nworkers > 1 only */
  size_t open_count;         /* conns in CONN_OPEN */
  unsigned ticks;            /* tick counter (token expiry every second) */
  atomic_uint_fast64_t socket_writes;  /* write system calls (written by the owner only) */
  atomic_uint_fast64_t frames_written; /* frames completed by them */
  rt_ws_lender_t decoders;   /* this loop's decoder, lent for each read (ws_codec.h) */
  char rbuf[65536];          /* loop-wide read buffer */
};

/* Links c onto its worker's pending-flush list (once). Inline: it runs once per delivery. */
static inline void rt_flush_schedule(rt_conn_t *c) {
  if (!rt_link_empty(&c->pending_link) || c->state == CONN_CLOSED) return;
  rt_link_push_back(&c->worker->pending, &c->pending_link);
}

/* Creates worker `index` (no loop, no handles yet). 0 or RT_ENOMEM. */
int rt_worker_new(rt_server_t *srv, unsigned index, rt_worker_t **out);
/* Frees a worker whose loop has ended (or never started). NULL is a no-op. */
void rt_worker_free(rt_worker_t *w);

/*
 * A bound, listening TCP socket for addr (SO_REUSEADDR; SO_REUSEPORT when
 * `reuseport`) in *fd. Returns 0 or a negative errno (libuv's error space).
 */
int rt_listen_socket(const struct sockaddr *addr, int reuseport, uv_os_sock_t *fd);
/*
 * Binds the worker's listening socket to `addr` (SO_REUSEPORT when the
 * server has several workers). Returns 0 or a libuv error.
 */
int rt_worker_bind(rt_worker_t *w, const struct sockaddr *addr);
/* Initialises the loop (workers 1..N-1), the listener and the handles; 0 or RT_ENOMEM. */
int rt_worker_init(rt_worker_t *w);
/* Starts the thread of a worker 1..N-1. 0 or RT_ENOMEM. */
int rt_worker_spawn(rt_worker_t *w);
/* Joins the thread of a worker 1..N-1 (once its loop has ended). */
void rt_worker_join(rt_worker_t *w);

/*
 * The worker whose thread is running this call: a worker thread's own, or
 * worker 0 for any other thread (the embedder's loop thread, where the C
 * API is called).
 */
rt_worker_t *rt_worker_current(rt_server_t *srv);
static inline int rt_worker_is_current(rt_worker_t *w) {
  return w->srv->nworkers == 1 || rt_worker_current(w->srv) == w;
}

/* Queues msg (ownership passes) and wakes the worker; a closed inbox frees it. 0 or RT_ESTATE. */
int rt_worker_post(rt_worker_t *w, rt_inbox_msg_t *msg);
/* Sets wake-up bits and wakes the worker (no allocation). */
void rt_worker_wake(rt_worker_t *w, unsigned bits);
/* A new message of `kind` with room for `extra` bytes after the channel's NUL. */
rt_inbox_msg_t *rt_inbox_msg_new(rt_inbox_kind_t kind, const char *channel, size_t channel_len,
                                 size_t extra);
void rt_inbox_msg_free(rt_inbox_msg_t *m);
/* Runs every queued message in order (the inbox callback and a stop call it). */
void rt_worker_drain(rt_worker_t *w);

/*
 * Takes the server lock for work on the calling thread's worker, first
 * running what other threads posted to it before (see rt_worker_catch_up).
 * Every worker callback that handles protocol state starts with it.
 */
void rt_srv_enter(rt_server_t *srv);

/*
 * Runs the inbox of w now if it holds anything (lock held, w's thread). A
 * worker does this before acting itself, so everything other workers did
 * before it took the lock (publishes, presence changes) reaches its clients
 * before anything it does: deliveries follow the order of the lock, as with
 * one loop (a client that unsubscribes gets no message published before
 * the unsubscribe and delivered after it; presence changes arrive in the
 * order they happened).
 */
void rt_worker_catch_up(rt_worker_t *w);

/*
 * Publishes to every worker's subscribers: the frame is encoded once,
 * delivered to the calling worker's hub, and a copy goes to each other
 * worker whose hub has subscribers on the channel (delivered there to its
 * subscribers of that moment). Returns the deliveries: local ones plus the
 * other workers' subscriber counts at publish time; or RT_ENOMEM.
 */
int64_t rt_workers_publish(rt_server_t *srv, const char *channel, size_t len, const char *data,
                           size_t data_len, uint64_t publisher_id);
/* rt_hub_push on every worker's hub (frame borrowed; copies go to the others). */
void rt_workers_push(rt_server_t *srv, const char *channel, size_t len, rt_frame_t *frame);

/* Begins this worker's stop (on its own thread): listener, connections 1001, budget timer. */
void rt_worker_stop(rt_worker_t *w);
/* Worker 0, once every worker thread has ended: closes its inbox, the last handle. */
void rt_worker_close_last(rt_worker_t *w0);
/* A connection of w was freed: finishes w's stop when it was the last. */
void rt_worker_conn_freed(rt_worker_t *w);

#endif
