/*
 * Hub tests: fake peers that record the message bytes they are given (a
 * slice of a batch frame, keeping a reference, as a connection's send queue
 * would) and a fake clock. Every test
 * releases what it took, so ASan's leak check covers the hub's bookkeeping.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "buf.h"
#include "hub.h"
#include "proto.h"

#define KEPT_MAX 8

typedef struct fake_peer_s fake_peer_t;
typedef void (*fake_action_fn)(fake_peer_t *self, const rt_hub_msg_t *msg);

/* A subscriber that records deliveries and can run one re-entrant action. */
struct fake_peer_s {
  rt_peer_t peer;                 /* first member, so a peer pointer is a fake_peer_t pointer */
  rt_slice_t frames[KEPT_MAX];    /* the first messages delivered (a frame reference each) */
  char data[KEPT_MAX][32];        /* msg->data of those deliveries, NUL-terminated */
  size_t received;                /* deliver() calls */
  int refuse;                     /* deliver()'s return value */
  char channel[300];              /* msg->channel of the last delivery */
  size_t channel_len;             /* msg->channel_len of the last delivery */
  rt_msg_meta_t meta;             /* msg->meta of the last delivery */
  fake_action_fn action;          /* run inside deliver(), after recording */
  fake_peer_t **targets;          /* peers the action works on */
  size_t ntargets;                /* length of targets */
  const char *other;              /* a channel the action works on */
  int budget;                     /* how many more times a recursive action may publish */
  int64_t result;                 /* what the action's last hub call returned */
  size_t seen_channels;           /* rt_hub_channel_count() observed by the action */
  size_t pushed;                  /* push() calls */
  rt_frame_t *last_push;          /* the last frame pushed (not referenced) */
};

static const rt_peer_ops_t fake_ops;
static rt_hub_t *hub;
static int64_t fake_now;

static int64_t fake_clock(void *data) { return *(int64_t *)data; }

static int fake_deliver(rt_peer_t *peer, const rt_slice_t *wire, const rt_hub_msg_t *msg) {
  fake_peer_t *fp = (fake_peer_t *)peer;
  if (fp->received < KEPT_MAX) {
    fp->frames[fp->received] = *wire;
    rt_frame_ref(wire->frame);
    size_t n = msg->data_len < 31 ? msg->data_len : 31;
    memcpy(fp->data[fp->received], msg->data, n);
    fp->data[fp->received][n] = '\0';
  }
  fp->received++;
  assert_true(msg->channel_len < sizeof(fp->channel));
  memcpy(fp->channel, msg->channel, msg->channel_len + 1);
  fp->channel_len = msg->channel_len;
  fp->meta = msg->meta;
  if (fp->action != NULL) fp->action(fp, msg);
  return fp->refuse;
}

static int fake_push(rt_peer_t *peer, rt_frame_t *frame) {
  fake_peer_t *fp = (fake_peer_t *)peer;
  fp->pushed++;
  fp->last_push = frame;
  return fp->refuse;
}

static const rt_peer_ops_t fake_ops = {fake_deliver, fake_push};
/* A peer that takes published messages only (like a server-side subscription). */
static const rt_peer_ops_t deliver_only_ops = {fake_deliver, NULL};

static void fake_init(fake_peer_t *fp, uint64_t id) {
  memset(fp, 0, sizeof(*fp));
  rt_peer_init(&fp->peer, &fake_ops, id);
}

/* Drops the frame references the peer kept. */
static void fake_release(fake_peer_t *fp) {
  size_t n = fp->received < KEPT_MAX ? fp->received : KEPT_MAX;
  for (size_t i = 0; i < n; i++) rt_frame_unref(fp->frames[i].frame);
  fp->received = 0;
}

static void fakes_init(fake_peer_t *v, size_t n) {
  for (size_t i = 0; i < n; i++) fake_init(&v[i], i + 1);
}

static void fakes_release(fake_peer_t *v, size_t n) {
  for (size_t i = 0; i < n; i++) fake_release(&v[i]);
}

static int sub(fake_peer_t *fp, const char *ch) {
  return rt_hub_subscribe(hub, &fp->peer, ch, strlen(ch));
}

static int unsub(fake_peer_t *fp, const char *ch) {
  return rt_hub_unsubscribe(hub, &fp->peer, ch, strlen(ch));
}

static int subscribed(const fake_peer_t *fp, const char *ch) {
  return rt_hub_is_subscribed(hub, &fp->peer, ch, strlen(ch));
}

static int64_t pub(const char *ch, const char *data, uint64_t publisher) {
  return rt_hub_publish(hub, ch, strlen(ch), data, strlen(data), publisher);
}

/* Stats of one channel; the test fails when it does not exist. */
static rt_channel_stats_t stats_of(const char *ch) {
  rt_channel_stats_t *st = NULL, copy;
  size_t n = 0;
  assert_int_equal(rt_hub_channel_stats(hub, ch, &st, &n), 0);
  assert_int_equal(n, 1);
  assert_string_equal(st->name, ch);
  copy = *st;
  copy.name = NULL;
  rt_channel_stats_free(st, n);
  return copy;
}

static int channel_exists(const char *ch) {
  rt_channel_stats_t *st = (rt_channel_stats_t *)1;
  size_t n = 99;
  int rc = rt_hub_channel_stats(hub, ch, &st, &n);
  if (rc == 0) {
    rt_channel_stats_free(st, n);
    return 1;
  }
  assert_int_equal(rc, RT_ENOENT);
  assert_null(st);
  assert_int_equal(n, 0);
  return 0;
}

/* The bytes must be exactly one unmasked text frame carrying the message envelope. */
static void assert_message_frame(rt_slice_t f, const char *ch, const char *data) {
  char payload[1024];
  uint8_t wire[1100];
  int n = snprintf(payload, sizeof(payload),
                   "{\"type\":\"message\",\"channel\":\"%s\",\"data\":%s}", ch, data);
  assert_true(n > 0 && n < 126);
  wire[0] = 0x81;
  wire[1] = (uint8_t)n;
  memcpy(wire + 2, payload, (size_t)n);
  assert_int_equal(f.len, (size_t)n + 2);
  assert_memory_equal(f.frame->bytes + f.off, wire, (size_t)n + 2);
}

/* Two deliveries of the same message: the same bytes of the same frame. */
static void assert_same_bytes(rt_slice_t a, rt_slice_t b) {
  assert_ptr_equal(a.frame, b.frame);
  assert_int_equal(a.off, b.off);
  assert_int_equal(a.len, b.len);
}

static void assert_totals(uint64_t published, uint64_t delivered) {
  uint64_t p = 0, d = 0;
  rt_hub_totals(hub, &p, &d);
  assert_int_equal(p, published);
  assert_int_equal(d, delivered);
}

static int setup(void **state) {
  fake_now = 1000;
  hub = rt_hub_new(fake_clock, &fake_now);
  return hub == NULL ? -1 : 0;
}

static int teardown(void **state) {
  rt_hub_free(hub);
  hub = NULL;
  rt_alloc_fail_after(-1);
  return 0;
}

/* ------------------------------------------------------------ basics */

static void test_subscribe_unsubscribe(void **state) {
  fake_peer_t a, b;
  fake_init(&a, 1);
  fake_init(&b, 2);
  assert_int_equal(sub(&a, "chat"), 0);
  assert_true(subscribed(&a, "chat"));
  assert_false(subscribed(&b, "chat"));
  assert_false(subscribed(&a, "other"));
  assert_int_equal(rt_peer_subscription_count(&a.peer), 1);
  assert_int_equal(rt_hub_channel_count(hub), 1);

  assert_int_equal(sub(&a, "chat"), RT_EEXIST);
  assert_int_equal(rt_peer_subscription_count(&a.peer), 1);
  assert_int_equal(stats_of("chat").subscribers, 1);

  assert_int_equal(unsub(&b, "chat"), RT_ENOENT);
  assert_int_equal(unsub(&a, "nope"), RT_ENOENT);
  assert_int_equal(unsub(&a, "chat"), 0);
  assert_int_equal(unsub(&a, "chat"), RT_ENOENT);
  assert_false(subscribed(&a, "chat"));
  assert_int_equal(rt_peer_subscription_count(&a.peer), 0);
  assert_null(a.peer._subs);
  assert_int_equal(rt_hub_channel_count(hub), 0);
}

/* The name is channel[0..len): it need not be NUL-terminated, and only len bytes count. */
static void test_names_use_length(void **state) {
  fake_peer_t a;
  fake_init(&a, 1);
  assert_int_equal(rt_hub_subscribe(hub, &a.peer, "chat:room", 4), 0);
  assert_true(subscribed(&a, "chat"));
  assert_false(subscribed(&a, "chat:room"));
  assert_int_equal(rt_hub_subscribe(hub, &a.peer, "chatter", 4), RT_EEXIST);
  assert_int_equal(rt_hub_publish(hub, "chat!", 4, "123", 2, 0), 1);
  assert_message_frame(a.frames[0], "chat", "12");
  assert_int_equal(a.channel_len, 4);
  assert_string_equal(a.channel, "chat");
  fake_release(&a);
  rt_hub_unsubscribe_all(hub, &a.peer);
}

