/*
 * Rate limiter tests with a fake clock: the time is an argument, so every
 * case states the milliseconds it runs at and checks exact token counts and
 * retry times. The per-IP counter is checked for counts, removal at zero,
 * growth past many addresses and allocation failure at every point.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "ratelimit.h"

#define DAY_MS 86400000u

/* A policy with only `op` limited (and optionally the message bucket). */
static rt_rate_policy_t policy_one(rt_rate_op_t op, uint32_t limit, uint32_t window_ms,
                                   uint32_t disconnect_after) {
  rt_rate_policy_t p;
  memset(&p, 0, sizeof(p));
  p.rules[op].limit = limit;
  p.rules[op].window_ms = window_ms;
  p.disconnect_after = disconnect_after;
  return p;
}

/* Takes `n` commands of kind op at `now`, all expected to pass. */
static void take_ok(rt_ratelimit_t *rl, const rt_rate_policy_t *p, rt_rate_op_t op, int64_t now,
                    int n) {
  for (int i = 0; i < n; i++) {
    rt_rate_verdict_t v;
    int rc = rt_ratelimit_take(rl, p, op, now, &v);
    if (rc != 0) print_error("take %d of %d at %lld refused\n", i + 1, n, (long long)now);
    assert_int_equal(rc, 0);
  }
}

/* One take at `now` expected to be refused; returns the verdict. */
static rt_rate_verdict_t take_refused(rt_ratelimit_t *rl, const rt_rate_policy_t *p,
                                      rt_rate_op_t op, int64_t now) {
  rt_rate_verdict_t v;
  memset(&v, 0xAB, sizeof(v));
  assert_int_equal(rt_ratelimit_take(rl, p, op, now, &v), RT_ERATE);
  return v;
}

static void test_op_names(void **state) {
  (void)state;
  static const char *const names[] = {"message", "subscribe", "publish", "presence", "query"};
  for (int i = 0; i < RT_RATE__COUNT; i++) {
    assert_string_equal(rt_rate_op_name((rt_rate_op_t)i), names[i]);
    assert_int_equal(rt_rate_op_parse(names[i]), i);
  }
  assert_string_equal(rt_rate_op_name(RT_RATE__COUNT), "unknown");
  assert_int_equal(rt_rate_op_parse("Publish"), -1);
  assert_int_equal(rt_rate_op_parse(""), -1);
  assert_int_equal(rt_rate_op_parse("publishx"), -1);
  assert_int_equal(rt_rate_op_parse(NULL), -1);
}

/* A fresh bucket allows exactly `limit` at once; the next one waits window/limit. */
static void test_burst(void **state) {
  (void)state;
  rt_rate_policy_t p = policy_one(RT_RATE_MESSAGE, 5, 1000, 0);
  rt_ratelimit_t rl;
  rt_ratelimit_init(&rl, &p, 0);
  take_ok(&rl, &p, RT_RATE_MESSAGE, 0, 5);
  rt_rate_verdict_t v = take_refused(&rl, &p, RT_RATE_MESSAGE, 0);
  assert_int_equal(v.retry_after_ms, 200);
  assert_int_equal(v.disconnect, 0);
  assert_int_equal(v.op, RT_RATE_MESSAGE);
}

/* Trying every millisecond for 10 s at 10/s: the burst of 10 plus one per 100 ms. */
static void test_steady_rate(void **state) {
  (void)state;
  rt_rate_policy_t p = policy_one(RT_RATE_MESSAGE, 10, 1000, 0);
  rt_ratelimit_t rl;
  rt_ratelimit_init(&rl, &p, 0);
  int allowed = 0;
  int64_t last_allowed = -1;
  for (int64_t t = 0; t <= 10000; t++) {
    while (rt_ratelimit_take(&rl, &p, RT_RATE_MESSAGE, t, NULL) == 0) {
      allowed++;
      if (t > 0) {
        assert_int_equal(t % 100, 0);
        assert_true(t > last_allowed);
      }
      last_allowed = t;
    }
  }
  assert_int_equal(allowed, 10 + 100);
}

/* A rate that does not divide the window (7 per minute) is still exact over time. */
static void test_uneven_rate_is_exact(void **state) {
  (void)state;
  rt_rate_policy_t p = policy_one(RT_RATE_MESSAGE, 7, 60000, 0);
  rt_ratelimit_t rl;
  rt_ratelimit_init(&rl, &p, 0);
  take_ok(&rl, &p, RT_RATE_MESSAGE, 0, 7);
  int allowed = 0;
  for (int64_t t = 1; t <= 7 * 60000; t += 13)
    if (rt_ratelimit_take(&rl, &p, RT_RATE_MESSAGE, t, NULL) == 0) allowed++;
  /* 7 minutes at 7 per minute is 49 tokens; the last one arrives at 420000, past the final try. */
  assert_int_equal(allowed, 48);
}

