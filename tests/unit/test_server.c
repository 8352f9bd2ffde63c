/*
 * The public library API (include/realtime/realtime.h): server-side
 * subscribe/publish without any socket (the seed's in-memory use), channel
 * statistics, the cross-thread publish, and one real WebSocket client on a
 * thread to check client tracking from inside a callback on the loop thread.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "realtime/realtime.h"
#include "ws_client.h"

typedef struct {
  int calls;
  char channel[64];
  char data[256];
  rt_msg_meta_t meta;
} recorder_t;

static void record(const char *channel, const char *data, size_t len, const rt_msg_meta_t *meta,
                   void *ud) {
  recorder_t *r = ud;
  r->calls++;
  snprintf(r->channel, sizeof(r->channel), "%s", channel);
  snprintf(r->data, sizeof(r->data), "%.*s", (int)len, data);
  r->meta = *meta;
}

static int use_io_uring = 1; /* cfg.io_uring of the servers new_server makes */

static rt_server_t *new_server(void) {
  rt_config_t cfg;
  rt_config_init(&cfg);
  cfg.host = "127.0.0.1";
  cfg.port = 0;
  cfg.io_uring = use_io_uring;
  rt_server_t *srv = NULL;
  assert_int_equal(rt_server_new(&cfg, &srv), 0);
  assert_non_null(srv);
  return srv;
}

static void test_defaults_follow_the_seed(void **state) {
  rt_config_t cfg;
  rt_config_init(&cfg);
  assert_int_equal(cfg.port, 8080);
  assert_string_equal(cfg.host, "0.0.0.0");
  assert_string_equal(cfg.path, "/ws");
  assert_int_equal(cfg.ping_interval_ms, 30000);
  assert_int_equal(cfg.presence_timeout_ms, 60000);
  assert_int_equal(cfg.require_auth, 0);
  assert_null(cfg.jwt_secret);
  assert_int_equal(cfg.max_message_size, 1024 * 1024);
  assert_int_equal(cfg.max_queued_bytes, 4 * 1024 * 1024);
  assert_int_equal(cfg.handshake_timeout_ms, 10000);
}

static void test_new_rejects_bad_config(void **state) {
  rt_config_t cfg;
  rt_server_t *srv = (rt_server_t *)1;
  rt_config_init(&cfg);
  cfg.port = 70000;
  assert_int_equal(rt_server_new(&cfg, &srv), RT_EINVAL);
  assert_null(srv);
  rt_config_init(&cfg);
  cfg.path = "ws";
  assert_int_equal(rt_server_new(&cfg, &srv), RT_EINVAL);
  rt_server_free(NULL);
}

static void test_publish_reaches_server_side_subscribers(void **state) {
  rt_server_t *srv = new_server();
  recorder_t a = {0}, b = {0};
  rt_subscription_t *sa, *sb;
  assert_int_equal(rt_server_subscribe(srv, "chat", record, &a, &sa), 0);
  assert_int_equal(rt_server_subscribe(srv, "chat", record, &b, &sb), 0);
  assert_int_equal(rt_server_publish(srv, "chat", "{\"n\":18446744073709551616}", 26), 2);
  assert_int_equal(a.calls, 1);
  assert_int_equal(b.calls, 1);
  assert_string_equal(a.channel, "chat");
  assert_string_equal(a.data, "{\"n\":18446744073709551616}");
  assert_int_equal(a.meta.publisher_id, 0);
  assert_true(a.meta.timestamp_ms > 1700000000000LL);
  assert_int_equal(rt_server_publish(srv, "other", "1", 1), 0);
  rt_server_unsubscribe(srv, sa);
  assert_int_equal(rt_server_publish(srv, "chat", " [1, 2] ", 8), 1);
  assert_string_equal(b.data, "[1, 2]"); /* surrounding whitespace trimmed, inside kept */
  rt_server_unsubscribe(srv, sb);
  assert_int_equal(rt_server_publish(srv, "chat", "1", 1), 0);
  rt_server_free(srv);
}

