/*
 * Internal shape of a server and its connections, shared by server.c (the
 * public API and lifecycle) and the libuv edges in src/io/ (connections,
 * write path). Nothing here is visible to embedders.
 */
#ifndef RT_SERVER_INTERNAL_H
#define RT_SERVER_INTERNAL_H

#include <stdatomic.h>
#include <uv.h>

#include "auth_apikey.h"
#include "auth_jwt.h"
#include "buf.h"
#include "errors.h"
#include "hub.h"
#include "live.h"
#include "presence.h"
#include "proto.h"
#include "ratelimit.h"
#include "realtime/realtime.h"
#include "ws_codec.h"

typedef struct rt_conn_s rt_conn_t;
typedef struct rt_worker_s rt_worker_t; /* src/worker.h */
typedef struct rt_flusher_s rt_flusher_t;

/*
 * A peer address as accepted (28 bytes). Connections keep this rather than
 * its text (110 bytes of "ip:port" and "ip") and format it when a log line,
 * an event, client_info or the per-IP limit needs it: rarely, and never per
 * delivery. It is kept, not re-read with getpeername, because a reset socket
 * no longer has a peer name and the per-IP count must still be released.
 */
typedef union {
  struct sockaddr sa; /* sa_family AF_INET or AF_INET6; 0 when unknown */
  struct sockaddr_in in4;
  struct sockaddr_in6 in6;
} rt_sockaddr_t;

/* Intrusive doubly-linked list node (libuv's queue idea, typed). */
typedef struct rt_link_s {
  struct rt_link_s *prev; /* previous node, or the list head */
  struct rt_link_s *next; /* next node, or the list head */
} rt_link_t;

static inline void rt_link_init(rt_link_t *l) { l->prev = l->next = l; }
static inline int rt_link_empty(const rt_link_t *l) { return l->next == l; }
static inline void rt_link_remove(rt_link_t *l) {
  l->prev->next = l->next;
  l->next->prev = l->prev;
  l->prev = l->next = l;
}
static inline void rt_link_push_back(rt_link_t *head, rt_link_t *l) {
  l->prev = head->prev;
  l->next = head;
  head->prev->next = l;
  head->prev = l;
}
/* Moves every node of `from` to the empty list `to`; `from` is left empty. */
static inline void rt_link_move(rt_link_t *from, rt_link_t *to) {
  rt_link_init(to);
  if (rt_link_empty(from)) return;
  to->next = from->next;
  to->prev = from->prev;
  to->next->prev = to;
  to->prev->next = to;
  rt_link_init(from);
}
#define RT_CONTAINER_OF(ptr, type, field) ((type *)((char *)(ptr) - offsetof(type, field)))

typedef enum {
  CONN_HTTP,    /* reading the upgrade request head */
  CONN_OPEN,    /* WebSocket open */
  CONN_CLOSING, /* close frame sent (or HTTP response queued): flush, then wait/close */
  CONN_CLOSED,  /* uv_close called; freed in its close callback */
} rt_conn_state_t;

struct rt_conn_s {
  uv_tcp_t tcp;            /* the socket; tcp.data == this */
  rt_worker_t *worker;     /* owning worker (worker->srv: the server); only its thread does I/O */
  rt_peer_t peer;          /* hub subscriber (peer.id == client id) */
  rt_conn_state_t state;   /* lifecycle state */
  rt_link_t all_link;      /* in worker->conns */
  rt_link_t timer_link;    /* in worker->handshaking, closing or authwait (FIFO by deadline) */
  uint64_t deadline_ms;    /* uv_now() deadline for the list timer_link is in */
  rt_link_t pending_link;  /* in worker->pending while frames wait for a flush */
  unsigned writing : 1;    /* a uv_write is in flight (its request is allocated, freed in its cb) */
  unsigned awaiting_pong : 1;  /* pinged, no pong yet */
  unsigned close_after_flush : 1; /* uv_close once the sendq drains */
  unsigned close_received : 1;    /* the peer's close frame arrived */
  unsigned linger : 1;            /* HTTP reject: half-close after flush, then drain to EOF */
  char *head;              /* HTTP head bytes so far (CONN_HTTP only) */
  size_t head_len;         /* bytes in head */
  rt_ws_decoder_t *dec;    /* own decoder while a frame or message spans reads, else NULL
                              (its worker's decoders lend one per read) */
  rt_sendq_t sendq;        /* frames queued to this client */
  size_t inflight_bytes;   /* bytes handed to the uv_write in flight (flush.c allocates it) */
  int64_t connected_at_ms; /* wall clock at upgrade */
  uint64_t messages_in;    /* text messages received */
  uint64_t messages_out;   /* message/ack/error frames queued */
  uint64_t bytes_in;       /* payload bytes received */
  uint64_t bytes_out;      /* frame bytes queued */
  rt_sockaddr_t addr;      /* the peer's address; text on demand (RT_CONN_REMOTE, RT_CONN_IP) */
  rt_identity_t ident;     /* who the client is; zeroed while anonymous */
  unsigned authenticated : 1;   /* a token or key was accepted */
  unsigned ip_counted : 1;      /* holds a slot in srv->iplimit */
  unsigned expiry_pushed : 1;   /* token_expired was pushed; grace_deadline_ms runs */
  int64_t grace_deadline_ms;    /* wall clock: close 3005 unless re-authenticated */
  rt_ratelimit_t *rl;           /* per-client rate limits; NULL until needed (rt_conn_rate_take) */
  int64_t last_activity_ms;     /* wall clock of the last message received */
  uint16_t close_code;          /* close code sent or received (0: none) */
  const char *close_reason;     /* static text of the close we sent, or "" */
};