static void test_publish_encodes_once(void **state) {
  fake_peer_t p[4];
  fakes_init(p, 4);
  for (int i = 0; i < 3; i++) assert_int_equal(sub(&p[i], "chat"), 0);
  assert_int_equal(sub(&p[3], "news"), 0);
  fake_now = 5000;
  const char *data = "{\"x\":[1,2.50,\"\xc3\xa9\",18446744073709551616]}";
  assert_int_equal(pub("chat", data, 7), 3);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(p[i].received, 1);
    assert_same_bytes(p[i].frames[0], p[0].frames[0]);
    assert_string_equal(p[i].channel, "chat");
    assert_int_equal(p[i].channel_len, 4);
    assert_memory_equal(p[i].data[0], data, 31);
    assert_int_equal(p[i].meta.publisher_id, 7);
    assert_int_equal(p[i].meta.timestamp_ms, 5000);
  }
  rt_hub_close_batches(hub); /* the hub's own reference, until the loop's flush */
  assert_int_equal(p[0].frames[0].frame->refcnt, 3);
  assert_message_frame(p[0].frames[0], "chat", data);
  assert_int_equal(p[3].received, 0);
  fakes_release(p, 4);
  for (int i = 0; i < 4; i++) rt_hub_unsubscribe_all(hub, &p[i].peer);
}

static void test_publish_to_missing_channel(void **state) {
  fake_peer_t a;
  fake_init(&a, 1);
  assert_int_equal(pub("ghost", "1", 0), 0);
  assert_int_equal(rt_hub_channel_count(hub), 0);
  assert_false(channel_exists("ghost"));
  assert_totals(0, 0);
  assert_int_equal(sub(&a, "ghost"), 0);
  assert_int_equal(unsub(&a, "ghost"), 0);
  assert_int_equal(pub("ghost", "1", 0), 0);
  assert_int_equal(rt_hub_channel_count(hub), 0);
  assert_totals(0, 0);
}

static void test_publisher_receives_own(void **state) {
  fake_peer_t a;
  fake_init(&a, 42);
  assert_int_equal(sub(&a, "echo"), 0);
  assert_int_equal(pub("echo", "\"hi\"", a.peer.id), 1);
  assert_int_equal(a.received, 1);
  assert_int_equal(a.meta.publisher_id, 42);
  assert_message_frame(a.frames[0], "echo", "\"hi\"");
  fake_release(&a);
  rt_hub_unsubscribe_all(hub, &a.peer);
}

static void test_channel_lives_with_subscribers(void **state) {
  fake_peer_t a, b;
  fake_init(&a, 1);
  fake_init(&b, 2);
  fake_now = 100;
  assert_int_equal(sub(&a, "room"), 0);
  fake_now = 200;
  assert_int_equal(sub(&b, "room"), 0);
  assert_int_equal(pub("room", "1", 0), 2);
  assert_int_equal(unsub(&a, "room"), 0);
  assert_int_equal(stats_of("room").subscribers, 1);
  assert_int_equal(unsub(&b, "room"), 0);
  assert_int_equal(rt_hub_channel_count(hub), 0);
  assert_false(channel_exists("room"));

  fake_now = 300;
  assert_int_equal(sub(&a, "room"), 0);
  rt_channel_stats_t st = stats_of("room");
  assert_int_equal(st.created_at_ms, 300);
  assert_int_equal(st.messages_published, 0);
  assert_int_equal(st.messages_delivered, 0);
  assert_int_equal(st.bytes_published, 0);
  assert_int_equal(st.bytes_delivered, 0);
  assert_true(st.message_rate == 0.0);
  fakes_release(&a, 1);
  fakes_release(&b, 1);
  rt_hub_unsubscribe_all(hub, &a.peer);
}

static void test_stats_values_and_times(void **state) {
  fake_peer_t p[3];
  fakes_init(p, 3);
  fake_now = 1000;
  assert_int_equal(sub(&p[0], "a"), 0);
  fake_now = 2000;
  assert_int_equal(sub(&p[1], "a"), 0);
  assert_int_equal(sub(&p[2], "b"), 0);
  assert_int_equal(sub(&p[2], "c"), 0);
  fake_now = 3000;
  assert_int_equal(pub("a", "[1,2]", 0), 2);
  assert_int_equal(pub("b", "7", 0), 1);

  rt_channel_stats_t st = stats_of("a");
  assert_int_equal(st.subscribers, 2);
  assert_int_equal(st.messages_published, 1);
  assert_int_equal(st.messages_delivered, 2);
  assert_int_equal(st.bytes_published, 5);
  assert_int_equal(st.bytes_delivered, 10);
  assert_int_equal(st.created_at_ms, 1000);
  assert_int_equal(st.last_activity_ms, 3000);
  assert_int_equal(stats_of("c").last_activity_ms, 2000);

  fake_now = 4000;
  assert_int_equal(unsub(&p[1], "a"), 0);
  st = stats_of("a");
  assert_int_equal(st.subscribers, 1);
  assert_int_equal(st.last_activity_ms, 4000);
  assert_int_equal(st.created_at_ms, 1000);
  fake_now = 5000;
  assert_int_equal(sub(&p[1], "c"), 0);
  assert_int_equal(stats_of("c").last_activity_ms, 5000);

  rt_channel_stats_t *all = NULL;
  size_t n = 0;
  assert_int_equal(rt_hub_channel_stats(hub, NULL, &all, &n), 0);
  assert_int_equal(n, 3);
  int seen = 0;
  for (size_t i = 0; i < n; i++) {
    if (strcmp(all[i].name, "a") == 0) {
      seen |= 1;
      assert_int_equal(all[i].messages_delivered, 2);
    } else if (strcmp(all[i].name, "b") == 0) {
      seen |= 2;
      assert_int_equal(all[i].bytes_delivered, 1);
    } else if (strcmp(all[i].name, "c") == 0) {
      seen |= 4;
      assert_int_equal(all[i].subscribers, 2);
    }
  }
  assert_int_equal(seen, 7);
  rt_channel_stats_free(all, n);
  assert_totals(2, 3);
  fakes_release(p, 3);
  for (int i = 0; i < 3; i++) rt_hub_unsubscribe_all(hub, &p[i].peer);
}

static void test_empty_stats_and_null_frees(void **state) {
  rt_channel_stats_t *all = (rt_channel_stats_t *)1;
  size_t n = 5;
  assert_int_equal(rt_hub_channel_stats(hub, NULL, &all, &n), 0);
  assert_null(all);
  assert_int_equal(n, 0);
  rt_channel_stats_free(NULL, 0);
  rt_hub_free(NULL);
  assert_totals(0, 0);
}

static void test_refused_delivery_not_counted(void **state) {
  fake_peer_t p[3];
  fakes_init(p, 3);
  p[1].refuse = -1;
  for (int i = 0; i < 3; i++) assert_int_equal(sub(&p[i], "q"), 0);
  assert_int_equal(pub("q", "\"abc\"", 0), 2);
  assert_int_equal(p[1].received, 1);
  rt_channel_stats_t st = stats_of("q");
  assert_int_equal(st.messages_delivered, 2);
  assert_int_equal(st.bytes_delivered, 10);
  assert_int_equal(st.bytes_published, 5);
  assert_totals(1, 2);
  fakes_release(p, 3);
  for (int i = 0; i < 3; i++) rt_hub_unsubscribe_all(hub, &p[i].peer);
}

static void test_unsubscribe_all(void **state) {
  fake_peer_t a, b;
  fake_init(&a, 1);
  fake_init(&b, 2);
  char name[16];
  for (int i = 0; i < 5; i++) {
    snprintf(name, sizeof(name), "ch%d", i);
    assert_int_equal(sub(&a, name), 0);
  }
  assert_int_equal(sub(&b, "ch0"), 0);
  assert_int_equal(sub(&b, "ch2"), 0);
  assert_int_equal(rt_hub_channel_count(hub), 5);
  fake_now = 9000;
  rt_hub_unsubscribe_all(hub, &a.peer);
  assert_int_equal(rt_peer_subscription_count(&a.peer), 0);
  assert_null(a.peer._subs);
  assert_int_equal(rt_hub_channel_count(hub), 2);
  assert_false(subscribed(&a, "ch0"));
  assert_true(subscribed(&b, "ch2"));
  assert_int_equal(stats_of("ch0").last_activity_ms, 9000);
  assert_int_equal(pub("ch0", "0", 0), 1);
  assert_int_equal(pub("ch1", "0", 0), 0);
  rt_hub_unsubscribe_all(hub, &a.peer);
  rt_hub_unsubscribe_all(hub, &b.peer);
  assert_int_equal(rt_hub_channel_count(hub), 0);
  fake_release(&b);
}

static void test_peer_channels(void **state) {
  fake_peer_t a;
  fake_init(&a, 1);
  char **names = (char **)1;
  size_t n = 7;
  assert_int_equal(rt_hub_peer_channels(&a.peer, &names, &n), 0);
  assert_null(names);
  assert_int_equal(n, 0);
  assert_int_equal(sub(&a, "x"), 0);
  assert_int_equal(sub(&a, "y"), 0);
  assert_int_equal(sub(&a, "z"), 0);
  assert_int_equal(unsub(&a, "y"), 0);
  assert_int_equal(sub(&a, "w"), 0);
  assert_int_equal(unsub(&a, "x"), 0);
  assert_int_equal(sub(&a, "x"), 0);
  assert_int_equal(rt_hub_peer_channels(&a.peer, &names, &n), 0);
  assert_int_equal(n, 3);
  assert_string_equal(names[0], "z");
  assert_string_equal(names[1], "w");
  assert_string_equal(names[2], "x");
  for (size_t i = 0; i < n; i++) rt_free(names[i]);
  rt_free(names);
  rt_hub_unsubscribe_all(hub, &a.peer);
}