/* Idle time refills up to the capacity and no further. */
static void test_refill_after_idle(void **state) {
  (void)state;
  rt_rate_policy_t p = policy_one(RT_RATE_MESSAGE, 4, 1000, 0);
  rt_ratelimit_t rl;
  rt_ratelimit_init(&rl, &p, 0);
  take_ok(&rl, &p, RT_RATE_MESSAGE, 0, 4);
  take_refused(&rl, &p, RT_RATE_MESSAGE, 0);
  take_ok(&rl, &p, RT_RATE_MESSAGE, 1000, 4);
  take_refused(&rl, &p, RT_RATE_MESSAGE, 1000);
  take_ok(&rl, &p, RT_RATE_MESSAGE, 1000 + 50 * 1000, 4);
  take_refused(&rl, &p, RT_RATE_MESSAGE, 1000 + 50 * 1000);
  take_ok(&rl, &p, RT_RATE_MESSAGE, 51000 + 500, 2);
  take_refused(&rl, &p, RT_RATE_MESSAGE, 51000 + 500);
}

/* Credit earned within a window stops at the capacity too. */
static void test_capacity_within_window(void **state) {
  (void)state;
  rt_rate_policy_t p = policy_one(RT_RATE_MESSAGE, 10, 1000, 0);
  rt_ratelimit_t rl;
  rt_ratelimit_init(&rl, &p, 0);
  take_ok(&rl, &p, RT_RATE_MESSAGE, 0, 1);
  take_ok(&rl, &p, RT_RATE_MESSAGE, 500, 10);
  take_refused(&rl, &p, RT_RATE_MESSAGE, 500);
}

/* retry_after_ms is the exact time to one token, rounded up, and at least 1. */
static void test_retry_after_exact(void **state) {
  (void)state;
  rt_rate_policy_t p = policy_one(RT_RATE_MESSAGE, 3, 1000, 0);
  rt_ratelimit_t rl;
  rt_ratelimit_init(&rl, &p, 0);
  take_ok(&rl, &p, RT_RATE_MESSAGE, 0, 3);
  assert_int_equal(take_refused(&rl, &p, RT_RATE_MESSAGE, 0).retry_after_ms, 334);
  assert_int_equal(take_refused(&rl, &p, RT_RATE_MESSAGE, 100).retry_after_ms, 234);
  assert_int_equal(take_refused(&rl, &p, RT_RATE_MESSAGE, 333).retry_after_ms, 1);
  take_ok(&rl, &p, RT_RATE_MESSAGE, 334, 1);
  /* 334 ms earned 1002 units; the token cost 1000, so 2 of the next 1000 are already there. */
  assert_int_equal(take_refused(&rl, &p, RT_RATE_MESSAGE, 334).retry_after_ms, 333);
  take_ok(&rl, &p, RT_RATE_MESSAGE, 334 + 333, 1);
}

/* Each operation has its own bucket; all of them also draw on the message bucket. */
static void test_per_op_independence(void **state) {
  (void)state;
  rt_rate_policy_t p;
  memset(&p, 0, sizeof(p));
  p.rules[RT_RATE_PUBLISH] = (rt_rate_rule_t){2, 1000};
  p.rules[RT_RATE_SUBSCRIBE] = (rt_rate_rule_t){3, 1000};
  p.rules[RT_RATE_PRESENCE] = (rt_rate_rule_t){1, 500};
  rt_ratelimit_t rl;
  rt_ratelimit_init(&rl, &p, 0);
  take_ok(&rl, &p, RT_RATE_PUBLISH, 0, 2);
  rt_rate_verdict_t v = take_refused(&rl, &p, RT_RATE_PUBLISH, 0);
  assert_int_equal(v.op, RT_RATE_PUBLISH);
  assert_int_equal(v.retry_after_ms, 500);
  take_ok(&rl, &p, RT_RATE_SUBSCRIBE, 0, 3);
  take_refused(&rl, &p, RT_RATE_SUBSCRIBE, 0);
  take_ok(&rl, &p, RT_RATE_PRESENCE, 0, 1);
  assert_int_equal(take_refused(&rl, &p, RT_RATE_PRESENCE, 0).retry_after_ms, 500);
  take_ok(&rl, &p, RT_RATE_QUERY, 0, 100);
  take_ok(&rl, &p, RT_RATE_MESSAGE, 0, 100);
}

