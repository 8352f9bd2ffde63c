#include "sendbatch.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "alloc.h"

#ifdef RT_HAVE_LIBURING
#include <liburing.h>

typedef struct {
  struct msghdr msg; /* points into the iovec arena; stable until the submission returns */
  void *user;        /* handed back to the cb */
  size_t bytes;      /* bytes the iovecs cover */
  int res;           /* the completion's result */
} send_t;

struct rt_sendbatch_s {
  struct io_uring ring; /* one SQE per send; CQEs reaped in rt_sendbatch_run */
  send_t *sends;        /* max_sends entries */
  unsigned max_sends;   /* SQ size */
  unsigned count;       /* sends added since the last run */
  struct iovec *iov;    /* arena of max_iov iovecs */
  unsigned max_iov;     /* arena size */
  unsigned iov_used;    /* iovecs taken by added sends */
};

/*
 * The batch relies on MSG_DONTWAIT sends completing during the submission
 * (the kernel fails them with -EAGAIN instead of waiting for the socket).
 * Rather than trusting a kernel version, try it once: fill a socket pair's
 * buffer, submit one more send, and require its completion to be there
 * when io_uring_submit returns.
 */
static int dontwait_completes_inline(struct io_uring *ring) {
  int sv[2], ok = 0;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0) return 0;
  char chunk[4096];
  memset(chunk, 0, sizeof(chunk));
  while (send(sv[0], chunk, sizeof(chunk), MSG_DONTWAIT) > 0) {
  }
  struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
  if (sqe != NULL) {
    io_uring_prep_send(sqe, sv[0], chunk, sizeof(chunk), MSG_DONTWAIT | MSG_NOSIGNAL);
    struct io_uring_cqe *cqe;
    if (io_uring_submit(ring) == 1 && io_uring_peek_cqe(ring, &cqe) == 0) {
      ok = cqe->res == -EAGAIN;
      io_uring_cqe_seen(ring, cqe);
    }
  }
  /* A send still parked (ok == 0) is cancelled when the ring is torn down. */
  close(sv[0]);
  close(sv[1]);
  return ok;
}

rt_sendbatch_t *rt_sendbatch_new(unsigned max_sends, unsigned max_iov) {
  rt_sendbatch_t *b = rt_calloc(1, sizeof(*b));
  if (b == NULL) return NULL;
  /* SUBMIT_ALL: one bad send must not leave the ones after it unsubmitted in the ring. */
  if (io_uring_queue_init(max_sends, &b->ring, IORING_SETUP_SUBMIT_ALL) != 0) {
    rt_free(b);
    return NULL;
  }
  b->max_sends = b->ring.sq.ring_entries;
  b->max_iov = max_iov;
  b->sends = rt_calloc(b->max_sends, sizeof(*b->sends));
  b->iov = rt_calloc(max_iov, sizeof(*b->iov));
  if (b->sends == NULL || b->iov == NULL || !dontwait_completes_inline(&b->ring)) {
    io_uring_queue_exit(&b->ring);
    rt_free(b->sends);
    rt_free(b->iov);
    rt_free(b);
    return NULL;
  }
  return b;
}

void rt_sendbatch_free(rt_sendbatch_t *b) {
  if (b == NULL) return;
  io_uring_queue_exit(&b->ring);
  rt_free(b->sends);
  rt_free(b->iov);
  rt_free(b);
}

struct iovec *rt_sendbatch_reserve(rt_sendbatch_t *b, unsigned n) {
  if (b->count == b->max_sends || b->max_iov - b->iov_used < n) return NULL;
  return b->iov + b->iov_used;
}

void rt_sendbatch_add(rt_sendbatch_t *b, int fd, unsigned n, size_t bytes, void *user) {
  send_t *s = &b->sends[b->count];
  memset(&s->msg, 0, sizeof(s->msg));
  s->msg.msg_iov = b->iov + b->iov_used;
  s->msg.msg_iovlen = n;
  s->user = user;
  s->bytes = bytes;
  s->res = -ECANCELED;
  struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
  io_uring_prep_sendmsg(sqe, fd, &s->msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  io_uring_sqe_set_data64(sqe, b->count);
  b->count++;
  b->iov_used += n;
}

unsigned rt_sendbatch_count(const rt_sendbatch_t *b) { return b->count; }

/* Records every available completion's result by its index; returns how many. */
static unsigned collect(rt_sendbatch_t *b) {
  unsigned head, seen = 0;
  struct io_uring_cqe *cqe;
  io_uring_for_each_cqe(&b->ring, head, cqe) {
    uint64_t i = io_uring_cqe_get_data64(cqe);
    if (i < b->count) b->sends[i].res = cqe->res;
    seen++;
  }
  io_uring_cq_advance(&b->ring, seen);
  return seen;
}

/*
 * One io_uring_enter submits the sends and returns with their completions.
 * If it fails, sends it did not take keep -ECANCELED. Completions that are
 * not there yet (never with a kernel that passed the probe) are waited for:
 * the kernel must be done with the iovecs before the caller moves on.
 */
static int reap(rt_sendbatch_t *b, unsigned n) {
  int r;
  do r = io_uring_submit_and_wait(&b->ring, n); while (r == -EINTR);
  if (r < 0) return r;
  unsigned seen = collect(b);
  while (seen < (unsigned)r) {
    struct io_uring_cqe *cqe;
    if (io_uring_wait_cqe(&b->ring, &cqe) == 0) seen += collect(b);
  }
  return 0;
}

int rt_sendbatch_run(rt_sendbatch_t *b, rt_sendbatch_cb cb, void *arg) {
  unsigned n = b->count;
  if (n == 0) return 0;
  int r = reap(b, n);
  for (unsigned i = 0; i < n; i++) cb(b->sends[i].user, b->sends[i].res, b->sends[i].bytes, arg);
  b->count = 0;
  b->iov_used = 0;
  return r < 0 ? r : (int)n;
}

#else /* !RT_HAVE_LIBURING: always the writev path */

rt_sendbatch_t *rt_sendbatch_new(unsigned max_sends, unsigned max_iov) {
  (void)max_sends;
  (void)max_iov;
  return NULL;
}
void rt_sendbatch_free(rt_sendbatch_t *b) { (void)b; }
struct iovec *rt_sendbatch_reserve(rt_sendbatch_t *b, unsigned n) {
  (void)b;
  (void)n;
  return NULL;
}
void rt_sendbatch_add(rt_sendbatch_t *b, int fd, unsigned n, size_t bytes, void *user) {
  (void)b, (void)fd, (void)n, (void)bytes, (void)user;
}
unsigned rt_sendbatch_count(const rt_sendbatch_t *b) {
  (void)b;
  return 0;
}
int rt_sendbatch_run(rt_sendbatch_t *b, rt_sendbatch_cb cb, void *arg) {
  (void)b, (void)cb, (void)arg;
  return 0;
}

#endif