static void test_wall_clock(void **state) {
  rt_hub_t *h = rt_hub_new(NULL, NULL);
  assert_non_null(h);
  fake_peer_t a;
  fake_init(&a, 1);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t before = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
  assert_int_equal(rt_hub_subscribe(h, &a.peer, "t", 1), 0);
  assert_int_equal(rt_hub_publish(h, "t", 1, "0", 1, 0), 1);
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t after = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
  assert_in_range(a.meta.timestamp_ms, before, after);
  fake_release(&a);
  rt_hub_free(h);
}

/* Subscriptions still live at rt_hub_free are freed with it; the peers are left empty. */
static void test_free_with_live_subscriptions(void **state) {
  rt_hub_t *h = rt_hub_new(fake_clock, &fake_now);
  assert_non_null(h);
  fake_peer_t p[5];
  fakes_init(p, 5);
  char name[16];
  for (int i = 0; i < 5; i++)
    for (int k = 0; k <= i; k++) {
      snprintf(name, sizeof(name), "c%d", k);
      assert_int_equal(rt_hub_subscribe(h, &p[i].peer, name, strlen(name)), 0);
    }
  for (int k = 0; k < 40; k++) {
    snprintf(name, sizeof(name), "solo%d", k);
    assert_int_equal(rt_hub_subscribe(h, &p[0].peer, name, strlen(name)), 0);
  }
  assert_int_equal(rt_hub_publish(h, "c0", 2, "1", 1, 0), 5);
  rt_hub_free(h);
  for (int i = 0; i < 5; i++) {
    assert_int_equal(rt_peer_subscription_count(&p[i].peer), 0);
    assert_null(p[i].peer._subs);
  }
  fakes_release(p, 5);
}

/* ------------------------------------------------------ re-entrancy */

static void act_unsub_self(fake_peer_t *self, const rt_hub_msg_t *msg) {
  self->result = rt_hub_unsubscribe(hub, &self->peer, msg->channel, msg->channel_len);
}

static void act_unsub_targets(fake_peer_t *self, const rt_hub_msg_t *msg) {
  for (size_t i = 0; i < self->ntargets; i++)
    self->result = rt_hub_unsubscribe(hub, &self->targets[i]->peer, msg->channel, msg->channel_len);
}

static void act_sub_targets(fake_peer_t *self, const rt_hub_msg_t *msg) {
  for (size_t i = 0; i < self->ntargets; i++)
    self->result = rt_hub_subscribe(hub, &self->targets[i]->peer, msg->channel, msg->channel_len);
}

static void act_unsub_all_targets(fake_peer_t *self, const rt_hub_msg_t *msg) {
  for (size_t i = 0; i < self->ntargets; i++) rt_hub_unsubscribe_all(hub, &self->targets[i]->peer);
  self->seen_channels = rt_hub_channel_count(hub);
}

static void act_publish_same(fake_peer_t *self, const rt_hub_msg_t *msg) {
  if (self->budget <= 0) return;
  char data[16];
  snprintf(data, sizeof(data), "%d", self->budget--);
  self->result = rt_hub_publish(hub, msg->channel, msg->channel_len, data, strlen(data), 0);
}

static void act_publish_other(fake_peer_t *self, const rt_hub_msg_t *msg) {
  self->result = pub(self->other, "\"fwd\"", self->peer.id);
}

static void act_unsub_self_then_publish(fake_peer_t *self, const rt_hub_msg_t *msg) {
  assert_int_equal(rt_hub_unsubscribe(hub, &self->peer, msg->channel, msg->channel_len), 0);
  self->result = rt_hub_publish(hub, msg->channel, msg->channel_len, "2", 1, 0);
}

static void act_publish_then_unsub_all_targets(fake_peer_t *self, const rt_hub_msg_t *msg) {
  act_publish_same(self, msg);
  act_unsub_all_targets(self, msg);
}

/* Everyone leaves (the channel goes), then one target comes back: a new channel. */
static void act_all_leave_then_rejoin(fake_peer_t *self, const rt_hub_msg_t *msg) {
  for (size_t i = 0; i + 1 < self->ntargets; i++)
    assert_int_equal(rt_hub_unsubscribe(hub, &self->targets[i]->peer, msg->channel,
                                        msg->channel_len), 0);
  self->seen_channels = rt_hub_channel_count(hub);
  fake_peer_t *last = self->targets[self->ntargets - 1];
  self->result = rt_hub_subscribe(hub, &last->peer, msg->channel, msg->channel_len);
}

static void test_reenter_unsubscribe_self(void **state) {
  fake_peer_t p[3];
  fakes_init(p, 3);
  for (int i = 0; i < 3; i++) assert_int_equal(sub(&p[i], "r"), 0);
  p[1].action = act_unsub_self;
  p[1].result = 99;
  assert_int_equal(pub("r", "1", 0), 3);
  assert_int_equal(p[1].result, 0);
  assert_false(subscribed(&p[1], "r"));
  assert_int_equal(rt_peer_subscription_count(&p[1].peer), 0);
  assert_int_equal(stats_of("r").subscribers, 2);
  assert_int_equal(pub("r", "2", 0), 2);
  assert_int_equal(p[1].received, 1);
  assert_int_equal(p[2].received, 2);
  assert_int_equal(unsub(&p[2], "r"), 0);
  assert_int_equal(unsub(&p[0], "r"), 0);
  assert_int_equal(rt_hub_channel_count(hub), 0);
  fakes_release(p, 3);
}

static void test_reenter_unsubscribe_later_peer(void **state) {
  fake_peer_t p[3], *target = &p[2];
  fakes_init(p, 3);
  for (int i = 0; i < 3; i++) assert_int_equal(sub(&p[i], "r"), 0);
  p[0].action = act_unsub_targets;
  p[0].targets = &target;
  p[0].ntargets = 1;
  assert_int_equal(pub("r", "1", 0), 2);
  assert_int_equal(p[0].result, 0);
  assert_int_equal(p[1].received, 1);
  assert_int_equal(p[2].received, 0);
  assert_int_equal(stats_of("r").subscribers, 2);
  assert_int_equal(stats_of("r").messages_delivered, 2);
  p[0].action = NULL;
  assert_int_equal(pub("r", "2", 0), 2);
  assert_int_equal(p[2].received, 0);
  fakes_release(p, 3);
  for (int i = 0; i < 3; i++) rt_hub_unsubscribe_all(hub, &p[i].peer);
  assert_int_equal(rt_hub_channel_count(hub), 0);
}

static void test_reenter_unsubscribe_earlier_peer(void **state) {
  fake_peer_t p[3], *target = &p[0];
  fakes_init(p, 3);
  for (int i = 0; i < 3; i++) assert_int_equal(sub(&p[i], "r"), 0);
  p[2].action = act_unsub_targets;
  p[2].targets = &target;
  p[2].ntargets = 1;
  assert_int_equal(pub("r", "1", 0), 3);
  assert_false(subscribed(&p[0], "r"));
  p[2].action = NULL;
  assert_int_equal(pub("r", "2", 0), 2);
  assert_int_equal(p[0].received, 1);
  assert_int_equal(p[1].received, 2);
  fakes_release(p, 3);
  for (int i = 0; i < 3; i++) rt_hub_unsubscribe_all(hub, &p[i].peer);
}

static void test_reenter_subscribe_new_peer(void **state) {
  fake_peer_t p[3], *target = &p[2];
  fakes_init(p, 3);
  assert_int_equal(sub(&p[0], "r"), 0);
  assert_int_equal(sub(&p[1], "r"), 0);
  p[0].action = act_sub_targets;
  p[0].targets = &target;
  p[0].ntargets = 1;
  assert_int_equal(pub("r", "1", 0), 2);
  assert_int_equal(p[0].result, 0);
  assert_true(subscribed(&p[2], "r"));
  assert_int_equal(p[2].received, 0);
  assert_int_equal(pub("r", "2", 0), 3);
  assert_int_equal(p[0].result, RT_EEXIST);
  assert_int_equal(p[2].received, 1);
  assert_string_equal(p[2].data[0], "2");
  fakes_release(p, 3);
  for (int i = 0; i < 3; i++) rt_hub_unsubscribe_all(hub, &p[i].peer);
}