/* How rt_conn_end (and an inbox close) ends a connection. */
typedef enum { RT_CLOSE_HOW_CLOSE, RT_CLOSE_HOW_FAIL, RT_CLOSE_HOW_ABORT } rt_close_how_t;

typedef enum { SRV_NEW, SRV_RUNNING, SRV_STOPPING, SRV_STOPPED } rt_srv_state_t;

/*
 * The server: configuration and everything its workers share. Fields marked
 * (lock) are read and written only under srv->lock when nworkers > 1; the
 * per-loop state (hub, connections, handles) is on each rt_worker_t.
 */
struct rt_server_s {
  rt_config_t cfg;          /* copy; strings below are owned copies */
  char *host;               /* owned cfg.host */
  char *path;               /* owned cfg.path */
  char *jwt_secret;         /* owned cfg.jwt_secret */
  rt_srv_state_t state;     /* lifecycle (lock) */
  uv_loop_t *loop;          /* worker 0's loop: cfg.loop or own_loop */
  uv_loop_t own_loop;       /* used when cfg.loop was NULL */
  int owns_loop;            /* loop == &own_loop */
  rt_worker_t **workers;    /* nworkers workers; [0] runs on loop */
  unsigned nworkers;        /* cfg.workers, fixed at rt_server_new */
  uv_mutex_t lock;          /* the server lock (recursive), used when nworkers > 1 */
  atomic_uint workers_done; /* worker threads whose loop has ended */
  int port;                 /* bound port */
  atomic_int stop_requested; /* set by rt_server_stop_async (signal handlers too: lock-free) */
  rt_link_t subs;           /* server-side subscriptions (in worker 0's hub) (lock) */
  uint64_t next_client_id;  /* ids start at 1, unique across workers (lock) */
  uint64_t published;       /* publishes that reached a channel on any worker (lock) */
  rt_hub_stats_t *chanstats; /* per-channel counters shared by the hubs (nworkers > 1) (lock) */
  int64_t started_at_ms;    /* wall clock at start */
  rt_server_totals_t totals; /* shared counters (lock); write counters are per worker */
  rt_jwt_verifier_t *jwt;   /* NULL when no JWT key is configured */
  rt_apikey_store_t *apikeys; /* API keys (config + run time) (lock) */
  rt_iplimit_t *iplimit;    /* per-IP connection counts, NULL when unlimited (lock) */
  rt_rate_policy_t rate_policy; /* per-client limits from cfg.rate_limit */
  rt_presence_t *presence;  /* who is in which channel (lock) */
  rt_live_t *live;          /* live queries, run on worker 0; NULL when none (lock) */
  rt_listener_t *listeners[RT_EVENT__COUNT]; /* event listeners per type (lock) */
  int dispatching;          /* depth of event dispatch (removals are deferred while > 0) */
};

/*
 * The server lock: every worker callback that touches shared or protocol
 * state holds it; the write path does not. Recursive, so listeners and C API
 * calls made from callbacks take it again. A single worker skips it.
 */
static inline void rt_srv_lock(const rt_server_t *srv) {
  if (srv->nworkers > 1) uv_mutex_lock((uv_mutex_t *)&srv->lock);
}
static inline void rt_srv_unlock(const rt_server_t *srv) {
  if (srv->nworkers > 1) uv_mutex_unlock((uv_mutex_t *)&srv->lock);
}

int64_t rt_wall_ms(void);

/* Monotonic ms (works without a loop, for the in-memory use of the API). */
int64_t rt_mono_ms(void);

/* src/events.c */
void rt_events_emit(rt_server_t *srv, const rt_event_t *ev);
void rt_events_free(rt_server_t *srv);

/* src/server_presence.c: presence changes pushed to subscribers and reported as events. */
int rt_srv_presence_set(rt_server_t *srv, const char *channel, size_t len, const char *client_id,
                        const char *user_id, const char *data, size_t data_len, rt_errbuf_t *err);
int rt_srv_presence_leave(rt_server_t *srv, const char *channel, size_t len,
                          const char *client_id);
void rt_srv_presence_drop_client(rt_server_t *srv, const char *client_id);
void rt_srv_presence_sweep(rt_server_t *srv);
/* The presence_get reply: {"type":"ack","id":N,"entries":[...]}, or NULL on OOM. */
rt_frame_t *rt_srv_presence_list(rt_server_t *srv, const char *channel, size_t len, int has_id,
                                 int64_t id);