static void test_publish_errors(void **state) {
  rt_server_t *srv = new_server();
  assert_int_equal(rt_server_publish(srv, "../admin/secrets", "1", 1), RT_ECHANNEL);
  assert_int_equal(rt_server_publish(srv, "", "1", 1), RT_ECHANNEL);
  assert_int_equal(rt_server_publish(srv, "ok", "{bad", 4), RT_EJSON);
  assert_int_equal(rt_server_publish(srv, "ok", "1 2", 3), RT_EJSON);
  size_t big = 512 * 1024 + 1;
  char *p = malloc(big);
  memset(p, ' ', big);
  p[0] = '1';
  assert_int_equal(rt_server_publish(srv, "ok", p, big), RT_ETOOLARGE);
  free(p);
  recorder_t r = {0};
  rt_subscription_t *s;
  assert_int_equal(rt_server_subscribe(srv, "a/../b", record, &r, &s), RT_ECHANNEL);
  assert_null(s);
  assert_int_equal(rt_server_subscribe(srv, "fine", NULL, &r, &s), RT_EINVAL);
  rt_server_free(srv);
}

/* A callback that publishes elsewhere and then unsubscribes itself. */
typedef struct {
  rt_server_t *srv;
  rt_subscription_t *self;
  int calls;
} relay_t;

static void relay(const char *channel, const char *data, size_t len, const rt_msg_meta_t *meta,
                  void *ud) {
  relay_t *r = ud;
  r->calls++;
  assert_int_equal(rt_server_publish(r->srv, "out", data, len), 1);
  rt_server_unsubscribe(r->srv, r->self);
  r->self = NULL;
}

static void test_callbacks_may_publish_and_unsubscribe(void **state) {
  rt_server_t *srv = new_server();
  relay_t r = {srv, NULL, 0};
  recorder_t out = {0};
  rt_subscription_t *so;
  assert_int_equal(rt_server_subscribe(srv, "in", relay, &r, &r.self), 0);
  assert_int_equal(rt_server_subscribe(srv, "out", record, &out, &so), 0);
  assert_int_equal(rt_server_publish(srv, "in", "\"x\"", 3), 1);
  assert_int_equal(rt_server_publish(srv, "in", "\"y\"", 3), 0);
  assert_int_equal(r.calls, 1);
  assert_int_equal(out.calls, 1);
  assert_string_equal(out.data, "\"x\"");
  rt_server_free(srv); /* frees `so` too */
}

static void test_channel_stats(void **state) {
  rt_server_t *srv = new_server();
  recorder_t r = {0};
  rt_subscription_t *s1, *s2;
  rt_channel_stats_t *st;
  size_t n;
  assert_int_equal(rt_server_channel_stats(srv, "none", &st, &n), RT_ENOENT);
  assert_int_equal(rt_server_subscribe(srv, "a", record, &r, &s1), 0);
  assert_int_equal(rt_server_subscribe(srv, "b", record, &r, &s2), 0);
  assert_int_equal(rt_server_publish(srv, "a", "[1,2,3]", 7), 1);
  assert_int_equal(rt_server_channel_stats(srv, "a", &st, &n), 0);
  assert_int_equal(n, 1);
  assert_string_equal(st[0].name, "a");
  assert_int_equal(st[0].subscribers, 1);
  assert_int_equal(st[0].messages_published, 1);
  assert_int_equal(st[0].messages_delivered, 1);
  assert_int_equal(st[0].bytes_published, 7);
  assert_true(st[0].created_at_ms > 0 && st[0].last_activity_ms >= st[0].created_at_ms);
  rt_channel_stats_free(st, n);
  assert_int_equal(rt_server_channel_stats(srv, NULL, &st, &n), 0);
  assert_int_equal(n, 2);
  rt_channel_stats_free(st, n);
  rt_server_totals_t t;
  rt_server_totals(srv, &t);
  assert_int_equal(t.messages_published, 1);
  assert_int_equal(t.messages_delivered, 1);
  assert_int_equal(rt_server_active_connections(srv), 0);
  rt_client_info_t *ci;
  assert_int_equal(rt_server_client_info(srv, 0, &ci, &n), 0);
  assert_int_equal(n, 0);
  rt_client_info_free(ci, n);
  assert_int_equal(rt_server_client_info(srv, 42, &ci, &n), RT_ENOENT);
  rt_server_free(srv);
}