/* Subscribing many peers from deliver() moves the array under the running fan-out. */
static void test_reenter_subscribe_grows_array(void **state) {
  enum { N = 100 };
  fake_peer_t p[2], *extra = calloc(N, sizeof(*extra));
  fake_peer_t *targets[N];
  assert_non_null(extra);
  fakes_init(p, 2);
  fakes_init(extra, N);
  for (int i = 0; i < N; i++) targets[i] = &extra[i];
  assert_int_equal(sub(&p[0], "r"), 0);
  assert_int_equal(sub(&p[1], "r"), 0);
  p[0].action = act_sub_targets;
  p[0].targets = targets;
  p[0].ntargets = N;
  assert_int_equal(pub("r", "1", 0), 2);
  assert_int_equal(p[1].received, 1);
  for (int i = 0; i < N; i++) assert_int_equal(extra[i].received, 0);
  p[0].action = NULL;
  assert_int_equal(pub("r", "2", 0), N + 2);
  for (int i = 0; i < N; i++) assert_int_equal(extra[i].received, 1);
  fakes_release(p, 2);
  fakes_release(extra, N);
  for (int i = 0; i < 2; i++) rt_hub_unsubscribe_all(hub, &p[i].peer);
  for (int i = 0; i < N; i++) rt_hub_unsubscribe_all(hub, &extra[i].peer);
  assert_int_equal(rt_hub_channel_count(hub), 0);
  free(extra);
}

/*
 * A channel's only subscriber lives in the channel's inline slot; a second
 * one subscribed from inside its deliver() moves the array to the heap under
 * the running fan-out. Leaving again and rejoining keeps working.
 */
static void test_reenter_subscribe_moves_inline_slot(void **state) {
  fake_peer_t p[2], *target = &p[1];
  fakes_init(p, 2);
  assert_int_equal(sub(&p[0], "solo"), 0);
  assert_int_equal(pub("solo", "1", 0), 1);
  p[0].action = act_sub_targets;
  p[0].targets = &target;
  p[0].ntargets = 1;
  assert_int_equal(pub("solo", "2", 0), 1);
  assert_int_equal(p[0].result, 0);
  assert_int_equal(p[1].received, 0);
  p[0].action = NULL;
  assert_int_equal(pub("solo", "3", 0), 2);
  assert_string_equal(p[1].data[0], "3");
  assert_int_equal(rt_hub_unsubscribe(hub, &p[0].peer, "solo", 4), 0);
  assert_int_equal(pub("solo", "4", 0), 1);
  assert_int_equal(sub(&p[0], "solo"), 0);
  assert_int_equal(pub("solo", "5", 0), 2);
  assert_int_equal(p[0].received, 4); /* not "4": it had left */
  assert_int_equal(p[1].received, 3);
  fakes_release(p, 2);
  for (int i = 0; i < 2; i++) rt_hub_unsubscribe_all(hub, &p[i].peer);
  assert_int_equal(rt_hub_channel_count(hub), 0);
}

/* Nested publishes to the same channel: each is a full fan-out, depth first. */
static void test_reenter_publish_same_channel(void **state) {
  fake_peer_t p[2];
  fakes_init(p, 2);
  assert_int_equal(sub(&p[0], "r"), 0);
  assert_int_equal(sub(&p[1], "r"), 0);
  p[0].action = act_publish_same;
  p[0].budget = 3;
  assert_int_equal(pub("r", "0", 0), 2);
  assert_int_equal(p[0].result, 2);
  assert_int_equal(p[0].received, 4);
  assert_int_equal(p[1].received, 4);
  assert_string_equal(p[0].data[0], "0");
  assert_string_equal(p[0].data[3], "1");
  assert_string_equal(p[1].data[0], "1");
  assert_string_equal(p[1].data[1], "2");
  assert_string_equal(p[1].data[2], "3");
  assert_string_equal(p[1].data[3], "0");
  assert_message_frame(p[1].frames[0], "r", "1");
  assert_same_bytes(p[0].frames[3], p[1].frames[0]);
  rt_channel_stats_t st = stats_of("r");
  assert_int_equal(st.messages_published, 4);
  assert_int_equal(st.messages_delivered, 8);
  assert_totals(4, 8);
  fakes_release(p, 2);
  for (int i = 0; i < 2; i++) rt_hub_unsubscribe_all(hub, &p[i].peer);
}

static void test_reenter_publish_other_channel(void **state) {
  fake_peer_t p[2];
  fakes_init(p, 2);
  assert_int_equal(sub(&p[0], "x"), 0);
  assert_int_equal(sub(&p[1], "y"), 0);
  p[0].action = act_publish_other;
  p[0].other = "y";
  assert_int_equal(pub("x", "1", 0), 1);
  assert_int_equal(p[0].result, 1);
  assert_int_equal(p[1].received, 1);
  assert_int_equal(p[1].meta.publisher_id, 1);
  assert_message_frame(p[1].frames[0], "y", "\"fwd\"");
  assert_int_equal(stats_of("y").messages_published, 1);
  assert_totals(2, 2);
  fakes_release(p, 2);
  for (int i = 0; i < 2; i++) rt_hub_unsubscribe_all(hub, &p[i].peer);
}

/*
 * Every subscriber leaves during the fan-out: the channel leaves the table at
 * once but is freed only when the fan-out ends (ASan catches it otherwise).
 */
static void test_reenter_all_leave(void **state) {
  fake_peer_t p[3];
  fake_peer_t *targets[3] = {&p[0], &p[1], &p[2]};
  fakes_init(p, 3);
  for (int i = 0; i < 3; i++) assert_int_equal(sub(&p[i], "r"), 0);
  assert_int_equal(sub(&p[2], "other"), 0);
  p[0].action = act_unsub_all_targets;
  p[0].targets = targets;
  p[0].ntargets = 3;
  p[0].seen_channels = 99;
  assert_int_equal(pub("r", "1", 0), 1);
  assert_int_equal(p[0].seen_channels, 0);
  assert_int_equal(p[1].received + p[2].received, 0);
  assert_int_equal(rt_hub_channel_count(hub), 0);
  assert_false(channel_exists("r"));
  assert_totals(1, 1);
  assert_int_equal(pub("r", "2", 0), 0);
  fakes_release(p, 3);
}

/* Each peer removes itself; the last removal happens on the fan-out's last step. */
static void test_reenter_each_leaves_itself(void **state) {
  fake_peer_t p[4];
  fakes_init(p, 4);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(sub(&p[i], "r"), 0);
    p[i].action = act_unsub_self;
  }
  assert_int_equal(pub("r", "1", 0), 4);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(p[i].result, 0);
    assert_int_equal(rt_peer_subscription_count(&p[i].peer), 0);
  }
  assert_int_equal(rt_hub_channel_count(hub), 0);
  fakes_release(p, 4);
}

/* The channel empties inside a nested fan-out: only the outermost one frees it. */
static void test_reenter_all_leave_nested(void **state) {
  fake_peer_t p[3];
  fake_peer_t *targets[3] = {&p[0], &p[1], &p[2]};
  fakes_init(p, 3);
  for (int i = 0; i < 3; i++) assert_int_equal(sub(&p[i], "r"), 0);
  p[1].action = act_publish_then_unsub_all_targets;
  p[1].budget = 1;
  p[1].targets = targets;
  p[1].ntargets = 3;
  assert_int_equal(pub("r", "0", 0), 2);
  assert_int_equal(p[1].result, 2);
  assert_int_equal(p[0].received, 2);
  assert_int_equal(p[1].received, 2);
  assert_int_equal(p[2].received, 0);
  assert_int_equal(rt_hub_channel_count(hub), 0);
  assert_totals(2, 4);
  fakes_release(p, 3);
}

static void test_reenter_all_leave_then_rejoin(void **state) {
  fake_peer_t p[3];
  fake_peer_t *targets[3] = {&p[0], &p[1], &p[2]};
  fakes_init(p, 3);
  assert_int_equal(sub(&p[0], "r"), 0);
  assert_int_equal(sub(&p[1], "r"), 0);
  p[0].action = act_all_leave_then_rejoin;
  p[0].targets = targets;
  p[0].ntargets = 3;
  fake_now = 7777;
  assert_int_equal(pub("r", "1", 0), 1);
  assert_int_equal(p[0].seen_channels, 0);
  assert_int_equal(p[0].result, 0);
  assert_int_equal(p[1].received, 0);
  assert_int_equal(p[2].received, 0);
  assert_int_equal(rt_hub_channel_count(hub), 1);
  rt_channel_stats_t st = stats_of("r");
  assert_int_equal(st.subscribers, 1);
  assert_int_equal(st.messages_published, 0);
  assert_int_equal(st.created_at_ms, 7777);
  assert_int_equal(pub("r", "2", 0), 1);
  assert_int_equal(p[2].received, 1);
  fakes_release(p, 3);
  rt_hub_unsubscribe_all(hub, &p[2].peer);
}

static void test_reenter_unsubscribe_self_then_publish(void **state) {
  fake_peer_t p[2];
  fakes_init(p, 2);
  assert_int_equal(sub(&p[0], "r"), 0);
  assert_int_equal(sub(&p[1], "r"), 0);
  p[0].action = act_unsub_self_then_publish;
  assert_int_equal(pub("r", "1", 0), 2);
  assert_int_equal(p[0].result, 1);
  assert_int_equal(p[0].received, 1);
  assert_int_equal(p[1].received, 2);
  assert_string_equal(p[1].data[0], "2");
  assert_string_equal(p[1].data[1], "1");
  assert_int_equal(stats_of("r").subscribers, 1);
  fakes_release(p, 2);
  rt_hub_unsubscribe_all(hub, &p[1].peer);
}

/*
 * x: a, p. y: p, b. a's delivery on x publishes to y, where p's delivery
 * drops all of p's subscriptions while both channels are mid fan-out.
 */
