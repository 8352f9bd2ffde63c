/*
 * The live-query calls of the C API (the seed's subscribeToQuery,
 * unsubscribeFromQuery, notifyQueryUpdate), with a real client on a thread
 * and an SQLite file in a temporary directory.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "realtime/realtime.h"
#include "ws_client.h"

#define SQL "SELECT id, name FROM t ORDER BY id"

typedef struct {
  rt_server_t *srv;
  char sub[24];
  int subscribed;   /* rt_server_subscribe_query's result */
  int64_t notified; /* rt_server_notify_query_update's result */
  int unsub[3];     /* the unsubscribe results: by id, again, unknown id */
} state_t;

typedef struct {
  int port;
  char ack[512];
  char pushed[512];
  int ok;
} client_t;

static void on_connected(const rt_event_t *ev, void *ud) {
  state_t *st = ud;
  st->subscribed = rt_server_subscribe_query(st->srv, ev->client_id, SQL, NULL, st->sub);
}

static void on_go(const char *channel, const char *data, size_t len, const rt_msg_meta_t *meta,
                  void *ud) {
  state_t *st = ud;
  const char *rows = "[{\"id\":9,\"name\":\"z\"}]";
  st->notified = rt_server_notify_query_update(st->srv, SQL, rows, strlen(rows));
  st->unsub[0] = rt_server_unsubscribe_query(st->srv, st->sub);
  st->unsub[1] = rt_server_unsubscribe_query(st->srv, st->sub);
  st->unsub[2] = rt_server_unsubscribe_query(st->srv, "q999");
}

static void *client_thread(void *arg) {
  client_t *c = arg;
  char buf[512];
  int fd = ws_connect(c->port);
  c->ok = fd >= 0 && ws_recv(fd, c->ack, sizeof(c->ack)) == 1 &&
          ws_send(fd, "{\"type\":\"publish\",\"channel\":\"go\",\"data\":1,\"id\":1}") == 0 &&
          ws_recv(fd, c->pushed, sizeof(c->pushed)) == 1 && ws_recv(fd, buf, sizeof(buf)) == 1;
  if (fd >= 0) close(fd);
  return NULL;
}

static void stop_on_disconnect(const rt_event_t *ev, void *ud) { rt_server_stop(ud); }

static void test_query_calls_of_the_c_api(void **state) {
  char dir[] = "/tmp/rt_live_api_XXXXXX", path[64];
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof(path), "%s/t.db", dir);
  rt_config_t cfg;
  rt_config_init(&cfg);
  cfg.host = "127.0.0.1";
  cfg.port = 0;
  cfg.database_path = path;
  cfg.database_setup = "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO t VALUES (1, 'a');";
  state_t st = {0};
  assert_int_equal(rt_server_new(&cfg, &st.srv), 0);
  rt_listener_t *l;
  rt_subscription_t *s;
  assert_int_equal(rt_server_on(st.srv, RT_EVENT_CONNECTED, on_connected, &st, &l), 0);
  assert_int_equal(rt_server_on(st.srv, RT_EVENT_DISCONNECTED, stop_on_disconnect, st.srv, &l), 0);
  assert_int_equal(rt_server_subscribe(st.srv, "go", on_go, &st, &s), 0);
  assert_int_equal(rt_server_subscribe_query(st.srv, 42, SQL, NULL, st.sub), RT_ENOENT);
  assert_int_equal(rt_server_start(st.srv), 0);
  client_t c = {.port = rt_server_port(st.srv)};
  pthread_t t;
  pthread_create(&t, NULL, client_thread, &c);
  assert_int_equal(rt_server_run(st.srv), 0);
  pthread_join(t, NULL);
  assert_true(c.ok);
  assert_int_equal(st.subscribed, 0);
  char want[256];
  snprintf(want, sizeof(want),
           "{\"type\":\"ack\",\"subscription\":\"%s\",\"columns\":[\"id\",\"name\"],\"key\":\"id\","
           "\"rows\":[{\"id\":1,\"name\":\"a\"}]}", st.sub);
  assert_string_equal(c.ack, want);
  snprintf(want, sizeof(want),
           "{\"type\":\"query_result\",\"subscription\":\"%s\",\"rows\":[{\"id\":9,\"name\":\"z\"}]}",
           st.sub);
  assert_string_equal(c.pushed, want);
  assert_int_equal(st.notified, 1);
  assert_int_equal(st.unsub[0], 0);
  assert_int_equal(st.unsub[1], RT_EQUNKNOWN);
  assert_int_equal(st.unsub[2], RT_EQUNKNOWN);
  rt_server_free(st.srv);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

/* Without a database the query calls say so instead of failing silently. */
static void test_no_live_queries_configured(void **state) {
  rt_config_t cfg;
  rt_config_init(&cfg);
  rt_server_t *srv;
  assert_int_equal(rt_server_new(&cfg, &srv), 0);
  assert_int_equal(rt_server_unsubscribe_query(srv, "q1"), RT_EQUNKNOWN);
  assert_int_equal(rt_server_notify_query_update(srv, SQL, "[]", 2), 0);
  assert_int_equal(rt_server_notify_query_update(srv, NULL, "[]", 2), RT_EINVAL);
  rt_server_free(srv);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_query_calls_of_the_c_api),
      cmocka_unit_test(test_no_live_queries_configured),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
