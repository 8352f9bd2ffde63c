/*
 * Server events (rt_server_on/off) and the presence C API. Every event type
 * is checked with its fields: server-side actions in memory, client actions
 * through a real WebSocket client on a thread.
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

#define LOG_MAX 64

typedef struct {
  int n;
  rt_event_t ev[LOG_MAX];      /* copies; pointers below are re-pointed at owned copies */
  char channel[LOG_MAX][64];
  char code[LOG_MAX][32];
  char extra[LOG_MAX][128];    /* address, reason, presence client, data... */
} recorder_t;

static void record(const rt_event_t *ev, void *ud) {
  recorder_t *r = ud;
  if (r->n >= LOG_MAX) return;
  int i = r->n++;
  r->ev[i] = *ev;
  snprintf(r->channel[i], sizeof(r->channel[i]), "%s", ev->channel ? ev->channel : "");
  snprintf(r->code[i], sizeof(r->code[i]), "%s", ev->code ? ev->code : "");
  if (ev->type == RT_EVENT_PRESENCE)
    snprintf(r->extra[i], sizeof(r->extra[i]), "%s %.*s", ev->presence_client, (int)ev->data_len,
             ev->data);
  else if (ev->address != NULL)
    snprintf(r->extra[i], sizeof(r->extra[i]), "%s", ev->address);
  else if (ev->reason != NULL)
    snprintf(r->extra[i], sizeof(r->extra[i]), "%s", ev->reason);
}

static rt_server_t *new_server(void) {
  rt_config_t cfg;
  rt_config_init(&cfg);
  cfg.host = "127.0.0.1";
  cfg.port = 0;
  rt_server_t *srv;
  assert_int_equal(rt_server_new(&cfg, &srv), 0);
  return srv;
}

static void listen_all(rt_server_t *srv, recorder_t *r) {
  for (int t = 0; t < RT_EVENT__COUNT; t++) {
    rt_listener_t *l;
    assert_int_equal(rt_server_on(srv, (rt_event_type_t)t, record, r, &l), 0);
  }
}

static void test_published_event(void **state) {
  rt_server_t *srv = new_server();
  recorder_t r = {0};
  listen_all(srv, &r);
  rt_listener_t *l;
  assert_int_equal(rt_server_on(srv, RT_EVENT__COUNT, record, &r, &l), RT_EINVAL);
  assert_int_equal(rt_server_on(srv, RT_EVENT_PUBLISHED, NULL, &r, &l), RT_EINVAL);
  assert_int_equal(rt_server_publish(srv, "news", "[1,2]", 5), 0);
  assert_int_equal(r.n, 1);
  assert_int_equal(r.ev[0].type, RT_EVENT_PUBLISHED);
  assert_string_equal(r.channel[0], "news");
  assert_int_equal(r.ev[0].size, 5);
  assert_int_equal(r.ev[0].delivered, 0);
  assert_int_equal(r.ev[0].client_id, 0);
  rt_server_free(srv);
}

static void test_presence_api_and_events(void **state) {
  rt_server_t *srv = new_server();
  recorder_t r = {0};
  listen_all(srv, &r);
  assert_int_equal(rt_server_update_presence(srv, "alice", "lobby", "{\"s\":\"online\"}", 14), 0);
  assert_int_equal(rt_server_update_presence(srv, "bob", "lobby", " 1 ", 3), 0);
  assert_int_equal(rt_server_update_presence(srv, "alice", "lobby", "{\"s\":\"away\"}", 12), 0);
  assert_int_equal(rt_server_update_presence(srv, "x", "../bad", "1", 1), RT_ECHANNEL);
  assert_int_equal(rt_server_update_presence(srv, "x", "lobby", "{", 1), RT_EJSON);
  assert_int_equal(r.n, 3);
  assert_int_equal(r.ev[0].presence_change, 1);
  assert_string_equal(r.extra[0], "alice {\"s\":\"online\"}");
  assert_int_equal(r.ev[1].presence_change, 1);
  assert_string_equal(r.extra[1], "bob 1");
  assert_int_equal(r.ev[2].presence_change, 2);
  assert_string_equal(r.channel[2], "lobby");

  rt_presence_info_t *pi;
  size_t n;
  assert_int_equal(rt_server_get_presence(srv, "lobby", &pi, &n), 0);
  assert_int_equal(n, 2);
  assert_string_equal(pi[0].client_id, "alice"); /* join order */
  assert_string_equal(pi[0].data, "{\"s\":\"away\"}");
  assert_null(pi[0].user_id);
  assert_true(pi[0].joined_at_ms > 0 && pi[0].updated_at_ms >= pi[0].joined_at_ms);
  assert_string_equal(pi[1].client_id, "bob");
  rt_presence_info_free(pi, n);

  rt_channel_stats_t *st;
  assert_int_equal(rt_server_remove_presence(srv, "alice", "lobby"), 0);
  assert_int_equal(rt_server_remove_presence(srv, "alice", "lobby"), RT_ENOENT);
  assert_int_equal(r.n, 4);
  assert_int_equal(r.ev[3].presence_change, 3);
  assert_int_equal(rt_server_get_presence(srv, "empty", &pi, &n), 0);
  assert_int_equal(n, 0);
  assert_int_equal(rt_server_channel_stats(srv, "lobby", &st, &n), RT_ENOENT); /* no subscribers */
  rt_server_free(srv);
}

/* A listener that removes itself and a later one while an event is dispatched. */
typedef struct {
  rt_server_t *srv;
  rt_listener_t *self;
  rt_listener_t *other;
  int calls;
} remover_t;

