/*
 * A batch of non-blocking socket sends submitted with one system call
 * (io_uring), for the flush of many connections at once.
 *
 * The kernel's loopback TCP path costs a few microseconds per send call;
 * when one publish goes to a thousand sockets, the system-call entry and
 * file lookup around each send are a measurable part of that. A batch
 * gathers one sendmsg per connection and submits them all in one
 * io_uring_enter. Every send is MSG_DONTWAIT: it completes during the
 * submission, with the bytes the socket took or -EAGAIN, exactly like a
 * non-blocking writev, so nothing stays in flight after rt_sendbatch_run()
 * returns and no connection has to outlive a pending operation.
 *
 * rt_sendbatch_new() returns NULL when io_uring is unavailable (not built
 * in, ENOSYS/EPERM at setup, or a kernel that would park a MSG_DONTWAIT
 * send instead of failing it): the caller then writes with writev.
 * Loop-thread only; one batch per loop.
 */
#ifndef RT_IO_SENDBATCH_H
#define RT_IO_SENDBATCH_H

#include <stddef.h>
#include <sys/uio.h>

typedef struct rt_sendbatch_s rt_sendbatch_t;

/* Called once per added send by rt_sendbatch_run: `res` is the byte count or a negative errno. */
typedef void (*rt_sendbatch_cb)(void *user, int res, size_t bytes, void *arg);

/* A batch of up to `max_sends` sends and `max_iov` iovecs in all, or NULL (see above). */
rt_sendbatch_t *rt_sendbatch_new(unsigned max_sends, unsigned max_iov);
/* NULL is a no-op. The batch must be empty (run). */
void rt_sendbatch_free(rt_sendbatch_t *b);

/*
 * Room for up to `n` iovecs of the next send, or NULL when the batch is full
 * (run it, then ask again). The iovecs must stay unchanged until the send is
 * added and the batch run; the bytes they point to until rt_sendbatch_run
 * returns.
 */
struct iovec *rt_sendbatch_reserve(rt_sendbatch_t *b, unsigned n);
/* Adds a send of the first `n` reserved iovecs (`bytes` in all) to `fd`; `user` is for the cb. */
void rt_sendbatch_add(rt_sendbatch_t *b, int fd, unsigned n, size_t bytes, void *user);
/* Sends added so far. */
unsigned rt_sendbatch_count(const rt_sendbatch_t *b);
/*
 * Submits every added send in one system call, then calls cb for each in
 * the order they were added, and empties the batch. Returns the number of
 * sends, or a negative errno if the submission itself failed: then the
 * sends it did not take got -ECANCELED (nothing written), and the caller
 * should stop using the batch.
 */
int rt_sendbatch_run(rt_sendbatch_t *b, rt_sendbatch_cb cb, void *arg);

#endif