static void test_reenter_unsubscribe_all_across_channels(void **state) {
  fake_peer_t a, p, b, *target = &p;
  fake_init(&a, 1);
  fake_init(&p, 2);
  fake_init(&b, 3);
  assert_int_equal(sub(&a, "x"), 0);
  assert_int_equal(sub(&p, "x"), 0);
  assert_int_equal(sub(&p, "y"), 0);
  assert_int_equal(sub(&b, "y"), 0);
  a.action = act_publish_other;
  a.other = "y";
  p.action = act_unsub_all_targets;
  p.targets = &target;
  p.ntargets = 1;
  assert_int_equal(pub("x", "1", 0), 1);
  assert_int_equal(a.result, 2);
  assert_int_equal(p.received, 1);
  assert_int_equal(b.received, 1);
  assert_int_equal(rt_peer_subscription_count(&p.peer), 0);
  assert_false(subscribed(&p, "x"));
  assert_false(subscribed(&p, "y"));
  assert_int_equal(pub("x", "2", 0), 1);
  assert_int_equal(a.result, 1);
  assert_int_equal(stats_of("x").subscribers, 1);
  assert_int_equal(stats_of("y").subscribers, 1);
  fake_release(&a);
  fake_release(&p);
  fake_release(&b);
  rt_hub_unsubscribe_all(hub, &a.peer);
  rt_hub_unsubscribe_all(hub, &b.peer);
  assert_int_equal(rt_hub_channel_count(hub), 0);
}

/* Holes left by a fan-out are compacted with their indices fixed, so later swap-removes work. */
static void test_reenter_compaction_keeps_indices(void **state) {
  fake_peer_t p[6];
  fake_peer_t *targets[3] = {&p[1], &p[3], &p[4]};
  fakes_init(p, 6);
  for (int i = 0; i < 6; i++) assert_int_equal(sub(&p[i], "r"), 0);
  p[0].action = act_unsub_targets;
  p[0].targets = targets;
  p[0].ntargets = 3;
  assert_int_equal(pub("r", "1", 0), 3);
  p[0].action = NULL;
  assert_int_equal(unsub(&p[5], "r"), 0);
  assert_int_equal(sub(&p[3], "r"), 0);
  assert_int_equal(unsub(&p[0], "r"), 0);
  assert_true(subscribed(&p[2], "r"));
  assert_true(subscribed(&p[3], "r"));
  assert_int_equal(pub("r", "2", 0), 2);
  assert_int_equal(unsub(&p[2], "r"), 0);
  assert_int_equal(unsub(&p[3], "r"), 0);
  assert_int_equal(rt_hub_channel_count(hub), 0);
  assert_int_equal(p[2].received, 2);
  assert_int_equal(p[3].received, 1);
  fakes_release(p, 6);
}

/* ------------------------------------------------------------ batches */

/* A subscriber with a real send queue, as a connection has. */
typedef struct {
  rt_peer_t peer; /* first member */
  rt_sendq_t q;   /* the messages queued to it */
} queue_peer_t;

static int queue_deliver(rt_peer_t *peer, const rt_slice_t *wire, const rt_hub_msg_t *msg) {
  return rt_sendq_append(&((queue_peer_t *)peer)->q, wire);
}

static const rt_peer_ops_t queue_ops = {queue_deliver, NULL};

static void queue_init(queue_peer_t *qp, uint64_t id) {
  rt_peer_init(&qp->peer, &queue_ops, id);
  rt_sendq_init(&qp->q);
}

static int qsub(queue_peer_t *qp, const char *ch) {
  return rt_hub_subscribe(hub, &qp->peer, ch, strlen(ch));
}

static void queue_free(queue_peer_t *qp) {
  rt_hub_unsubscribe_all(hub, &qp->peer);
  rt_sendq_destroy(&qp->q);
}

/* The wire bytes of one message frame (payload < 126 bytes), into out; returns their length. */
static size_t message_wire(const char *ch, const char *data, uint8_t *out) {
  char payload[128];
  int n = snprintf(payload, sizeof(payload),
                   "{\"type\":\"message\",\"channel\":\"%s\",\"data\":%s}", ch, data);
  assert_true(n > 0 && n < 126);
  out[0] = 0x81;
  out[1] = (uint8_t)n;
  memcpy(out + 2, payload, (size_t)n);
  return (size_t)n + 2;
}

/* Entry i of the queue must hold exactly these messages of channel ch, back to back. */
static void assert_entry(const rt_sendq_t *q, size_t i, const char *ch, const char **data,
                         size_t n) {
  uint8_t want[1024];
  size_t len = 0;
  for (size_t k = 0; k < n; k++) len += message_wire(ch, data[k], want + len);
  const rt_sendq_entry_t *e = rt_sendq_at(q, i);
  assert_int_equal(e->frames, n);
  assert_int_equal(e->s.len, len);
  assert_memory_equal(e->s.frame->bytes + e->s.off, want, len);
}

/*
 * One loop iteration with several publishes on ch (a busy channel: its next
 * iteration's first batch has room for as many), then its flush: a's queue
 * is written and the batches are closed.
 */
static void warm_up(queue_peer_t *a, const char *ch) {
  assert_int_equal(pub(ch, "0", 0), 1);
  assert_int_equal(pub(ch, "00", 0), 1);
  assert_int_equal(pub(ch, "000", 0), 1);
  rt_sendq_consume(&a->q, a->q.bytes);
  rt_hub_close_batches(hub);
}

/* Two publishes in one iteration reach a subscriber as one queue entry (one iovec, one ref). */
static void test_batch_two_publishes_one_entry(void **state) {
  queue_peer_t a;
  queue_init(&a, 1);
  assert_int_equal(qsub(&a, "b"), 0);
  warm_up(&a, "b");
  assert_int_equal(pub("b", "1", 0), 1);
  assert_int_equal(pub("b", "22", 0), 1);
  assert_int_equal(a.q.count, 1);
  assert_entry(&a.q, 0, "b", (const char *[]){"1", "22"}, 2);
  assert_int_equal(a.q.bytes, rt_sendq_at(&a.q, 0)->s.len);
  rt_frame_t *f = rt_sendq_at(&a.q, 0)->s.frame;
  assert_int_equal(f->refcnt, 2); /* the queue's one reference, and the open batch's */
  /* After the loop's flush closes the batch, the next publish starts a new frame. */
  rt_hub_close_batches(hub);
  assert_int_equal(f->refcnt, 1);
  assert_int_equal(pub("b", "3", 0), 1);
  assert_int_equal(a.q.count, 2);
  assert_ptr_not_equal(rt_sendq_at(&a.q, 1)->s.frame, f);
  assert_entry(&a.q, 1, "b", (const char *[]){"3"}, 1);
  assert_int_equal(rt_sendq_consume(&a.q, a.q.bytes), 3);
  queue_free(&a);
  /* On a channel without history the first message gets an exact frame: no slack. */
  queue_init(&a, 1);
  assert_int_equal(qsub(&a, "cold"), 0);
  assert_int_equal(pub("cold", "1", 0), 1);
  assert_int_equal(rt_sendq_at(&a.q, 0)->s.frame->cap, rt_sendq_at(&a.q, 0)->s.len);
  queue_free(&a);
}

/* A subscriber joining between two publishes gets only the second, as its own range. */
static void test_batch_join_between_publishes(void **state) {
  queue_peer_t a, b;
  queue_init(&a, 1);
  queue_init(&b, 2);
  assert_int_equal(qsub(&a, "j"), 0);
  warm_up(&a, "j");
  assert_int_equal(pub("j", "\"first\"", 0), 1);
  assert_int_equal(qsub(&b, "j"), 0);
  assert_int_equal(pub("j", "\"second\"", 0), 2);
  assert_int_equal(a.q.count, 1);
  assert_entry(&a.q, 0, "j", (const char *[]){"\"first\"", "\"second\""}, 2);
  assert_int_equal(b.q.count, 1);
  assert_entry(&b.q, 0, "j", (const char *[]){"\"second\""}, 1);
  assert_int_equal(b.q.bytes, rt_sendq_at(&b.q, 0)->s.len);
  queue_free(&a);
  queue_free(&b);
}

/*
 * Sizing: an isolated publish gets an exact frame (no slack); the second of
 * an iteration opens a batch with room for more; a message bigger than the
 * largest batch gets a frame of its own, and the queue keeps order across
 * frames. The next iteration's first batch is sized by what this one took.
 */
