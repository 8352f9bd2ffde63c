/*
 * Rate limits: token buckets per client and operation, and the per-IP
 * connection counter.
 *
 * A client's limiter (rt_ratelimit_t) is a small fixed struct that allocates
 * nothing itself, so it costs O(1) memory per client; its owner decides where
 * it lives (the server allocates it only when the policy limits something,
 * see rt_rate_policy_limited). The clock is an argument (milliseconds, any epoch),
 * so tests drive it by hand; the arithmetic is integer and exact.
 *
 * Bucket semantics for a rule of `limit` per `window_ms` (both > 0):
 * - capacity is `limit` tokens, and a new bucket starts full, so a burst of
 *   `limit` commands is allowed at once and again after `window_ms` idle;
 * - tokens come back continuously at limit/window_ms (one every
 *   window_ms/limit ms), so the steady allowed rate is `limit` per window;
 * - credit is kept in units of 1/window_ms token (one token is `window_ms`
 *   units, and each millisecond adds `limit` units), so there is no rounding
 *   at all, whatever the ratio of limit to window;
 * - a clock that goes backwards counts as no time passing: credit resumes
 *   only once the clock is past the latest time already seen.
 *
 * Disconnect rule ("a client that keeps going past a multiple of its limit
 * is disconnected"): each bucket counts its refusals in a strike window that
 * opens at the first refusal and lasts `window_ms`; the next refusal after
 * it closes opens a new one. When, within one strike window, a bucket has
 * refused more than (disconnect_after - 1) * limit commands, the refusal
 * carries disconnect = 1. The bucket was empty when the window opened and
 * earns at most `limit` tokens during it, so this means the client tried
 * more than about disconnect_after times its allowance in one window: with
 * the default of 2 and 10 per minute, a client that has used its 10 and
 * keeps sending is disconnected at its 11th refusal within the minute after
 * the first one, while one sending steadily at twice the rate (20 a minute)
 * never is. disconnect_after = 1 disconnects at the first refusal; 0 never.
 */
#ifndef RT_CORE_RATELIMIT_H
#define RT_CORE_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "realtime/realtime.h"

/* The operations with their own limit. Every command is also a MESSAGE. */
typedef enum {
  RT_RATE_MESSAGE,   /* any command: maxMessagesPerMinute over windowMs */
  RT_RATE_SUBSCRIBE, /* subscribe: rateLimit.subscribe */
  RT_RATE_PUBLISH,   /* publish: rateLimit.publish */
  RT_RATE_PRESENCE,  /* presence commands: rateLimit.presence */
  RT_RATE_QUERY,     /* live queries: rateLimit.query */
  RT_RATE__COUNT     /* number of operations, not an operation */
} rt_rate_op_t;

/* Lower-case name of op ("message", "subscribe", ...); "unknown" when out of range. Static. */
const char *rt_rate_op_name(rt_rate_op_t op);
/* The op named by name (borrowed, NUL-terminated, exact lower case), or -1 (also for NULL). */
int rt_rate_op_parse(const char *name);

typedef struct {
  uint32_t limit;     /* commands per window; 0 = unlimited */
  uint32_t window_ms; /* length of the window; 0 = unlimited */
} rt_rate_rule_t;

/* Everything a limiter needs from the configuration; plain values, shared by all clients. */
typedef struct {
  rt_rate_rule_t rules[RT_RATE__COUNT]; /* one rule per operation, indexed by rt_rate_op_t */
  uint32_t disconnect_after;            /* multiple of a limit that disconnects; 0 = never */
} rt_rate_policy_t;

/* One operation's bucket. Open so it can be embedded; only this module touches the fields. */
typedef struct {
  uint64_t _units;        /* credit in 1/_window_ms token units, at most _limit * _window_ms */
  int64_t _last_ms;       /* latest clock value credited (never moves backwards) */
  int64_t _strike_ms;     /* when the current strike window opened */
  uint32_t _limit;        /* rule the credit is scaled for (0: bucket not in use) */
  uint32_t _window_ms;    /* window of that rule */
  uint32_t _strikes;      /* refusals in the current strike window (saturating) */
} rt_rate_bucket_t;

