/*
 * Token buckets per client and operation, and the per-IP connection counter
 * (src/core/ratelimit.h states the semantics and the disconnect rule).
 *
 * A bucket keeps its credit in units of 1/window_ms token: one millisecond
 * earns exactly `limit` units and a token costs `window_ms` units, so the
 * continuous refill of limit/window_ms tokens per ms needs no division and
 * never rounds. With both values below 2^32 the capacity limit * window_ms
 * fits in 64 bits, and a refill never adds more than one window's worth, so
 * no product overflows.
 */
#include "hash.h"
#include "ratelimit.h"

#include <string.h>

#include "alloc.h"

static const char *const op_names[RT_RATE__COUNT] = {"message", "subscribe", "publish",
                                                       "presence", "query"};

const char *rt_rate_op_name(rt_rate_op_t op) {
  return (unsigned)op < RT_RATE__COUNT ? op_names[op] : "unknown";
}

int rt_rate_op_parse(const char *name) {
  if (name == NULL) return -1;
  for (int i = 0; i < RT_RATE__COUNT; i++)
    if (strcmp(name, op_names[i]) == 0) return i;
  return -1;
}

/* ----------------------------------------------------------------- buckets */

static int is_unlimited(const rt_rate_rule_t *r) { return r->limit == 0 || r->window_ms == 0; }

static uint64_t capacity(const rt_rate_bucket_t *b) { return (uint64_t)b->_limit * b->_window_ms; }

/* now - since in milliseconds when now is later, else 0 (a clock going backwards). */
static uint64_t elapsed_ms(int64_t since, int64_t now) {
  return now > since ? (uint64_t)now - (uint64_t)since : 0;
}

static void fill_bucket(rt_rate_bucket_t *b, const rt_rate_rule_t *r, int64_t now_ms) {
  memset(b, 0, sizeof(*b));
  b->_limit = r->limit;
  b->_window_ms = r->window_ms;
  b->_units = capacity(b);
  b->_last_ms = now_ms;
}

/*
 * Brings a bucket in line with the rule in force. A bucket never used (or
 * unlimited until now) starts full; one whose rule changed keeps its whole
 * tokens, capped at the new limit, because units scaled for one window mean
 * nothing under another, and whole tokens are what the client was promised.
 */
static void adopt_rule(rt_rate_bucket_t *b, const rt_rate_rule_t *r, int64_t now_ms) {
  if (b->_limit == r->limit && b->_window_ms == r->window_ms) return;
  if (b->_limit == 0 || b->_window_ms == 0) {
    fill_bucket(b, r, now_ms);
    return;
  }
  uint64_t tokens = b->_units / b->_window_ms;
  if (tokens > r->limit) tokens = r->limit;
  b->_limit = r->limit;
  b->_window_ms = r->window_ms;
  b->_units = tokens * r->window_ms;
}

/*
 * Credits the time since the last refill, capped at one window (which fills
 * the bucket anyway) so elapsed * limit cannot overflow. The stored time
 * only moves forward, so a clock stepping back and forth cannot earn the
 * same milliseconds twice.
 */
static void refill(rt_rate_bucket_t *b, int64_t now_ms) {
  uint64_t elapsed = elapsed_ms(b->_last_ms, now_ms);
  if (elapsed == 0) return;
  b->_last_ms = now_ms;
  if (elapsed > b->_window_ms) elapsed = b->_window_ms;
  uint64_t cap = capacity(b), earned = elapsed * b->_limit;
  b->_units = earned >= cap - b->_units ? cap : b->_units + earned;
}

static int has_token(const rt_rate_bucket_t *b) { return b->_units >= b->_window_ms; }

static void charge(rt_rate_bucket_t *b) { b->_units -= b->_window_ms; }

/* Milliseconds until the bucket holds one whole token: ceil(missing units / limit), >= 1. */
static uint32_t time_to_token(const rt_rate_bucket_t *b) {
  uint64_t missing = b->_window_ms - b->_units;
  return (uint32_t)((missing + b->_limit - 1) / b->_limit);
}