static void test_message_bucket_shared(void **state) {
  (void)state;
  rt_rate_policy_t p;
  memset(&p, 0, sizeof(p));
  p.rules[RT_RATE_MESSAGE] = (rt_rate_rule_t){4, 1000};
  p.rules[RT_RATE_PUBLISH] = (rt_rate_rule_t){10, 100000};
  rt_ratelimit_t rl;
  rt_ratelimit_init(&rl, &p, 0);
  take_ok(&rl, &p, RT_RATE_PUBLISH, 0, 2);
  take_ok(&rl, &p, RT_RATE_SUBSCRIBE, 0, 1);
  take_ok(&rl, &p, RT_RATE_MESSAGE, 0, 1);
  rt_rate_verdict_t v = take_refused(&rl, &p, RT_RATE_SUBSCRIBE, 0);
  assert_int_equal(v.op, RT_RATE_MESSAGE);
  assert_int_equal(v.retry_after_ms, 250);
  v = take_refused(&rl, &p, RT_RATE_PUBLISH, 0);
  assert_int_equal(v.op, RT_RATE_MESSAGE);
  /*
   * The refused publish did not charge the publish bucket: it still holds 8
   * (plus 0.25 earned by 2250 ms), so 8 more pass once messages allow, then
   * the publish bucket alone refuses.
   */
  take_ok(&rl, &p, RT_RATE_PUBLISH, 1000, 4);
  take_ok(&rl, &p, RT_RATE_PUBLISH, 2000, 4);
  assert_int_equal(take_refused(&rl, &p, RT_RATE_PUBLISH, 2250).op, RT_RATE_PUBLISH);
  take_ok(&rl, &p, RT_RATE_MESSAGE, 2250, 1);
}

/* A command refused by its own bucket costs nothing in the message bucket. */
static void test_refusal_charges_nothing(void **state) {
  (void)state;
  rt_rate_policy_t p;
  memset(&p, 0, sizeof(p));
  p.rules[RT_RATE_MESSAGE] = (rt_rate_rule_t){10, 1000};
  p.rules[RT_RATE_PUBLISH] = (rt_rate_rule_t){1, 1000};
  rt_ratelimit_t rl;
  rt_ratelimit_init(&rl, &p, 0);
  take_ok(&rl, &p, RT_RATE_PUBLISH, 0, 1);
  for (int i = 0; i < 5; i++)
    assert_int_equal(take_refused(&rl, &p, RT_RATE_PUBLISH, 0).op, RT_RATE_PUBLISH);
  take_ok(&rl, &p, RT_RATE_SUBSCRIBE, 0, 9);
  take_refused(&rl, &p, RT_RATE_SUBSCRIBE, 0);
}

/* When both buckets refuse, the wait is the longer of the two. */
static void test_both_refuse_longest_wait(void **state) {
  (void)state;
  rt_rate_policy_t p;
  memset(&p, 0, sizeof(p));
  p.rules[RT_RATE_MESSAGE] = (rt_rate_rule_t){2, 1000};
  p.rules[RT_RATE_QUERY] = (rt_rate_rule_t){1, 3000};
  rt_ratelimit_t rl;
  rt_ratelimit_init(&rl, &p, 0);
  take_ok(&rl, &p, RT_RATE_QUERY, 0, 1);
  take_ok(&rl, &p, RT_RATE_MESSAGE, 0, 1);
  rt_rate_verdict_t v = take_refused(&rl, &p, RT_RATE_QUERY, 0);
  assert_int_equal(v.retry_after_ms, 3000);
  assert_int_equal(v.op, RT_RATE_QUERY);
  take_refused(&rl, &p, RT_RATE_QUERY, 2999);
  take_ok(&rl, &p, RT_RATE_QUERY, 3000, 1);

  /* The other way round: the message bucket has the longer wait. */
  p.rules[RT_RATE_MESSAGE] = (rt_rate_rule_t){1, 3000};
  p.rules[RT_RATE_QUERY] = (rt_rate_rule_t){1, 1000};
  rt_ratelimit_init(&rl, &p, 0);
  take_ok(&rl, &p, RT_RATE_QUERY, 0, 1);
  v = take_refused(&rl, &p, RT_RATE_QUERY, 0);
  assert_int_equal(v.retry_after_ms, 3000);
  assert_int_equal(v.op, RT_RATE_QUERY);
}