static void test_batch_sizes(void **state) {
  queue_peer_t a;
  queue_init(&a, 1);
  assert_int_equal(qsub(&a, "z"), 0);
  assert_int_equal(pub("z", "1", 0), 1);
  const rt_sendq_entry_t *e = rt_sendq_at(&a.q, 0);
  assert_int_equal(e->s.frame->cap, e->s.len);
  assert_int_equal(pub("z", "2", 0), 1);
  assert_int_equal(pub("z", "3", 0), 1);
  assert_int_equal(a.q.count, 2);
  assert_true(rt_sendq_at(&a.q, 1)->s.frame->cap >= 1024);
  assert_entry(&a.q, 1, "z", (const char *[]){"2", "3"}, 2);
  enum { BIG = 20000 };
  char *big = malloc(BIG + 3);
  assert_non_null(big);
  big[0] = '"';
  memset(big + 1, 'x', BIG);
  big[BIG + 1] = '"';
  big[BIG + 2] = '\0';
  assert_int_equal(pub("z", big, 0), 1);
  assert_int_equal(pub("z", "4", 0), 1);
  assert_int_equal(a.q.count, 4);
  const rt_sendq_entry_t *b = rt_sendq_at(&a.q, 2);
  assert_int_equal(b->frames, 1);
  assert_int_equal(b->s.frame->cap, b->s.len); /* its own frame, exactly its size */
  assert_int_equal(b->s.off, RT_FRAME_HEADROOM);
  assert_memory_equal(b->s.frame->bytes + b->s.off, "\x81\x7e", 2);
  assert_entry(&a.q, 3, "z", (const char *[]){"4"}, 1);
  size_t took = 0;
  for (size_t i = 0; i < a.q.count; i++) took += rt_sendq_at(&a.q, i)->s.len;
  rt_hub_close_batches(hub);
  assert_int_equal(pub("z", "5", 0), 1);
  e = rt_sendq_at(&a.q, 4);
  assert_int_equal(e->s.frame->cap, took < 16384 ? took : 16384);
  assert_int_equal(rt_sendq_consume(&a.q, a.q.bytes), 6);
  free(big);
  queue_free(&a);
}

/* Each channel has its own batch; a subscriber of two channels gets one entry per run. */
static void test_batch_per_channel(void **state) {
  queue_peer_t a;
  queue_init(&a, 1);
  assert_int_equal(qsub(&a, "c1"), 0);
  assert_int_equal(qsub(&a, "c2"), 0);
  assert_int_equal(pub("c1", "1", 0), 1);
  assert_int_equal(pub("c1", "2", 0), 1);
  assert_int_equal(pub("c2", "3", 0), 1);
  assert_int_equal(pub("c1", "4", 0), 1);
  assert_int_equal(a.q.count, 4);
  assert_int_equal(pub("c1", "5", 0), 1);
  assert_int_equal(a.q.count, 4);
  assert_entry(&a.q, 2, "c2", (const char *[]){"3"}, 1);
  assert_entry(&a.q, 3, "c1", (const char *[]){"4", "5"}, 2);
  queue_free(&a);
}

/* A hub never flushed (no loop) closes its batches itself past OPEN_MAX: memory stays bounded. */
static void test_batch_open_list_bounded(void **state) {
  fake_peer_t a;
  fake_init(&a, 1);
  char name[16];
  for (int i = 0; i < 1500; i++) {
    snprintf(name, sizeof(name), "o%d", i);
    assert_int_equal(sub(&a, name), 0);
    assert_int_equal(pub(name, "1", 0), 1);
    fake_release(&a);
  }
  rt_hub_unsubscribe_all(hub, &a.peer);
}

/* An open batch outlives its channel safely: the hub's list holds it until closed. */
static void test_batch_outlives_channel(void **state) {
  queue_peer_t a;
  queue_init(&a, 1);
  assert_int_equal(qsub(&a, "gone"), 0);
  assert_int_equal(pub("gone", "1", 0), 1);
  assert_int_equal(pub("gone", "2", 0), 1);
  queue_free(&a);
  assert_int_equal(rt_hub_channel_count(hub), 0);
  queue_init(&a, 1);
  assert_int_equal(qsub(&a, "gone"), 0);
  assert_int_equal(pub("gone", "3", 0), 1);
  assert_entry(&a.q, 0, "gone", (const char *[]){"3"}, 1);
  queue_free(&a);
}

/*
 * What a worker does with a publish encoded by the server (rt_workers_publish,
 * or a copy from its inbox): rt_hub_deliver of the frame on hub h. Returns
 * the frame, still referenced by the caller (*out), for identity checks.
 */
static int64_t dlv_on(rt_hub_t *h, const char *ch, const char *data, rt_frame_t **out) {
  rt_frame_t *f = rt_proto_message(ch, strlen(ch), data, strlen(data));
  assert_non_null(f);
  rt_hub_msg_t msg = {ch, strlen(ch), rt_proto_message_data(f, strlen(ch)), strlen(data),
                      {7, fake_now}};
  int64_t r = rt_hub_deliver(h, f, &msg);
  if (out != NULL)
    *out = f;
  else
    rt_frame_unref(f);
  return r;
}

/*
 * rt_hub_deliver batches like a publish: a cold channel's isolated message
 * goes out as the frame itself (no copy); the next ones of the iteration
 * are copied into one batch, so a subscriber queues them as one entry.
 */
static void test_batch_deliver_frames(void **state) {
  queue_peer_t a;
  queue_init(&a, 1);
  assert_int_equal(qsub(&a, "d"), 0);
  rt_frame_t *f;
  assert_int_equal(dlv_on(hub, "d", "1", &f), 1);
  const rt_sendq_entry_t *e = rt_sendq_at(&a.q, 0);
  assert_ptr_equal(e->s.frame, f);
  assert_int_equal(e->s.off, f->off);
  assert_int_equal(e->s.len, rt_frame_wire_len(f));
  assert_int_equal(f->refcnt, 2); /* ours and the queue's: the hub keeps none */
  rt_frame_unref(f);
  assert_int_equal(dlv_on(hub, "d", "22", NULL), 1);
  assert_int_equal(dlv_on(hub, "d", "333", NULL), 1);
  assert_int_equal(a.q.count, 2);
  assert_entry(&a.q, 1, "d", (const char *[]){"22", "333"}, 2);
  rt_sendq_consume(&a.q, a.q.bytes);
  rt_hub_close_batches(hub);
  /* The next iteration's first batch is sized by this one: one entry from the start. */
  assert_int_equal(dlv_on(hub, "d", "4", NULL), 1);
  assert_int_equal(dlv_on(hub, "d", "55", NULL), 1);
  assert_int_equal(a.q.count, 1);
  assert_entry(&a.q, 0, "d", (const char *[]){"4", "55"}, 2);
  /* Publishes and deliveries of one channel share its batch, in order. */
  assert_int_equal(pub("d", "6", 0), 1);
  assert_int_equal(a.q.count, 1);
  assert_entry(&a.q, 0, "d", (const char *[]){"4", "55", "6"}, 3);
  assert_int_equal(rt_sendq_consume(&a.q, a.q.bytes), 3);
  queue_free(&a);
}

/*
 * Two hubs sharing their channel figures (two workers): each batches its own
 * deliveries in frames of its own, closed by its own flush, and the shared
 * record counts the deliveries of both.
 */
static void test_batch_per_hub_with_shared_stats(void **state) {
  rt_hub_t *h1 = hub; /* no channel yet: it may start sharing */
  rt_hub_stats_t *t = rt_hub_stats_new();
  assert_non_null(t);
  rt_hub_t *h2 = rt_hub_new(fake_clock, &fake_now);
  assert_non_null(h2);
  rt_hub_share_stats(h1, t);
  rt_hub_share_stats(h2, t);
  queue_peer_t a, b;
  queue_init(&a, 1);
  queue_init(&b, 2);
  assert_int_equal(rt_hub_subscribe(h1, &a.peer, "w", 1), 0);
  assert_int_equal(rt_hub_subscribe(h2, &b.peer, "w", 1), 0);
  const char *data[] = {"1", "22", "333"};
  for (int i = 0; i < 3; i++) {
    assert_int_equal(rt_hub_stats_publish(t, "w", 1, strlen(data[i]), fake_now), 1);
    assert_int_equal(dlv_on(h1, "w", data[i], NULL), 1);
    assert_int_equal(dlv_on(h2, "w", data[i], NULL), 1);
  }
  assert_int_equal(a.q.count, 2);
  assert_int_equal(b.q.count, 2);
  assert_entry(&a.q, 1, "w", (const char *[]){"22", "333"}, 2);
  assert_entry(&b.q, 1, "w", (const char *[]){"22", "333"}, 2);
  rt_frame_t *fa = rt_sendq_at(&a.q, 1)->s.frame, *fb = rt_sendq_at(&b.q, 1)->s.frame;
  assert_ptr_not_equal(fa, fb);
  assert_int_equal(fa->refcnt, 2);
  rt_hub_close_batches(h1); /* worker 1's flush: worker 2's batch stays open */
  assert_int_equal(fa->refcnt, 1);
  assert_int_equal(fb->refcnt, 2);
  assert_int_equal(dlv_on(h2, "w", "4", NULL), 1);
  assert_entry(&b.q, 1, "w", (const char *[]){"22", "333", "4"}, 3);
  rt_channel_stats_t *st;
  size_t n;
  assert_int_equal(rt_hub_channel_stats(h1, "w", &st, &n), 0);
  assert_int_equal(st->messages_published, 3);
  assert_int_equal(st->messages_delivered, 7);
  rt_channel_stats_free(st, n);
  rt_hub_unsubscribe_all(h1, &a.peer);
  rt_hub_unsubscribe_all(h2, &b.peer);
  rt_sendq_destroy(&a.q);
  rt_sendq_destroy(&b.q);
  rt_hub_free(h2);
  rt_hub_free(h1); /* before the table it shares; teardown gets a fresh hub */
  hub = rt_hub_new(fake_clock, &fake_now);
  assert_non_null(hub);
  rt_hub_stats_free(t);
}

