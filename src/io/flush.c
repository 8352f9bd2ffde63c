/*
 * The write path: flush before sleep.
 *
 * Nothing writes to a socket when a frame is queued. rt_conn_send() pushes a
 * frame reference onto the connection's sendq and links the connection onto
 * the server's pending list; a uv_prepare handle (which runs once per loop
 * iteration, just before the loop blocks in poll) then walks that list. Per
 * connection it gathers up to FLUSH_MAX_IOV queued frames into one iovec
 * and tries a non-blocking writev; what the kernel does not take goes out with
 * the connection's single uv_write, whose request is allocated for it and
 * freed in its callback: only a connection with a full socket holds one (192
 * bytes that an idle connection does not carry). So a burst of N publishes costs
 * one system call per subscriber, not N (Redis's beforeSleep, uSockets' cork).
 *
 * With io_uring (rt_sendbatch_t, when the kernel allows it and the ioUring
 * setting is on) the pass goes one step further: every pending connection's
 * writev becomes one MSG_DONTWAIT sendmsg of a batch, and the whole batch is
 * one system call. Results are handled exactly like those of uv_try_write.
 *
 * flushInterval (default 0) spaces the flushes: a flush that comes less than
 * that long after the previous one started is held, and the worker's flush
 * timer brings it back when the interval is over. Under a steady stream the
 * messages of the interval then share one write per subscriber, which is
 * what the kernel charges for (scenario B in bench/RESULTS.md: 15-25 % less
 * CPU per delivery at 4-5 ms, for that much more latency); the first message
 * after a quiet interval still goes out at once. Held bytes count toward
 * maxQueuedBytes like any other queued bytes.
 *
 * With several workers this runs without the server lock, so the system
 * calls of different workers overlap: everything touched here belongs to
 * the worker's own thread (its conns' queues, its pending list, its write
 * counters). Only the paths that end a connection take the lock, since
 * leaving channels and presence changes shared state.
 */
#include <errno.h>
#include <sys/socket.h>

#include "alloc.h"
#include "log.h"
#include "sendbatch.h"
#include "server_internal.h"
#include "worker.h"

#define FLUSH_MAX_IOV 256
/* try_write batches per connection and flush before the rest goes to uv_write. */
#define FLUSH_MAX_ROUNDS 4
/* One io_uring submission carries up to this many sends and iovecs. */
#define FLUSH_BATCH_SENDS 1024
#define FLUSH_BATCH_IOV 16384

/* Per-loop state of the write path. */
struct rt_flusher_s {
  rt_sendbatch_t *batch; /* io_uring sends; NULL: the writev path */
  uint64_t interval_ns;  /* flushInterval; 0: every loop iteration */
  uint64_t last_start;   /* uv_hrtime() of the last flush's start */
};

rt_flusher_t *rt_flusher_new(int use_io_uring, uint32_t interval_ms) {
  rt_flusher_t *fl = rt_calloc(1, sizeof(*fl));
  if (fl == NULL) return NULL;
  if (use_io_uring) fl->batch = rt_sendbatch_new(FLUSH_BATCH_SENDS, FLUSH_BATCH_IOV);
  fl->interval_ns = (uint64_t)interval_ms * 1000000;
  return fl;
}

void rt_flusher_free(rt_flusher_t *fl) {
  if (fl == NULL) return;
  rt_sendbatch_free(fl->batch);
  rt_free(fl);
}

int rt_flusher_uses_io_uring(const rt_flusher_t *fl) { return fl != NULL && fl->batch != NULL; }

/*
 * Fills iov from the sendq head, one iovec per entry (a partly written head
 * entry starts at its unsent bytes; an entry may hold many messages of one
 * batch frame); returns the count and sets *bytes.
 */
static size_t gather(rt_conn_t *c, uv_buf_t *iov, size_t *bytes) {
  rt_sendq_t *q = &c->sendq;
  size_t n = q->count < FLUSH_MAX_IOV ? q->count : FLUSH_MAX_IOV;
  size_t total = 0;
  /* Fields set directly: uv_buf_init is a call into libuv, once per entry. */
  for (size_t i = 0; i < n; i++) {
    const rt_slice_t *s = &rt_sendq_at(q, i)->s;
    iov[i].base = (char *)s->frame->bytes + s->off;
    iov[i].len = s->len;
    total += s->len;
  }
  *bytes = total;
  return n;
}

