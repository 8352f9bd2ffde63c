/*
 * Workers (src/worker.c): the inbox keeps each posting thread's order
 * (through two inboxes: a publish posted to worker 1 whose subscriber sits
 * on worker 0), a frame or close posted for a connection that is gone is
 * dropped (ASan checks nothing leaks), a publish counts the subscribers of
 * every worker in `delivered` and reaches all of them, and revoking an API
 * key closes its clients on every worker. Real sockets: the server runs on
 * this thread (worker 0) and on its worker thread; clients run on threads.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "proto.h"
#include "worker.h"
#include "ws_client.h"

#define CLIENTS 32 /* all on one worker: probability 2^-31 */

static rt_server_t *new_server(unsigned workers, const rt_api_key_config_t *keys, size_t nkeys) {
  rt_config_t cfg;
  rt_config_init(&cfg);
  cfg.host = "127.0.0.1";
  cfg.port = 0;
  cfg.workers = workers;
  cfg.api_keys = keys;
  cfg.api_key_count = nkeys;
  cfg.require_auth = nkeys > 0;
  rt_server_t *srv = NULL;
  assert_int_equal(rt_server_new(&cfg, &srv), 0);
  return srv;
}

/* ------------------------------------------------------------ inbox order */

#define POSTERS 4
#define PER_POSTER 300

typedef struct {
  rt_server_t *srv;
  int last[POSTERS];     /* last sequence number seen per poster (worker 0's thread only) */
  int received;          /* messages seen */
  int in_order;          /* every poster's numbers arrived increasing */
  atomic_int posted;     /* posters done */
} order_t;

static void on_ordered(const char *channel, const char *data, size_t len, const rt_msg_meta_t *meta,
                       void *ud) {
  order_t *o = ud;
  int p, n;
  char text[32];
  snprintf(text, sizeof(text), "%.*s", (int)len, data);
  assert_int_equal(sscanf(text, "[%d,%d]", &p, &n), 2);
  if (n != o->last[p] + 1) o->in_order = 0;
  o->last[p] = n;
  if (++o->received == POSTERS * PER_POSTER) rt_server_stop(o->srv);
}

typedef struct {
  order_t *o;
  int index;
} poster_t;

/* Posts straight into worker 1's inbox: it publishes, worker 0 (the subscriber's) delivers. */
static void *poster(void *arg) {
  poster_t *p = arg;
  rt_worker_t *w1 = p->o->srv->workers[1];
  for (int n = 0; n < PER_POSTER; n++) {
    char data[32];
    int len = snprintf(data, sizeof(data), "[%d,%d]", p->index, n);
    rt_inbox_msg_t *m = rt_inbox_msg_new(RT_INBOX_API_PUBLISH, "order", 5, (size_t)len);
    assert_non_null(m);
    memcpy(m->channel + 6, data, (size_t)len);
    m->data_len = (size_t)len;
    assert_int_equal(rt_worker_post(w1, m), 0);
  }
  atomic_fetch_add(&p->o->posted, 1);
  return NULL;
}

static void test_inbox_keeps_each_posters_order(void **state) {
  order_t o = {.in_order = 1};
  for (int i = 0; i < POSTERS; i++) o.last[i] = -1;
  o.srv = new_server(2, NULL, 0);
  rt_subscription_t *sub;
  assert_int_equal(rt_server_subscribe(o.srv, "order", on_ordered, &o, &sub), 0);
  assert_int_equal(rt_server_start(o.srv), 0);
  pthread_t t[POSTERS];
  poster_t args[POSTERS];
  for (int i = 0; i < POSTERS; i++) {
    args[i] = (poster_t){&o, i};
    assert_int_equal(pthread_create(&t[i], NULL, poster, &args[i]), 0);
  }
  assert_int_equal(rt_server_run(o.srv), 0);
  for (int i = 0; i < POSTERS; i++) pthread_join(t[i], NULL);
  assert_int_equal(o.received, POSTERS * PER_POSTER);
  assert_true(o.in_order);
  rt_server_totals_t tot;
  rt_server_totals(o.srv, &tot);
  assert_int_equal(tot.messages_published, POSTERS * PER_POSTER);
  assert_int_equal(tot.messages_delivered, POSTERS * PER_POSTER);
  rt_server_free(o.srv);
}

/* ------------------------------------------------- sends to vanished conns */

typedef struct {
  rt_server_t *srv;
  int port;
  atomic_int disconnected; /* DISCONNECTED events seen */
  int ok;                  /* the client thread's verdict */
} gone_t;

/*
 * On the disconnect of a client (its worker's thread, lock held), a frame
 * and a close for its id are posted to every worker: they run after the
 * conn has left its worker's map, so they must be dropped. Frames for ids
 * that never existed too.
 */