/* ------------------------------------------------------------ scale */

static void test_many_peers_one_channel(void **state) {
  enum { N = 10000 };
  fake_peer_t *p = calloc(N, sizeof(*p));
  assert_non_null(p);
  fakes_init(p, N);
  for (int i = 0; i < N; i++) assert_int_equal(sub(&p[i], "big"), 0);
  assert_int_equal(sub(&p[N / 2], "big"), RT_EEXIST);
  assert_int_equal(stats_of("big").subscribers, N);
  assert_int_equal(pub("big", "{}", 0), N);
  for (int i = 0; i < N; i++) {
    assert_int_equal(p[i].received, 1);
    assert_same_bytes(p[i].frames[0], p[0].frames[0]);
  }
  rt_hub_close_batches(hub);
  assert_int_equal(p[0].frames[0].frame->refcnt, N);
  fakes_release(p, N);
  for (int i = 0; i < N; i += 2) assert_int_equal(unsub(&p[i], "big"), 0);
  assert_int_equal(stats_of("big").subscribers, N / 2);
  assert_int_equal(pub("big", "{}", 0), N / 2);
  for (int i = 0; i < N; i++) assert_int_equal(p[i].received, (size_t)(i % 2));
  fakes_release(p, N);
  for (int i = N - 1; i >= 0; i--) rt_hub_unsubscribe_all(hub, &p[i].peer);
  assert_int_equal(rt_hub_channel_count(hub), 0);
  free(p);
}

static void test_many_channels_one_peer(void **state) {
  enum { N = 10000 };
  fake_peer_t a, b;
  fake_init(&a, 1);
  fake_init(&b, 2);
  char name[32];
  for (int i = 0; i < N; i++) {
    snprintf(name, sizeof(name), "ch-%d", i);
    assert_int_equal(sub(&a, name), 0);
    if (i % 10 == 0) assert_int_equal(sub(&b, name), 0);
  }
  assert_int_equal(rt_hub_channel_count(hub), N);
  assert_int_equal(rt_peer_subscription_count(&a.peer), N);
  assert_int_equal(sub(&a, "ch-4321"), RT_EEXIST);
  assert_int_equal(sub(&b, "ch-4320"), RT_EEXIST);
  assert_true(subscribed(&a, "ch-9999"));
  assert_false(subscribed(&b, "ch-9999"));
  assert_false(subscribed(&a, "ch-10000"));
  assert_int_equal(pub("ch-1230", "1", 0), 2);
  assert_int_equal(pub("ch-1231", "1", 0), 1);

  char **names = NULL;
  size_t n = 0;
  assert_int_equal(rt_hub_peer_channels(&a.peer, &names, &n), 0);
  assert_int_equal(n, N);
  for (size_t i = 0; i < n; i++) {
    snprintf(name, sizeof(name), "ch-%zu", i);
    assert_string_equal(names[i], name);
    rt_free(names[i]);
  }
  rt_free(names);

  rt_hub_unsubscribe_all(hub, &a.peer);
  assert_int_equal(rt_peer_subscription_count(&a.peer), 0);
  assert_int_equal(rt_hub_channel_count(hub), N / 10);
  assert_true(subscribed(&b, "ch-9990"));
  rt_hub_unsubscribe_all(hub, &b.peer);
  assert_int_equal(rt_hub_channel_count(hub), 0);
  fake_release(&a);
  fake_release(&b);
}

