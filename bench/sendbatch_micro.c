/*
 * rt_sendbatch_micro: the cost of one small send to each of N loopback TCP
 * sockets, writev per socket against one io_uring batch (src/io/sendbatch.c),
 * measured as the sending thread's CPU time (which, on loopback, includes the
 * receive path the kernel runs in the sender's context).
 *
 * The two ways alternate round by round, so that noise from other processes
 * hits both alike; the medians and minimums over the rounds are printed per
 * send. A reader thread (pinned to the other CPU when there are two) drains
 * the sockets so they never fill.
 *
 *   rt_sendbatch_micro [sockets=1000] [rounds=200] [frames per send=1]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "sendbatch.h"

static int nsock, *tx, *rx;
static volatile int stop;

static void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sysconf(_SC_NPROCESSORS_ONLN) > cpu) sched_setaffinity(0, sizeof(set), &set);
}

static void *reader(void *arg) {
  (void)arg;
  pin(1);
  int ep = epoll_create1(0);
  for (int i = 0; i < nsock; i++) {
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = rx[i]};
    epoll_ctl(ep, EPOLL_CTL_ADD, rx[i], &ev);
  }
  static char buf[65536];
  struct epoll_event evs[256];
  while (!stop) {
    int n = epoll_wait(ep, evs, 256, 50);
    for (int i = 0; i < n; i++)
      while (read(evs[i].data.fd, buf, sizeof(buf)) == (ssize_t)sizeof(buf)) {
      }
  }
  close(ep);
  return NULL;
}

static void connect_pairs(void) {
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(a);
  if (bind(ls, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(ls, 4096) != 0) exit(1);
  getsockname(ls, (struct sockaddr *)&a, &len);
  for (int i = 0; i < nsock; i++) {
    rx[i] = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(rx[i], (struct sockaddr *)&a, sizeof(a)) != 0) exit(1);
    tx[i] = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
    int one = 1;
    setsockopt(tx[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  close(ls);
}

static double thread_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static long short_sends; /* io_uring sends that did not complete whole */

static void check(void *user, int res, size_t bytes, void *arg) {
  (void)user, (void)arg;
  if (res != (int)bytes) short_sends++;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  nsock = argc > 1 ? atoi(argv[1]) : 1000;
  int rounds = argc > 2 ? atoi(argv[2]) : 200;
  int frames = argc > 3 ? atoi(argv[3]) : 1;
  const char *only = argc > 4 ? argv[4] : ""; /* "writev" or "io_uring": time just that one */
  tx = calloc(nsock, sizeof(int));
  rx = calloc(nsock, sizeof(int));
  connect_pairs();
  pin(0);
  pthread_t th;
  pthread_create(&th, NULL, reader, NULL);
  rt_sendbatch_t *b = rt_sendbatch_new(1024, 16384);
  if (b == NULL) {
    fprintf(stderr, "io_uring unavailable\n");
    return 1;
  }
  static char frame[76];
  memset(frame, 'x', sizeof(frame));
  struct iovec iov[64];
  for (int k = 0; k < frames && k < 64; k++) iov[k] = (struct iovec){frame, sizeof(frame)};
  double *w = calloc(rounds, sizeof(double)), *u = calloc(rounds, sizeof(double));
  for (int r = 0; r < rounds; r++) {
    double t0 = thread_us();
    for (int i = 0; i < nsock && strcmp(only, "io_uring") != 0; i++) writev(tx[i], iov, frames);
    double t1 = thread_us();
    for (int i = 0; i < nsock && strcmp(only, "writev") != 0; i++) {
      struct iovec *v = rt_sendbatch_reserve(b, (unsigned)frames);
      if (v == NULL) break;
      memcpy(v, iov, frames * sizeof(*iov));
      rt_sendbatch_add(b, tx[i], (unsigned)frames, frames * sizeof(frame), NULL);
      if (rt_sendbatch_count(b) == 1024) rt_sendbatch_run(b, check, NULL);
    }
    rt_sendbatch_run(b, check, NULL);
    double t2 = thread_us();
    w[r] = (t1 - t0) / nsock;
    u[r] = (t2 - t1) / nsock;
    usleep(2000);
  }
  qsort(w, rounds, sizeof(double), cmp);
  qsort(u, rounds, sizeof(double), cmp);
  printf("%d sockets, %d frames of 76 B per send, %d rounds: us per send (median / min)\n", nsock,
         frames, rounds);
  printf("  writev   %.3f / %.3f\n  io_uring %.3f / %.3f\n", w[rounds / 2], w[0], u[rounds / 2],
         u[0]);
  printf("  io_uring sends not taken whole: %ld\n", short_sends);
  stop = 1;
  pthread_join(th, NULL);
  rt_sendbatch_free(b);
  return 0;
}