static void test_unlimited(void **state) {
  (void)state;
  rt_rate_policy_t p;
  memset(&p, 0, sizeof(p));
  p.rules[RT_RATE_PUBLISH] = (rt_rate_rule_t){0, 1000};
  p.rules[RT_RATE_SUBSCRIBE] = (rt_rate_rule_t){5, 0};
  p.disconnect_after = 1;
  rt_ratelimit_t rl;
  rt_ratelimit_init(&rl, &p, 0);
  for (rt_rate_op_t op = 0; op < RT_RATE__COUNT; op++) take_ok(&rl, &p, op, 0, 100000);
  assert_int_equal(rt_ratelimit_take(&rl, &p, RT_RATE__COUNT, 0, NULL), RT_EINVAL);
  assert_int_equal(rt_ratelimit_take(&rl, &p, (rt_rate_op_t)-1, 0, NULL), RT_EINVAL);
}

/* The server allocates no per-client limiter for a policy that limits nothing. */
static void test_policy_limited(void **state) {
  (void)state;
  rt_rate_policy_t p;
  memset(&p, 0, sizeof(p));
  p.rules[RT_RATE_PUBLISH] = (rt_rate_rule_t){0, 1000}; /* a limit of 0: unlimited */
  p.rules[RT_RATE_SUBSCRIBE] = (rt_rate_rule_t){5, 0};  /* a window of 0: unlimited */
  p.disconnect_after = 1;
  assert_int_equal(rt_rate_policy_limited(&p), 0);
  p.rules[RT_RATE_QUERY] = (rt_rate_rule_t){1, 1};
  assert_int_equal(rt_rate_policy_limited(&p), 1);
  rt_rate_policy_t one = policy_one(RT_RATE_MESSAGE, 10, 60000, 0);
  assert_int_equal(rt_rate_policy_limited(&one), 1);
}

static void test_window_1ms(void **state) {
  (void)state;
  rt_rate_policy_t p = policy_one(RT_RATE_MESSAGE, 1, 1, 0);
  rt_ratelimit_t rl;
  rt_ratelimit_init(&rl, &p, 0);
  for (int64_t t = 0; t < 1000; t++) {
    take_ok(&rl, &p, RT_RATE_MESSAGE, t, 1);
    assert_int_equal(take_refused(&rl, &p, RT_RATE_MESSAGE, t).retry_after_ms, 1);
  }
  p = policy_one(RT_RATE_MESSAGE, 1000, 1, 0);
  rt_ratelimit_init(&rl, &p, 0);
  take_ok(&rl, &p, RT_RATE_MESSAGE, 0, 1000);
  assert_int_equal(take_refused(&rl, &p, RT_RATE_MESSAGE, 0).retry_after_ms, 1);
  take_ok(&rl, &p, RT_RATE_MESSAGE, 1, 1000);
  take_refused(&rl, &p, RT_RATE_MESSAGE, 1);
}

static void test_window_1day(void **state) {
  (void)state;
  rt_rate_policy_t p = policy_one(RT_RATE_MESSAGE, 1, DAY_MS, 0);
  rt_ratelimit_t rl;
  rt_ratelimit_init(&rl, &p, 0);
  take_ok(&rl, &p, RT_RATE_MESSAGE, 0, 1);
  assert_int_equal(take_refused(&rl, &p, RT_RATE_MESSAGE, 0).retry_after_ms, DAY_MS);
  assert_int_equal(take_refused(&rl, &p, RT_RATE_MESSAGE, DAY_MS - 1).retry_after_ms, 1);
  take_ok(&rl, &p, RT_RATE_MESSAGE, DAY_MS, 1);
  p = policy_one(RT_RATE_MESSAGE, 1000000, DAY_MS, 0);
  rt_ratelimit_init(&rl, &p, 0);
  take_ok(&rl, &p, RT_RATE_MESSAGE, 0, 1000000);
  /* 86.4 ms per token */
  assert_int_equal(take_refused(&rl, &p, RT_RATE_MESSAGE, 0).retry_after_ms, 87);
  take_ok(&rl, &p, RT_RATE_MESSAGE, 432, 5);
  take_refused(&rl, &p, RT_RATE_MESSAGE, 432);
}

