/*
 * Presence tests: a fake wall clock and a fake monotonic clock are plain
 * numbers passed to each call. Removal callbacks copy what they see into a
 * recorder, so tests assert the exact entries of every leave. A seeded
 * random run checks the module against a naive model (arrays scanned
 * linearly), which covers the hash tables' growth and deletion paths.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "presence.h"

#define REC_MAX 64
#define TEXT_MAX 96

/* One entry as a callback saw it, copied out of the borrowed view. */
typedef struct {
  rt_presence_change_t change;
  char channel[TEXT_MAX];
  size_t channel_len;
  char client_id[TEXT_MAX];
  char user_id[TEXT_MAX];
  int has_user;
  char data[TEXT_MAX];
  size_t data_len;
  int64_t joined_at_ms;
  int64_t updated_at_ms;
} seen_t;

/* What removal callbacks reported, in order. */
typedef struct {
  seen_t seen[REC_MAX]; /* the first REC_MAX reports */
  size_t n;             /* all reports */
  rt_presence_t *p;     /* the object, for callbacks that inspect or change it */
  size_t count_in_cb;   /* rt_presence_count of the entry's channel during the last report */
  int get_in_cb;        /* rt_presence_get of the entry during the last report */
  const char *rejoin;   /* when set, the callback joins its client to this channel */
} recorder_t;

static rt_presence_t *pres;

static void copy_text(char *dst, const char *src, size_t n) {
  assert_true(n < TEXT_MAX);
  memcpy(dst, src, n);
  dst[n] = '\0';
}

static void seen_of(const rt_presence_entry_t *e, rt_presence_change_t change, seen_t *s) {
  memset(s, 0, sizeof(*s));
  s->change = change;
  copy_text(s->channel, e->channel, e->channel_len);
  assert_int_equal(strlen(e->channel), e->channel_len);
  s->channel_len = e->channel_len;
  copy_text(s->client_id, e->client_id, strlen(e->client_id));
  s->has_user = e->user_id != NULL;
  if (s->has_user) copy_text(s->user_id, e->user_id, strlen(e->user_id));
  copy_text(s->data, e->data, e->data_len);
  assert_int_equal(e->data[e->data_len], '\0');
  s->data_len = e->data_len;
  s->joined_at_ms = e->joined_at_ms;
  s->updated_at_ms = e->updated_at_ms;
}

static void record(const rt_presence_entry_t *e, rt_presence_change_t change, void *ud) {
  recorder_t *r = ud;
  if (r->n < REC_MAX) seen_of(e, change, &r->seen[r->n]);
  r->n++;
  if (r->p == NULL) return;
  r->count_in_cb = rt_presence_count(r->p, e->channel, e->channel_len);
  r->get_in_cb = rt_presence_get(r->p, e->channel, e->channel_len, e->client_id, NULL);
  if (r->rejoin != NULL)
    assert_int_equal(rt_presence_set(r->p, r->rejoin, strlen(r->rejoin), e->client_id, NULL, "1",
                                     1, 7, 7, NULL, NULL, NULL),
                     0);
}

static void assert_seen(const seen_t *s, rt_presence_change_t change, const char *channel,
                        const char *client, const char *user, const char *data, int64_t joined,
                        int64_t updated) {
  assert_int_equal(s->change, change);
  assert_string_equal(s->channel, channel);
  assert_int_equal(s->channel_len, strlen(channel));
  assert_string_equal(s->client_id, client);
  assert_int_equal(s->has_user, user != NULL);
  if (user != NULL) assert_string_equal(s->user_id, user);
  assert_int_equal(s->data_len, strlen(data));
  assert_memory_equal(s->data, data, strlen(data));
  assert_int_equal(s->joined_at_ms, joined);
  assert_int_equal(s->updated_at_ms, updated);
}

static void assert_view(const rt_presence_entry_t *e, const char *channel, const char *client,
                        const char *user, const char *data, int64_t joined, int64_t updated) {
  seen_t s;
  seen_of(e, RT_PRESENCE_JOIN, &s);
  assert_seen(&s, RT_PRESENCE_JOIN, channel, client, user, data, joined, updated);
}

/* Sets presence with NUL-terminated arguments; returns the change or a negative RT_E*. */
static int set_on(rt_presence_t *p, const char *ch, const char *client, const char *user,
                  const char *data, int64_t wall, int64_t mono) {
  rt_presence_change_t change = 0;
  rt_presence_entry_t e;
  int rc = rt_presence_set(p, ch, strlen(ch), client, user, data, strlen(data), wall, mono,
                           &change, &e, NULL);
  if (rc != 0) return rc;
  assert_string_equal(e.client_id, client);
  return (int)change;
}

static int set(const char *ch, const char *client, const char *user, const char *data,
               int64_t wall, int64_t mono) {
  return set_on(pres, ch, client, user, data, wall, mono);
}

static int get(const char *ch, const char *client, rt_presence_entry_t *e) {
  return rt_presence_get(pres, ch, strlen(ch), client, e);
}

static size_t count(const char *ch) { return rt_presence_count(pres, ch, strlen(ch)); }

static int remove_one(const char *ch, const char *client, recorder_t *r) {
  return rt_presence_remove(pres, ch, strlen(ch), client, r != NULL ? record : NULL, r);
}

static void use_limits(size_t max_data, uint32_t max_entries, uint32_t timeout) {
  rt_presence_free(pres);
  rt_presence_limits_t lim = {max_data, max_entries, timeout};
  pres = rt_presence_new(&lim);
  assert_non_null(pres);
}

static int setup(void **state) {
  use_limits(0, 0, 1000);
  return 0;
}

static int teardown(void **state) {
  rt_presence_free(pres);
  pres = NULL;
  rt_alloc_fail_after(-1);
  return 0;
}