/*
 * Records a refusal and says whether it crosses the disconnect line: more
 * than (disconnect_after - 1) * limit refusals within the strike window
 * opened by the first refusal after the previous window ended.
 */
static int strike(rt_rate_bucket_t *b, uint32_t disconnect_after, int64_t now_ms) {
  if (b->_strikes == 0 || elapsed_ms(b->_strike_ms, now_ms) >= b->_window_ms) {
    b->_strike_ms = now_ms;
    b->_strikes = 0;
  }
  if (b->_strikes < UINT32_MAX) b->_strikes++;
  if (disconnect_after == 0) return 0;
  return (uint64_t)b->_strikes > (uint64_t)(disconnect_after - 1) * b->_limit;
}

int rt_rate_policy_limited(const rt_rate_policy_t *policy) {
  for (int i = 0; i < RT_RATE__COUNT; i++)
    if (!is_unlimited(&policy->rules[i])) return 1;
  return 0;
}

void rt_ratelimit_init(rt_ratelimit_t *rl, const rt_rate_policy_t *policy, int64_t now_ms) {
  memset(rl, 0, sizeof(*rl));
  for (int i = 0; i < RT_RATE__COUNT; i++)
    if (!is_unlimited(&policy->rules[i])) fill_bucket(&rl->_buckets[i], &policy->rules[i], now_ms);
}

/* Adopts the rule and refills op's bucket; 1 when it can pay for a command now. */
static int bucket_ready(rt_ratelimit_t *rl, const rt_rate_policy_t *policy, rt_rate_op_t op,
                        int64_t now_ms) {
  const rt_rate_rule_t *r = &policy->rules[op];
  if (is_unlimited(r)) return 1;
  rt_rate_bucket_t *b = &rl->_buckets[op];
  adopt_rule(b, r, now_ms);
  refill(b, now_ms);
  return has_token(b);
}

/*
 * Two-phase so that a command refused by one bucket costs nothing in the
 * other: first every bucket involved is refilled and checked, then either all
 * are charged or each refusing one records a strike. The retry time is the
 * longest wait among the refusing buckets, which is exact because a bucket
 * that is not charged only gains credit.
 */
int rt_ratelimit_take(rt_ratelimit_t *rl, const rt_rate_policy_t *policy, rt_rate_op_t op,
                      int64_t now_ms, rt_rate_verdict_t *out) {
  if ((unsigned)op >= RT_RATE__COUNT) return RT_EINVAL;
  rt_rate_op_t ops[2] = {RT_RATE_MESSAGE, op};
  size_t n = op == RT_RATE_MESSAGE ? 1 : 2;
  int ready[2];
  int all_ready = 1;
  for (size_t i = 0; i < n; i++) {
    ready[i] = bucket_ready(rl, policy, ops[i], now_ms);
    all_ready &= ready[i];
  }
  if (all_ready) {
    for (size_t i = 0; i < n; i++)
      if (!is_unlimited(&policy->rules[ops[i]])) charge(&rl->_buckets[ops[i]]);
    return 0;
  }
  rt_rate_verdict_t v = {0, 0, RT_RATE_MESSAGE};
  for (size_t i = 0; i < n; i++) {
    if (ready[i]) continue;
    rt_rate_bucket_t *b = &rl->_buckets[ops[i]];
    uint32_t wait = time_to_token(b);
    if (wait > v.retry_after_ms) v.retry_after_ms = wait;
    v.disconnect |= strike(b, policy->disconnect_after, now_ms);
    v.op = ops[i];
  }
  if (out != NULL) *out = v;
  return RT_ERATE;
}

/* ------------------------------------------------------ per-IP connections */

#define IP_TABLE_MIN_CAP 16

typedef struct ip_entry_s {
  struct ip_entry_s *next; /* next entry in the same slot */
  uint64_t hash;           /* rt_hash_bytes(seed, ip), kept for growth */
  uint32_t count;          /* open connections, >= 1 */
  char ip[];               /* NUL-terminated key */
} ip_entry_t;