/*
 * Once a closing connection's queue has drained: a WebSocket is closed now;
 * an HTTP reject (linger) is only half-closed, so the client reads the whole
 * response instead of a reset caused by request bytes we never read. Its
 * EOF, or the closing deadline, ends it.
 */
/* The owner thread is the only writer: a relaxed load and store, no locked instruction. */
static void count(atomic_uint_fast64_t *counter, uint64_t n) {
  atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + n,
                        memory_order_relaxed);
}

static void consume(rt_conn_t *c, size_t n) {
  count(&c->worker->frames_written, rt_sendq_consume(&c->sendq, n));
}

/* Ends a connection from the write path: this part needs the server lock. */
static void abort_locked(rt_conn_t *c) {
  rt_srv_lock(c->worker->srv);
  rt_conn_abort(c);
  rt_srv_unlock(c->worker->srv);
}

static void maybe_finish(rt_conn_t *c) {
  if (!c->close_after_flush || c->writing || c->sendq.count > 0) return;
  if (c->linger) {
    uv_os_fd_t fd;
    c->close_after_flush = 0;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 && shutdown(fd, SHUT_WR) == 0) return;
  }
  abort_locked(c);
}

static void flush_conn(rt_conn_t *c);

static void on_write(uv_write_t *req, int status) {
  rt_conn_t *c = req->data;
  rt_free(req);
  c->writing = 0;
  if (c->state == CONN_CLOSED) return;
  if (status < 0) {
    rt_log(RT_LOG_DEBUG, "client=%llu write failed: %s", (unsigned long long)c->peer.id,
           uv_strerror(status));
    abort_locked(c);
    return;
  }
  consume(c, c->inflight_bytes);
  c->inflight_bytes = 0;
  if (c->sendq.count > 0)
    flush_conn(c);
  else
    maybe_finish(c);
}

/* Hands the rest of c's queue (up to FLUSH_MAX_IOV frames) to the one uv_write. */
static void start_write(rt_conn_t *c) {
  uv_buf_t iov[FLUSH_MAX_IOV];
  size_t bytes;
  size_t n = gather(c, iov, &bytes);
  c->inflight_bytes = bytes;
  rt_sendq_pin(&c->sendq, n); /* never extended while libuv holds their iovecs' lengths */
  uv_write_t *req = rt_malloc(sizeof(*req));
  if (req == NULL) {
    abort_locked(c);
    return;
  }
  req->data = c;
  if (uv_write(req, (uv_stream_t *)&c->tcp, iov, (unsigned)n, on_write) < 0) {
    rt_free(req);
    abort_locked(c);
    return;
  }
  c->writing = 1;
  count(&c->worker->socket_writes, 1);
}

/*
 * Writes as much of c's queue as the socket takes now, then hands the rest
 * to the one uv_write. Frames stay referenced by the sendq until their bytes
 * are written, which is also what libuv requires of buffers given to uv_write.
 * After FLUSH_MAX_ROUNDS full batches the rest also goes through uv_write, so
 * one fast reader with a long queue cannot starve the other connections.
 */
static void flush_conn(rt_conn_t *c) {
  uv_buf_t iov[FLUSH_MAX_IOV];
  size_t bytes;
  for (int rounds = 0; !c->writing && c->sendq.count > 0 && rounds < FLUSH_MAX_ROUNDS; rounds++) {
    size_t n = gather(c, iov, &bytes);
    int r = uv_try_write((uv_stream_t *)&c->tcp, iov, (unsigned)n);
    count(&c->worker->socket_writes, 1);
    if (r == UV_EAGAIN) r = 0;
    if (r < 0) {
      abort_locked(c);
      return;
    }
    consume(c, (size_t)r);
    if ((size_t)r < bytes) break;
  }
  if (!c->writing && c->sendq.count > 0) start_write(c);
  if (c->state != CONN_CLOSED) maybe_finish(c);
}

/*
 * The result of one batched send, handled like uv_try_write's: a connection
 * whose send was taken whole and that has more queued goes to the next round
 * (`again`); a short write hands the rest to uv_write, which waits for the
 * socket; an error other than EAGAIN ends the connection. ECANCELED means
 * the submission failed and nothing was written.
 */
static void on_sent(void *user, int res, size_t bytes, void *again) {
  rt_conn_t *c = user;
  count(&c->worker->socket_writes, 1);
  if (c->state == CONN_CLOSED) return;
  if (res == -EAGAIN || res == -ECANCELED) res = 0;
  if (res < 0) {
    rt_log(RT_LOG_DEBUG, "client=%llu send failed: %s", (unsigned long long)c->peer.id,
           uv_strerror(res));
    abort_locked(c);
    return;
  }
  consume(c, (size_t)res);
  if ((size_t)res == bytes && c->sendq.count > 0 && rt_link_empty(&c->pending_link))
    rt_link_push_back(again, &c->pending_link);
  else if (c->sendq.count > 0)
    start_write(c);
  else
    maybe_finish(c);
}