/* A client's limiter; about 200 bytes. A server allocates one per client only when its
 * policy limits something (rt_rate_policy_limited), at the client's first command. */
typedef struct {
  rt_rate_bucket_t _buckets[RT_RATE__COUNT]; /* indexed by rt_rate_op_t */
} rt_ratelimit_t;

/* What a refused rt_ratelimit_take() reports. */
typedef struct {
  uint32_t retry_after_ms; /* ms until the command would pass (>= 1) if nothing else is taken */
  int disconnect;          /* 1: past disconnect_after times its limit; close the client (1008) */
  rt_rate_op_t op;         /* the bucket that refused (the op's own one when both did), for logs */
} rt_rate_verdict_t;

/* 1 when the policy limits at least one operation; 0 when every rule is unlimited. */
int rt_rate_policy_limited(const rt_rate_policy_t *policy);

/*
 * Starts every bucket full at now_ms under the borrowed policy (not kept).
 * rl is caller-owned storage; there is no destroy, nothing is allocated.
 */
void rt_ratelimit_init(rt_ratelimit_t *rl, const rt_rate_policy_t *policy, int64_t now_ms);

/*
 * Charges one command of kind op: the RT_RATE_MESSAGE bucket and, when op is
 * another operation, op's own bucket. Both must have a whole token for the
 * command to pass, and then both are charged; a refused command charges
 * nothing (so retry_after_ms is exact) but counts a strike in each bucket
 * that refused (see the disconnect rule above).
 *
 * The policy is borrowed and may differ between calls (a configuration
 * reload): a bucket whose rule changed keeps its whole tokens, capped at the
 * new limit, and drops the fraction of a token it had earned. An unlimited
 * rule (limit or window 0) always passes.
 *
 * Returns 0 (allowed), RT_ERATE (refused: *out is filled when out is
 * non-NULL, and out->disconnect says whether to close the client) or
 * RT_EINVAL for an op out of range.
 */
int rt_ratelimit_take(rt_ratelimit_t *rl, const rt_rate_policy_t *policy, rt_rate_op_t op,
                      int64_t now_ms, rt_rate_verdict_t *out);

/*
 * Per-IP connection counter: a hash table from IP text to the number of open
 * connections, O(1) on average. An entry exists only while its count is
 * above zero, so memory follows the live connections. Keys are compared
 * byte for byte: the caller passes one canonical text per address (e.g.
 * uv_ip_name output, or an IPv6 /64 prefix if it wants to count per network).
 * Loop thread only.
 */
typedef struct rt_iplimit_s rt_iplimit_t;

/* Returns a new counter allowing `max` connections per IP (0 = no limit, still counted) or NULL. */
rt_iplimit_t *rt_iplimit_new(uint32_t max);
/* Frees the counter and every entry. NULL is a no-op. */
void rt_iplimit_free(rt_iplimit_t *t);
/*
 * Counts one more connection from ip (NUL-terminated, borrowed; copied when
 * it is new). Returns 0, RT_ELIMIT when ip already has `max` (nothing
 * changes), or RT_ENOMEM (nothing changes).
 */
int rt_iplimit_acquire(rt_iplimit_t *t, const char *ip);
/* Counts one connection less from ip; the entry is freed at zero. Unknown ip is a no-op. */
void rt_iplimit_release(rt_iplimit_t *t, const char *ip);
/* Open connections counted for ip (0 when unknown). */
uint32_t rt_iplimit_count(const rt_iplimit_t *t, const char *ip);
/* Number of distinct IPs with at least one connection. */
size_t rt_iplimit_size(const rt_iplimit_t *t);

#endif