struct rt_iplimit_s {
  ip_entry_t **slots; /* chains, `cap` of them, a power of two */
  size_t cap;         /* number of slots */
  size_t size;        /* entries across all chains */
  uint32_t max;       /* connections allowed per IP, 0 = unlimited */
  uint64_t seed;      /* per-table hash seed */
};

/* The link that points at ip's entry (or at the NULL ending its chain). */
static ip_entry_t **find_link(const rt_iplimit_t *t, const char *ip, uint64_t h) {
  ip_entry_t **link = &t->slots[h & (t->cap - 1)];
  while (*link != NULL && ((*link)->hash != h || strcmp((*link)->ip, ip) != 0))
    link = &(*link)->next;
  return link;
}

/*
 * Doubles the slot array once the table holds more entries than slots. When
 * that allocation fails the table keeps its size: chains get longer but every
 * operation stays correct, so growth is never a reason to refuse a client.
 */
static void maybe_grow(rt_iplimit_t *t) {
  if (t->size <= t->cap || t->cap > SIZE_MAX / 2 / sizeof(*t->slots)) return;
  size_t cap = t->cap * 2;
  ip_entry_t **slots = rt_calloc(cap, sizeof(*slots));
  if (slots == NULL) return;
  for (size_t i = 0; i < t->cap; i++) {
    ip_entry_t *e = t->slots[i];
    while (e != NULL) {
      ip_entry_t *next = e->next;
      e->next = slots[e->hash & (cap - 1)];
      slots[e->hash & (cap - 1)] = e;
      e = next;
    }
  }
  rt_free(t->slots);
  t->slots = slots;
  t->cap = cap;
}

rt_iplimit_t *rt_iplimit_new(uint32_t max) {
  rt_iplimit_t *t = rt_calloc(1, sizeof(*t));
  if (t == NULL) return NULL;
  t->slots = rt_calloc(IP_TABLE_MIN_CAP, sizeof(*t->slots));
  if (t->slots == NULL) {
    rt_free(t);
    return NULL;
  }
  t->cap = IP_TABLE_MIN_CAP;
  t->max = max;
  uintptr_t entropy[2] = {(uintptr_t)t, (uintptr_t)t->slots};
  t->seed = rt_hash_bytes(0, (const char *)entropy, sizeof(entropy));
  return t;
}

void rt_iplimit_free(rt_iplimit_t *t) {
  if (t == NULL) return;
  for (size_t i = 0; i < t->cap; i++) {
    ip_entry_t *e = t->slots[i];
    while (e != NULL) {
      ip_entry_t *next = e->next;
      rt_free(e);
      e = next;
    }
  }
  rt_free(t->slots);
  rt_free(t);
}

int rt_iplimit_acquire(rt_iplimit_t *t, const char *ip) {
  size_t n = strlen(ip);
  uint64_t h = rt_hash_bytes(t->seed, ip, n);
  ip_entry_t **link = find_link(t, ip, h);
  if (*link != NULL) {
    if (t->max != 0 && (*link)->count >= t->max) return RT_ELIMIT;
    if ((*link)->count == UINT32_MAX) return RT_ELIMIT;
    (*link)->count++;
    return 0;
  }
  ip_entry_t *e = rt_malloc(sizeof(*e) + n + 1);
  if (e == NULL) return RT_ENOMEM;
  e->next = NULL;
  e->hash = h;
  e->count = 1;
  memcpy(e->ip, ip, n + 1);
  *link = e;
  t->size++;
  maybe_grow(t);
  return 0;
}

void rt_iplimit_release(rt_iplimit_t *t, const char *ip) {
  ip_entry_t **link = find_link(t, ip, rt_hash_bytes(t->seed, ip, strlen(ip)));
  ip_entry_t *e = *link;
  if (e == NULL) return;
  if (--e->count > 0) return;
  *link = e->next;
  rt_free(e);
  t->size--;
}

uint32_t rt_iplimit_count(const rt_iplimit_t *t, const char *ip) {
  const ip_entry_t *e = *find_link(t, ip, rt_hash_bytes(t->seed, ip, strlen(ip)));
  return e != NULL ? e->count : 0;
}

size_t rt_iplimit_size(const rt_iplimit_t *t) { return t->size; }