/* The largest rule values do not overflow, and clock values near the int64 ends are fine. */
static void test_extreme_values(void **state) {
  (void)state;
  rt_rate_policy_t p = policy_one(RT_RATE_MESSAGE, UINT32_MAX, UINT32_MAX, UINT32_MAX);
  rt_ratelimit_t rl;
  rt_ratelimit_init(&rl, &p, INT64_MIN);
  take_ok(&rl, &p, RT_RATE_MESSAGE, INT64_MIN, 1000);
  take_ok(&rl, &p, RT_RATE_MESSAGE, INT64_MAX, 1000);
  p = policy_one(RT_RATE_MESSAGE, 1, UINT32_MAX, 0);
  rt_ratelimit_init(&rl, &p, INT64_MIN);
  take_ok(&rl, &p, RT_RATE_MESSAGE, INT64_MIN, 1);
  assert_int_equal(take_refused(&rl, &p, RT_RATE_MESSAGE, INT64_MIN).retry_after_ms, UINT32_MAX);
  take_ok(&rl, &p, RT_RATE_MESSAGE, INT64_MAX, 1);
  take_refused(&rl, &p, RT_RATE_MESSAGE, INT64_MAX);
  /* 2^48 ms idle at 2^16 per window: elapsed * limit would wrap to exactly 0. */
  p = policy_one(RT_RATE_MESSAGE, 1u << 16, 1u << 20, 0);
  rt_ratelimit_init(&rl, &p, 0);
  take_ok(&rl, &p, RT_RATE_MESSAGE, 0, 1 << 16);
  take_ok(&rl, &p, RT_RATE_MESSAGE, (int64_t)1 << 48, 1 << 16);
}

/* A clock that steps back earns nothing, and the same milliseconds are not credited twice. */
static void test_clock_backwards(void **state) {
  (void)state;
  rt_rate_policy_t p = policy_one(RT_RATE_MESSAGE, 10, 1000, 0);
  rt_ratelimit_t rl;
  rt_ratelimit_init(&rl, &p, 5000);
  take_ok(&rl, &p, RT_RATE_MESSAGE, 5000, 10);
  assert_int_equal(take_refused(&rl, &p, RT_RATE_MESSAGE, 5050).retry_after_ms, 50);
  assert_int_equal(take_refused(&rl, &p, RT_RATE_MESSAGE, 1000).retry_after_ms, 50);
  assert_int_equal(take_refused(&rl, &p, RT_RATE_MESSAGE, -100000).retry_after_ms, 50);
  assert_int_equal(take_refused(&rl, &p, RT_RATE_MESSAGE, 5050).retry_after_ms, 50);
  take_ok(&rl, &p, RT_RATE_MESSAGE, 5100, 1);
  take_refused(&rl, &p, RT_RATE_MESSAGE, 5100);
  /* Initialised in the future: no credit until the clock gets there. */
  rt_ratelimit_init(&rl, &p, 9000);
  take_ok(&rl, &p, RT_RATE_MESSAGE, 100, 10);
  take_refused(&rl, &p, RT_RATE_MESSAGE, 8999);
  take_ok(&rl, &p, RT_RATE_MESSAGE, 9100, 1);
}

/* Default multiple 2: more than `limit` refusals in one strike window disconnect. */
static void test_disconnect_rule(void **state) {
  (void)state;
  rt_rate_policy_t p = policy_one(RT_RATE_MESSAGE, 10, 60000, 2);
  rt_ratelimit_t rl;
  rt_ratelimit_init(&rl, &p, 0);
  take_ok(&rl, &p, RT_RATE_MESSAGE, 0, 10);
  for (int i = 1; i <= 10; i++) {
    rt_rate_verdict_t v = take_refused(&rl, &p, RT_RATE_MESSAGE, i);
    if (v.disconnect) print_error("refusal %d disconnected\n", i);
    assert_int_equal(v.disconnect, 0);
  }
  assert_int_equal(take_refused(&rl, &p, RT_RATE_MESSAGE, 11).disconnect, 1);
  assert_int_equal(take_refused(&rl, &p, RT_RATE_MESSAGE, 12).disconnect, 1);
}

/* 20 tries in the minute after the first refusal are tolerated, 21 are not. */
static void test_disconnect_counts_per_strike_window(void **state) {
  (void)state;
  rt_rate_policy_t p = policy_one(RT_RATE_MESSAGE, 10, 60000, 2);
  rt_ratelimit_t rl;
  rt_ratelimit_init(&rl, &p, 0);
  take_ok(&rl, &p, RT_RATE_MESSAGE, 0, 10);
  for (int i = 0; i < 10; i++)
    assert_int_equal(take_refused(&rl, &p, RT_RATE_MESSAGE, 0).disconnect, 0);
  /* A new window: the bucket is full again and the strike count starts over. */
  take_ok(&rl, &p, RT_RATE_MESSAGE, 60000, 10);
  for (int i = 0; i < 10; i++)
    assert_int_equal(take_refused(&rl, &p, RT_RATE_MESSAGE, 60000).disconnect, 0);
  /* Same strike window (opened at 60000): the 9 tokens earned by 119999 pass, then strike 11. */
  take_ok(&rl, &p, RT_RATE_MESSAGE, 119999, 9);
  assert_int_equal(take_refused(&rl, &p, RT_RATE_MESSAGE, 119999).disconnect, 1);
}