/* ---------------------------------------------- threads and a real socket */

#define ASYNC_N 2000

typedef struct {
  rt_server_t *srv;
  int received;
  int in_order;
  int last;
} counter_t;

static void count_msg(const char *channel, const char *data, size_t len, const rt_msg_meta_t *meta,
                      void *ud) {
  counter_t *c = ud;
  char num[16];
  snprintf(num, sizeof(num), "%.*s", (int)len, data); /* data is not NUL-terminated */
  int v = atoi(num);
  if (v != c->last + 1) c->in_order = 0;
  c->last = v;
  if (++c->received == ASYNC_N) rt_server_stop(c->srv);
}

static void *async_publisher(void *arg) {
  rt_server_t *srv = arg;
  char buf[32];
  for (int i = 1; i <= ASYNC_N; i++) {
    int n = snprintf(buf, sizeof(buf), "%d", i);
    while (rt_server_publish_async(srv, "jobs", buf, (size_t)n) == RT_ENOMEM) usleep(100);
  }
  assert_int_equal(rt_server_publish_async(srv, "../x", "1", 1), RT_ECHANNEL);
  return NULL;
}

static void test_publish_async_from_another_thread(void **state) {
  counter_t c = {0};
  c.in_order = 1;
  c.srv = new_server();
  rt_subscription_t *s;
  assert_int_equal(rt_server_subscribe(c.srv, "jobs", count_msg, &c, &s), 0);
  assert_int_equal(rt_server_publish_async(c.srv, "jobs", "1", 1), RT_ESTATE); /* not running */
  assert_int_equal(rt_server_start(c.srv), 0);
  assert_true(rt_server_port(c.srv) > 0);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, async_publisher, c.srv), 0);
  assert_int_equal(rt_server_run(c.srv), 0);
  pthread_join(t, NULL);
  assert_int_equal(c.received, ASYNC_N);
  assert_true(c.in_order);
  rt_server_free(c.srv);
}

static void *stopper(void *arg) {
  usleep(50 * 1000);
  rt_server_stop_async(arg);
  return NULL;
}

static void test_stop_async_ends_run(void **state) {
  rt_server_t *srv = new_server();
  assert_int_equal(rt_server_start(srv), 0);
  assert_int_equal(rt_server_start(srv), RT_ESTATE);
  pthread_t t;
  pthread_create(&t, NULL, stopper, srv);
  assert_int_equal(rt_server_run(srv), 0);
  pthread_join(t, NULL);
  rt_server_free(srv);
}

static void test_start_reports_address_errors(void **state) {
  rt_config_t cfg;
  rt_config_init(&cfg);
  cfg.host = "not-an-address";
  rt_server_t *srv;
  assert_int_equal(rt_server_new(&cfg, &srv), 0);
  assert_int_equal(rt_server_start(srv), RT_EADDR);
  rt_server_free(srv);
}

typedef struct {
  rt_server_t *srv;
  int port;
  char replies[4][128];
  int close_code;
} client_run_t;