/* Submits the batch; after a failed submission the loop goes back to writev for good. */
static void run_batch(rt_worker_t *w, rt_link_t *again) {
  rt_flusher_t *fl = w->flusher;
  if (rt_sendbatch_run(fl->batch, on_sent, again) < 0) {
    rt_log(RT_LOG_WARN, "io_uring submission failed; writing with writev from now on");
    rt_sendbatch_free(fl->batch);
    fl->batch = NULL;
  }
}

/* Adds c's next FLUSH_MAX_IOV frames to the batch (running it first when full). */
static void add_to_batch(rt_worker_t *w, rt_conn_t *c, rt_link_t *again) {
  struct iovec *iov = rt_sendbatch_reserve(w->flusher->batch, FLUSH_MAX_IOV);
  uv_os_fd_t fd;
  if (iov == NULL) {
    run_batch(w, again);
    if (w->flusher->batch == NULL) {
      flush_conn(c);
      return;
    }
    iov = rt_sendbatch_reserve(w->flusher->batch, FLUSH_MAX_IOV);
  }
  if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0) {
    abort_locked(c);
    return;
  }
  size_t bytes;
  /* libuv's uv_buf_t is laid out as struct iovec on Unix (documented). */
  size_t n = gather(c, (uv_buf_t *)iov, &bytes);
  rt_sendbatch_add(w->flusher->batch, fd, (unsigned)n, bytes, c);
}

/*
 * The io_uring flush: each round adds one send per connection and submits
 * them together; connections whose sends were taken whole and still have
 * frames make up the next round, up to FLUSH_MAX_ROUNDS, after which their
 * rest goes through uv_write like in flush_conn.
 */
static void flush_batched(rt_worker_t *w, rt_link_t *batch) {
  for (int round = 0; !rt_link_empty(batch); round++) {
    rt_link_t again;
    rt_link_init(&again);
    while (!rt_link_empty(batch)) {
      rt_conn_t *c = RT_CONTAINER_OF(batch->next, rt_conn_t, pending_link);
      rt_link_remove(&c->pending_link);
      if (c->state == CONN_CLOSED) continue;
      if (w->flusher->batch == NULL || c->writing || c->sendq.count == 0)
        flush_conn(c);
      else if (round == FLUSH_MAX_ROUNDS)
        start_write(c);
      else
        add_to_batch(w, c, &again);
    }
    if (w->flusher->batch != NULL) run_batch(w, &again);
    rt_link_move(&again, batch);
  }
}

/*
 * Detaches the list first: a conn that re-queues while being flushed waits
 * for the next pass. Returns 0, or the time in ms after which the held flush
 * is due (flushInterval).
 */
uint64_t rt_flush_pending(rt_worker_t *w) {
  rt_flusher_t *fl = w->flusher;
  rt_link_t batch;
  /* This iteration's batch frames are complete: later publishes start new ones. */
  rt_hub_close_batches(w->hub);
  if (rt_link_empty(&w->pending)) return 0;
  if (fl->interval_ns > 0) {
    uint64_t now = uv_hrtime();
    uint64_t due = fl->last_start + fl->interval_ns;
    /* Rounded up: the timer has 1 ms steps and must not fire before it is due. */
    if (now < due) return (due - now + 999999) / 1000000;
    fl->last_start = now;
  }
  rt_link_move(&w->pending, &batch);
  if (rt_flusher_uses_io_uring(w->flusher)) {
    flush_batched(w, &batch);
    return 0;
  }
  while (!rt_link_empty(&batch)) {
    rt_conn_t *c = RT_CONTAINER_OF(batch.next, rt_conn_t, pending_link);
    rt_link_remove(&c->pending_link);
    if (c->state != CONN_CLOSED) flush_conn(c);
  }
  return 0;
}

/*
 * Used when a slow consumer is cut off: frames already partly on the wire
 * (the in-flight ones, or a partly written head) must complete so the close
 * frame that follows is well framed; everything else is dropped, which is
 * what bounds the server's memory.
 */
void rt_flush_drop_unsent(rt_conn_t *c) { rt_sendq_drop_unpinned(&c->sendq); }