/* Sending steadily at the limit never strikes; at twice the limit it never passes 2x. */
static void test_steady_overuse_at_multiple(void **state) {
  (void)state;
  rt_rate_policy_t p = policy_one(RT_RATE_MESSAGE, 10, 1000, 2);
  rt_ratelimit_t rl;
  rt_ratelimit_init(&rl, &p, 0);
  take_ok(&rl, &p, RT_RATE_MESSAGE, 0, 10);
  int refused = 0;
  for (int64_t t = 50; t <= 60000; t += 50) {
    rt_rate_verdict_t v;
    int rc = rt_ratelimit_take(&rl, &p, RT_RATE_MESSAGE, t, &v);
    if (rc == RT_ERATE) {
      refused++;
      assert_int_equal(v.disconnect, 0);
    }
  }
  assert_int_equal(refused, 600);
}

static void test_disconnect_multiples(void **state) {
  (void)state;
  rt_ratelimit_t rl;
  rt_rate_policy_t p = policy_one(RT_RATE_PUBLISH, 5, 1000, 1);
  rt_ratelimit_init(&rl, &p, 0);
  take_ok(&rl, &p, RT_RATE_PUBLISH, 0, 5);
  assert_int_equal(take_refused(&rl, &p, RT_RATE_PUBLISH, 0).disconnect, 1);

  p = policy_one(RT_RATE_PUBLISH, 5, 1000, 3);
  rt_ratelimit_init(&rl, &p, 0);
  take_ok(&rl, &p, RT_RATE_PUBLISH, 0, 5);
  for (int i = 0; i < 10; i++)
    assert_int_equal(take_refused(&rl, &p, RT_RATE_PUBLISH, 0).disconnect, 0);
  assert_int_equal(take_refused(&rl, &p, RT_RATE_PUBLISH, 0).disconnect, 1);

  p = policy_one(RT_RATE_PUBLISH, 5, 1000, 0);
  rt_ratelimit_init(&rl, &p, 0);
  take_ok(&rl, &p, RT_RATE_PUBLISH, 0, 5);
  for (int i = 0; i < 100000; i++)
    assert_int_equal(take_refused(&rl, &p, RT_RATE_PUBLISH, 0).disconnect, 0);
}

/* Strikes are per bucket: refusals by the publish bucket do not count for subscribe. */
static void test_strikes_per_bucket(void **state) {
  (void)state;
  rt_rate_policy_t p;
  memset(&p, 0, sizeof(p));
  p.rules[RT_RATE_PUBLISH] = (rt_rate_rule_t){2, 1000};
  p.rules[RT_RATE_SUBSCRIBE] = (rt_rate_rule_t){2, 1000};
  p.disconnect_after = 2;
  rt_ratelimit_t rl;
  rt_ratelimit_init(&rl, &p, 0);
  take_ok(&rl, &p, RT_RATE_PUBLISH, 0, 2);
  take_ok(&rl, &p, RT_RATE_SUBSCRIBE, 0, 2);
  for (int i = 0; i < 2; i++) {
    assert_int_equal(take_refused(&rl, &p, RT_RATE_PUBLISH, 0).disconnect, 0);
    assert_int_equal(take_refused(&rl, &p, RT_RATE_SUBSCRIBE, 0).disconnect, 0);
  }
  assert_int_equal(take_refused(&rl, &p, RT_RATE_PUBLISH, 0).disconnect, 1);
}

/* A changed rule keeps the whole tokens, capped at the new limit. */
static void test_rule_change(void **state) {
  (void)state;
  rt_rate_policy_t p = policy_one(RT_RATE_MESSAGE, 10, 1000, 0);
  rt_ratelimit_t rl;
  rt_ratelimit_init(&rl, &p, 0);
  take_ok(&rl, &p, RT_RATE_MESSAGE, 0, 3);
  rt_rate_policy_t bigger = policy_one(RT_RATE_MESSAGE, 20, 1000, 0);
  take_ok(&rl, &bigger, RT_RATE_MESSAGE, 0, 7);
  assert_int_equal(take_refused(&rl, &bigger, RT_RATE_MESSAGE, 0).retry_after_ms, 50);

  rt_ratelimit_init(&rl, &p, 0);
  rt_rate_policy_t smaller = policy_one(RT_RATE_MESSAGE, 4, 2000, 0);
  take_ok(&rl, &smaller, RT_RATE_MESSAGE, 0, 4);
  assert_int_equal(take_refused(&rl, &smaller, RT_RATE_MESSAGE, 0).retry_after_ms, 500);

  /* Limited only later: the bucket starts full at the first take under the rule. */
  rt_rate_policy_t none = policy_one(RT_RATE_MESSAGE, 0, 0, 0);
  rt_ratelimit_init(&rl, &none, 0);
  take_ok(&rl, &none, RT_RATE_MESSAGE, 0, 50);
  take_ok(&rl, &p, RT_RATE_MESSAGE, 700, 10);
  take_refused(&rl, &p, RT_RATE_MESSAGE, 700);
}