/* server.c: the GET /stats document (channels and totals). 0 or RT_ENOMEM. */
int rt_srv_stats_json(rt_server_t *srv, rt_strbuf_t *out);
/* server.c: distinct channels over all workers' hubs (GET /health). Lock held. */
size_t rt_srv_channel_count(rt_server_t *srv);

/* server.c: worker 0's stop is complete when all workers are done; closes what is left. */
void rt_server_maybe_stopped(rt_server_t *srv);

/* src/io/conn.c */
#define RT_ADDR_TEXT 64 /* "ip:port" with its NUL: fits any IPv6 text (46) and a port */
#define RT_IP_TEXT 46   /* INET6_ADDRSTRLEN: any IP text with its NUL */
#define RT_ID_TEXT 24   /* a uint64 in decimal with its NUL */
/* The peer's "ip:port" ("?:0" when unknown) into buf; returns buf. */
const char *rt_conn_remote(const rt_conn_t *c, char buf[RT_ADDR_TEXT]);
/* The peer's IP alone ("?" when unknown; the per-IP limit key) into buf; returns buf. */
const char *rt_conn_ip(const rt_conn_t *c, char buf[RT_IP_TEXT]);
/* The client id in decimal (the presence client id) into buf; returns buf. */
const char *rt_conn_client_id(const rt_conn_t *c, char buf[RT_ID_TEXT]);
/*
 * The same as expressions for a log line, an event or a call: the text
 * lives in a compound literal, valid until the end of the enclosing block.
 */
#define RT_CONN_REMOTE(c) rt_conn_remote((c), (char[RT_ADDR_TEXT]){0})
#define RT_CONN_IP(c) rt_conn_ip((c), (char[RT_IP_TEXT]){0})
#define RT_CONN_ID_TEXT(c) rt_conn_client_id((c), (char[RT_ID_TEXT]){0})
void rt_conn_on_accept(uv_stream_t *listener, int status);
/* Starts the close handshake: queues a close frame and stops deliveries. */
void rt_conn_close(rt_conn_t *c, uint16_t code, const char *reason);
/* Fails the connection (RFC 6455 7.1.7): close frame, then close without waiting for the peer. */
void rt_conn_fail(rt_conn_t *c, uint16_t code, const char *reason);
/* Closes the socket now (no close frame); frees the conn in the close callback. */
void rt_conn_abort(rt_conn_t *c);
/*
 * Queues a frame (takes ownership of one reference) and schedules a flush.
 * From another worker's thread the frame is copied to the owner's inbox
 * (by connection id: dropped if the connection is gone by then).
 */
int rt_conn_send(rt_conn_t *c, rt_frame_t *f);
/*
 * Charges one command of kind op to c's rate limits (rt_ratelimit_take).
 * The limiter is allocated at the first command, and only when the policy
 * limits something: an unlimited server spends nothing on it per client.
 * A new limiter starts full, as it would have at the upgrade: no command
 * has been charged before the first one. Returns 0, RT_ERATE (*out filled
 * when non-NULL) or RT_ENOMEM.
 */
int rt_conn_rate_take(rt_conn_t *c, rt_rate_op_t op, rt_rate_verdict_t *out);
/* src/io/commands.c: parses and runs one text message of an open conn (replies included). */
void rt_conn_handle_command(rt_conn_t *c, const char *msg, size_t len);
/* Closes/fails/aborts c from any thread (its owner's inbox when foreign). Lock held. */
void rt_conn_end(rt_conn_t *c, rt_close_how_t how, uint16_t code, const char *reason);
/* The conn of worker w with this id (any state but CLOSED), or NULL. */
rt_conn_t *rt_conn_by_id(rt_worker_t *w, uint64_t id);
/* The open conn with this id on any worker, or NULL. Lock held. */
rt_conn_t *rt_conn_find(rt_server_t *srv, uint64_t id);
/* Fails every open conn (every worker) whose identity's user id is `user_id`. Lock held. */
void rt_conn_close_user(rt_server_t *srv, const char *user_id, uint16_t code, const char *reason);
/* Pushes token_expired / closes clients whose token ran out (once a second). */
void rt_conn_check_expiry(rt_worker_t *w);
/* Deadline sweep (handshake and close timeouts) and keep-alive pings. */
void rt_conn_sweep_deadlines(rt_worker_t *w);
void rt_conn_ping_all(rt_worker_t *w);

/* src/io/flush.c */
/* Per-loop write-path state; with use_io_uring, sends are batched when the kernel allows. */
rt_flusher_t *rt_flusher_new(int use_io_uring, uint32_t interval_ms);
/* NULL is a no-op. */
void rt_flusher_free(rt_flusher_t *fl);
/* 1 when flushes go through io_uring, 0 when through writev. */
int rt_flusher_uses_io_uring(const rt_flusher_t *fl);
/* rt_flush_schedule (inline: it runs once per delivery) is in worker.h. */
/*
 * Writes every pending conn's queue (called from the prepare handle, without
 * the lock) and returns 0; or, when flushInterval holds this flush, writes
 * nothing and returns the ms until it is due.
 */
uint64_t rt_flush_pending(rt_worker_t *w);
/* Drops queued frames that are not partly written or in flight. */
void rt_flush_drop_unsent(rt_conn_t *c);

#endif