static void on_gone(const rt_event_t *ev, void *ud) {
  gone_t *g = ud;
  for (unsigned i = 0; i < g->srv->nworkers; i++) {
    rt_worker_t *w = g->srv->workers[i];
    assert_null(rt_conn_by_id(w, 987654321));
    uint64_t ids[] = {ev->client_id, 987654321};
    for (size_t k = 0; k < 2; k++) {
      rt_inbox_msg_t *m = rt_inbox_msg_new(RT_INBOX_SEND, NULL, 0, 0);
      m->conn_id = ids[k];
      m->frame = rt_proto_ack(0, 0, -1);
      rt_worker_post(w, m);
      m = rt_inbox_msg_new(RT_INBOX_CLOSE, NULL, 0, 0);
      m->conn_id = ids[k];
      m->how = RT_CLOSE_HOW_FAIL;
      m->close_code = 1008;
      m->close_reason = "gone";
      rt_worker_post(w, m);
    }
  }
  atomic_fetch_add(&g->disconnected, 1);
}

static void *gone_client(void *arg) {
  gone_t *g = arg;
  int fds[8];
  g->ok = 1;
  for (int i = 0; i < 8; i++) g->ok &= (fds[i] = ws_connect(g->port)) >= 0;
  for (int i = 0; i < 8; i++) close(fds[i]);
  while (atomic_load(&g->disconnected) < 8) usleep(1000);
  /* A live client still works after the dropped messages. */
  int fd = ws_connect(g->port);
  char buf[256];
  g->ok &= fd >= 0 && ws_send(fd, "{\"type\":\"subscribe\",\"channel\":\"a\",\"id\":1}") == 0 &&
           ws_recv(fd, buf, sizeof(buf)) == 1 && strcmp(buf, "{\"type\":\"ack\",\"id\":1}") == 0;
  close(fd);
  usleep(50 * 1000);
  rt_server_stop_async(g->srv);
  return NULL;
}

static void test_messages_for_vanished_conns_are_dropped(void **state) {
  gone_t g = {0};
  g.srv = new_server(2, NULL, 0);
  rt_listener_t *l;
  assert_int_equal(rt_server_on(g.srv, RT_EVENT_DISCONNECTED, on_gone, &g, &l), 0);
  assert_int_equal(rt_server_start(g.srv), 0);
  g.port = rt_server_port(g.srv);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, gone_client, &g), 0);
  assert_int_equal(rt_server_run(g.srv), 0);
  pthread_join(t, NULL);
  assert_true(g.ok);
  rt_server_free(g.srv);
}

/* ------------------------------------------------ cross-worker fan-out */

/* GET /stats on a fresh socket; the body in out. Returns 0 or -1. */
static int get_stats(int port, char *out, size_t cap) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) return -1;
  const char *req = "GET /stats HTTP/1.1\r\nHost: x\r\n\r\n";
  if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) return -1;
  size_t n = 0;
  ssize_t r;
  while (n + 1 < cap && (r = read(fd, out + n, cap - 1 - n)) > 0) n += (size_t)r;
  out[n] = '\0';
  close(fd);
  return 0;
}

typedef struct {
  rt_server_t *srv;
  int port;
  int per_worker[2]; /* workerConnections from /stats */
  int64_t delivered; /* the publish ack's */
  int received;      /* subscribers that got the message */
} fanout_t;

static void *fanout_client(void *arg) {
  fanout_t *f = arg;
  int fds[CLIENTS];
  char buf[4096];
  for (int i = 0; i < CLIENTS; i++) {
    fds[i] = ws_connect(f->port);
    if (fds[i] < 0 || ws_send(fds[i], "{\"type\":\"subscribe\",\"channel\":\"x\",\"id\":1}") != 0 ||
        ws_recv(fds[i], buf, sizeof(buf)) != 1)
      goto out;
  }
  if (get_stats(f->port, buf, sizeof(buf)) == 0) {
    const char *p = strstr(buf, "\"workerConnections\":[");
    if (p != NULL) sscanf(p, "\"workerConnections\":[%d,%d]", &f->per_worker[0], &f->per_worker[1]);
  }
  int pub = ws_connect(f->port);
  if (pub < 0 || ws_send(pub, "{\"type\":\"publish\",\"channel\":\"x\",\"data\":7,\"id\":2}") != 0 ||
      ws_recv(pub, buf, sizeof(buf)) != 1)
    goto out;
  long long d = -1;
  if (sscanf(buf, "{\"type\":\"ack\",\"id\":2,\"delivered\":%lld}", &d) == 1) f->delivered = d;
  close(pub);
  for (int i = 0; i < CLIENTS; i++)
    if (ws_recv(fds[i], buf, sizeof(buf)) == 1 &&
        strcmp(buf, "{\"type\":\"message\",\"channel\":\"x\",\"data\":7}") == 0)
      f->received++;
out:
  rt_server_stop_async(f->srv);
  return NULL;
}