static uint64_t rng_next(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* Random subscribe/unsubscribe/unsubscribe_all against a matrix model. */
static void test_random_against_model(void **state) {
  enum { PEERS = 40, CHANS = 300, OPS = 40000 };
  static unsigned char model[PEERS][CHANS];
  fake_peer_t *p = calloc(PEERS, sizeof(*p));
  assert_non_null(p);
  fakes_init(p, PEERS);
  memset(model, 0, sizeof(model));
  uint64_t seed = 0x9e3779b97f4a7c15ULL;
  char name[16];
  for (int op = 0; op < OPS; op++) {
    int pi = (int)(rng_next(&seed) % PEERS), ci = (int)(rng_next(&seed) % CHANS);
    unsigned kind = (unsigned)(rng_next(&seed) % 100);
    snprintf(name, sizeof(name), "m%d", ci);
    if (kind < 55) {
      assert_int_equal(sub(&p[pi], name), model[pi][ci] ? RT_EEXIST : 0);
      model[pi][ci] = 1;
    } else if (kind < 99) {
      assert_int_equal(unsub(&p[pi], name), model[pi][ci] ? 0 : RT_ENOENT);
      model[pi][ci] = 0;
    } else {
      rt_hub_unsubscribe_all(hub, &p[pi].peer);
      memset(model[pi], 0, CHANS);
    }
    if (op % 4000 != 0) continue;
    size_t live = 0;
    for (int c = 0; c < CHANS; c++) {
      size_t subs = 0;
      snprintf(name, sizeof(name), "m%d", c);
      for (int q = 0; q < PEERS; q++) {
        assert_int_equal(subscribed(&p[q], name), model[q][c]);
        subs += model[q][c];
      }
      live += subs > 0;
      assert_int_equal(pub(name, "0", 0), (int64_t)subs);
    }
    assert_int_equal(rt_hub_channel_count(hub), live);
    fakes_release(p, PEERS);
  }
  for (int q = 0; q < PEERS; q++) rt_hub_unsubscribe_all(hub, &p[q].peer);
  assert_int_equal(rt_hub_channel_count(hub), 0);
  free(p);
}

/* ------------------------------------------------------------ OOM */

static void test_oom_hub_new(void **state) {
  long n;
  for (n = 0;; n++) {
    rt_alloc_fail_after(n);
    rt_hub_t *h = rt_hub_new(fake_clock, &fake_now);
    rt_alloc_fail_after(-1);
    if (h != NULL) {
      rt_hub_free(h);
      break;
    }
  }
  assert_int_equal(n, 2);
}

/*
 * Subscribes `fp` to `ch` failing the n-th allocation for n = 0, 1, ... until
 * it succeeds; every failure must return RT_ENOMEM and leave no trace.
 * Returns how many attempts failed.
 */
static long subscribe_under_oom(fake_peer_t *fp, const char *ch) {
  size_t nsubs = rt_peer_subscription_count(&fp->peer), nchan = rt_hub_channel_count(hub);
  int existed = channel_exists(ch);
  uint64_t before = existed ? stats_of(ch).subscribers : 0;
  for (long n = 0;; n++) {
    rt_alloc_fail_after(n);
    int rc = sub(fp, ch);
    rt_alloc_fail_after(-1);
    if (rc == 0) return n;
    assert_int_equal(rc, RT_ENOMEM);
    assert_false(subscribed(fp, ch));
    assert_int_equal(rt_peer_subscription_count(&fp->peer), nsubs);
    assert_int_equal(rt_hub_channel_count(hub), nchan);
    assert_int_equal(channel_exists(ch), existed);
    if (existed) assert_int_equal(stats_of(ch).subscribers, before);
  }
}

static void test_oom_subscribe(void **state) {
  fake_peer_t p[12];
  fakes_init(p, 12);
  /* sub, then the channel (one allocation: name and first slot inline) */
  assert_int_equal(subscribe_under_oom(&p[0], "fresh"), 2);
  /* the second subscriber moves the inline slot to a heap array of 4 */
  assert_int_equal(subscribe_under_oom(&p[1], "fresh"), 2);
  for (int i = 2; i < 4; i++) assert_int_equal(subscribe_under_oom(&p[i], "fresh"), 1);
  assert_int_equal(subscribe_under_oom(&p[4], "fresh"), 2);
  char name[16];
  for (int i = 0; rt_hub_channel_count(hub) < 8; i++) {
    snprintf(name, sizeof(name), "fill%d", i);
    assert_int_equal(sub(&p[5], name), 0);
  }
  /* sub, table growth, channel: the growth kept from attempt 2 is not redone. */
  assert_int_equal(subscribe_under_oom(&p[6], "grows-table"), 3);
  assert_int_equal(pub("fresh", "1", 0), 5);
  for (int i = 0; i < 12; i++) {
    fake_release(&p[i]);
    rt_hub_unsubscribe_all(hub, &p[i].peer);
  }
  assert_int_equal(rt_hub_channel_count(hub), 0);
}

/*
 * Publishes to "q" under allocation failure n = 0, 1, ... until it succeeds;
 * every failure must deliver and count nothing. Returns the allocations the
 * successful publish made.
 */
static long publish_under_oom(fake_peer_t *p, size_t np, uint64_t published_before) {
  for (long n = 0;; n++) {
    rt_alloc_fail_after(n);
    int64_t rc = pub("q", "[true]", 0);
    rt_alloc_fail_after(-1);
    if (rc >= 0) {
      assert_int_equal(rc, np);
      return n;
    }
    assert_int_equal(rc, RT_ENOMEM);
    for (size_t i = 0; i < np; i++) assert_int_equal(p[i].received, published_before);
    assert_int_equal(stats_of("q").messages_published, published_before);
    assert_totals(published_before, published_before * np);
  }
}

/* The first publish on a channel allocates its statistics and the frame; later ones only the frame. */
static void test_oom_publish(void **state) {
  fake_peer_t p[3];
  fakes_init(p, 3);
  for (int i = 0; i < 3; i++) assert_int_equal(sub(&p[i], "q"), 0);
  assert_int_equal(publish_under_oom(p, 3, 0), 2);
  assert_int_equal(stats_of("q").messages_published, 1);
  assert_int_equal(publish_under_oom(p, 3, 1), 1);
  assert_int_equal(stats_of("q").messages_published, 2);
  fakes_release(p, 3);
  for (int i = 0; i < 3; i++) rt_hub_unsubscribe_all(hub, &p[i].peer);
}

/* Channel stats (one or all) under allocation failure n = 0, 1, ...; returns the failures. */
static long stats_under_oom(const char *name, size_t expect) {
  for (long n = 0;; n++) {
    rt_channel_stats_t *st = (rt_channel_stats_t *)1;
    size_t cnt = 9;
    rt_alloc_fail_after(n);
    int rc = rt_hub_channel_stats(hub, name, &st, &cnt);
    rt_alloc_fail_after(-1);
    if (rc == 0) {
      assert_int_equal(cnt, expect);
      rt_channel_stats_free(st, cnt);
      return n;
    }
    assert_int_equal(rc, RT_ENOMEM);
    assert_null(st);
    assert_int_equal(cnt, 0);
  }
}

static void test_oom_queries(void **state) {
  fake_peer_t a;
  fake_init(&a, 1);
  char name[16];
  for (int i = 0; i < 5; i++) {
    snprintf(name, sizeof(name), "s%d", i);
    assert_int_equal(sub(&a, name), 0);
  }
  assert_int_equal(stats_under_oom("s3", 1), 2);
  assert_int_equal(stats_under_oom(NULL, 5), 6);
  for (long n = 0;; n++) {
    char **names = (char **)1;
    size_t cnt = 9;
    rt_alloc_fail_after(n);
    int rc = rt_hub_peer_channels(&a.peer, &names, &cnt);
    rt_alloc_fail_after(-1);
    if (rc == 0) {
      assert_int_equal(n, 6);
      assert_int_equal(cnt, 5);
      for (size_t i = 0; i < cnt; i++) rt_free(names[i]);
      rt_free(names);
      break;
    }
    assert_int_equal(rc, RT_ENOMEM);
    assert_null(names);
    assert_int_equal(cnt, 0);
  }
  rt_hub_unsubscribe_all(hub, &a.peer);
}


/* Pushes reach the peers that take them, are not messages, and count no statistics. */
static void test_push(void **state) {
  (void)state;
  fake_peer_t a, b, c;
  fake_init(&a, 1);
  fake_init(&b, 2);
  fake_init(&c, 3);
  rt_peer_init(&c.peer, &deliver_only_ops, 3);
  rt_frame_t *f = rt_frame_new(2);
  rt_frame_append(f, "{}", 2);
  rt_frame_seal(f, 1);
  assert_int_equal(rt_hub_push(hub, "room", 4, f), 0); /* no such channel */
  assert_int_equal(rt_hub_subscribe(hub, &a.peer, "room", 4), 0);
  assert_int_equal(rt_hub_subscribe(hub, &b.peer, "room", 4), 0);
  assert_int_equal(rt_hub_subscribe(hub, &c.peer, "room", 4), 0);
  b.refuse = 1;
  assert_int_equal(rt_hub_push(hub, "room", 4, f), 1);
  assert_int_equal(a.pushed, 1);
  assert_ptr_equal(a.last_push, f);
  assert_int_equal(b.pushed, 1);
  assert_int_equal(c.pushed, 0);
  assert_int_equal(a.received + b.received + c.received, 0);
  rt_channel_stats_t *st;
  size_t n;
  assert_int_equal(rt_hub_channel_stats(hub, "room", &st, &n), 0);
  assert_int_equal(st[0].messages_published, 0);
  rt_channel_stats_free(st, n);
  rt_frame_unref(f);
  rt_hub_unsubscribe_all(hub, &a.peer);
  rt_hub_unsubscribe_all(hub, &b.peer);
  rt_hub_unsubscribe_all(hub, &c.peer);
}

/* The message rate counts the last minute in 5 s buckets. */
static void test_message_rate(void **state) {
  (void)state;
  fake_peer_t a;
  fake_init(&a, 1);
  fake_now = 1000000;
  assert_int_equal(rt_hub_subscribe(hub, &a.peer, "r", 1), 0);
  for (int i = 0; i < 60; i++) assert_int_equal(rt_hub_publish(hub, "r", 1, "1", 1, 0), 1);
  rt_channel_stats_t *st;
  size_t n;
  assert_int_equal(rt_hub_channel_stats(hub, "r", &st, &n), 0);
  assert_true(st[0].message_rate > 0.99 && st[0].message_rate < 1.01); /* 60 in a minute */
  rt_channel_stats_free(st, n);
  fake_now += 30000;
  for (int i = 0; i < 60; i++) rt_hub_publish(hub, "r", 1, "1", 1, 0);
  assert_int_equal(rt_hub_channel_stats(hub, "r", &st, &n), 0);
  assert_true(st[0].message_rate > 1.99 && st[0].message_rate < 2.01);
  rt_channel_stats_free(st, n);
  fake_now += 40000; /* the first 60 are now older than a minute */
  assert_int_equal(rt_hub_channel_stats(hub, "r", &st, &n), 0);
  assert_true(st[0].message_rate > 0.99 && st[0].message_rate < 1.01);
  rt_channel_stats_free(st, n);
  fake_now += 600000;
  assert_int_equal(rt_hub_channel_stats(hub, "r", &st, &n), 0);
  assert_true(st[0].message_rate == 0.0);
  rt_channel_stats_free(st, n);
  fake_release(&a);
  rt_hub_unsubscribe_all(hub, &a.peer);
}

/*
 * A channel's statistics start at its first publish: before it every figure
 * is zero, and a rate after a long quiet time counts only what followed.
 */
static void test_stats_start_at_first_publish(void **state) {
  (void)state;
  fake_peer_t a;
  fake_init(&a, 1);
  fake_now = 1000000;
  assert_int_equal(rt_hub_subscribe(hub, &a.peer, "late", 4), 0);
  fake_now += 600000;
  rt_channel_stats_t st = stats_of("late");
  assert_int_equal(st.messages_published, 0);
  assert_int_equal(st.messages_delivered, 0);
  assert_int_equal(st.bytes_published, 0);
  assert_int_equal(st.bytes_delivered, 0);
  assert_true(st.message_rate == 0.0);
  assert_int_equal(st.created_at_ms, 1000000);
  assert_int_equal(st.last_activity_ms, 1000000);
  for (int i = 0; i < 12; i++) assert_int_equal(rt_hub_publish(hub, "late", 4, "[1]", 3, 0), 1);
  st = stats_of("late");
  assert_int_equal(st.messages_published, 12);
  assert_int_equal(st.messages_delivered, 12);
  assert_int_equal(st.bytes_published, 36);
  assert_int_equal(st.bytes_delivered, 36);
  assert_true(st.message_rate > 0.19 && st.message_rate < 0.21); /* 12 in a minute */
  assert_int_equal(st.last_activity_ms, 1600000);
  fake_release(&a);
  rt_hub_unsubscribe_all(hub, &a.peer);
}

int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_subscribe_unsubscribe),
      T(test_push),
      T(test_message_rate),
      T(test_stats_start_at_first_publish),
      T(test_names_use_length),
      T(test_publish_encodes_once),
      T(test_publish_to_missing_channel),
      T(test_publisher_receives_own),
      T(test_channel_lives_with_subscribers),
      T(test_stats_values_and_times),
      T(test_empty_stats_and_null_frees),
      T(test_refused_delivery_not_counted),
      T(test_unsubscribe_all),
      T(test_peer_channels),
      T(test_wall_clock),
      T(test_free_with_live_subscriptions),
      T(test_reenter_unsubscribe_self),
      T(test_reenter_unsubscribe_later_peer),
      T(test_reenter_unsubscribe_earlier_peer),
      T(test_reenter_subscribe_new_peer),
      T(test_reenter_subscribe_grows_array),
      T(test_reenter_subscribe_moves_inline_slot),
      T(test_reenter_publish_same_channel),
      T(test_reenter_publish_other_channel),
      T(test_reenter_all_leave),
      T(test_reenter_each_leaves_itself),
      T(test_reenter_all_leave_nested),
      T(test_reenter_all_leave_then_rejoin),
      T(test_reenter_unsubscribe_self_then_publish),
      T(test_reenter_unsubscribe_all_across_channels),
      T(test_reenter_compaction_keeps_indices),
      T(test_batch_two_publishes_one_entry),
      T(test_batch_join_between_publishes),
      T(test_batch_sizes),
      T(test_batch_per_channel),
      T(test_batch_open_list_bounded),
      T(test_batch_outlives_channel),
      T(test_batch_deliver_frames),
      T(test_batch_per_hub_with_shared_stats),
      T(test_many_peers_one_channel),
      T(test_many_channels_one_peer),
      T(test_random_against_model),
      T(test_oom_hub_new),
      T(test_oom_subscribe),
      T(test_oom_publish),
      T(test_oom_queries),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