/* Appends "<client>," for each entry: the join order of a channel as text. */
static int list_client(const rt_presence_entry_t *e, void *ud) {
  char *out = ud;
  size_t n = strlen(out);
  assert_true(n + strlen(e->client_id) + 2 < 512);
  snprintf(out + n, 512 - n, "%s,", e->client_id);
  return 0;
}

static const char *order_of(const char *ch) {
  static char out[512];
  out[0] = '\0';
  assert_int_equal(rt_presence_foreach(pres, ch, strlen(ch), list_client, out), 0);
  return out;
}

/* ------------------------------------------------------ join/update/leave */

static void test_join_update_leave(void **state) {
  rt_presence_change_t change = 0;
  rt_presence_entry_t e;
  const char *d1 = "{\"name\":\"Alice\",\"status\":\"online\"}";
  assert_int_equal(rt_presence_set(pres, "lobby", 5, "client-123", "u1", d1, strlen(d1), 1000,
                                   50, &change, &e, NULL),
                   0);
  assert_int_equal(change, RT_PRESENCE_JOIN);
  assert_view(&e, "lobby", "client-123", "u1", d1, 1000, 1000);
  assert_int_equal(count("lobby"), 1);
  assert_int_equal(rt_presence_total(pres), 1);
  assert_int_equal(rt_presence_channel_count(pres), 1);

  const char *d2 = "{\"name\":\"Alice\",\"status\":\"away\",\"n\":[1,2,3]}";
  assert_int_equal(rt_presence_set(pres, "lobby", 5, "client-123", "u2", d2, strlen(d2), 2500,
                                   60, &change, &e, NULL),
                   0);
  assert_int_equal(change, RT_PRESENCE_UPDATE);
  assert_view(&e, "lobby", "client-123", "u2", d2, 1000, 2500);
  assert_int_equal(count("lobby"), 1);
  assert_int_equal(rt_presence_total(pres), 1);

  assert_int_equal(get("lobby", "client-123", &e), 0);
  assert_view(&e, "lobby", "client-123", "u2", d2, 1000, 2500);
  assert_int_equal(get("lobby", "client-12", NULL), RT_ENOENT);
  assert_int_equal(get("lobb", "client-123", NULL), RT_ENOENT);

  recorder_t r = {0};
  r.p = pres;
  assert_int_equal(remove_one("lobby", "client-123", &r), 0);
  assert_int_equal(r.n, 1);
  assert_seen(&r.seen[0], RT_PRESENCE_LEAVE, "lobby", "client-123", "u2", d2, 1000, 2500);
  assert_int_equal(r.count_in_cb, 0);
  assert_int_equal(r.get_in_cb, RT_ENOENT);
  assert_int_equal(count("lobby"), 0);
  assert_int_equal(rt_presence_total(pres), 0);
  assert_int_equal(rt_presence_channel_count(pres), 0);

  assert_int_equal(remove_one("lobby", "client-123", &r), RT_ENOENT);
  assert_int_equal(remove_one("nowhere", "client-123", &r), RT_ENOENT);
  assert_int_equal(r.n, 1);
  assert_int_equal(rt_presence_remove(pres, "lobby", 5, "x", NULL, NULL), RT_ENOENT);
}

/* The module keeps its own copy: the caller's buffers may change right after. */
static void test_inputs_are_copied(void **state) {
  char ch[] = "room:1", id[] = "k1", user[] = "user", data[] = "[\"abc\",  1.50e3 ]";
  rt_presence_entry_t e;
  assert_int_equal(rt_presence_set(pres, ch, 6, id, user, data, strlen(data), 1, 1, NULL, NULL,
                                   NULL),
                   0);
  memset(ch, 'x', 6);
  memset(id, 'x', 2);
  memset(user, 'x', 4);
  memset(data, 'x', strlen(data));
  assert_int_equal(get("room:1", "k1", &e), 0);
  assert_view(&e, "room:1", "k1", "user", "[\"abc\",  1.50e3 ]", 1, 1);
}

/* Channel names are (pointer, length): only the given bytes count. */
static void test_channel_length_is_used(void **state) {
  assert_int_equal(rt_presence_set(pres, "lobby-extra", 5, "a", NULL, "1", 1, 1, 1, NULL, NULL,
                                   NULL),
                   0);
  assert_int_equal(count("lobby"), 1);
  assert_int_equal(count("lobby-extra"), 0);
}

static void test_user_id_null_and_replaced(void **state) {
  rt_presence_entry_t e;
  assert_int_equal(set("c", "a", NULL, "{}", 5, 5), RT_PRESENCE_JOIN);
  assert_int_equal(get("c", "a", &e), 0);
  assert_null(e.user_id);
  assert_int_equal(set("c", "a", "alice", "{}", 6, 6), RT_PRESENCE_UPDATE);
  assert_int_equal(get("c", "a", &e), 0);
  assert_string_equal(e.user_id, "alice");
  assert_int_equal(set("c", "a", NULL, "{}", 7, 7), RT_PRESENCE_UPDATE);
  assert_int_equal(get("c", "a", &e), 0);
  assert_null(e.user_id);
  assert_int_equal(e.joined_at_ms, 5);
  assert_int_equal(e.updated_at_ms, 7);
}

static void test_same_client_in_many_channels(void **state) {
  assert_int_equal(set("a", "k", NULL, "1", 10, 0), RT_PRESENCE_JOIN);
  assert_int_equal(set("b", "k", NULL, "2", 20, 0), RT_PRESENCE_JOIN);
  assert_int_equal(set("a", "j", NULL, "3", 30, 0), RT_PRESENCE_JOIN);
  assert_int_equal(rt_presence_total(pres), 3);
  assert_int_equal(rt_presence_channel_count(pres), 2);
  rt_presence_entry_t e;
  assert_int_equal(get("b", "k", &e), 0);
  assert_view(&e, "b", "k", NULL, "2", 20, 20);
  assert_int_equal(get("b", "j", NULL), RT_ENOENT);
}