static void test_publish_reaches_every_worker(void **state) {
  fanout_t f = {0};
  f.srv = new_server(2, NULL, 0);
  assert_int_equal(rt_server_start(f.srv), 0);
  f.port = rt_server_port(f.srv);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, fanout_client, &f), 0);
  assert_int_equal(rt_server_run(f.srv), 0);
  pthread_join(t, NULL);
  assert_int_equal(f.per_worker[0] + f.per_worker[1], CLIENTS);
  assert_true(f.per_worker[0] > 0 && f.per_worker[1] > 0);
  assert_int_equal(f.delivered, CLIENTS);
  assert_int_equal(f.received, CLIENTS);
  rt_server_totals_t tot;
  rt_server_totals(f.srv, &tot);
  assert_int_equal(tot.messages_published, 1);
  assert_int_equal(tot.messages_delivered, CLIENTS);
  assert_int_equal(tot.connections_total, CLIENTS + 1);
  rt_server_free(f.srv);
}

/* ------------------------------------------------- API-key revocation */

#define KEY "worker-test-key-2b9d41c7e0"

typedef struct {
  rt_server_t *srv;
  int port;
  int closed_3500; /* clients that got close 3500 */
} revoke_t;

/* Runs on worker 0's thread (a server-side subscription): the C API call under test. */
static void on_revoke(const char *channel, const char *data, size_t len, const rt_msg_meta_t *meta,
                      void *ud) {
  revoke_t *r = ud;
  assert_int_equal(rt_server_revoke_api_key(r->srv, KEY), 0);
}

static int connect_with_key(int port) { return ws_connect_with(port, "X-API-Key: " KEY "\r\n"); }

static void *revoke_client(void *arg) {
  revoke_t *r = arg;
  int fds[CLIENTS];
  char buf[256];
  int n = 0;
  for (; n < CLIENTS; n++) {
    fds[n] = connect_with_key(r->port);
    if (fds[n] < 0 || ws_send(fds[n], "{\"type\":\"subscribe\",\"channel\":\"k\",\"id\":1}") != 0 ||
        ws_recv(fds[n], buf, sizeof(buf)) != 1)
      break;
  }
  if (n == CLIENTS && ws_send(fds[0], "{\"type\":\"publish\",\"channel\":\"revoke\",\"data\":1}") == 0) {
    for (int i = 0; i < CLIENTS; i++) {
      int op;
      while ((op = ws_recv(fds[i], buf, sizeof(buf))) == 1) continue; /* the ack, if any */
      if (op == 8 && ((unsigned char)buf[0] << 8 | (unsigned char)buf[1]) == 3500) r->closed_3500++;
    }
  }
  for (int i = 0; i < n; i++) close(fds[i]);
  rt_server_stop_async(r->srv);
  return NULL;
}

static void test_revoke_closes_clients_on_every_worker(void **state) {
  static const char *const perms[] = {"read:*", "write:*"};
  rt_api_key_config_t key = {KEY, "bot", perms, 2};
  revoke_t r = {0};
  r.srv = new_server(2, &key, 1);
  rt_subscription_t *sub;
  assert_int_equal(rt_server_subscribe(r.srv, "revoke", on_revoke, &r, &sub), 0);
  assert_int_equal(rt_server_start(r.srv), 0);
  r.port = rt_server_port(r.srv);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, revoke_client, &r), 0);
  assert_int_equal(rt_server_run(r.srv), 0);
  pthread_join(t, NULL);
  assert_int_equal(r.closed_3500, CLIENTS);
  rt_server_free(r.srv);
}

/* ------------------------------------------------------------ config */

static void test_worker_count_is_validated(void **state) {
  rt_config_t cfg;
  rt_config_init(&cfg);
  rt_server_t *srv = NULL;
  cfg.workers = 0;
  assert_int_equal(rt_server_new(&cfg, &srv), RT_EINVAL);
  cfg.workers = RT_WORKERS_MAX + 1;
  assert_int_equal(rt_server_new(&cfg, &srv), RT_EINVAL);
  cfg.workers = RT_WORKERS_MAX;
  assert_int_equal(rt_server_new(&cfg, &srv), 0);
  rt_server_free(srv); /* never started: no thread, no loop */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_worker_count_is_validated),
      cmocka_unit_test(test_inbox_keeps_each_posters_order),
      cmocka_unit_test(test_messages_for_vanished_conns_are_dropped),
      cmocka_unit_test(test_publish_reaches_every_worker),
      cmocka_unit_test(test_revoke_closes_clients_on_every_worker),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