static void *ws_client(void *arg) {
  client_run_t *cr = arg;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cr->port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  const char *req =
      "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
  char resp[512];
  size_t got = 0;
  while (got < 4 || memcmp(resp + got - 4, "\r\n\r\n", 4) != 0) {
    assert_int_equal(read(fd, resp + got, 1), 1);
    got++;
  }
  resp[got] = '\0';
  assert_non_null(strstr(resp, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
  ws_send(fd, "{\"type\":\"subscribe\",\"channel\":\"room\",\"id\":1}");
  assert_int_equal(ws_recv(fd, cr->replies[0], 128), 1);
  ws_send(fd, "{\"type\":\"publish\",\"channel\":\"ctl\",\"data\":\"check\",\"id\":2}");
  assert_int_equal(ws_recv(fd, cr->replies[1], 128), 1);
  rt_server_stop_async(cr->srv); /* the client then gets close 1001 */
  char close_payload[128];
  assert_int_equal(ws_recv(fd, close_payload, sizeof(close_payload)), 8);
  cr->close_code = ((unsigned char)close_payload[0] << 8) | (unsigned char)close_payload[1];
  close(fd);
  return NULL;
}

typedef struct {
  rt_server_t *srv;
  int checked;
} inspector_t;

/* Runs on the loop thread when the client publishes to "ctl". */
static void inspect(const char *channel, const char *data, size_t len, const rt_msg_meta_t *meta,
                    void *ud) {
  inspector_t *in = ud;
  rt_client_info_t *ci;
  size_t n;
  assert_int_equal(rt_server_active_connections(in->srv), 1);
  assert_int_equal(rt_server_client_info(in->srv, 0, &ci, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(ci[0].id, meta->publisher_id);
  assert_int_equal(ci[0].subscription_count, 1);
  assert_string_equal(ci[0].subscriptions[0], "room");
  assert_int_equal(ci[0].messages_in, 2);
  assert_true(strncmp(ci[0].remote_addr, "127.0.0.1:", 10) == 0);
  assert_true(ci[0].connected_at_ms > 0);
  rt_client_info_free(ci, n);
  in->checked = 1;
}

static void test_client_tracking_over_a_real_socket(void **state) {
  inspector_t in = {new_server(), 0};
  rt_subscription_t *s;
  assert_int_equal(rt_server_subscribe(in.srv, "ctl", inspect, &in, &s), 0);
  assert_int_equal(rt_server_start(in.srv), 0);
  client_run_t cr = {.srv = in.srv, .port = rt_server_port(in.srv)};
  pthread_t t;
  pthread_create(&t, NULL, ws_client, &cr);
  assert_int_equal(rt_server_run(in.srv), 0);
  pthread_join(t, NULL);
  assert_true(in.checked);
  assert_string_equal(cr.replies[0], "{\"type\":\"ack\",\"id\":1}");
  assert_string_equal(cr.replies[1], "{\"type\":\"ack\",\"id\":2,\"delivered\":1}");
  assert_int_equal(cr.close_code, 1001);
  rt_server_free(in.srv);
}

/*
 * A client's rate limiter is allocated at its first command, and only when
 * the policy limits something. The client's publish to "ctl" is its first
 * command; the callback then charges it through the API: unlimited on a
 * server without limits, the configured subscribe limit (1) otherwise.
 */
typedef struct {
  rt_server_t *srv;
  int limited;  /* the server has rateLimit.subscribe = 1 */
  int checked;
} limit_check_t;

static void check_limits(const char *channel, const char *data, size_t len,
                         const rt_msg_meta_t *meta, void *ud) {
  limit_check_t *lc = ud;
  uint64_t id = meta->publisher_id;
  assert_int_equal(rt_server_enforce_rate_limit(lc->srv, id, "subscribe"), 0);
  for (int i = 0; i < 3; i++)
    assert_int_equal(rt_server_enforce_rate_limit(lc->srv, id, "subscribe"),
                     lc->limited ? RT_ERATE : 0);
  assert_int_equal(rt_server_enforce_rate_limit(lc->srv, id, "bogus"), RT_EINVAL);
  lc->checked = 1;
  rt_server_stop(lc->srv);
}

typedef struct {
  int port;
  char reply[128];
} publish_run_t;

static void *publish_client(void *arg) {
  publish_run_t *pr = arg;
  int fd = ws_connect(pr->port);
  if (fd < 0) return NULL;
  ws_send(fd, "{\"type\":\"publish\",\"channel\":\"ctl\",\"data\":1,\"id\":1}");
  ws_recv(fd, pr->reply, sizeof(pr->reply));
  char payload[128];
  ws_recv(fd, payload, sizeof(payload)); /* the close frame */
  close(fd);
  return NULL;
}

static void run_limit_check(int limited) {
  rt_config_t cfg;
  rt_config_init(&cfg);
  cfg.host = "127.0.0.1";
  cfg.port = 0;
  if (limited) cfg.rate_limit.subscribe = 1;
  limit_check_t lc = {.limited = limited};
  assert_int_equal(rt_server_new(&cfg, &lc.srv), 0);
  rt_subscription_t *s;
  assert_int_equal(rt_server_subscribe(lc.srv, "ctl", check_limits, &lc, &s), 0);
  assert_int_equal(rt_server_start(lc.srv), 0);
  publish_run_t pr = {.port = rt_server_port(lc.srv)};
  pthread_t t;
  pthread_create(&t, NULL, publish_client, &pr);
  assert_int_equal(rt_server_run(lc.srv), 0);
  pthread_join(t, NULL);
  assert_true(lc.checked);
  rt_server_free(lc.srv);
}

static void test_rate_limiter_is_lazy(void **state) {
  run_limit_check(0);
  run_limit_check(1);
}

/*
 * 1 subscribe + 50 publishes sent in one TCP write make 101 reply frames
 * (ack, then message + ack per publish). Flush-before-sleep must send them
 * in a handful of writev calls, not one per frame.
 */
#define BATCH 50

typedef struct {
  rt_server_t *srv;
  int port;
  int frames;
} batch_run_t;

static void *batch_client(void *arg) {
  batch_run_t *br = arg;
  int fd = ws_connect(br->port);
  if (fd < 0) return NULL;
  unsigned char buf[BATCH * 128 + 128];
  const char *sub = "{\"type\":\"subscribe\",\"channel\":\"b\",\"id\":0}";
  size_t len = ws_frame(buf, 1, sub, strlen(sub));
  for (int i = 1; i <= BATCH; i++) {
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "{\"type\":\"publish\",\"channel\":\"b\",\"data\":%d,\"id\":%d}", i, i);
    len += ws_frame(buf + len, 1, cmd, strlen(cmd));
  }
  if (write(fd, buf, len) == (ssize_t)len) {
    char payload[128];
    while (br->frames < 1 + 2 * BATCH && ws_recv(fd, payload, sizeof(payload)) == 1) br->frames++;
  }
  rt_server_stop_async(br->srv);
  char payload[128];
  ws_recv(fd, payload, sizeof(payload)); /* the close frame */
  close(fd);
  return NULL;
}

static void test_replies_are_batched_into_few_writes(void **state) {
  batch_run_t br = {.srv = new_server()};
  assert_int_equal(rt_server_start(br.srv), 0);
  br.port = rt_server_port(br.srv);
  pthread_t t;
  pthread_create(&t, NULL, batch_client, &br);
  assert_int_equal(rt_server_run(br.srv), 0);
  pthread_join(t, NULL);
  assert_int_equal(br.frames, 1 + 2 * BATCH);
  rt_server_totals_t tot;
  rt_server_totals(br.srv, &tot);
  /* 101 replies + the 101 response + the close frame */
  assert_true(tot.frames_written >= 1 + 2 * BATCH + 2);
  /* handshake response, the batch (maybe split once), the close frame */
  if (tot.socket_writes > 6) fail_msg("%llu writes for %llu frames", (unsigned long long)tot.socket_writes,
                                      (unsigned long long)tot.frames_written);
  rt_server_free(br.srv);
}

/* The same through the writev path (io_uring off, or unavailable). */
static void test_replies_are_batched_without_io_uring(void **state) {
  use_io_uring = 0;
  test_replies_are_batched_into_few_writes(state);
  use_io_uring = 1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults_follow_the_seed),
      cmocka_unit_test(test_new_rejects_bad_config),
      cmocka_unit_test(test_publish_reaches_server_side_subscribers),
      cmocka_unit_test(test_publish_errors),
      cmocka_unit_test(test_callbacks_may_publish_and_unsubscribe),
      cmocka_unit_test(test_channel_stats),
      cmocka_unit_test(test_publish_async_from_another_thread),
      cmocka_unit_test(test_stop_async_ends_run),
      cmocka_unit_test(test_start_reports_address_errors),
      cmocka_unit_test(test_client_tracking_over_a_real_socket),
      cmocka_unit_test(test_replies_are_batched_into_few_writes),
      cmocka_unit_test(test_rate_limiter_is_lazy),
      cmocka_unit_test(test_replies_are_batched_without_io_uring),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