static void test_invalid_arguments(void **state) {
  rt_errbuf_t err = {""};
  assert_int_equal(rt_presence_set(pres, "c", 1, NULL, NULL, "1", 1, 1, 1, NULL, NULL, &err),
                   RT_EINVAL);
  assert_string_equal(err.msg, "Presence needs a client id and data");
  assert_int_equal(rt_presence_set(pres, "c", 1, "a", NULL, NULL, 1, 1, 1, NULL, NULL, NULL),
                   RT_EINVAL);
  assert_int_equal(rt_presence_set(pres, "c", 1, "a", NULL, "1", 0, 1, 1, NULL, NULL, NULL),
                   RT_EINVAL);
  assert_int_equal(rt_presence_total(pres), 0);
  assert_int_equal(rt_presence_channel_count(pres), 0);
}

/* ---------------------------------------------------------------- limits */

static void test_data_size_limit(void **state) {
  use_limits(10, 0, 1000);
  rt_errbuf_t err = {""};
  rt_presence_change_t change = 0;
  assert_int_equal(rt_presence_set(pres, "c", 1, "a", NULL, "\"12345678\"", 10, 1, 1, &change,
                                   NULL, &err),
                   0);
  assert_int_equal(change, RT_PRESENCE_JOIN);
  assert_string_equal(err.msg, "");
  assert_int_equal(rt_presence_set(pres, "c", 1, "b", NULL, "\"123456789\"", 11, 2, 2, NULL,
                                   NULL, &err),
                   RT_ETOOLARGE);
  assert_string_equal(err.msg, "Presence data too large: 11 bytes (limit 10)");
  assert_int_equal(get("c", "b", NULL), RT_ENOENT);

  /* A refused update keeps the old data and times. */
  assert_int_equal(rt_presence_set(pres, "c", 1, "a", NULL, "\"123456789\"", 11, 3, 3, NULL,
                                   NULL, NULL),
                   RT_ETOOLARGE);
  rt_presence_entry_t e;
  assert_int_equal(get("c", "a", &e), 0);
  assert_view(&e, "c", "a", NULL, "\"12345678\"", 1, 1);
  assert_int_equal(rt_presence_total(pres), 1);
}

static void test_entries_per_channel_limit(void **state) {
  use_limits(0, 3, 1000);
  assert_int_equal(set("room", "a", NULL, "1", 1, 1), RT_PRESENCE_JOIN);
  assert_int_equal(set("room", "b", NULL, "1", 2, 2), RT_PRESENCE_JOIN);
  assert_int_equal(set("room", "c", NULL, "1", 3, 3), RT_PRESENCE_JOIN);

  rt_errbuf_t err = {""};
  assert_int_equal(rt_presence_set(pres, "room", 4, "d", "ud", "1", 1, 4, 4, NULL, NULL, &err),
                   RT_EPRESENCEFULL);
  assert_string_equal(err.msg, "Presence channel full: 3 entries (limit 3)");
  assert_int_equal(count("room"), 3);
  assert_int_equal(rt_presence_total(pres), 3);
  /* The refused join left no client record behind. */
  assert_int_equal(rt_presence_remove_client(pres, "d", NULL, NULL), 0);

  /* Updates are allowed when full; other channels are not affected. */
  assert_int_equal(set("room", "b", NULL, "2", 5, 5), RT_PRESENCE_UPDATE);
  assert_int_equal(set("other", "d", NULL, "1", 6, 6), RT_PRESENCE_JOIN);
  assert_int_equal(count("room"), 3);

  /* A leave makes room again. */
  assert_int_equal(remove_one("room", "a", NULL), 0);
  assert_int_equal(set("room", "d", NULL, "1", 7, 7), RT_PRESENCE_JOIN);
  assert_int_equal(set("room", "e", NULL, "1", 8, 8), RT_EPRESENCEFULL);
  assert_string_equal(order_of("room"), "b,c,d,");
}