static void test_out_may_be_null(void **state) {
  (void)state;
  rt_rate_policy_t p = policy_one(RT_RATE_MESSAGE, 1, 1000, 1);
  rt_ratelimit_t rl;
  rt_ratelimit_init(&rl, &p, 0);
  assert_int_equal(rt_ratelimit_take(&rl, &p, RT_RATE_MESSAGE, 0, NULL), 0);
  assert_int_equal(rt_ratelimit_take(&rl, &p, RT_RATE_MESSAGE, 0, NULL), RT_ERATE);
}

/* ---------------------------------------------------------------- iplimit */

static void test_iplimit_acquire_release(void **state) {
  (void)state;
  rt_iplimit_t *t = rt_iplimit_new(3);
  assert_non_null(t);
  assert_int_equal(rt_iplimit_count(t, "10.0.0.1"), 0);
  for (uint32_t i = 1; i <= 3; i++) {
    assert_int_equal(rt_iplimit_acquire(t, "10.0.0.1"), 0);
    assert_int_equal(rt_iplimit_count(t, "10.0.0.1"), i);
  }
  assert_int_equal(rt_iplimit_acquire(t, "10.0.0.1"), RT_ELIMIT);
  assert_int_equal(rt_iplimit_count(t, "10.0.0.1"), 3);
  assert_int_equal(rt_iplimit_acquire(t, "10.0.0.2"), 0);
  assert_int_equal(rt_iplimit_acquire(t, "::1"), 0);
  assert_int_equal(rt_iplimit_size(t), 3);
  rt_iplimit_release(t, "10.0.0.1");
  assert_int_equal(rt_iplimit_count(t, "10.0.0.1"), 2);
  assert_int_equal(rt_iplimit_acquire(t, "10.0.0.1"), 0);
  for (int i = 0; i < 3; i++) rt_iplimit_release(t, "10.0.0.1");
  assert_int_equal(rt_iplimit_count(t, "10.0.0.1"), 0);
  assert_int_equal(rt_iplimit_size(t), 2);
  rt_iplimit_release(t, "10.0.0.1");
  rt_iplimit_release(t, "192.0.2.9");
  assert_int_equal(rt_iplimit_size(t), 2);
  assert_int_equal(rt_iplimit_count(t, "10.0.0.2"), 1);
  rt_iplimit_release(t, "10.0.0.2");
  rt_iplimit_release(t, "::1");
  assert_int_equal(rt_iplimit_size(t), 0);
  rt_iplimit_free(t);
  rt_iplimit_free(NULL);
}

/* Keys are whole strings: a prefix or an extension is another address. */
static void test_iplimit_exact_keys(void **state) {
  (void)state;
  rt_iplimit_t *t = rt_iplimit_new(1);
  assert_non_null(t);
  assert_int_equal(rt_iplimit_acquire(t, "10.0.0.1"), 0);
  assert_int_equal(rt_iplimit_acquire(t, "10.0.0.10"), 0);
  assert_int_equal(rt_iplimit_acquire(t, "10.0.0."), 0);
  assert_int_equal(rt_iplimit_acquire(t, ""), 0);
  assert_int_equal(rt_iplimit_acquire(t, "10.0.0.1"), RT_ELIMIT);
  assert_int_equal(rt_iplimit_size(t), 4);
  rt_iplimit_free(t);
}

static void test_iplimit_unlimited(void **state) {
  (void)state;
  rt_iplimit_t *t = rt_iplimit_new(0);
  assert_non_null(t);
  for (int i = 0; i < 10000; i++) assert_int_equal(rt_iplimit_acquire(t, "203.0.113.7"), 0);
  assert_int_equal(rt_iplimit_count(t, "203.0.113.7"), 10000);
  for (int i = 0; i < 10000; i++) rt_iplimit_release(t, "203.0.113.7");
  assert_int_equal(rt_iplimit_size(t), 0);
  rt_iplimit_free(t);
}

static void ip_name(char *out, size_t n, int i) {
  snprintf(out, n, "2001:db8::%x:%x", i >> 16, i & 0xffff);
}

