/*
 * rt_sendbatch_t over socket pairs: whole sends, short sends on a nearly
 * full socket, -EAGAIN on a full one, an error on a closed peer, callbacks
 * in the order sends were added, and a full batch refusing more. Skipped
 * (with a message) where io_uring is unavailable: the server then writes
 * with writev, which test_server covers.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "sendbatch.h"

typedef struct {
  int n;            /* callbacks so far */
  intptr_t user[8]; /* their user pointers, in order */
  int res[8];       /* their results */
  size_t bytes[8];  /* their byte counts */
} seen_t;

static void record(void *user, int res, size_t bytes, void *arg) {
  seen_t *s = arg;
  s->user[s->n] = (intptr_t)user;
  s->res[s->n] = res;
  s->bytes[s->n] = bytes;
  s->n++;
}

static rt_sendbatch_t *new_batch(unsigned sends, unsigned iov) {
  rt_sendbatch_t *b = rt_sendbatch_new(sends, iov);
  if (b == NULL) skip(); /* no io_uring here: nothing to test */
  return b;
}

static void pair(int sv[2]) {
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
}

static void add(rt_sendbatch_t *b, int fd, const char *a, const char *c, intptr_t user) {
  struct iovec *iov = rt_sendbatch_reserve(b, 2);
  assert_non_null(iov);
  iov[0] = (struct iovec){(void *)a, strlen(a)};
  iov[1] = (struct iovec){(void *)c, strlen(c)};
  rt_sendbatch_add(b, fd, 2, strlen(a) + strlen(c), (void *)user);
}

static void test_sends_go_out_whole_and_in_order(void **state) {
  (void)state;
  rt_sendbatch_t *b = new_batch(8, 64);
  int x[2], y[2];
  pair(x);
  pair(y);
  add(b, x[0], "hello ", "world", 1);
  add(b, y[0], "second", "", 2);
  assert_int_equal(rt_sendbatch_count(b), 2);
  seen_t s = {0};
  assert_int_equal(rt_sendbatch_run(b, record, &s), 2);
  assert_int_equal(s.n, 2);
  assert_int_equal(s.user[0], 1);
  assert_int_equal(s.res[0], 11);
  assert_int_equal(s.bytes[0], 11);
  assert_int_equal(s.user[1], 2);
  assert_int_equal(s.res[1], 6);
  char buf[32] = {0};
  assert_int_equal(read(x[1], buf, sizeof(buf)), 11);
  assert_string_equal(buf, "hello world");
  assert_int_equal(rt_sendbatch_count(b), 0);
  assert_int_equal(rt_sendbatch_run(b, record, &s), 0); /* empty: nothing happens */
  rt_sendbatch_free(b);
  close(x[0]), close(x[1]), close(y[0]), close(y[1]);
}

/* A full socket fails with -EAGAIN at once (MSG_DONTWAIT), a nearly full one takes a part. */
static void test_full_socket_is_eagain_not_a_wait(void **state) {
  (void)state;
  rt_sendbatch_t *b = new_batch(8, 64);
  int x[2];
  pair(x);
  static char chunk[4096];
  memset(chunk, 'a', sizeof(chunk));
  while (send(x[0], chunk, sizeof(chunk), MSG_DONTWAIT) > 0) {
  }
  add(b, x[0], "more", "", 7);
  seen_t s = {0};
  assert_int_equal(rt_sendbatch_run(b, record, &s), 1);
  assert_int_equal(s.res[0], -EAGAIN);
  /* Drain a little: a send bigger than the room left is taken in part. */
  static char big[256 * 1024];
  assert_true(read(x[1], big, 8192) > 0);
  struct iovec *iov = rt_sendbatch_reserve(b, 1);
  iov[0] = (struct iovec){big, sizeof(big)};
  rt_sendbatch_add(b, x[0], 1, sizeof(big), (void *)8);
  assert_int_equal(rt_sendbatch_run(b, record, &s), 1);
  assert_true(s.res[1] > 0 && (size_t)s.res[1] < sizeof(big));
  rt_sendbatch_free(b);
  close(x[0]), close(x[1]);
}

static void test_closed_peer_is_an_error(void **state) {
  (void)state;
  rt_sendbatch_t *b = new_batch(8, 64);
  int x[2];
  pair(x);
  close(x[1]);
  add(b, x[0], "lost", "", 3);
  seen_t s = {0};
  assert_int_equal(rt_sendbatch_run(b, record, &s), 1);
  assert_int_equal(s.res[0], -EPIPE); /* and no SIGPIPE: MSG_NOSIGNAL */
  rt_sendbatch_free(b);
  close(x[0]);
}

/* reserve refuses once the sends or the iovecs are used up; a run makes room again. */
static void test_full_batch_refuses_until_run(void **state) {
  (void)state;
  rt_sendbatch_t *b = new_batch(2, 4);
  int x[2];
  pair(x);
  add(b, x[0], "a", "b", 1);
  assert_null(rt_sendbatch_reserve(b, 3)); /* 2 of 4 iovecs left */
  add(b, x[0], "c", "d", 2);
  assert_null(rt_sendbatch_reserve(b, 1)); /* iovecs (and sends, if the ring is 2) used up */
  seen_t s = {0};
  assert_int_equal(rt_sendbatch_run(b, record, &s), 2);
  assert_non_null(rt_sendbatch_reserve(b, 4));
  char buf[8] = {0};
  assert_int_equal(read(x[1], buf, sizeof(buf)), 4);
  assert_string_equal(buf, "abcd");
  rt_sendbatch_free(b);
  rt_sendbatch_free(NULL);
  close(x[0]), close(x[1]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sends_go_out_whole_and_in_order),
      cmocka_unit_test(test_full_socket_is_eagain_not_a_wait),
      cmocka_unit_test(test_closed_peer_is_an_error),
      cmocka_unit_test(test_full_batch_refuses_until_run),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