static void test_no_limits_when_zero(void **state) {
  use_limits(0, 0, 0);
  char big[4096];
  memset(big, '1', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  char id[16];
  for (int i = 0; i < 100; i++) {
    snprintf(id, sizeof(id), "k%d", i);
    assert_int_equal(set("room", id, NULL, big, 1, 0), RT_PRESENCE_JOIN);
  }
  assert_int_equal(count("room"), 100);
  assert_int_equal(rt_presence_sweep(pres, INT64_MAX, NULL, NULL), 0);
  assert_int_equal(rt_presence_sweep_visited(pres), 0);
  assert_int_equal(count("room"), 100);
}

static void test_new_null_limits(void **state) {
  rt_presence_t *p = rt_presence_new(NULL);
  assert_non_null(p);
  assert_int_equal(set_on(p, "c", "a", NULL, "1", 1, 1), RT_PRESENCE_JOIN);
  assert_int_equal(rt_presence_sweep(p, INT64_MAX, NULL, NULL), 0);
  assert_int_equal(rt_presence_total(p), 1);
  rt_presence_free(p);
  rt_presence_free(NULL);
}

/* ---------------------------------------------------------- remove_client */

static void test_remove_client(void **state) {
  assert_int_equal(set("a", "k", "u", "1", 10, 1), RT_PRESENCE_JOIN);
  assert_int_equal(set("b", "j", NULL, "2", 20, 2), RT_PRESENCE_JOIN);
  assert_int_equal(set("b", "k", "u", "3", 30, 3), RT_PRESENCE_JOIN);
  assert_int_equal(set("c", "k", "u", "4", 40, 4), RT_PRESENCE_JOIN);
  assert_int_equal(set("a", "k", "u", "5", 50, 5), RT_PRESENCE_UPDATE);

  recorder_t r = {0};
  r.p = pres;
  assert_int_equal(rt_presence_remove_client(pres, "k", record, &r), 3);
  assert_int_equal(r.n, 3);
  assert_seen(&r.seen[0], RT_PRESENCE_LEAVE, "a", "k", "u", "5", 10, 50);
  assert_seen(&r.seen[1], RT_PRESENCE_LEAVE, "b", "k", "u", "3", 30, 30);
  assert_seen(&r.seen[2], RT_PRESENCE_LEAVE, "c", "k", "u", "4", 40, 40);
  assert_int_equal(rt_presence_total(pres), 1);
  assert_int_equal(rt_presence_channel_count(pres), 1);
  assert_int_equal(count("b"), 1);
  assert_int_equal(get("b", "j", NULL), 0);

  assert_int_equal(rt_presence_remove_client(pres, "k", record, &r), 0);
  assert_int_equal(rt_presence_remove_client(pres, "nobody", record, &r), 0);
  assert_int_equal(r.n, 3);

  /* A callback that joins the same client elsewhere: the new entry stays. */
  assert_int_equal(set("a", "k", NULL, "1", 60, 6), RT_PRESENCE_JOIN);
  assert_int_equal(set("b", "k", NULL, "1", 60, 6), RT_PRESENCE_JOIN);
  r.rejoin = "after";
  assert_int_equal(rt_presence_remove_client(pres, "k", record, &r), 2);
  assert_int_equal(r.n, 5);
  assert_int_equal(get("after", "k", NULL), 0);
  assert_int_equal(get("a", "k", NULL), RT_ENOENT);
  assert_int_equal(get("b", "k", NULL), RT_ENOENT);
  assert_int_equal(rt_presence_total(pres), 2);
}

/* A callback that removes the client's other entries ends the walk cleanly. */
static void remove_all_of_client(const rt_presence_entry_t *e, rt_presence_change_t change,
                                 void *ud) {
  size_t *calls = ud;
  (*calls)++;
  char id[TEXT_MAX];
  copy_text(id, e->client_id, strlen(e->client_id));
  rt_presence_remove_client(pres, id, NULL, NULL);
}

static void test_remove_client_reentrant(void **state) {
  for (int i = 0; i < 5; i++) {
    char ch[16];
    snprintf(ch, sizeof(ch), "c%d", i);
    assert_int_equal(set(ch, "k", NULL, "1", 1, 1), RT_PRESENCE_JOIN);
  }
  size_t calls = 0;
  assert_int_equal(rt_presence_remove_client(pres, "k", remove_all_of_client, &calls), 1);
  assert_int_equal(calls, 1);
  assert_int_equal(rt_presence_total(pres), 0);
  assert_int_equal(rt_presence_channel_count(pres), 0);
}

/* -------------------------------------------------------- expiry and touch */

static void test_touch_keeps_entries_alive(void **state) {
  assert_int_equal(set("c", "a", NULL, "1", 100, 0), RT_PRESENCE_JOIN);
  assert_int_equal(set("c", "b", NULL, "1", 100, 0), RT_PRESENCE_JOIN);
  assert_int_equal(set("d", "a", NULL, "1", 100, 0), RT_PRESENCE_JOIN);
  rt_presence_touch_client(pres, "a", 900);
  rt_presence_touch_client(pres, "nobody", 900);

  recorder_t r = {0};
  assert_int_equal(rt_presence_sweep(pres, 999, record, &r), 0);
  assert_int_equal(r.n, 0);
  assert_int_equal(rt_presence_sweep(pres, 1000, record, &r), 1);
  assert_int_equal(r.n, 1);
  assert_seen(&r.seen[0], RT_PRESENCE_LEAVE, "c", "b", NULL, "1", 100, 100);
  assert_int_equal(rt_presence_sweep_visited(pres), 2);

  /* A touch refreshes expiry only: data and times stay. */
  rt_presence_entry_t e;
  assert_int_equal(get("c", "a", &e), 0);
  assert_view(&e, "c", "a", NULL, "1", 100, 100);

  assert_int_equal(rt_presence_sweep(pres, 1899, record, &r), 0);
  assert_int_equal(rt_presence_sweep(pres, 1900, record, &r), 2);
  assert_int_equal(r.n, 3);
  assert_string_equal(r.seen[1].client_id, "a");
  assert_string_equal(r.seen[2].client_id, "a");
  assert_int_equal(rt_presence_total(pres), 0);
  assert_int_equal(rt_presence_channel_count(pres), 0);
  assert_int_equal(rt_presence_sweep(pres, 5000, record, &r), 0);
  assert_int_equal(rt_presence_sweep_visited(pres), 0);
}

static void test_update_refreshes_expiry(void **state) {
  assert_int_equal(set("c", "a", NULL, "1", 100, 0), RT_PRESENCE_JOIN);
  assert_int_equal(set("c", "b", NULL, "1", 100, 10), RT_PRESENCE_JOIN);
  assert_int_equal(set("c", "a", NULL, "2", 200, 500), RT_PRESENCE_UPDATE);
  recorder_t r = {0};
  assert_int_equal(rt_presence_sweep(pres, 1010, record, &r), 1);
  assert_string_equal(r.seen[0].client_id, "b");
  assert_int_equal(rt_presence_sweep(pres, 1499, record, &r), 0);
  assert_int_equal(rt_presence_sweep(pres, 1500, record, &r), 1);
  assert_seen(&r.seen[1], RT_PRESENCE_LEAVE, "c", "a", NULL, "2", 100, 200);
}

static void test_rejoin_after_expiry_gets_new_joined_at(void **state) {
  assert_int_equal(set("c", "a", "u", "1", 1000, 0), RT_PRESENCE_JOIN);
  assert_int_equal(rt_presence_sweep(pres, 1000, NULL, NULL), 1);
  assert_int_equal(get("c", "a", NULL), RT_ENOENT);
  rt_presence_entry_t e;
  assert_int_equal(set("c", "a", "u", "2", 5000, 1001), RT_PRESENCE_JOIN);
  assert_int_equal(get("c", "a", &e), 0);
  assert_view(&e, "c", "a", "u", "2", 5000, 5000);
}

/* A stamp from a clock that stepped back is raised to the newest one seen. */
static void test_monotonic_stamp_never_goes_back(void **state) {
  assert_int_equal(set("c", "a", NULL, "1", 1, 1000), RT_PRESENCE_JOIN);
  assert_int_equal(set("c", "b", NULL, "1", 1, 500), RT_PRESENCE_JOIN);
  assert_int_equal(rt_presence_sweep(pres, 1999, NULL, NULL), 0);
  assert_int_equal(rt_presence_sweep(pres, 2000, NULL, NULL), 2);
  /* b's late stamp (1500) counts as 2500, so it outlives a's removal. */
  assert_int_equal(set("c", "a", NULL, "1", 1, 2500), RT_PRESENCE_JOIN);
  assert_int_equal(set("c", "b", NULL, "1", 1, 1500), RT_PRESENCE_JOIN);
  assert_int_equal(set("c", "d", NULL, "1", 1, 2500), RT_PRESENCE_JOIN);
  assert_int_equal(remove_one("c", "a", NULL), 0);
  assert_int_equal(rt_presence_sweep(pres, 3000, NULL, NULL), 0);
  assert_int_equal(rt_presence_sweep(pres, 3500, NULL, NULL), 2);
  /* A sweep with a time before the stamps removes nothing. */
  assert_int_equal(set("c", "a", NULL, "1", 1, 4000), RT_PRESENCE_JOIN);
  assert_int_equal(rt_presence_sweep(pres, -5, NULL, NULL), 0);
  assert_int_equal(rt_presence_sweep(pres, INT64_MIN, NULL, NULL), 0);
  assert_int_equal(rt_presence_sweep(pres, INT64_MAX, NULL, NULL), 1);
}

/*
 * 10,000 entries in 100 channels, 10,000 clients. All join at mono 0; all but
 * five are touched at 600. The sweep at 1000 must report exactly the five, and
 * examine six entries (the five plus the first live one): a sweep that scanned
 * every entry would report 10,000 here.
 */
static void test_sweep_10000_few_expire(void **state) {
  enum { N = 10000 };
  static const int stale[] = {7, 1234, 5000, 8888, 9999};
  char id[16], ch[16];
  for (int i = 0; i < N; i++) {
    snprintf(id, sizeof(id), "%d", i);
    snprintf(ch, sizeof(ch), "ch%d", i % 100);
    assert_int_equal(set(ch, id, NULL, "{}", 42, 0), RT_PRESENCE_JOIN);
  }
  assert_int_equal(rt_presence_total(pres), N);
  assert_int_equal(rt_presence_channel_count(pres), 100);
  for (int i = 0, s = 0; i < N; i++) {
    if (s < 5 && i == stale[s]) {
      s++;
      continue;
    }
    snprintf(id, sizeof(id), "%d", i);
    rt_presence_touch_client(pres, id, 600);
  }

  recorder_t r = {0};
  assert_int_equal(rt_presence_sweep(pres, 999, record, &r), 0);
  assert_int_equal(rt_presence_sweep_visited(pres), 1);
  assert_int_equal(rt_presence_sweep(pres, 1000, record, &r), 5);
  assert_int_equal(r.n, 5);
  assert_int_equal(rt_presence_sweep_visited(pres), 6);
  for (int s = 0; s < 5; s++) {
    snprintf(id, sizeof(id), "%d", stale[s]);
    snprintf(ch, sizeof(ch), "ch%d", stale[s] % 100);
    assert_seen(&r.seen[s], RT_PRESENCE_LEAVE, ch, id, NULL, "{}", 42, 42);
  }
  assert_int_equal(rt_presence_total(pres), N - 5);
  assert_int_equal(count("ch7"), 99);
  assert_int_equal(count("ch0"), 99);
  assert_int_equal(count("ch34"), 99);
  assert_int_equal(count("ch1"), 100);

  /* Staggered refreshes: the sweep pops exactly the prefix that expired. */
  for (int i = 0; i < N; i++) {
    snprintf(id, sizeof(id), "%d", i);
    rt_presence_touch_client(pres, id, 2000 + i);
  }
  assert_int_equal(rt_presence_sweep(pres, 3003, record, &r), 4);
  assert_int_equal(rt_presence_sweep_visited(pres), 5);
  assert_string_equal(r.seen[5].client_id, "0");
  assert_string_equal(r.seen[8].client_id, "3");
  assert_int_equal(rt_presence_sweep(pres, 2000 + N + 1000, NULL, NULL), N - 9);
  assert_int_equal(rt_presence_total(pres), 0);
  assert_int_equal(rt_presence_channel_count(pres), 0);
}

/* A sweep callback may change the object: here it removes a live entry and re-joins. */
static void test_sweep_callback_reentrant(void **state) {
  assert_int_equal(set("c", "a", NULL, "1", 1, 0), RT_PRESENCE_JOIN);
  assert_int_equal(set("c", "b", NULL, "1", 1, 0), RT_PRESENCE_JOIN);
  assert_int_equal(set("c", "z", NULL, "1", 1, 500), RT_PRESENCE_JOIN);
  recorder_t r = {0};
  r.p = pres;
  r.rejoin = "back";
  assert_int_equal(rt_presence_sweep(pres, 1000, record, &r), 2);
  assert_int_equal(r.n, 2);
  assert_int_equal(r.count_in_cb, 1);
  assert_int_equal(r.get_in_cb, RT_ENOENT);
  assert_string_equal(order_of("back"), "a,b,");
  assert_string_equal(order_of("c"), "z,");
}

/* ------------------------------------------------------------- foreach */

static int stop_at_b(const rt_presence_entry_t *e, void *ud) {
  (*(int *)ud)++;
  return strcmp(e->client_id, "b") == 0 ? 42 : 0;
}

static void test_foreach_join_order(void **state) {
  assert_int_equal(set("c", "c", NULL, "1", 1, 1), RT_PRESENCE_JOIN);
  assert_int_equal(set("c", "a", NULL, "1", 2, 2), RT_PRESENCE_JOIN);
  assert_int_equal(set("c", "b", NULL, "1", 3, 3), RT_PRESENCE_JOIN);
  assert_int_equal(set("c", "a", NULL, "2", 4, 4), RT_PRESENCE_UPDATE);
  assert_string_equal(order_of("c"), "c,a,b,");
  assert_int_equal(remove_one("c", "a", NULL), 0);
  assert_int_equal(set("c", "a", NULL, "3", 5, 5), RT_PRESENCE_JOIN);
  assert_string_equal(order_of("c"), "c,b,a,");

  int calls = 0;
  assert_int_equal(rt_presence_foreach(pres, "c", 1, stop_at_b, &calls), 42);
  assert_int_equal(calls, 2);
  calls = 0;
  assert_int_equal(rt_presence_foreach(pres, "none", 4, stop_at_b, &calls), 0);
  assert_int_equal(calls, 0);
}

/* ----------------------------------------------------------------- JSON */

static void assert_json(const rt_presence_entry_t *e, const char *want) {
  rt_strbuf_t b = {0};
  assert_int_equal(rt_strbuf_append(&b, "[", 1), 0);
  assert_int_equal(rt_presence_entry_json(e, &b), 0);
  assert_int_equal(b.len, strlen(want) + 1);
  assert_memory_equal(b.p + 1, want, strlen(want));
  assert_int_equal(b.p[b.len], '\0');
  rt_strbuf_destroy(&b);
}

static void test_entry_json_exact(void **state) {
  const char *data = "{ \"name\" : \"Al\\\"ice\", \"n\": [1, 2.50e1] }";
  assert_int_equal(set("lobby", "client-123", "user-1", data, 1700000000123, 1), 1);
  rt_presence_entry_t e;
  assert_int_equal(get("lobby", "client-123", &e), 0);
  assert_json(&e,
              "{\"clientId\":\"client-123\",\"userId\":\"user-1\","
              "\"data\":{ \"name\" : \"Al\\\"ice\", \"n\": [1, 2.50e1] },"
              "\"joinedAt\":1700000000123,\"updatedAt\":1700000000123}");

  assert_int_equal(set("lobby", "42", NULL, "null", 5, 1), 1);
  assert_int_equal(set("lobby", "42", NULL, "true", 9, 1), 2);
  assert_int_equal(get("lobby", "42", &e), 0);
  assert_json(&e, "{\"clientId\":\"42\",\"data\":true,\"joinedAt\":5,\"updatedAt\":9}");

  const char *id = "q\"b\\s/\n\x01\xc3\xa9";
  assert_int_equal(set("lobby", id, "u\"\t", "0", -3, 1), 1);
  assert_int_equal(get("lobby", id, &e), 0);
  assert_json(&e,
              "{\"clientId\":\"q\\\"b\\\\s/\\n\\u0001\xc3\xa9\",\"userId\":\"u\\\"\\t\","
              "\"data\":0,\"joinedAt\":-3,\"updatedAt\":-3}");

  /* Out of memory at every step: the buffer is left exactly as it was. */
  long n;
  for (n = 0;; n++) {
    rt_strbuf_t b = {0};
    assert_int_equal(rt_strbuf_append(&b, "xy", 2), 0);
    rt_alloc_fail_after(n);
    int rc = rt_presence_entry_json(&e, &b);
    rt_alloc_fail_after(-1);
    if (rc == 0) {
      rt_strbuf_destroy(&b);
      break;
    }
    assert_int_equal(rc, RT_ENOMEM);
    assert_int_equal(b.len, 2);
    assert_string_equal(b.p, "xy");
    rt_strbuf_destroy(&b);
  }
  assert_true(n >= 1);
}

/* ---------------------------------------------------------------- OOM */

static void test_oom_new(void **state) {
  long n;
  for (n = 0;; n++) {
    rt_alloc_fail_after(n);
    rt_presence_t *p = rt_presence_new(NULL);
    rt_alloc_fail_after(-1);
    if (p != NULL) {
      rt_presence_free(p);
      break;
    }
  }
  assert_int_equal(n, 1);
}

/*
 * Four channels c0..c3 each holding clients k0..k3: every table (channels,
 * clients, each channel's entries) is exactly at the size where one more item
 * makes it grow, so the OOM loops below reach every allocation of a join.
 */
static rt_presence_t *populated(void) {
  rt_presence_limits_t lim = {0, 0, 1000};
  rt_presence_t *p = rt_presence_new(&lim);
  assert_non_null(p);
  char ch[16], id[16];
  for (int c = 0; c < 4; c++)
    for (int k = 0; k < 4; k++) {
      snprintf(ch, sizeof(ch), "c%d", c);
      snprintf(id, sizeof(id), "k%d", k);
      assert_int_equal(set_on(p, ch, id, "u", "{\"v\":0}", 100 + c, 10 * c + k), 1);
    }
  return p;
}

static int json_each(const rt_presence_entry_t *e, void *ud) {
  rt_strbuf_t *b = ud;
  return rt_presence_entry_json(e, b) != 0 || rt_strbuf_append(b, "\n", 1) != 0;
}

/* Everything observable: counts and the JSON of every entry in join order. */
static void snapshot(const rt_presence_t *p, rt_strbuf_t *b) {
  static const char *const chans[] = {"c0", "c1", "c2", "c3", "c4", "new"};
  char line[64];
  snprintf(line, sizeof(line), "%zu/%zu\n", rt_presence_total(p), rt_presence_channel_count(p));
  assert_int_equal(rt_strbuf_append(b, line, strlen(line)), 0);
  for (size_t i = 0; i < sizeof(chans) / sizeof(chans[0]); i++) {
    assert_int_equal(rt_strbuf_append(b, chans[i], strlen(chans[i])), 0);
    assert_int_equal(rt_presence_foreach(p, chans[i], strlen(chans[i]), json_each, b), 0);
  }
}

/*
 * Runs one set on a fresh populated object with the n-th allocation failing,
 * n = 0, 1, ... until it succeeds. Every failure must return RT_ENOMEM with
 * the same observable state, and the object must then still expire all its
 * entries in their original order (so its lists and tables are intact).
 * Returns how many attempts failed.
 */
static long set_under_oom(const char *ch, const char *id, const char *data, int want_change) {
  rt_presence_t *p = populated();
  rt_strbuf_t before = {0};
  snapshot(p, &before);
  rt_presence_free(p);
  for (long n = 0;; n++) {
    p = populated();
    rt_errbuf_t err = {""};
    rt_presence_change_t change = 0;
    rt_alloc_fail_after(n);
    int rc = rt_presence_set(p, ch, strlen(ch), id, "u", data, strlen(data), 500, 500, &change,
                             NULL, &err);
    rt_alloc_fail_after(-1);
    if (rc == 0) {
      assert_int_equal(change, want_change);
      assert_int_equal(rt_presence_get(p, ch, strlen(ch), id, NULL), 0);
      assert_int_equal(rt_presence_sweep(p, 1500, NULL, NULL), 17 - (want_change == 2));
      assert_int_equal(rt_presence_channel_count(p), 0);
      rt_presence_free(p);
      rt_strbuf_destroy(&before);
      return n;
    }
    assert_int_equal(rc, RT_ENOMEM);
    assert_string_equal(err.msg, "Out of memory");
    rt_strbuf_t after = {0};
    snapshot(p, &after);
    assert_int_equal(after.len, before.len);
    assert_memory_equal(after.p, before.p, before.len);
    rt_strbuf_destroy(&after);
    recorder_t r = {0};
    assert_int_equal(rt_presence_sweep(p, 1021, record, &r), 10);
    assert_string_equal(r.seen[0].channel, "c0");
    assert_string_equal(r.seen[0].client_id, "k0");
    assert_string_equal(r.seen[9].channel, "c2");
    assert_string_equal(r.seen[9].client_id, "k1");
    assert_int_equal(rt_presence_sweep(p, 2000, NULL, NULL), 6);
    assert_int_equal(rt_presence_channel_count(p), 0);
    rt_presence_free(p);
  }
}

static void test_oom_set(void **state) {
  /* new channel + new client: channels table, channel, clients table, client,
     entry table, entry, payload */
  assert_int_equal(set_under_oom("new", "k9", "[1]", RT_PRESENCE_JOIN), 7);
  /* existing channel (table grows) + new client (table grows) */
  assert_int_equal(set_under_oom("c0", "k9", "[1]", RT_PRESENCE_JOIN), 5);
  /* new channel + existing client */
  assert_int_equal(set_under_oom("new", "k0", "[1]", RT_PRESENCE_JOIN), 5);
  /* update: one payload swap */
  assert_int_equal(set_under_oom("c1", "k2", "[1,2,3]", RT_PRESENCE_UPDATE), 1);
}

/* ---------------------------------------------------- model-based random run */

enum { M_CHANNELS = 12, M_CLIENTS = 40, M_MAX = M_CHANNELS * M_CLIENTS };

/* The naive model: one slot per (channel, client). */
typedef struct {
  int live;
  int version;     /* data is "[<version>]" */
  int64_t joined;
  int64_t updated;
  int64_t stamp;
  uint64_t seq;    /* join order */
  uint64_t touch;  /* refresh order */
} mslot_t;

typedef struct {
  mslot_t s[M_CHANNELS][M_CLIENTS];
  uint64_t seq;
  uint64_t touch;
  int64_t newest;
} model_t;

static uint64_t rng_state;

static uint32_t rnd(uint32_t n) {
  rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
  return (uint32_t)(rng_state >> 33) % n;
}

static void name_of(char *out, size_t cap, const char *prefix, int i) {
  snprintf(out, cap, "%s%d", prefix, i);
}

static void model_refresh(model_t *m, mslot_t *s, int64_t mono) {
  if (mono > m->newest) m->newest = mono;
  s->stamp = m->newest;
  s->touch = ++m->touch;
}

/* Leaves the model is expected to report, in the module's order, as "ch/k" lines. */
static void leave_line(char *out, size_t cap, int c, int k) {
  size_t n = strlen(out);
  snprintf(out + n, cap - n, "ch%d/k%d\n", c, k);
}

static void record_line(const rt_presence_entry_t *e, rt_presence_change_t change, void *ud) {
  char *out = ud;
  size_t n = strlen(out);
  assert_int_equal(change, RT_PRESENCE_LEAVE);
  snprintf(out + n, 8192 - n, "%s/%s\n", e->channel, e->client_id);
}

/* Removes model slots in increasing `key` order among those marked, writing their lines. */
static size_t model_take(model_t *m, int marked[M_CHANNELS][M_CLIENTS], int by_touch,
                         char *out) {
  size_t n = 0;
  for (;;) {
    int bc = -1, bk = -1;
    uint64_t best = UINT64_MAX;
    for (int c = 0; c < M_CHANNELS; c++)
      for (int k = 0; k < M_CLIENTS; k++) {
        uint64_t key = by_touch ? m->s[c][k].touch : m->s[c][k].seq;
        if (marked[c][k] && key < best) best = key, bc = c, bk = k;
      }
    if (bc < 0) return n;
    marked[bc][bk] = 0;
    m->s[bc][bk].live = 0;
    leave_line(out, 8192, bc, bk);
    n++;
  }
}

/* The clients of channel c in join order, as order_of() writes them. */
static void model_order(const model_t *m, int c, char *want, size_t cap) {
  want[0] = '\0';
  uint64_t prev = 0;
  for (;;) {
    int best = -1;
    for (int k = 0; k < M_CLIENTS; k++) {
      const mslot_t *s = &m->s[c][k];
      if (s->live && s->seq > prev && (best < 0 || s->seq < m->s[c][best].seq)) best = k;
    }
    if (best < 0) return;
    prev = m->s[c][best].seq;
    size_t n = strlen(want);
    snprintf(want + n, cap - n, "k%d,", best);
  }
}

static void model_check(const model_t *m) {
  size_t total = 0, chans = 0;
  char ch[16], id[16], data[16], want[512];
  for (int c = 0; c < M_CHANNELS; c++) {
    name_of(ch, sizeof(ch), "ch", c);
    size_t live = 0;
    for (int k = 0; k < M_CLIENTS; k++) {
      const mslot_t *s = &m->s[c][k];
      rt_presence_entry_t e;
      name_of(id, sizeof(id), "k", k);
      assert_int_equal(get(ch, id, &e), s->live ? 0 : RT_ENOENT);
      if (!s->live) continue;
      live++;
      snprintf(data, sizeof(data), "[%d]", s->version);
      assert_view(&e, ch, id, NULL, data, s->joined, s->updated);
    }
    model_order(m, c, want, sizeof(want));
    assert_int_equal(count(ch), live);
    assert_string_equal(order_of(ch), want);
    total += live;
    chans += live > 0;
  }
  assert_int_equal(rt_presence_total(pres), total);
  assert_int_equal(rt_presence_channel_count(pres), chans);
}

/* Refreshes the client's live slots in its join order, as the module walks them. */
static void model_touch(model_t *m, int k, int64_t mono) {
  uint64_t prev = 0;
  for (;;) {
    int best = -1;
    for (int c = 0; c < M_CHANNELS; c++) {
      const mslot_t *s = &m->s[c][k];
      if (s->live && s->seq > prev && (best < 0 || s->seq < m->s[best][k].seq)) best = c;
    }
    if (best < 0) return;
    prev = m->s[best][k].seq;
    model_refresh(m, &m->s[best][k], mono);
  }
}

static void model_step(model_t *m, int64_t *mono, int64_t wall) {
  static char got[8192], want[8192];
  int c = (int)rnd(M_CHANNELS), k = (int)rnd(M_CLIENTS), op = (int)rnd(100);
  char ch[16], id[16], data[16];
  name_of(ch, sizeof(ch), "ch", c);
  name_of(id, sizeof(id), "k", k);
  mslot_t *s = &m->s[c][k];
  int marked[M_CHANNELS][M_CLIENTS] = {{0}};
  got[0] = want[0] = '\0';
  *mono += rnd(40);
  if (op < 55) {
    s->version++;
    snprintf(data, sizeof(data), "[%d]", s->version);
    assert_int_equal(set(ch, id, NULL, data, wall, *mono), s->live ? 2 : 1);
    if (!s->live) {
      s->live = 1;
      s->joined = wall;
      s->seq = ++m->seq;
    }
    s->updated = wall;
    model_refresh(m, s, *mono);
  } else if (op < 70) {
    assert_int_equal(rt_presence_remove(pres, ch, strlen(ch), id, record_line, got),
                     s->live ? 0 : RT_ENOENT);
    if (s->live) leave_line(want, sizeof(want), c, k);
    s->live = 0;
  } else if (op < 75) {
    for (int j = 0; j < M_CHANNELS; j++) marked[j][k] = m->s[j][k].live;
    size_t n = model_take(m, marked, 0, want);
    assert_int_equal(rt_presence_remove_client(pres, id, record_line, got), n);
  } else if (op < 90) {
    rt_presence_touch_client(pres, id, *mono);
    model_touch(m, k, *mono);
  } else {
    for (int j = 0; j < M_CHANNELS; j++)
      for (int i = 0; i < M_CLIENTS; i++)
        marked[j][i] = m->s[j][i].live && *mono - m->s[j][i].stamp >= 1000;
    size_t n = model_take(m, marked, 1, want);
    assert_int_equal(rt_presence_sweep(pres, *mono, record_line, got), n);
  }
  assert_string_equal(got, want);
}

static void test_random_against_model(void **state) {
  static model_t m;
  memset(&m, 0, sizeof(m));
  m.newest = INT64_MIN;
  rng_state = 20240601;
  int64_t mono = 0;
  for (int step = 0; step < 20000; step++) {
    model_step(&m, &mono, 1000 + step);
    if (step % 500 == 0) model_check(&m);
  }
  model_check(&m);
}

int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_join_update_leave),
      T(test_inputs_are_copied),
      T(test_channel_length_is_used),
      T(test_user_id_null_and_replaced),
      T(test_same_client_in_many_channels),
      T(test_invalid_arguments),
      T(test_data_size_limit),
      T(test_entries_per_channel_limit),
      T(test_no_limits_when_zero),
      T(test_new_null_limits),
      T(test_remove_client),
      T(test_remove_client_reentrant),
      T(test_touch_keeps_entries_alive),
      T(test_update_refreshes_expiry),
      T(test_rejoin_after_expiry_gets_new_joined_at),
      T(test_monotonic_stamp_never_goes_back),
      T(test_sweep_10000_few_expire),
      T(test_sweep_callback_reentrant),
      T(test_foreach_join_order),
      T(test_entry_json_exact),
      T(test_oom_new),
      T(test_oom_set),
      T(test_random_against_model),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