static void remove_both(const rt_event_t *ev, void *ud) {
  remover_t *rm = ud;
  rm->calls++;
  rt_server_off(rm->srv, rm->self);
  rt_server_off(rm->srv, rm->other);
}

static void count(const rt_event_t *ev, void *ud) { (*(int *)ud)++; }

static void test_listeners_order_and_removal(void **state) {
  rt_server_t *srv = new_server();
  recorder_t first = {0};
  int later = 0;
  remover_t rm = {srv, NULL, NULL, 0};
  rt_listener_t *l1;
  assert_int_equal(rt_server_on(srv, RT_EVENT_PUBLISHED, record, &first, &l1), 0);
  assert_int_equal(rt_server_on(srv, RT_EVENT_PUBLISHED, remove_both, &rm, &rm.self), 0);
  assert_int_equal(rt_server_on(srv, RT_EVENT_PUBLISHED, count, &later, &rm.other), 0);
  rt_server_publish(srv, "c", "1", 1);
  rt_server_publish(srv, "c", "2", 1);
  assert_int_equal(first.n, 2);
  assert_int_equal(rm.calls, 1);
  assert_int_equal(later, 0); /* removed before its turn */
  rt_server_off(srv, l1);
  rt_server_publish(srv, "c", "3", 1);
  assert_int_equal(first.n, 2);
  rt_server_off(srv, NULL);
  rt_server_free(srv);
}

/* ----------------------------------------------------- a real client */

typedef struct {
  rt_server_t *srv;
  int port;
  int ok;
} client_t;

static void *client_thread(void *arg) {
  client_t *c = arg;
  char buf[512];
  int fd = ws_connect(c->port);
  if (fd < 0) return NULL;
  int ok = ws_send(fd, "{\"type\":\"subscribe\",\"channel\":\"a\",\"id\":1}") == 0 &&
           ws_recv(fd, buf, sizeof(buf)) == 1 &&
           ws_send(fd, "{\"type\":\"publish\",\"channel\":\"../x\",\"data\":1,\"id\":2}") == 0 &&
           ws_recv(fd, buf, sizeof(buf)) == 1 &&
           ws_send(fd, "{\"type\":\"publish\",\"channel\":\"a\",\"data\":[7],\"id\":3}") == 0 &&
           ws_recv(fd, buf, sizeof(buf)) == 1 && ws_recv(fd, buf, sizeof(buf)) == 1 &&
           ws_send(fd, "{\"type\":\"presence\",\"channel\":\"a\",\"data\":{\"n\":1},\"id\":4}") == 0 &&
           ws_recv(fd, buf, sizeof(buf)) == 1 && ws_recv(fd, buf, sizeof(buf)) == 1 &&
           ws_send(fd, "{\"type\":\"unsubscribe\",\"channel\":\"a\",\"id\":5}") == 0 &&
           ws_recv(fd, buf, sizeof(buf)) == 1;
  unsigned char close_frame[16];
  size_t n = ws_frame(close_frame, 8, "\x03\xe8", 2); /* close 1000 */
  ok = ok && write(fd, close_frame, n) == (ssize_t)n && ws_recv(fd, buf, sizeof(buf)) == 8;
  c->ok = ok;
  close(fd);
  return NULL;
}

static void stop_on_disconnect(const rt_event_t *ev, void *ud) { rt_server_stop(ud); }

static void test_client_events(void **state) {
  rt_server_t *srv = new_server();
  recorder_t r = {0};
  listen_all(srv, &r);
  rt_listener_t *l;
  assert_int_equal(rt_server_on(srv, RT_EVENT_DISCONNECTED, stop_on_disconnect, srv, &l), 0);
  assert_int_equal(rt_server_start(srv), 0);
  client_t c = {srv, rt_server_port(srv), 0};
  pthread_t t;
  pthread_create(&t, NULL, client_thread, &c);
  assert_int_equal(rt_server_run(srv), 0);
  pthread_join(t, NULL);
  assert_true(c.ok);
  const rt_event_type_t want[] = {RT_EVENT_CONNECTED, RT_EVENT_SUBSCRIBED,   RT_EVENT_ERROR,
                                  RT_EVENT_PUBLISHED, RT_EVENT_PRESENCE,     RT_EVENT_UNSUBSCRIBED,
                                  RT_EVENT_PRESENCE,  RT_EVENT_DISCONNECTED};
  assert_int_equal(r.n, 8);
  uint64_t id = r.ev[0].client_id;
  assert_true(id > 0);
  for (int i = 0; i < 8; i++) {
    assert_int_equal(r.ev[i].type, want[i]);
    assert_int_equal(r.ev[i].client_id, r.ev[i].type == RT_EVENT_PRESENCE ? 0 : id);
  }
  assert_true(strncmp(r.extra[0], "127.0.0.1:", 10) == 0);
  assert_string_equal(r.channel[1], "a");
  assert_string_equal(r.code[2], "invalid_channel");
  assert_string_equal(r.extra[2], "Invalid channel name format");
  assert_string_equal(r.channel[3], "a");
  assert_int_equal(r.ev[3].size, 3);
  assert_int_equal(r.ev[3].delivered, 1);
  assert_int_equal(r.ev[4].presence_change, 1);
  char who[64];
  snprintf(who, sizeof(who), "%llu {\"n\":1}", (unsigned long long)id);
  assert_string_equal(r.extra[4], who);
  assert_string_equal(r.channel[5], "a");
  assert_int_equal(r.ev[6].presence_change, 3); /* unsubscribing left presence */
  assert_int_equal(r.ev[7].close_code, 1000);
  rt_server_free(srv);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_published_event),
      cmocka_unit_test(test_presence_api_and_events),
      cmocka_unit_test(test_listeners_order_and_removal),
      cmocka_unit_test(test_client_events),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