/* Many addresses grow the table; counts stay right and it empties completely. */
static void test_iplimit_many(void **state) {
  (void)state;
  enum { N = 20000 };
  rt_iplimit_t *t = rt_iplimit_new(2);
  assert_non_null(t);
  char ip[64];
  for (int i = 0; i < N; i++) {
    ip_name(ip, sizeof(ip), i);
    assert_int_equal(rt_iplimit_acquire(t, ip), 0);
    if (i % 2 == 0) assert_int_equal(rt_iplimit_acquire(t, ip), 0);
  }
  assert_int_equal(rt_iplimit_size(t), N);
  for (int i = 0; i < N; i++) {
    ip_name(ip, sizeof(ip), i);
    assert_int_equal(rt_iplimit_count(t, ip), i % 2 == 0 ? 2 : 1);
    assert_int_equal(rt_iplimit_acquire(t, ip), i % 2 == 0 ? RT_ELIMIT : 0);
  }
  for (int i = 0; i < N; i++) {
    ip_name(ip, sizeof(ip), i);
    rt_iplimit_release(t, ip);
    if (i % 3 == 0) {
      rt_iplimit_release(t, ip);
      assert_int_equal(rt_iplimit_count(t, ip), 0);
    }
  }
  assert_int_equal(rt_iplimit_size(t), N - (N + 2) / 3);
  for (int i = 0; i < N; i++) {
    ip_name(ip, sizeof(ip), i);
    if (i % 3 != 0) rt_iplimit_release(t, ip);
  }
  assert_int_equal(rt_iplimit_size(t), 0);
  rt_iplimit_free(t);
}

/*
 * Fails the n-th allocation for every n until a run needs no failure: an
 * acquire that fails leaves the count as it was, a failed growth changes
 * nothing visible, and everything is freed (ASan checks the leaks).
 */
static void test_iplimit_oom(void **state) {
  (void)state;
  enum { N = 100 };
  char ip[64];
  for (long n = 0;; n++) {
    rt_alloc_fail_after(n);
    int failed = 0;
    uint32_t expect[N] = {0};
    rt_iplimit_t *t = rt_iplimit_new(2);
    if (t == NULL) {
      rt_alloc_fail_after(-1);
      continue;
    }
    for (int round = 0; round < 3; round++) {
      for (int i = 0; i < N; i++) {
        ip_name(ip, sizeof(ip), i);
        int rc = rt_iplimit_acquire(t, ip);
        if (rc == RT_ENOMEM) failed = 1;
        else if (rc == 0) expect[i]++;
        else assert_int_equal(rc, RT_ELIMIT);
      }
    }
    rt_alloc_fail_after(-1);
    size_t live = 0;
    for (int i = 0; i < N; i++) {
      ip_name(ip, sizeof(ip), i);
      assert_int_equal(rt_iplimit_count(t, ip), expect[i]);
      live += expect[i] > 0;
    }
    assert_int_equal(rt_iplimit_size(t), live);
    for (int i = 0; i < N; i++) {
      ip_name(ip, sizeof(ip), i);
      for (uint32_t k = 0; k < expect[i]; k++) rt_iplimit_release(t, ip);
    }
    assert_int_equal(rt_iplimit_size(t), 0);
    rt_iplimit_free(t);
    if (!failed && n > 0) break;
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_op_names),
      cmocka_unit_test(test_burst),
      cmocka_unit_test(test_steady_rate),
      cmocka_unit_test(test_uneven_rate_is_exact),
      cmocka_unit_test(test_refill_after_idle),
      cmocka_unit_test(test_capacity_within_window),
      cmocka_unit_test(test_retry_after_exact),
      cmocka_unit_test(test_per_op_independence),
      cmocka_unit_test(test_message_bucket_shared),
      cmocka_unit_test(test_refusal_charges_nothing),
      cmocka_unit_test(test_both_refuse_longest_wait),
      cmocka_unit_test(test_unlimited),
      cmocka_unit_test(test_policy_limited),
      cmocka_unit_test(test_window_1ms),
      cmocka_unit_test(test_window_1day),
      cmocka_unit_test(test_extreme_values),
      cmocka_unit_test(test_clock_backwards),
      cmocka_unit_test(test_disconnect_rule),
      cmocka_unit_test(test_disconnect_counts_per_strike_window),
      cmocka_unit_test(test_steady_overuse_at_multiple),
      cmocka_unit_test(test_disconnect_multiples),
      cmocka_unit_test(test_strikes_per_bucket),
      cmocka_unit_test(test_rule_change),
      cmocka_unit_test(test_out_may_be_null),
      cmocka_unit_test(test_iplimit_acquire_release),
      cmocka_unit_test(test_iplimit_exact_keys),
      cmocka_unit_test(test_iplimit_unlimited),
      cmocka_unit_test(test_iplimit_many),
      cmocka_unit_test(test_iplimit_oom),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
