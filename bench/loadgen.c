/*
 * rt_loadgen: load generator for realtimed and any server speaking protocol v1
 * (docs/protocol.md): subscribe / publish / ack / message as JSON text frames.
 *
 * One thread, one epoll set, non-blocking sockets, level-triggered. The run is
 * a fixed sequence of phases, each a call to run_until() with a deadline and a
 * completion test:
 *
 *   setup    connect every connection (a bounded number of handshakes at once),
 *            then subscribe each subscriber to channel `bench:<i % K>`;
 *   warmup   publish without measuring, so caches, allocators and TCP windows
 *            are warm before the figures start;
 *   measure  publish for --duration seconds or --messages publishes;
 *   drain    wait (bounded) until every publish is acked and every expected
 *            delivery has arrived;
 *   report   human table, optionally one JSON line; exit status 1 on loss,
 *            error frames, dropped connections or misrouted messages.
 *
 * Accounting. Publisher p sends sequence numbers 0, 1, 2, ... and sequence s
 * goes to channel (p + s) % K, so a subscriber of channel c knows exactly which
 * sequences it must see from p (those with s % K == (c - p) % K) and can keep
 * one dense bitmap per publisher indexed by s / K. That gives loss, duplicates
 * and misrouting without storing anything per message. The payload is the
 * JSON object {"p":P,"s":S,"t":T,"x":"xx..."} padded to --payload bytes, where
 * T is CLOCK_MONOTONIC in ns when the publish was queued: the load generator
 * and the server share the machine, so receipt time - T is the end-to-end
 * latency (same clock, no skew).
 *
 * --idle (scenario D) opens N connections, subscribes each to its own channel,
 * holds them for --duration seconds answering pings, and reports the server's
 * RSS growth per connection.
 *
 * Memory comes from malloc through xalloc(): this is a standalone tool that
 * does not link rt_core, and running out of memory in a benchmark is fatal.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#define NS_PER_S 1000000000LL
#define NS_PER_MS 1000000LL
#define RBUF_SIZE (256 * 1024)      /* loop-wide read buffer */
#define MAX_EVENTS 1024             /* epoll events per wakeup */
#define MAX_HEAD 16384              /* largest upgrade response head accepted */
#define MAX_MESSAGE (64u << 20)     /* largest server message accepted */
#define SETUP_TIMEOUT_NS (120 * NS_PER_S)
#define STALL_NS (10 * NS_PER_S)    /* publishing with no ack for this long: stop */
#define LATE_NS NS_PER_MS           /* a rate-paced publish this late counts as late */
#define LOG_LIMIT 5                 /* messages printed per kind of problem */
#define LABEL_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 _-.:/@+="
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* ------------------------------------------------------------------ types */

typedef struct {
  const char *host;     /* server host name or address */
  const char *port;     /* server port, text for getaddrinfo */
  const char *path;     /* upgrade request path */
  const char *label;    /* free text copied into the JSON result */
  int subscribers;      /* subscriber (or, with --idle, idle) connections */
  int channels;         /* channels the subscribers are spread over */
  int publishers;       /* publisher connections */
  int window;           /* unacknowledged publishes allowed per publisher */
  int payload;          /* target size in bytes of the JSON `data` value */
  int connect_batch;    /* handshakes in progress at once */
  int server_pid;       /* process sampled for CPU and RSS; 0 = none */
  int server_core;      /* CPU the server is pinned to, sampled in /proc/stat; -1 = none */
  double rate;          /* publishes per second in total; 0 = window-bound */
  double duration;      /* seconds of measured publishing (--idle: hold time) */
  double messages;      /* measured publishes in total; 0 = time-bound */
  double warmup;        /* seconds of unmeasured publishing first */
  double drain;         /* most seconds to wait for late acks and deliveries */
  bool idle;            /* scenario D instead of fan-out */
  const char *query;    /* live-query mode: the configured query subscribed to */
  int query_params;     /* K: subscriber i subscribes with params [i % K] */
  const char *ts_column;    /* row column holding the writer's CLOCK_MONOTONIC ns */
  const char *param_column; /* row column that must equal the subscriber's param */
  const char *writer_cmd;   /* shell command run after setup; its exit ends the window */
  bool json;            /* also print the result as one JSON line */
  bool duration_set;    /* --duration given explicitly */
} opts_t;

typedef struct {
  char *data;           /* heap bytes, NULL until first use */
  size_t len;           /* bytes in use */
  size_t cap;           /* bytes allocated */
} bytes_t;

typedef enum { CONN_CONNECTING, CONN_HANDSHAKE, CONN_OPEN, CONN_CLOSED } conn_state_t;
typedef enum { ROLE_SUB, ROLE_PUB } role_t;

typedef struct {
  int fd;               /* socket; -1 once closed */
  conn_state_t state;   /* where the connection is in its life */
  role_t role;          /* subscriber or publisher */
  int index;            /* index into lg_t.subs or lg_t.pubs */
  bool dirty;           /* on the flush list */
  bool pollout;         /* EPOLLOUT currently requested */
  bool fragmented;      /* a fragmented text message is being reassembled */
  char accept[32];      /* Sec-WebSocket-Accept the server must answer */
  bytes_t in;           /* response head or incomplete frame carried over */
  bytes_t frag;         /* text message being reassembled from fragments */
  bytes_t out;          /* bytes queued and not yet taken by the socket */
} conn_t;

typedef struct {
  uint64_t *words;      /* bit i set: sequence i*K + offset received */
  size_t nwords;        /* words allocated */
} bitmap_t;

typedef struct {
  conn_t *conn;         /* its connection */
  int channel;          /* the one channel it subscribes to */
  bool subscribed;      /* its subscribe was acked */
  bitmap_t *seen;       /* one bitmap per publisher */
  uint64_t last_ts;     /* live queries: newest row timestamp seen so far */
  uint64_t changes;     /* live queries: rows newer than the previous newest */
  uint64_t pushes;      /* live queries: query_diff / query_result received */
} sub_t;

typedef struct {
  conn_t *conn;         /* its connection */
  uint64_t next_seq;    /* sequence number (and id) of its next publish */
  uint64_t quota;       /* measured publishes to send (--messages); 0 = none */
  uint64_t measured;    /* publishes sent while measuring */
  int inflight;         /* publishes sent and not yet acked */
} pub_t;

/* Log-linear histogram in the manner of HdrHistogram: exact below 2^SUB_BITS,
 * then 2^SUB_BITS linear buckets per power of two, so the relative error of
 * any recorded value is below 1/2^SUB_BITS (0.8 %) over the whole uint64 range
 * in a fixed 60 KiB table. */
#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS ((65 - HIST_SUB_BITS) * HIST_SUB)
typedef struct {
  uint64_t counts[HIST_BUCKETS]; /* samples per bucket */
  uint64_t total;                /* samples recorded */
  uint64_t max;                  /* exact largest sample */
  double sum;                    /* for the mean */
} hist_t;

typedef struct {
  uint64_t sent;             /* publishes sent, warmup included */
  uint64_t sent_window;      /* publishes sent while measuring */
  uint64_t acked;            /* publish acks received */
  uint64_t ack_delivered;    /* sum of `delivered` over those acks */
  uint64_t expected;         /* deliveries the sent publishes call for */
  uint64_t received;         /* distinct deliveries received */
  uint64_t received_window;  /* ... received while measuring */
  uint64_t received_since;   /* ... received from the window start to the end */
  uint64_t duplicates;       /* deliveries received more than once */
  uint64_t misrouted;        /* deliveries for the wrong channel or never sent */
  uint64_t errors;           /* error frames and unexpected frames */
  uint64_t dropped;          /* connections lost after setup */
  uint64_t late;             /* rate-paced publishes sent behind schedule */
  bool stalled;              /* publishing stopped because acks stopped */
} stats_t;

/* The liveQueries totals of GET /stats. */
typedef struct {
  uint64_t instances;        /* distinct (query, params) evaluated */
  uint64_t subscriptions;    /* client subscriptions to them */
  uint64_t evaluations;      /* evaluations applied since the server started */
  bool ok;                   /* fetched and parsed */
} lq_stats_t;

/* Live-query mode state: pushes, the writer process, server statistics. */
typedef struct {
  uint64_t pushes;           /* query_diff + query_result frames received */
  uint64_t diffs;            /* ... of them query_diff */
  uint64_t results;          /* ... of them query_result */
  uint64_t changes;          /* rows newer than their subscriber's previous newest */
  uint64_t expected;         /* changes the writer's inserts call for; 0 = unknown */
  uint64_t untimed;          /* rows without an integer timestamp column */
  uint64_t silent;           /* subscribers that got no push at all */
  int64_t last_push;         /* time of the latest push */
  pid_t writer;              /* writer process; 0 = none or reaped */
  int writer_fd;             /* read end of its stdout; -1 = closed */
  int writer_status;         /* its waitpid status; -1 = not reaped */
  bytes_t writer_out;        /* what it printed */
  long long commits;         /* commits= of its report; -1 = unknown */
  long long inserts;         /* inserts= */
  long long updates;         /* updates= */
  long long groups;          /* groups= */
  long long writer_late;     /* late= */
  lq_stats_t before;         /* GET /stats before the writer starts */
  lq_stats_t after;          /* ... after the drain */
} live_t;

typedef enum { PHASE_SETUP, PHASE_WARMUP, PHASE_MEASURE, PHASE_DRAIN, PHASE_DONE } phase_t;

typedef struct {
  opts_t o;                  /* options */
  int ep;                    /* epoll set */
  int tfd;                   /* timerfd waking the loop for deadlines */
  int64_t timer_at;          /* absolute time the timerfd is armed for; 0 = off */
  struct sockaddr_storage addr; /* resolved server address */
  socklen_t addrlen;         /* its length */
  conn_t *conns;             /* subscribers first, then publishers */
  int nconns;                /* entries in conns */
  sub_t *subs;               /* o.subscribers entries */
  pub_t *pubs;               /* o.publishers entries */
  int *chan_subs;            /* subscribers per channel */
  conn_t **dirty;            /* connections with queued output */
  int ndirty;                /* entries in dirty */
  int next_connect;          /* next conns index to open */
  int handshaking;           /* connections between connect() and 101 */
  int open;                  /* connections past the handshake */
  int sub_done;              /* subscribes answered (ack or error) */
  phase_t phase;             /* current phase */
  int64_t t_pub0;            /* first publish time: origin of the rate schedule */
  int64_t t_start;           /* measurement window start */
  int64_t t_stop;            /* measurement window end (publishing stopped) */
  int64_t t_end;             /* drain end */
  int64_t last_ack;          /* time of the latest publish ack */
  int64_t setup_ns;          /* time setup() took */
  int64_t cpu_self;          /* load generator CPU at the window start */
  int64_t cpu_server;        /* server CPU at the window start, -1 if unknown */
  int64_t cpu_all;           /* machine-wide CPU at the window start, -1 if unknown */
  int64_t cpu_core;          /* the server core's busy time at the window start, -1 if unknown */
  uint64_t xs;               /* xorshift state for mask keys */
  char *rbuf;                /* loop-wide read buffer */
  char *scratch;             /* publish JSON being built */
  size_t scratch_cap;        /* its size */
  hist_t hist;               /* latency in ns, measured window only */
  stats_t st;                /* counters */
  live_t live;               /* live-query mode */
  int logged[4];             /* problems printed so far, per kind */
} lg_t;

typedef struct {
  const char *p;             /* first byte of a JSON value; NULL if absent */
  size_t len;                /* its length */
} span_t;

/* ---------------------------------------------------------------- helpers */

static void vsay(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
static void vsay(const char *fmt, va_list ap)
{
  fputs("rt_loadgen: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsay(fmt, ap);
  va_end(ap);
  exit(2);
}

static void *xalloc(void *p, size_t n)
{
  void *q = realloc(p, n ? n : 1);
  if (!q)
    die("out of memory (%zu bytes)", n);
  return q;
}

static int64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

/* Prints the first LOG_LIMIT problems of each kind, so a run that fails on
 * every delivery still produces a readable report. */
enum { LOG_ERROR, LOG_DROP, LOG_MISROUTE, LOG_DUP };
static void note(lg_t *lg, int kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void note(lg_t *lg, int kind, const char *fmt, ...)
{
  va_list ap;
  if (lg->logged[kind]++ >= LOG_LIMIT)
    return;
  va_start(ap, fmt);
  vsay(fmt, ap);
  va_end(ap);
}

static void bytes_reserve(bytes_t *b, size_t extra)
{
  if (b->len + extra <= b->cap)
    return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra)
    cap *= 2;
  b->data = xalloc(b->data, cap);
  b->cap = cap;
}

static void bytes_append(bytes_t *b, const void *p, size_t n)
{
  bytes_reserve(b, n);
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

static void bytes_consume(bytes_t *b, size_t n)
{
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}

/* xorshift64*: mask keys only need to differ between frames (RFC 6455 5.3
 * asks for unpredictability to protect proxies, which a benchmark on
 * loopback does not have), and RAND_bytes per frame would cost more than the
 * frame. */
static uint32_t next_mask(lg_t *lg)
{
  lg->xs ^= lg->xs >> 12;
  lg->xs ^= lg->xs << 25;
  lg->xs ^= lg->xs >> 27;
  return (uint32_t)((lg->xs * 0x2545F4914F6CDD1DULL) >> 32);
}

/* ------------------------------------------------------------- histogram */

static size_t hist_index(uint64_t v)
{
  if (v < HIST_SUB)
    return (size_t)v;
  int shift = 63 - __builtin_clzll(v) - HIST_SUB_BITS;
  return (size_t)(shift + 1) * HIST_SUB + (size_t)((v >> shift) - HIST_SUB);
}

/* Largest value that falls into bucket `i`: percentiles report it, as
 * HdrHistogram does, so a percentile is never understated. */
static uint64_t hist_upper(size_t i)
{
  if (i < HIST_SUB)
    return i;
  int shift = (int)(i / HIST_SUB) - 1;
  uint64_t lower = (uint64_t)(i % HIST_SUB + HIST_SUB) << shift;
  return lower + ((1ULL << shift) - 1);
}

static void hist_record(hist_t *h, uint64_t v)
{
  h->counts[hist_index(v)]++;
  h->total++;
  h->sum += (double)v;
  if (v > h->max)
    h->max = v;
}

static uint64_t hist_percentile(const hist_t *h, double q)
{
  if (h->total == 0)
    return 0;
  uint64_t rank = (uint64_t)ceil(q / 100.0 * (double)h->total);
  uint64_t seen = 0;
  if (rank == 0)
    rank = 1;
  for (size_t i = 0; i < HIST_BUCKETS; i++) {
    seen += h->counts[i];
    if (seen >= rank)
      return hist_upper(i) < h->max ? hist_upper(i) : h->max;
  }
  return h->max;
}

/* ----------------------------------------------------------- JSON scanning */

static const char *skip_ws(const char *p, const char *end)
{
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
    p++;
  return p;
}

static const char *skip_string(const char *p, const char *end)
{
  for (p++; p < end; p++) {
    if (*p == '"')
      return p + 1;
    if (*p == '\\' && ++p == end)
      break;
  }
  return NULL;
}

/* Returns the first byte after the JSON value at `p`, or NULL if it runs past
 * `end`. Only the structure is followed (strings, nesting): the server already
 * validated the JSON, and we only need to step over values we do not read. */
static const char *skip_value(const char *p, const char *end)
{
  if (p >= end)
    return NULL;
  if (*p == '"')
    return skip_string(p, end);
  if (*p == '{' || *p == '[') {
    int depth = 0;
    while (p < end) {
      if (*p == '"') {
        if (!(p = skip_string(p, end)))
          return NULL;
        continue;
      }
      if (*p == '{' || *p == '[')
        depth++;
      else if ((*p == '}' || *p == ']') && --depth == 0)
        return p + 1;
      p++;
    }
    return NULL;
  }
  const char *start = p;
  while (p < end && (isalnum((unsigned char)*p) || *p == '-' || *p == '+' || *p == '.'))
    p++;
  return p > start ? p : NULL;
}

/* Finds the values of `keys` among the members of the JSON object in
 * [p, end), in any order, stepping over the others. Keys are compared as raw
 * bytes, which is enough for the plain ASCII keys of the protocol. Returns 0,
 * or -1 if the text is not an object. */
static int scan_object(const char *p, const char *end, const char *const *keys, int nkeys,
                       span_t *out)
{
  memset(out, 0, sizeof(*out) * (size_t)nkeys);
  p = skip_ws(p, end);
  if (p >= end || *p != '{')
    return -1;
  p = skip_ws(p + 1, end);
  if (p < end && *p == '}')
    return 0;
  for (;;) {
    if (p >= end || *p != '"')
      return -1;
    const char *key = p + 1, *key_end = skip_string(p, end);
    if (!key_end)
      return -1;
    size_t key_len = (size_t)(key_end - 1 - key);
    p = skip_ws(key_end, end);
    if (p >= end || *p != ':')
      return -1;
    const char *v = skip_ws(p + 1, end), *v_end = skip_value(v, end);
    if (!v_end)
      return -1;
    for (int i = 0; i < nkeys; i++)
      if (strncmp(keys[i], key, key_len) == 0 && keys[i][key_len] == '\0')
        out[i] = (span_t){v, (size_t)(v_end - v)};
    p = skip_ws(v_end, end);
    if (p < end && *p == ',')
      p = skip_ws(p + 1, end);
    else
      return p < end && *p == '}' ? 0 : -1;
  }
}

static bool span_is(span_t s, const char *lit)
{
  return s.p && s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

static int span_u64(span_t s, uint64_t *out)
{
  uint64_t v = 0;
  if (!s.p || s.len == 0 || s.len > 19)
    return -1;
  for (size_t i = 0; i < s.len; i++) {
    if (s.p[i] < '0' || s.p[i] > '9')
      return -1;
    v = v * 10 + (uint64_t)(s.p[i] - '0');
  }
  *out = v;
  return 0;
}

/* Steps over the literal `lit` at *pp, if it is there. */
static bool take_lit(const char **pp, const char *end, const char *lit, size_t n)
{
  if ((size_t)(end - *pp) < n || memcmp(*pp, lit, n) != 0)
    return false;
  *pp += n;
  return true;
}

/* Reads the decimal digits at *pp (at most 19) and steps over them. */
static bool take_u64(const char **pp, const char *end, uint64_t *out)
{
  const char *p = *pp;
  uint64_t v = 0;
  while (p < end && p - *pp < 19 && *p >= '0' && *p <= '9')
    v = v * 10 + (uint64_t)(*p++ - '0');
  if (p == *pp)
    return false;
  *out = v;
  *pp = p;
  return true;
}

/* ------------------------------------------------------- connection output */

static void watch(lg_t *lg, conn_t *c, bool pollout)
{
  struct epoll_event ev = {.events = EPOLLIN | (pollout ? EPOLLOUT : 0), .data.ptr = c};
  if (c->pollout == pollout)
    return;
  if (epoll_ctl(lg->ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
    die("epoll_ctl: %s", strerror(errno));
  c->pollout = pollout;
}

static void mark_dirty(lg_t *lg, conn_t *c)
{
  if (c->dirty)
    return;
  c->dirty = true;
  lg->dirty[lg->ndirty++] = c;
}

/* Queues one masked client frame (RFC 6455 5.2: 7-, 16- or 64-bit length,
 * 4-byte masking key, payload XORed with the key). It is written when the
 * loop flushes, so the frames produced by one epoll wakeup leave in one
 * write() per connection. */
static void queue_frame(lg_t *lg, conn_t *c, int opcode, const void *payload, size_t len)
{
  uint8_t head[14];
  size_t n = 0;
  uint32_t mask = next_mask(lg);
  head[n++] = (uint8_t)(0x80 | opcode);
  if (len < 126) {
    head[n++] = (uint8_t)(0x80 | len);
  } else if (len <= 0xFFFF) {
    head[n++] = 0x80 | 126;
    head[n++] = (uint8_t)(len >> 8);
    head[n++] = (uint8_t)len;
  } else {
    head[n++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--)
      head[n++] = (uint8_t)((uint64_t)len >> (8 * i));
  }
  memcpy(head + n, &mask, 4);
  n += 4;
  bytes_reserve(&c->out, n + len);
  bytes_append(&c->out, head, n);
  const uint8_t *src = payload, *key = head + n - 4;
  uint8_t *dst = (uint8_t *)c->out.data + c->out.len;
  for (size_t i = 0; i < len; i++)
    dst[i] = src[i] ^ key[i & 3];
  c->out.len += len;
  mark_dirty(lg, c);
}

static void drop(lg_t *lg, conn_t *c, const char *why);

/* Writes as much queued output as the socket takes, and asks epoll for
 * writability only while some is left, so idle sockets cost nothing. */
static void flush_conn(lg_t *lg, conn_t *c)
{
  while (c->out.len > 0 && c->state != CONN_CLOSED) {
    ssize_t n = write(c->fd, c->out.data, c->out.len);
    if (n > 0) {
      bytes_consume(&c->out, (size_t)n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && errno == EAGAIN) {
      watch(lg, c, true);
      return;
    } else {
      drop(lg, c, strerror(errno));
      return;
    }
  }
  if (c->state != CONN_CLOSED)
    watch(lg, c, false);
}

static void flush_dirty(lg_t *lg)
{
  for (int i = 0; i < lg->ndirty; i++) {
    lg->dirty[i]->dirty = false;
    flush_conn(lg, lg->dirty[i]);
  }
  lg->ndirty = 0;
}

/* Closes a connection. During setup that is fatal (the run would measure a
 * different scenario than asked); afterwards it is counted and fails the run.
 * The conn_t and its buffers stay allocated until exit, because a frame
 * parser up the stack may still be reading from c->in. */
static void drop(lg_t *lg, conn_t *c, const char *why)
{
  if (c->state == CONN_CLOSED)
    return;
  if (lg->phase == PHASE_SETUP)
    die("connection %d failed during setup: %s", (int)(c - lg->conns), why);
  close(c->fd);
  c->fd = -1;
  c->state = CONN_CLOSED;
  if (lg->phase != PHASE_DONE) {
    lg->st.dropped++;
    note(lg, LOG_DROP, "connection %d dropped: %s", (int)(c - lg->conns), why);
  }
}

/* ------------------------------------------------------ handshake (client) */

static void open_conn(lg_t *lg, conn_t *c)
{
  int one = 1;
  c->fd = socket(lg->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0)
    die("socket: %s", strerror(errno));
  /* Small frames must leave at once: Nagle would add up to 40 ms of latency. */
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (connect(c->fd, (struct sockaddr *)&lg->addr, lg->addrlen) < 0 && errno != EINPROGRESS)
    die("connect to %s:%s: %s", lg->o.host, lg->o.port, strerror(errno));
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
  if (epoll_ctl(lg->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
    die("epoll_ctl: %s", strerror(errno));
  c->pollout = true;
  c->state = CONN_CONNECTING;
  lg->handshaking++;
}

/* Keeps at most --connect-batch connections between connect() and the 101,
 * so thousands of connections do not overflow the server's accept backlog
 * (which would turn into SYN retransmits and seconds of delay). */
static void connect_more(lg_t *lg)
{
  while (lg->handshaking < lg->o.connect_batch && lg->next_connect < lg->nconns)
    open_conn(lg, &lg->conns[lg->next_connect++]);
}

/* The TCP connect finished: send the upgrade request (RFC 6455 4.1) with a
 * random 16-byte key, and remember the Sec-WebSocket-Accept it implies
 * (base64 of SHA-1 over key + GUID) to check the server's answer. */
static void on_connected(lg_t *lg, conn_t *c)
{
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
    err = errno;
  if (err)
    die("connect to %s:%s: %s", lg->o.host, lg->o.port, strerror(err));

  unsigned char key[16], digest[SHA_DIGEST_LENGTH];
  char key64[32], concat[96], req[1024];
  if (RAND_bytes(key, sizeof(key)) != 1)
    die("RAND_bytes failed");
  EVP_EncodeBlock((unsigned char *)key64, key, sizeof(key));
  snprintf(concat, sizeof(concat), "%s%s", key64, WS_GUID);
  SHA1((const unsigned char *)concat, strlen(concat), digest);
  EVP_EncodeBlock((unsigned char *)c->accept, digest, sizeof(digest));

  int n = snprintf(req, sizeof(req),
                   "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n",
                   lg->o.path, lg->o.host, lg->o.port, key64);
  if (n < 0 || (size_t)n >= sizeof(req))
    die("upgrade request too long");
  c->state = CONN_HANDSHAKE;
  bytes_append(&c->out, req, (size_t)n);
  flush_conn(lg, c);
}

/* Checks the response head: status 101 and the Accept value we computed
 * (RFC 6455 4.1, steps 1 and 4 of the client's validation). Header names are
 * case-insensitive, and optional whitespace surrounds the value. */
static void check_head(lg_t *lg, conn_t *c, const char *head, size_t len)
{
  const char *end = head + len, *line = memchr(head, '\n', len);
  if (len < 12 || memcmp(head, "HTTP/1.1 101", 12) != 0) {
    int shown = line ? (int)(line - head) : (int)len;
    die("upgrade refused: %.*s", shown > 0 && head[shown - 1] == '\r' ? shown - 1 : shown, head);
  }
  static const char name[] = "sec-websocket-accept:";
  while (line && ++line < end) {
    const char *eol = memchr(line, '\n', (size_t)(end - line));
    if (!eol)
      break;
    if ((size_t)(eol - line) > sizeof(name) - 1 && strncasecmp(line, name, sizeof(name) - 1) == 0) {
      const char *v = skip_ws(line + sizeof(name) - 1, eol), *v_end = eol;
      while (v_end > v && (v_end[-1] == '\r' || v_end[-1] == ' ' || v_end[-1] == '\t'))
        v_end--;
      if ((size_t)(v_end - v) != strlen(c->accept) || memcmp(v, c->accept, strlen(c->accept)) != 0)
        die("wrong Sec-WebSocket-Accept: got %.*s, expected %s", (int)(v_end - v), v, c->accept);
      return;
    }
    line = eol;
  }
  die("upgrade response without Sec-WebSocket-Accept");
}

static void on_frames(lg_t *lg, conn_t *c, const char *buf, size_t len, int64_t now);

/* Accumulates the response head; once complete, validates it and passes any
 * bytes after it (frames the server sent right away) to the frame parser. */
static void on_head_bytes(lg_t *lg, conn_t *c, const char *buf, size_t len, int64_t now)
{
  bytes_append(&c->in, buf, len);
  char *end = memmem(c->in.data, c->in.len, "\r\n\r\n", 4);
  if (!end) {
    if (c->in.len > MAX_HEAD)
      die("upgrade response head larger than %d bytes", MAX_HEAD);
    return;
  }
  size_t head_len = (size_t)(end + 4 - c->in.data);
  check_head(lg, c, c->in.data, head_len);
  c->state = CONN_OPEN;
  lg->handshaking--;
  lg->open++;
  bytes_t rest = c->in;
  c->in = (bytes_t){0};
  if (rest.len > head_len)
    on_frames(lg, c, rest.data + head_len, rest.len - head_len, now);
  free(rest.data);
  connect_more(lg);
}

/* --------------------------------------------------------- server messages */

static void bitmap_grow(bitmap_t *b, size_t word)
{
  size_t n = b->nwords ? b->nwords : 16;
  while (n <= word)
    n *= 2;
  b->words = xalloc(b->words, n * sizeof(uint64_t));
  memset(b->words + b->nwords, 0, (n - b->nwords) * sizeof(uint64_t));
  b->nwords = n;
}

/* A delivery reached subscriber `s`: check it was published to this
 * subscriber's channel, mark (publisher, sequence) as seen, and record the
 * latency if it was published inside the measured window. */
static void on_delivery(lg_t *lg, sub_t *s, span_t data, int64_t now)
{
  static const char *const keys[] = {"p", "s", "t"};
  const char *c = data.p, *end = data.p + data.len;
  span_t v[3];
  uint64_t p, seq, t;
  /* The server relays our bytes unchanged, so they nearly always start as we
   * wrote them; the generic scan covers anything else. */
  bool fast = take_lit(&c, end, "{\"p\":", 5) && take_u64(&c, end, &p) &&
              take_lit(&c, end, ",\"s\":", 5) && take_u64(&c, end, &seq) &&
              take_lit(&c, end, ",\"t\":", 5) && take_u64(&c, end, &t);
  if (!fast && (scan_object(data.p, end, keys, 3, v) < 0 || span_u64(v[0], &p) < 0 ||
                span_u64(v[1], &seq) < 0 || span_u64(v[2], &t) < 0))
    p = UINT64_MAX;
  if (p >= (uint64_t)lg->o.publishers) {
    lg->st.misrouted++;
    note(lg, LOG_MISROUTE, "unrecognised message data: %.*s", (int)data.len, data.p);
    return;
  }
  uint64_t k = (uint64_t)lg->o.channels;
  if ((p + seq) % k != (uint64_t)s->channel || seq >= lg->pubs[p].next_seq) {
    lg->st.misrouted++;
    note(lg, LOG_MISROUTE, "subscriber of channel %d got publisher %" PRIu64 " seq %" PRIu64,
         s->channel, p, seq);
    return;
  }
  bitmap_t *b = &s->seen[p];
  size_t bit = (size_t)(seq / k), word = bit / 64;
  if (word >= b->nwords)
    bitmap_grow(b, word);
  if (b->words[word] & (1ULL << (bit % 64))) {
    lg->st.duplicates++;
    note(lg, LOG_DUP, "duplicate: publisher %" PRIu64 " seq %" PRIu64, p, seq);
    return;
  }
  b->words[word] |= 1ULL << (bit % 64);
  lg->st.received++;
  if (lg->t_start && now >= lg->t_start) {
    lg->st.received_since++;
    if (lg->phase == PHASE_MEASURE)
      lg->st.received_window++;
  }
  if (lg->t_start && (int64_t)t >= lg->t_start)
    hist_record(&lg->hist, now > (int64_t)t ? (uint64_t)(now - (int64_t)t) : 0);
}

static void on_ack(lg_t *lg, conn_t *c, span_t id, span_t delivered)
{
  uint64_t n = 0;
  if (c->role == ROLE_SUB && !lg->subs[c->index].subscribed) {
    lg->subs[c->index].subscribed = true;
    lg->sub_done++;
    return;
  }
  pub_t *p = c->role == ROLE_PUB ? &lg->pubs[c->index] : NULL;
  if (!p || p->inflight == 0 || span_u64(delivered, &n) < 0) {
    lg->st.errors++;
    note(lg, LOG_ERROR, "unexpected ack (id %.*s) on connection %d", (int)id.len,
         id.p ? id.p : "", (int)(c - lg->conns));
    return;
  }
  p->inflight--;
  lg->st.acked++;
  lg->st.ack_delivered += n;
  lg->last_ack = now_ns();
}

/* An error frame fails the run. When it answers a publish, that publish
 * delivered nothing by design, so its deliveries leave `expected` (the id is
 * the sequence number, which gives the channel) and do not count as loss. */
static void on_error_frame(lg_t *lg, conn_t *c, span_t id, span_t code, span_t msg)
{
  uint64_t seq;
  lg->st.errors++;
  note(lg, LOG_ERROR, "error frame on connection %d: %.*s %.*s", (int)(c - lg->conns),
       (int)code.len, code.p ? code.p : "", (int)msg.len, msg.p ? msg.p : "");
  if (c->role == ROLE_SUB && !lg->subs[c->index].subscribed) {
    lg->sub_done++;
  } else if (c->role == ROLE_PUB && lg->pubs[c->index].inflight > 0) {
    lg->pubs[c->index].inflight--;
    if (span_u64(id, &seq) == 0 && seq < lg->pubs[c->index].next_seq)
      lg->st.expected -= (uint64_t)lg->chan_subs[(c->index + seq) % (uint64_t)lg->o.channels];
  }
}


/* ------------------------------------------------------ live-query pushes */

/* Reads the integer member `key` of a row object; false when it is absent
 * or not a non-negative integer. */
static bool row_u64(span_t row, const char *key, uint64_t *out)
{
  const char *const keys[] = {key};
  span_t v;
  return scan_object(row.p, row.p + row.len, keys, 1, &v) == 0 && span_u64(v, out) == 0;
}

/* Walks the JSON array of row objects `rows` for subscriber `s`. A row whose
 * timestamp is newer than `base` (the newest the subscriber had seen before
 * this push) is a change it had not been shown: its latency, receipt time
 * minus the writer's timestamp, is recorded when `timed`. Comparing with the
 * newest timestamp rather than remembering rows makes a full query_result
 * (which repeats old rows) and a query_diff count each change once. With
 * --param-column, every row must belong to the subscriber's param. Returns
 * the newest timestamp in the array, or `base`. */
static uint64_t scan_rows(lg_t *lg, sub_t *s, span_t rows, uint64_t base, bool timed, int64_t now)
{
  const char *p = rows.p, *end = rows.p + rows.len;
  uint64_t newest = base, ts, param;
  if (!p || (p = skip_ws(p, end)) >= end || *p != '[')
    return base;
  for (p = skip_ws(p + 1, end); p < end && *p != ']';) {
    const char *v_end = skip_value(p, end);
    if (!v_end)
      break;
    span_t row = {p, (size_t)(v_end - p)};
    if (!row_u64(row, lg->o.ts_column, &ts)) {
      lg->live.untimed++;
      note(lg, LOG_ERROR, "row without an integer '%s': %.*s", lg->o.ts_column,
           (int)(row.len > 200 ? 200 : row.len), row.p);
    } else if (lg->o.param_column &&
               (!row_u64(row, lg->o.param_column, &param) || param != (uint64_t)s->channel)) {
      lg->st.misrouted++;
      note(lg, LOG_MISROUTE, "subscriber with param %d got row %.*s", s->channel,
           (int)(row.len > 200 ? 200 : row.len), row.p);
    } else if (ts > base) {
      newest = ts > newest ? ts : newest;
      if (timed) {
        s->changes++;
        lg->live.changes++;
        if (lg->t_start && (int64_t)ts >= lg->t_start)
          hist_record(&lg->hist, now > (int64_t)ts ? (uint64_t)(now - (int64_t)ts) : 0);
      }
    }
    p = skip_ws(v_end, end);
    if (p < end && *p == ',')
      p = skip_ws(p + 1, end);
  }
  return newest;
}

/* Live-query mode: a subscriber's text message. The subscribe ack carries
 * the initial rows, which set the subscriber's baseline (they are not
 * changes); query_diff contributes its inserted and updated rows (deleted
 * holds keys only), query_result its whole result. Anything else fails the
 * run. Only the members used are parsed, in any order. */
static void on_live_text(lg_t *lg, conn_t *c, const char *text, size_t len, int64_t now)
{
  static const char *const keys[] = {"type", "id", "code", "message", "rows", "inserted",
                                     "updated"};
  sub_t *s = &lg->subs[c->index];
  span_t v[7];
  if (scan_object(text, text + len, keys, 7, v) < 0) {
    lg->st.errors++;
    note(lg, LOG_ERROR, "server sent a text frame that is not a JSON object");
  } else if (span_is(v[0], "\"ack\"") && !s->subscribed) {
    on_ack(lg, c, v[1], (span_t){0});
    s->last_ts = scan_rows(lg, s, v[4], s->last_ts, false, now);
  } else if (span_is(v[0], "\"error\"")) {
    on_error_frame(lg, c, v[1], v[2], v[3]);
  } else if (span_is(v[0], "\"query_diff\"") || span_is(v[0], "\"query_result\"")) {
    bool diff = v[0].len == sizeof("\"query_diff\"") - 1;
    uint64_t base = s->last_ts, newest;
    newest = diff ? scan_rows(lg, s, v[5], base, true, now) : scan_rows(lg, s, v[4], base, true, now);
    if (diff) {
      uint64_t upd = scan_rows(lg, s, v[6], base, true, now);
      newest = upd > newest ? upd : newest;
    }
    s->last_ts = newest;
    s->pushes++;
    lg->live.pushes++;
    lg->live.diffs += diff;
    lg->live.results += !diff;
    lg->live.last_push = now;
  } else {
    lg->st.errors++;
    note(lg, LOG_ERROR, "unexpected message: %.*s", (int)(len > 200 ? 200 : len), text);
  }
}

/* Dispatches one complete text message by its "type". Deliveries are most of
 * the traffic and, in the shape realtimed sends, are recognised without a
 * generic scan: `{"type":"message","channel":"NAME","data":` (a channel name
 * holds no quote or backslash). The data span then runs to the end of the
 * frame; on_delivery reads only its start. Any other shape or order of
 * members takes the generic path. */
static void on_text(lg_t *lg, conn_t *c, const char *text, size_t len, int64_t now)
{
  static const char prefix[] = "{\"type\":\"message\",\"channel\":\"";
  static const char *const keys[] = {"type", "id", "delivered", "code", "message", "data"};
  const size_t n = sizeof(prefix) - 1;
  const char *end = text + len, *q;
  span_t v[6];
  if (lg->o.query && c->role == ROLE_SUB) {
    on_live_text(lg, c, text, len, now);
    return;
  }
  if (c->role == ROLE_SUB && len > n && memcmp(text, prefix, n) == 0 &&
      (q = memchr(text + n, '"', len - n)) != NULL && take_lit(&q, end, "\",\"data\":", 9)) {
    on_delivery(lg, &lg->subs[c->index], (span_t){q, (size_t)(end - q)}, now);
  } else if (scan_object(text, end, keys, 6, v) < 0) {
    lg->st.errors++;
    note(lg, LOG_ERROR, "server sent a text frame that is not a JSON object");
  } else if (span_is(v[0], "\"message\"") && c->role == ROLE_SUB && v[5].p) {
    on_delivery(lg, &lg->subs[c->index], v[5], now);
  } else if (span_is(v[0], "\"ack\"")) {
    on_ack(lg, c, v[1], v[2]);
  } else if (span_is(v[0], "\"error\"")) {
    on_error_frame(lg, c, v[1], v[3], v[4]);
  } else {
    lg->st.errors++;
    note(lg, LOG_ERROR, "unexpected message: %.*s", (int)(len > 200 ? 200 : len), text);
  }
}

/* Handles one server frame (RFC 6455 5.5): text, possibly fragmented with
 * control frames in between; ping answered with a masked pong carrying the
 * same payload; close counted as a drop (the server never closes first in a
 * benchmark that goes well); binary refused as the protocol has none yet. */
static void on_frame(lg_t *lg, conn_t *c, int fin, int opcode, const char *p, size_t len,
                     int64_t now)
{
  char why[160];
  switch (opcode) {
  case 0x1:
  case 0x0:
    if ((opcode == 0x1) == c->fragmented) {
      drop(lg, c, opcode == 0x1 ? "text frame inside a fragmented message"
                                : "continuation frame without a message");
      return;
    }
    if (fin && !c->fragmented) {
      on_text(lg, c, p, len, now);
      return;
    }
    bytes_append(&c->frag, p, len);
    c->fragmented = !fin;
    if (fin) {
      on_text(lg, c, c->frag.data, c->frag.len, now);
      c->frag.len = 0;
    }
    return;
  case 0x8:
    snprintf(why, sizeof(why), "server sent close %d %.*s",
             len >= 2 ? ((uint8_t)p[0] << 8 | (uint8_t)p[1]) : 1005,
             len > 2 ? (int)(len - 2 > 100 ? 100 : len - 2) : 0, len > 2 ? p + 2 : "");
    drop(lg, c, why);
    return;
  case 0x9:
    queue_frame(lg, c, 0xA, p, len);
    return;
  case 0xA:
    return;
  default:
    snprintf(why, sizeof(why), "unexpected opcode 0x%x", opcode);
    drop(lg, c, why);
  }
}

/* ---------------------------------------------------------------- reading */

/* Parses the complete frames in [buf, buf+len) (server frames: unmasked,
 * 7/16/64-bit lengths, RFC 6455 5.2) and returns the bytes consumed; an
 * incomplete frame at the end is left for the caller to keep. Stops early
 * when a frame closed the connection. */
static size_t parse_frames(lg_t *lg, conn_t *c, const char *buf, size_t len, int64_t now)
{
  size_t off = 0;
  while (c->state == CONN_OPEN && len - off >= 2) {
    const uint8_t *h = (const uint8_t *)buf + off;
    size_t avail = len - off, head = 2;
    uint64_t plen = h[1] & 0x7F;
    if ((h[1] & 0x80) || (h[0] & 0x70)) {
      drop(lg, c, "server frame masked or with reserved bits set");
      break;
    }
    if (plen == 126) {
      head = 4;
      if (avail < head)
        break;
      plen = (uint64_t)h[2] << 8 | h[3];
    } else if (plen == 127) {
      head = 10;
      if (avail < head)
        break;
      plen = 0;
      for (int i = 2; i < 10; i++)
        plen = plen << 8 | h[i];
    }
    if (plen > MAX_MESSAGE) {
      drop(lg, c, "server frame larger than 64 MiB");
      break;
    }
    if (avail - head < plen)
      break;
    on_frame(lg, c, h[0] & 0x80, h[0] & 0x0F, buf + off + head, (size_t)plen, now);
    off += head + (size_t)plen;
  }
  return off;
}

/* Feeds bytes read from an open connection to the frame parser. The common
 * case parses straight from the loop-wide read buffer; only an incomplete
 * trailing frame is copied into the connection's own buffer, to be completed
 * by the next read. */
static void on_frames(lg_t *lg, conn_t *c, const char *buf, size_t len, int64_t now)
{
  if (c->in.len == 0) {
    size_t used = parse_frames(lg, c, buf, len, now);
    if (c->state == CONN_OPEN && used < len)
      bytes_append(&c->in, buf + used, len - used);
    return;
  }
  bytes_append(&c->in, buf, len);
  size_t used = parse_frames(lg, c, c->in.data, c->in.len, now);
  if (c->state == CONN_OPEN)
    bytes_consume(&c->in, used);
}

/* Reads until the socket is empty (a full buffer means more may wait). The
 * receipt time is taken once per read: every frame in it arrived together,
 * and a clock call per frame would cost the load generator more CPU. */
static void on_readable(lg_t *lg, conn_t *c)
{
  for (;;) {
    ssize_t n = read(c->fd, lg->rbuf, RBUF_SIZE);
    if (n > 0) {
      int64_t now = now_ns();
      if (c->state == CONN_HANDSHAKE)
        on_head_bytes(lg, c, lg->rbuf, (size_t)n, now);
      else
        on_frames(lg, c, lg->rbuf, (size_t)n, now);
      if (c->state == CONN_CLOSED || n < RBUF_SIZE)
        return;
    } else if (n == 0) {
      drop(lg, c, "server closed the connection");
      return;
    } else if (errno != EINTR) {
      if (errno != EAGAIN)
        drop(lg, c, strerror(errno));
      return;
    }
  }
}

static void on_writer_output(lg_t *lg);

static void on_event(lg_t *lg, const struct epoll_event *ev)
{
  conn_t *c = ev->data.ptr;
  if (ev->data.ptr == &lg->live) {
    on_writer_output(lg);
    return;
  }
  if (!c) {
    uint64_t expirations;
    if (read(lg->tfd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
      die("timerfd read: %s", strerror(errno));
    lg->timer_at = 0;
    return;
  }
  if (c->state == CONN_CLOSED)
    return;
  if (c->state == CONN_CONNECTING) {
    on_connected(lg, c);
    return;
  }
  if (ev->events & (EPOLLIN | EPOLLERR | EPOLLHUP))
    on_readable(lg, c);
  if (c->state != CONN_CLOSED && (ev->events & EPOLLOUT))
    flush_conn(lg, c);
}

/* ------------------------------------------------------------- publishing */

/* Queues publisher `pi`'s next publish. The data object is padded with 'x'
 * so that it is exactly --payload bytes (or the bare minimum if that is
 * smaller), and its timestamp is taken now, just before the loop flushes. */
static void send_publish(lg_t *lg, int pi, int64_t now)
{
  pub_t *p = &lg->pubs[pi];
  uint64_t seq = p->next_seq++;
  int ch = (int)(((uint64_t)pi + seq) % (uint64_t)lg->o.channels);
  int head = snprintf(lg->scratch, lg->scratch_cap,
                      "{\"type\":\"publish\",\"channel\":\"bench:%d\",\"id\":%" PRIu64 ",\"data\":",
                      ch, seq);
  int data = snprintf(lg->scratch + head, lg->scratch_cap - (size_t)head,
                      "{\"p\":%d,\"s\":%" PRIu64 ",\"t\":%" PRId64 ",\"x\":\"", pi, seq, now);
  size_t bare = (size_t)data + 2;
  size_t pad = (size_t)lg->o.payload > bare ? (size_t)lg->o.payload - bare : 0;
  char *w = lg->scratch + head + data;
  memset(w, 'x', pad);
  memcpy(w + pad, "\"}}", 3);
  queue_frame(lg, p->conn, 0x1, lg->scratch, (size_t)(w + pad + 3 - lg->scratch));
  p->inflight++;
  lg->st.sent++;
  lg->st.expected += (uint64_t)lg->chan_subs[ch];
  if (lg->phase == PHASE_MEASURE) {
    p->measured++;
    lg->st.sent_window++;
  }
}

static bool can_publish(const lg_t *lg, int pi)
{
  const pub_t *p = &lg->pubs[pi];
  if (p->conn->state != CONN_OPEN || p->inflight >= lg->o.window)
    return false;
  return lg->phase != PHASE_MEASURE || p->quota == 0 || p->measured < p->quota;
}

/* Rate mode: publisher i of P sends its k-th publish at t0 + (i + k*P)/R, so
 * the P publishers interleave evenly. The time is computed from k rather
 * than accumulated, so rounding never drifts the schedule. */
static int64_t due_at(const lg_t *lg, int pi)
{
  double slot = (double)pi + (double)lg->pubs[pi].next_seq * lg->o.publishers;
  return lg->t_pub0 + (int64_t)(slot * (double)NS_PER_S / lg->o.rate);
}

/* Sends every publish that is allowed now: up to the window, and in rate
 * mode only those that are due (late ones go at once and are counted, so a
 * server that cannot keep up shows in the report instead of silently lowering
 * the rate). Returns the earliest future due time, or 0. */
static int64_t pump_publishers(lg_t *lg, int64_t now)
{
  int64_t next = 0;
  for (int i = 0; i < lg->o.publishers; i++) {
    while (can_publish(lg, i)) {
      if (lg->o.rate > 0) {
        int64_t due = due_at(lg, i);
        if (due > now) {
          next = next && next < due ? next : due;
          break;
        }
        if (now - due > LATE_NS)
          lg->st.late++;
      }
      send_publish(lg, i, now);
    }
  }
  return next;
}

static int inflight_open(const lg_t *lg)
{
  int n = 0;
  for (int i = 0; i < lg->o.publishers; i++)
    if (lg->pubs[i].conn->state == CONN_OPEN)
      n += lg->pubs[i].inflight;
  return n;
}

/* ------------------------------------------------------------ event loop */

static void arm_timer(lg_t *lg, int64_t at)
{
  struct itimerspec its = {0};
  if (at == lg->timer_at)
    return;
  its.it_value.tv_sec = at / NS_PER_S;
  its.it_value.tv_nsec = at % NS_PER_S;
  if (timerfd_settime(lg->tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
    die("timerfd_settime: %s", strerror(errno));
  lg->timer_at = at;
}

static bool publishing(const lg_t *lg)
{
  return lg->phase == PHASE_WARMUP || lg->phase == PHASE_MEASURE;
}

/* Sends what is due and flushes everything queued; returns the time the
 * loop must wake up for the next rate-paced publish or for the stall check,
 * or 0. Sets st.stalled when open publishers have waited STALL_NS for acks. */
static int64_t publish_due(lg_t *lg)
{
  int64_t now = now_ns(), wake = 0;
  if (publishing(lg)) {
    wake = pump_publishers(lg, now);
    if (inflight_open(lg) > 0) {
      lg->st.stalled |= now - lg->last_ack > STALL_NS;
      if (!wake || lg->last_ack + STALL_NS < wake)
        wake = lg->last_ack + STALL_NS + 1;
    }
  }
  flush_dirty(lg);
  return wake;
}

/* Runs the loop until done(lg) holds or the absolute `deadline` passes
 * (0 = none); returns whether done() was reached. Every turn flushes all
 * output queued during it before sleeping, so one wakeup costs one write()
 * per connection however many frames it produced. Publishers are also topped
 * up every 64 events within a turn: a turn over 1,000 busy subscribers can
 * take milliseconds, which would otherwise delay rate-paced publishes and
 * idle the window. A timerfd wakes the loop for deadlines and paced
 * publishes with nanosecond precision, which epoll_wait's timeout lacks. */
static bool run_until(lg_t *lg, int64_t deadline, bool (*done)(const lg_t *))
{
  static struct epoll_event ev[MAX_EVENTS];
  for (;;) {
    int64_t wake = publish_due(lg);
    if (lg->st.stalled) {
      fprintf(stderr, "rt_loadgen: no ack for %lld s, publishing stopped\n",
              (long long)(STALL_NS / NS_PER_S));
      return false;
    }
    if (done(lg))
      return true;
    if (deadline && now_ns() >= deadline)
      return false;
    arm_timer(lg, wake && (!deadline || wake < deadline) ? wake : deadline);
    int n = epoll_wait(lg->ep, ev, MAX_EVENTS, -1);
    if (n < 0 && errno != EINTR)
      die("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < n; i++) {
      on_event(lg, &ev[i]);
      if (i % 64 == 63 && publishing(lg))
        publish_due(lg);
    }
  }
}

static bool all_open(const lg_t *lg)
{
  return lg->open == lg->nconns;
}

static bool all_subscribed(const lg_t *lg)
{
  return lg->sub_done == lg->o.subscribers;
}

static bool never(const lg_t *lg)
{
  (void)lg;
  return false;
}

/* --messages mode: every live publisher has sent its share. */
static bool quotas_met(const lg_t *lg)
{
  for (int i = 0; i < lg->o.publishers; i++) {
    const pub_t *p = &lg->pubs[i];
    if (p->conn->state == CONN_OPEN && (p->quota == 0 || p->measured < p->quota))
      return false;
  }
  return true;
}

static bool drained(const lg_t *lg)
{
  return inflight_open(lg) == 0 && lg->st.received >= lg->st.expected;
}

/* ---------------------------------------------------------------- probes */

static int64_t rusage_ns(int who)
{
  struct rusage ru;
  getrusage(who, &ru);
  return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * NS_PER_S +
         ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
}

/* /proc counts CPU time in clock ticks (USER_HZ). */
static int64_t self_cpu_ns(void)
{
  return rusage_ns(RUSAGE_SELF);
}

/* CPU of reaped children: the writer of a live-query run, once it exited. */
static int64_t children_cpu_ns(void)
{
  return rusage_ns(RUSAGE_CHILDREN);
}

static int64_t ticks_ns(unsigned long long ticks)
{
  return (int64_t)(ticks * (unsigned long long)NS_PER_S / (unsigned long long)sysconf(_SC_CLK_TCK));
}

/* utime + stime of a process (all its threads) from /proc/PID/stat, fields
 * 14 and 15, counted after the ")" that ends the command name (which may
 * itself contain spaces). Returns -1 without --server-pid or on failure. */
static int64_t server_cpu_ns(int pid)
{
  char path[64], buf[1024];
  unsigned long long ut, st;
  if (pid <= 0)
    return -1;
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *p = strrchr(buf, ')');
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
    return -1;
  return ticks_ns(ut + st);
}

/* CPU time all processes spent on the machine (user, nice, system, irq,
 * softirq and steal from the first line of /proc/stat): with the two
 * figures above it shows how much of the run's CPU went to other processes,
 * i.e. how noisy the measurement was. Returns -1 on failure. */
static int64_t machine_cpu_ns(void)
{
  unsigned long long v[8];
  FILE *f = fopen("/proc/stat", "r");
  if (!f)
    return -1;
  int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                 &v[4], &v[5], &v[6], &v[7]);
  fclose(f);
  if (n != 8)
    return -1;
  return ticks_ns(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]);
}

/* Busy time of one CPU (user, nice, system, irq, softirq, steal of its
 * "cpuN" line in /proc/stat). With the server pinned to that CPU this counts,
 * besides the server's own time, the kernel work done on its behalf outside
 * its process accounting: softirq network processing run in ksoftirqd or in
 * other tasks' context (e.g. io_uring moves part of the loopback send path
 * there). Returns -1 without --server-core or on failure. */
static int64_t core_busy_ns(int core)
{
  char line[512], name[16];
  int64_t ns = -1;
  if (core < 0)
    return -1;
  snprintf(name, sizeof(name), "cpu%d ", core);
  FILE *f = fopen("/proc/stat", "r");
  if (!f)
    return -1;
  while (fgets(line, sizeof(line), f)) {
    unsigned long long v[8];
    if (strncmp(line, name, strlen(name)) != 0)
      continue;
    if (sscanf(line + strlen(name), "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
               &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) == 8)
      ns = ticks_ns(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]);
    break;
  }
  fclose(f);
  return ns;
}

/* VmRSS of a process in KiB from /proc/PID/status, or -1. */
static long server_rss_kb(int pid)
{
  char path[64], line[256];
  long kb = -1;
  if (pid <= 0)
    return -1;
  snprintf(path, sizeof(path), "/proc/%d/status", pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  while (fgets(line, sizeof(line), f))
    if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
      break;
  fclose(f);
  return kb;
}

/* ---------------------------------------------------------------- phases */

static double secs(int64_t ns)
{
  return (double)ns / (double)NS_PER_S;
}

/* Opens every connection and subscribes every subscriber to its channel. Any
 * failure here (refused connection, bad handshake, subscribe error) aborts
 * the run: the scenario asked for would not be the one measured. */
static void setup(lg_t *lg)
{
  int64_t deadline = now_ns() + SETUP_TIMEOUT_NS;
  char cmd[256];
  lg->phase = PHASE_SETUP;
  connect_more(lg);
  if (!run_until(lg, deadline, all_open))
    die("only %d of %d connections open after %lld s", lg->open, lg->nconns,
        (long long)(SETUP_TIMEOUT_NS / NS_PER_S));
  for (int i = 0; i < lg->o.subscribers; i++) {
    int n = lg->o.query ? snprintf(cmd, sizeof(cmd),
                                   "{\"type\":\"query_subscribe\",\"query\":\"%s\","
                                   "\"params\":[%d],\"id\":1}", lg->o.query, lg->subs[i].channel)
                        : snprintf(cmd, sizeof(cmd),
                                   "{\"type\":\"subscribe\",\"channel\":\"bench:%d\",\"id\":1}",
                                   lg->subs[i].channel);
    queue_frame(lg, lg->subs[i].conn, 0x1, cmd, (size_t)n);
  }
  if (!run_until(lg, deadline, all_subscribed))
    die("only %d of %d subscribes answered", lg->sub_done, lg->o.subscribers);
  if (lg->st.errors)
    die("%" PRIu64 " subscribe(s) failed", lg->st.errors);
}

/* Warmup, measured window, drain. The CPU samples bracket the window plus
 * the drain, the span in which the window's deliveries are produced. */
static void run_fanout(lg_t *lg)
{
  int64_t t0 = now_ns();
  setup(lg);
  lg->setup_ns = now_ns() - t0;
  lg->t_pub0 = lg->last_ack = now_ns();
  if (lg->o.warmup > 0) {
    lg->phase = PHASE_WARMUP;
    run_until(lg, lg->t_pub0 + (int64_t)(lg->o.warmup * NS_PER_S), never);
  }
  lg->phase = PHASE_MEASURE;
  lg->t_start = now_ns();
  lg->cpu_self = self_cpu_ns();
  lg->cpu_server = server_cpu_ns(lg->o.server_pid);
  lg->cpu_all = machine_cpu_ns();
  lg->cpu_core = core_busy_ns(lg->o.server_core);
  bool timed = lg->o.duration_set || lg->o.messages == 0;
  run_until(lg, timed ? lg->t_start + (int64_t)(lg->o.duration * NS_PER_S) : 0, quotas_met);
  lg->t_stop = now_ns();
  lg->phase = PHASE_DRAIN;
  run_until(lg, lg->t_stop + (int64_t)(lg->o.drain * NS_PER_S), drained);
  lg->t_end = now_ns();
}

/* Sends a close frame (1000) on every open connection, then closes it: the
 * server sees a normal goodbye rather than a reset. */
static void close_all(lg_t *lg)
{
  static const uint8_t normal[2] = {0x03, 0xE8};
  lg->phase = PHASE_DONE;
  for (int i = 0; i < lg->nconns; i++) {
    conn_t *c = &lg->conns[i];
    if (c->state == CONN_OPEN) {
      queue_frame(lg, c, 0x8, normal, sizeof(normal));
      flush_conn(lg, c);
    }
    if (c->fd >= 0)
      close(c->fd);
    c->fd = -1;
  }
  lg->ndirty = 0;
}

/* ---------------------------------------------------------------- report */

typedef struct {
  const char *key;   /* JSON member name */
  const char *label; /* human table label */
  double value;      /* NAN when unknown: "n/a", JSON null */
  int decimals;      /* digits after the decimal point */
} field_t;

/* One list of figures feeds both outputs, so the table and the JSON line
 * can never disagree. */
static void print_report(const lg_t *lg, const char *mode, const field_t *f, int n, bool ok)
{
  printf("rt_loadgen %s%s%s\n", mode, lg->o.label ? ": " : "", lg->o.label ? lg->o.label : "");
  for (int i = 0; i < n; i++) {
    if (isnan(f[i].value))
      printf("  %-34s n/a\n", f[i].label);
    else
      printf("  %-34s %.*f\n", f[i].label, f[i].decimals, f[i].value);
  }
  printf("  %-34s %s\n", "result", ok ? "PASS" : "FAIL");
  if (!lg->o.json)
    return;
  printf("{\"mode\":\"%s\",\"label\":\"%s\"", mode, lg->o.label ? lg->o.label : "");
  for (int i = 0; i < n; i++) {
    if (isnan(f[i].value))
      printf(",\"%s\":null", f[i].key);
    else
      printf(",\"%s\":%.*f", f[i].key, f[i].decimals, f[i].value);
  }
  printf(",\"ok\":%s}\n", ok ? "true" : "false");
}

static int report_fanout(const lg_t *lg)
{
  const stats_t *s = &lg->st;
  const hist_t *h = &lg->hist;
  double window = secs(lg->t_stop - lg->t_start), span = secs(lg->t_end - lg->t_start);
  double cpu = secs(self_cpu_ns() - lg->cpu_self);
  int64_t srv_end = server_cpu_ns(lg->o.server_pid), all_end = machine_cpu_ns();
  int64_t core_end = core_busy_ns(lg->o.server_core);
  double srv = lg->cpu_server >= 0 && srv_end >= 0 ? secs(srv_end - lg->cpu_server) : NAN;
  double other = lg->cpu_all >= 0 && all_end >= 0 ? secs(all_end - lg->cpu_all) - cpu : NAN;
  double core = lg->cpu_core >= 0 && core_end >= 0 ? secs(core_end - lg->cpu_core) : NAN;
  uint64_t loss = s->expected > s->received ? s->expected - s->received : 0;
  double us = 1e-3;
  field_t f[] = {
      {"subscribers", "subscribers", lg->o.subscribers, 0},
      {"channels", "channels", lg->o.channels, 0},
      {"publishers", "publishers", lg->o.publishers, 0},
      {"payload_bytes", "payload (bytes)", lg->o.payload, 0},
      {"window", "window (publishes in flight)", lg->o.window, 0},
      {"rate", "target rate (publishes/s, 0=max)", lg->o.rate, 1},
      {"setup_s", "setup (s)", secs(lg->setup_ns), 2},
      {"warmup_s", "warmup (s)", lg->o.warmup, 2},
      {"window_s", "measured window (s)", window, 3},
      {"drain_s", "drain (s)", secs(lg->t_end - lg->t_stop), 3},
      {"published", "publishes sent", (double)s->sent, 0},
      {"published_window", "publishes sent in window", (double)s->sent_window, 0},
      {"acked", "acks received", (double)s->acked, 0},
      {"ack_delivered", "sum of ack.delivered", (double)s->ack_delivered, 0},
      {"expected", "expected deliveries", (double)s->expected, 0},
      {"received", "received deliveries", (double)s->received, 0},
      {"loss", "loss", (double)loss, 0},
      {"duplicates", "duplicates", (double)s->duplicates, 0},
      {"misrouted", "misrouted", (double)s->misrouted, 0},
      {"errors", "error frames", (double)s->errors, 0},
      {"dropped", "connections dropped", (double)s->dropped, 0},
      {"late", "publishes late (>1 ms, rate mode)", (double)s->late, 0},
      {"published_per_s", "published/s", window > 0 ? (double)s->sent_window / window : NAN, 1},
      {"delivered_per_s", "delivered/s", window > 0 ? (double)s->received_window / window : NAN, 1},
      {"latency_samples", "latency samples", (double)h->total, 0},
      {"latency_p50_us", "latency p50 (us)", (double)hist_percentile(h, 50) * us, 1},
      {"latency_p90_us", "latency p90 (us)", (double)hist_percentile(h, 90) * us, 1},
      {"latency_p99_us", "latency p99 (us)", (double)hist_percentile(h, 99) * us, 1},
      {"latency_p999_us", "latency p99.9 (us)", (double)hist_percentile(h, 99.9) * us, 1},
      {"latency_max_us", "latency max (us)", (double)h->max * us, 1},
      {"latency_mean_us", "latency mean (us)", h->total ? h->sum / (double)h->total * us : NAN, 1},
      {"loadgen_cpu_s", "loadgen CPU (s)", cpu, 3},
      {"loadgen_cpu_pct", "loadgen CPU (% of one core)", span > 0 ? 100 * cpu / span : NAN, 1},
      {"server_cpu_s", "server CPU (s)", srv, 3},
      {"server_cpu_us_per_delivery", "server CPU per delivery (us)",
       s->received_since ? srv * 1e6 / (double)s->received_since : NAN, 3},
      {"server_core_busy_s", "server core busy (s)", core, 3},
      {"server_core_us_per_delivery", "server core busy per delivery (us)",
       s->received_since ? core * 1e6 / (double)s->received_since : NAN, 3},
      {"other_cpu_s", "other processes' CPU (s)", other - srv, 3},
  };
  bool ok = loss == 0 && !s->errors && !s->dropped && !s->duplicates && !s->misrouted &&
            !s->stalled;
  if (s->ack_delivered != s->expected && !s->errors && !s->dropped)
    fprintf(stderr, "rt_loadgen: warning: acks report %" PRIu64 " deliveries, %" PRIu64
                    " expected (other subscribers on bench:* channels?)\n",
            s->ack_delivered, s->expected);
  print_report(lg, "fanout", f, (int)(sizeof(f) / sizeof(f[0])), ok);
  return ok ? 0 : 1;
}

/* Scenario D: RSS is sampled before the first connection and again at the
 * end of the hold, while every connection is still open and subscribed. */
static int run_idle(lg_t *lg)
{
  long before = server_rss_kb(lg->o.server_pid);
  int64_t t0 = now_ns();
  setup(lg);
  int64_t t1 = now_ns();
  lg->phase = PHASE_DRAIN;
  run_until(lg, t1 + (int64_t)(lg->o.duration * NS_PER_S), never);
  long after = server_rss_kb(lg->o.server_pid);
  double growth = before >= 0 && after >= 0 ? (double)(after - before) : NAN;
  field_t f[] = {
      {"connections", "connections", lg->o.subscribers, 0},
      {"setup_s", "setup (s)", secs(t1 - t0), 2},
      {"hold_s", "hold (s)", secs(now_ns() - t1), 2},
      {"server_rss_before_kb", "server RSS before (KiB)", before >= 0 ? (double)before : NAN, 0},
      {"server_rss_after_kb", "server RSS after (KiB)", after >= 0 ? (double)after : NAN, 0},
      {"server_rss_per_conn_bytes", "server RSS per connection (B)",
       growth * 1024 / lg->o.subscribers, 0},
      {"errors", "error frames", (double)lg->st.errors, 0},
      {"dropped", "connections dropped", (double)lg->st.dropped, 0},
  };
  bool ok = !lg->st.errors && !lg->st.dropped;
  print_report(lg, "idle", f, (int)(sizeof(f) / sizeof(f[0])), ok);
  return ok ? 0 : 1;
}

/* ------------------------------------------------------ live-query runs */

#define QUIET_NS (500 * NS_PER_MS) /* drain without an expected count: this long without a push */
#define HTTP_TIMEOUT_S 5           /* GET /stats: longest wait for connect, send or receive */

/* Fetches GET /stats over a blocking connection of its own (once before the
 * writer starts and once after the drain, so it never delays a push) and
 * reads the liveQueries totals: {"instances":N,"subscriptions":N,
 * "evaluations":N}. The server answers with Connection: close, so the body
 * ends at EOF; Content-Length is not needed. Returns 0, or -1 with a reason
 * on stderr. */
static int fetch_stats(const lg_t *lg, lq_stats_t *out)
{
  static const char *const keys[] = {"instances", "subscriptions", "evaluations"};
  struct timeval tv = {.tv_sec = HTTP_TIMEOUT_S};
  bytes_t resp = {0};
  char req[512], buf[4096];
  span_t v[3];
  ssize_t n;
  *out = (lq_stats_t){0};
  int fd = socket(lg->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    die("socket: %s", strerror(errno));
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  int len = snprintf(req, sizeof(req), "GET /stats HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n\r\n",
                     lg->o.host, lg->o.port);
  if (connect(fd, (const struct sockaddr *)&lg->addr, lg->addrlen) < 0 ||
      write(fd, req, (size_t)len) != len) {
    fprintf(stderr, "rt_loadgen: GET /stats: %s\n", strerror(errno));
    close(fd);
    return -1;
  }
  while ((n = read(fd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
    if (n > 0)
      bytes_append(&resp, buf, (size_t)n);
  close(fd);
  bytes_append(&resp, "", 1);
  const char *body = strstr(resp.data, "\r\n\r\n"), *lq = body ? strstr(body, "\"liveQueries\":") : NULL;
  const char *end = resp.data + resp.len - 1;
  int rc = -1;
  if (strncmp(resp.data, "HTTP/1.1 200", 12) != 0 || !lq)
    fprintf(stderr, "rt_loadgen: GET /stats: no 200 answer with liveQueries: %.80s\n", resp.data);
  else if (scan_object(lq + 14, end, keys, 3, v) < 0 || span_u64(v[0], &out->instances) < 0 ||
           span_u64(v[1], &out->subscriptions) < 0 || span_u64(v[2], &out->evaluations) < 0)
    fprintf(stderr, "rt_loadgen: GET /stats: unreadable liveQueries: %.120s\n", lq);
  else
    rc = 0;
  out->ok = rc == 0;
  free(resp.data);
  return rc;
}

/* Runs --writer-cmd with `sh -c`, its stdout on a non-blocking pipe in the
 * epoll set (tagged by &lg->live instead of a connection), so its report is
 * collected while pushes are counted. Its stderr stays ours. The child gets
 * no other descriptor: every socket here is close-on-exec. */
static void spawn_writer(lg_t *lg)
{
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0)
    die("pipe: %s", strerror(errno));
  pid_t pid = fork();
  if (pid < 0)
    die("fork: %s", strerror(errno));
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    execl("/bin/sh", "sh", "-c", lg->o.writer_cmd, (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  fcntl(fds[0], F_SETFL, O_NONBLOCK);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &lg->live};
  if (epoll_ctl(lg->ep, EPOLL_CTL_ADD, fds[0], &ev) < 0)
    die("epoll_ctl: %s", strerror(errno));
  lg->live.writer = pid;
  lg->live.writer_fd = fds[0];
}

/* Reads the writer's report line `rt_lq_writer: commits=N inserts=I
 * updates=U groups=G ... late=L` (the last one, if it printed several). */
static void parse_writer_report(live_t *lv)
{
  const char *p = NULL, *q;
  bytes_append(&lv->writer_out, "", 1);
  lv->writer_out.len--;
  for (q = lv->writer_out.data; (q = strstr(q, "commits=")) != NULL; q++)
    p = q;
  if (!p || sscanf(p, "commits=%lld inserts=%lld updates=%lld groups=%lld", &lv->commits,
                   &lv->inserts, &lv->updates, &lv->groups) != 4)
    return;
  if ((q = strstr(p, "late=")) != NULL)
    sscanf(q, "late=%lld", &lv->writer_late);
}

/* Collects what the writer printed; at EOF reaps it (it is exiting) and
 * parses its report. */
static void on_writer_output(lg_t *lg)
{
  live_t *lv = &lg->live;
  char buf[1024];
  ssize_t n;
  while ((n = read(lv->writer_fd, buf, sizeof(buf))) > 0)
    bytes_append(&lv->writer_out, buf, (size_t)n);
  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return;
  epoll_ctl(lg->ep, EPOLL_CTL_DEL, lv->writer_fd, NULL);
  close(lv->writer_fd);
  lv->writer_fd = -1;
  while (waitpid(lv->writer, &lv->writer_status, 0) < 0 && errno == EINTR)
    ;
  lv->writer = 0;
  parse_writer_report(lv);
}

static bool writer_done(const lg_t *lg)
{
  return lg->live.writer_fd < 0;
}

/* A writer still running when --duration ran out is stopped with SIGTERM
 * (rt_lq_writer then prints its report and exits) and waited for. */
static void stop_writer(lg_t *lg)
{
  if (writer_done(lg))
    return;
  kill(lg->live.writer, SIGTERM);
  fcntl(lg->live.writer_fd, F_SETFL, 0);
  on_writer_output(lg);
}

/* With insert-only commits spread over exactly K groups (commit i inserts
 * into group i % K, as rt_lq_writer does), subscriber i must be shown every
 * insert into group i % K: that gives the expected number of changes.
 * Otherwise (updates coalesce on one row) it stays unknown. */
static void expect_changes(lg_t *lg)
{
  live_t *lv = &lg->live;
  uint64_t k = (uint64_t)lg->o.query_params;
  if (lv->commits <= 0 || lv->updates != 0 || lv->groups != (long long)k)
    return;
  uint64_t ins = (uint64_t)lv->inserts;
  for (int i = 0; i < lg->o.subscribers; i++)
    lv->expected += ins / k + ((uint64_t)lg->subs[i].channel < ins % k);
}

/* Drain: until every expected change arrived, or, when that count is
 * unknown, until no push came for QUIET_NS. */
static bool live_drained(const lg_t *lg)
{
  if (lg->live.expected)
    return lg->live.changes >= lg->live.expected;
  int64_t last = lg->live.last_push > lg->t_stop ? lg->live.last_push : lg->t_stop;
  return now_ns() - last >= QUIET_NS;
}

/* Setup, statistics, the writer's run (or --duration seconds without one),
 * the drain, statistics again. The CPU samples bracket the writer's run and
 * the drain. */
static void run_live(lg_t *lg)
{
  int64_t t0 = now_ns();
  setup(lg);
  lg->setup_ns = now_ns() - t0;
  if (fetch_stats(lg, &lg->live.before) < 0)
    die("cannot read the server's liveQueries statistics");
  lg->phase = PHASE_MEASURE;
  lg->t_start = now_ns();
  lg->cpu_self = self_cpu_ns();
  lg->cpu_server = server_cpu_ns(lg->o.server_pid);
  lg->cpu_all = machine_cpu_ns();
  int64_t deadline = lg->t_start + (int64_t)(lg->o.duration * NS_PER_S);
  if (lg->o.writer_cmd) {
    spawn_writer(lg);
    if (!run_until(lg, deadline, writer_done))
      stop_writer(lg);
  } else {
    run_until(lg, deadline, never);
  }
  lg->t_stop = now_ns();
  lg->phase = PHASE_DRAIN;
  expect_changes(lg);
  int64_t drain_end = lg->t_stop + (int64_t)(lg->o.drain * NS_PER_S);
  while (!live_drained(lg) && now_ns() < drain_end) {
    int64_t step = now_ns() + 100 * NS_PER_MS;
    run_until(lg, step < drain_end ? step : drain_end, live_drained);
  }
  lg->t_end = now_ns();
  fetch_stats(lg, &lg->live.after);
  for (int i = 0; i < lg->o.subscribers; i++)
    lg->live.silent += lg->subs[i].pushes == 0;
}

static int report_live(const lg_t *lg)
{
  const live_t *lv = &lg->live;
  const stats_t *s = &lg->st;
  const hist_t *h = &lg->hist;
  double window = secs(lg->t_stop - lg->t_start), span = secs(lg->t_end - lg->t_start);
  double cpu = secs(self_cpu_ns() - lg->cpu_self), wcpu = secs(children_cpu_ns());
  int64_t srv_end = server_cpu_ns(lg->o.server_pid), all_end = machine_cpu_ns();
  double srv = lg->cpu_server >= 0 && srv_end >= 0 ? secs(srv_end - lg->cpu_server) : NAN;
  double other = lg->cpu_all >= 0 && all_end >= 0 ? secs(all_end - lg->cpu_all) - cpu - wcpu : NAN;
  double commits = lv->commits >= 0 ? (double)lv->commits : NAN;
  bool stats = lv->before.ok && lv->after.ok;
  double evals = stats ? (double)(lv->after.evaluations - lv->before.evaluations) : NAN;
  double missed = lv->expected ? (double)(lv->expected > lv->changes ? lv->expected - lv->changes : 0)
                               : NAN;
  double us = 1e-3;
  field_t f[] = {
      {"subscribers", "subscribers", lg->o.subscribers, 0},
      {"query_params", "distinct params (K)", lg->o.query_params, 0},
      {"setup_s", "setup (s)", secs(lg->setup_ns), 2},
      {"window_s", "writer run (s)", window, 3},
      {"drain_s", "drain (s)", secs(lg->t_end - lg->t_stop), 3},
      {"commits", "commits (writer)", commits, 0},
      {"commits_per_s", "commits/s", window > 0 ? commits / window : NAN, 1},
      {"writer_late", "commits late (>1 ms, writer)", lv->writer_late >= 0 ? (double)lv->writer_late : NAN, 0},
      {"pushes", "pushes received", (double)lv->pushes, 0},
      {"diffs", "  of them query_diff", (double)lv->diffs, 0},
      {"results", "  of them query_result", (double)lv->results, 0},
      {"pushes_per_commit", "pushes per commit", commits > 0 ? (double)lv->pushes / commits : NAN, 2},
      {"changes", "changed rows shown", (double)lv->changes, 0},
      {"changes_expected", "changed rows expected", lv->expected ? (double)lv->expected : NAN, 0},
      {"missed", "changed rows missed", missed, 0},
      {"silent", "subscribers without a push", (double)lv->silent, 0},
      {"misrouted", "rows for another param", (double)s->misrouted, 0},
      {"untimed", "rows without a timestamp", (double)lv->untimed, 0},
      {"errors", "error frames", (double)s->errors, 0},
      {"dropped", "connections dropped", (double)s->dropped, 0},
      {"latency_samples", "latency samples", (double)h->total, 0},
      {"latency_p50_us", "change-to-push p50 (us)", (double)hist_percentile(h, 50) * us, 1},
      {"latency_p90_us", "change-to-push p90 (us)", (double)hist_percentile(h, 90) * us, 1},
      {"latency_p99_us", "change-to-push p99 (us)", (double)hist_percentile(h, 99) * us, 1},
      {"latency_max_us", "change-to-push max (us)", (double)h->max * us, 1},
      {"latency_mean_us", "change-to-push mean (us)", h->total ? h->sum / (double)h->total * us : NAN, 1},
      {"instances", "liveQueries.instances (end)", stats ? (double)lv->after.instances : NAN, 0},
      {"lq_subscriptions", "liveQueries.subscriptions (end)", stats ? (double)lv->after.subscriptions : NAN, 0},
      {"evaluations", "evaluations (delta)", evals, 0},
      {"evaluations_per_commit", "evaluations per commit", commits > 0 ? evals / commits : NAN, 3},
      {"loadgen_cpu_s", "loadgen CPU (s)", cpu, 3},
      {"loadgen_cpu_pct", "loadgen CPU (% of one core)", span > 0 ? 100 * cpu / span : NAN, 1},
      {"writer_cpu_s", "writer CPU (s)", lg->o.writer_cmd ? wcpu : NAN, 3},
      {"server_cpu_s", "server CPU (s)", srv, 3},
      {"server_cpu_us_per_commit", "server CPU per commit (us)", commits > 0 ? srv * 1e6 / commits : NAN, 1},
      {"other_cpu_s", "other processes' CPU (s)", other - srv, 3},
  };
  bool writer_ok = !lg->o.writer_cmd || (lv->writer_status == 0 && lv->commits > 0);
  bool ok = writer_ok && stats && !s->errors && !s->dropped && !s->misrouted && !lv->untimed &&
            lv->pushes > 0 && !(missed > 0) &&
            !(lv->silent && lv->commits >= (long long)lg->o.query_params);
  if (lg->o.writer_cmd && !writer_ok)
    fprintf(stderr, "rt_loadgen: the writer failed (wait status %d) or reported no commits: %.200s\n",
            lv->writer_status, lv->writer_out.data ? lv->writer_out.data : "");
  print_report(lg, "livequery", f, (int)(sizeof(f) / sizeof(f[0])), ok);
  return ok ? 0 : 1;
}

/* --------------------------------------------------------------- options */

typedef enum { OPT_STR, OPT_INT, OPT_NUM, OPT_FLAG } opt_kind_t;

typedef struct {
  const char *name;     /* long option name */
  opt_kind_t kind;      /* how the value is parsed and stored */
  size_t offset;        /* the opts_t field it sets */
  double max;           /* largest numeric value accepted (the least is 0) */
  const char *arg;      /* argument name in the usage text */
  const char *help;     /* usage text, default in parentheses */
} optdef_t;

/* One table drives getopt_long, validation and --help, so they cannot drift
 * apart. Numbers are checked against [0, max]. */
#define OPT(name, kind, field, max, arg, help) {name, kind, offsetof(opts_t, field), max, arg, help}
static const optdef_t optdefs[] = {
    OPT("host", OPT_STR, host, 0, "H", "server host (127.0.0.1)"),
    OPT("port", OPT_STR, port, 0, "P", "server port (8080)"),
    OPT("path", OPT_STR, path, 0, "PATH", "WebSocket path (/ws)"),
    OPT("subscribers", OPT_INT, subscribers, 1e6, "N", "subscriber connections (1000)"),
    OPT("connections", OPT_INT, subscribers, 1e6, "N", "the same, reads better with --idle"),
    OPT("channels", OPT_INT, channels, 1e6, "K", "channels; subscriber i is on channel i % K (1)"),
    OPT("publishers", OPT_INT, publishers, 1e4, "P", "publisher connections (1)"),
    OPT("rate", OPT_NUM, rate, 1e9, "R", "publishes/s in total; 0 = as fast as the window allows"),
    OPT("window", OPT_INT, window, 1e6, "W", "unacked publishes per publisher (64)"),
    OPT("duration", OPT_NUM, duration, 86400, "S", "seconds measured; --idle: seconds held (10)"),
    OPT("messages", OPT_NUM, messages, 1e12, "M", "publishes measured, instead of a duration"),
    OPT("payload", OPT_INT, payload, 16 << 20, "BYTES", "size of each message's data object (64)"),
    OPT("warmup", OPT_NUM, warmup, 3600, "S", "seconds of unmeasured publishing first (1)"),
    OPT("drain", OPT_NUM, drain, 3600, "S", "most seconds to wait for late deliveries (5)"),
    OPT("connect-batch", OPT_INT, connect_batch, 1e6, "N", "handshakes in progress at once (256)"),
    OPT("server-pid", OPT_INT, server_pid, 1e9, "PID", "sample the server's CPU and RSS in /proc"),
    OPT("server-core", OPT_INT, server_core, 4096, "N", "the CPU the server is pinned to: report its busy time"),
    OPT("idle", OPT_FLAG, idle, 0, "", "scenario D: N idle connections, one channel each"),
    OPT("query", OPT_STR, query, 0, "NAME", "live queries: subscribe to this configured query"),
    OPT("query-params-count", OPT_INT, query_params, 1e6, "K", "subscriber i uses params [i % K] (1)"),
    OPT("ts-column", OPT_STR, ts_column, 0, "COL", "row column with the writer's CLOCK_MONOTONIC ns (ts)"),
    OPT("param-column", OPT_STR, param_column, 0, "COL", "row column that must equal the param"),
    OPT("writer-cmd", OPT_STR, writer_cmd, 0, "CMD", "sh command run after setup; its exit ends the run"),
    OPT("label", OPT_STR, label, 0, "TEXT", "copied into the report and the JSON line"),
    OPT("json", OPT_FLAG, json, 0, "", "also print the result as one JSON line"),
};
#define NOPTS ((int)(sizeof(optdefs) / sizeof(optdefs[0])))

static void usage(FILE *f)
{
  char flag[48];
  fputs("usage: rt_loadgen [options]\n", f);
  fputs("fan-out (default), --idle, or live queries (--query: subscribers take pushes,\n"
        "--writer-cmd commits meanwhile, latency = receipt - the rows' timestamp column)\n", f);
  for (int i = 0; i < NOPTS; i++) {
    snprintf(flag, sizeof(flag), "--%s %s", optdefs[i].name, optdefs[i].arg);
    fprintf(f, "  %-22s %s\n", flag, optdefs[i].help);
  }
  fputs("exit status: 0 pass; 1 loss, duplicates, misrouting, error frames or drops;\n"
        "2 usage or setup error\n", f);
}

static void set_opt(opts_t *o, const optdef_t *d, const char *arg)
{
  char *field = (char *)o + d->offset, *end;
  double v = 0;
  if (d->kind == OPT_STR) {
    *(const char **)field = arg;
    return;
  }
  if (d->kind == OPT_FLAG) {
    *(bool *)field = true;
    return;
  }
  errno = 0;
  v = strtod(arg, &end);
  bool whole = d->kind != OPT_INT || v == floor(v);
  if (end == arg || *end || errno || !(v >= 0 && v <= d->max) || !whole)
    die("--%s: '%s' is not a %s in [0, %g]", d->name, arg,
        d->kind == OPT_INT ? "whole number" : "number", d->max);
  if (d->kind == OPT_INT)
    *(int *)field = (int)v;
  else
    *(double *)field = v;
}

/* Names are copied into JSON commands and compared with raw JSON keys, so
 * they are limited to characters that need no escaping. */
static void check_name(const char *opt, const char *v)
{
  size_t n = strlen(v);
  if (n == 0 || n > 100 || strspn(v, LABEL_CHARS) != n || strchr(v, ' '))
    die("--%s: 1-100 letters, digits or '_-.:/@+='", opt);
}

/* Live-query mode: subscribers only, spread over K params like channels. */
static void check_live_opts(opts_t *o)
{
  check_name("query", o->query);
  check_name("ts-column", o->ts_column);
  if (o->param_column)
    check_name("param-column", o->param_column);
  if (o->idle || o->query_params < 1 || o->subscribers < 1)
    die("--query needs --query-params-count >= 1, subscribers, and no --idle");
  o->channels = o->query_params;
  o->publishers = 0;
}

static void parse_opts(opts_t *o, int argc, char **argv)
{
  struct option longopts[NOPTS + 2];
  for (int i = 0; i < NOPTS; i++)
    longopts[i] = (struct option){optdefs[i].name,
                                  optdefs[i].kind == OPT_FLAG ? no_argument : required_argument,
                                  NULL, i};
  longopts[NOPTS] = (struct option){"help", no_argument, NULL, NOPTS};
  longopts[NOPTS + 1] = (struct option){0};
  *o = (opts_t){.host = "127.0.0.1", .port = "8080", .path = "/ws", .subscribers = 1000,
                .channels = 1, .publishers = 1, .window = 64, .duration = 10, .payload = 64,
                .warmup = 1, .drain = 5, .connect_batch = 256, .query_params = 1,
                .ts_column = "ts", .server_core = -1};
  int i;
  while ((i = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    if (i == NOPTS) {
      usage(stdout);
      exit(0);
    }
    if (i < 0 || i > NOPTS)
      die("see --help for the options");
    set_opt(o, &optdefs[i], optarg);
    o->duration_set |= optdefs[i].offset == offsetof(opts_t, duration);
  }
  if (optind < argc)
    die("unexpected argument '%s' (see --help)", argv[optind]);
  if (o->label && strspn(o->label, LABEL_CHARS) != strlen(o->label))
    die("--label: only letters, digits and ' _-.:/@+=' (it is printed into JSON as is)");
  if (o->channels < 1 || o->publishers < 1 || o->window < 1 || o->connect_batch < 1)
    die("--channels, --publishers, --window and --connect-batch must be at least 1");
  if (o->query)
    check_live_opts(o);
  if (o->idle) {
    if (o->subscribers < 1)
      die("--idle needs at least one connection");
    o->publishers = 0;
    o->channels = o->subscribers;
  }
}

/* ------------------------------------------------------------------ main */

/* Each connection is one descriptor here and one in the server, so raise the
 * soft limit (to the hard limit, or beyond it if we may) before opening
 * thousands of sockets, and say clearly when that is impossible. */
static void raise_nofile(rlim_t need)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= need)
    return;
  rl.rlim_cur = need;
  if (rl.rlim_max < need)
    rl.rlim_max = need;
  if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
    return;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  die("need %lu file descriptors, the hard limit is %lu (raise it with ulimit -Hn)",
      (unsigned long)need, (unsigned long)rl.rlim_max);
}

static void resolve(lg_t *lg)
{
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
  int rc = getaddrinfo(lg->o.host, lg->o.port, &hints, &ai);
  if (rc != 0)
    die("%s:%s: %s", lg->o.host, lg->o.port, gai_strerror(rc));
  memcpy(&lg->addr, ai->ai_addr, ai->ai_addrlen);
  lg->addrlen = ai->ai_addrlen;
  freeaddrinfo(ai);
}

static void *xcalloc(size_t n, size_t size)
{
  void *p = calloc(n ? n : 1, size);
  if (!p)
    die("out of memory (%zu x %zu bytes)", n, size);
  return p;
}

/* Lays out subscribers (connection i on channel i % K) then publishers
 * (each with its share of --messages), the epoll set and the timer. */
static void init(lg_t *lg)
{
  const opts_t *o = &lg->o;
  lg->nconns = o->subscribers + o->publishers;
  lg->conns = xcalloc((size_t)lg->nconns, sizeof(conn_t));
  lg->subs = xcalloc((size_t)o->subscribers, sizeof(sub_t));
  lg->pubs = xcalloc((size_t)o->publishers, sizeof(pub_t));
  lg->chan_subs = xcalloc((size_t)o->channels, sizeof(int));
  lg->dirty = xcalloc((size_t)lg->nconns, sizeof(conn_t *));
  lg->rbuf = xcalloc(RBUF_SIZE, 1);
  lg->scratch_cap = (size_t)o->payload + 256;
  lg->scratch = xcalloc(lg->scratch_cap, 1);
  for (int i = 0; i < lg->nconns; i++) {
    bool sub = i < o->subscribers;
    lg->conns[i] = (conn_t){.fd = -1, .role = sub ? ROLE_SUB : ROLE_PUB,
                            .index = sub ? i : i - o->subscribers};
  }
  for (int i = 0; i < o->subscribers; i++) {
    lg->subs[i] = (sub_t){.conn = &lg->conns[i], .channel = i % o->channels,
                          .seen = xcalloc((size_t)o->publishers, sizeof(bitmap_t))};
    lg->chan_subs[lg->subs[i].channel]++;
  }
  for (int i = 0; i < o->publishers; i++) {
    uint64_t total = (uint64_t)o->messages, share = total / (uint64_t)o->publishers;
    lg->pubs[i] = (pub_t){.conn = &lg->conns[o->subscribers + i],
                          .quota = share + ((uint64_t)i < total % (uint64_t)o->publishers)};
  }
  lg->ep = epoll_create1(EPOLL_CLOEXEC);
  lg->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  if (lg->ep < 0 || lg->tfd < 0 || epoll_ctl(lg->ep, EPOLL_CTL_ADD, lg->tfd, &ev) < 0)
    die("epoll/timerfd: %s", strerror(errno));
  lg->xs = (uint64_t)now_ns() | 1;
  lg->live = (live_t){.writer_fd = -1, .writer_status = -1, .commits = -1, .inserts = -1,
                      .updates = -1, .groups = -1, .writer_late = -1};
}

static void destroy(lg_t *lg)
{
  for (int i = 0; i < lg->nconns; i++) {
    free(lg->conns[i].in.data);
    free(lg->conns[i].frag.data);
    free(lg->conns[i].out.data);
  }
  for (int i = 0; i < lg->o.subscribers; i++) {
    for (int p = 0; p < lg->o.publishers; p++)
      free(lg->subs[i].seen[p].words);
    free(lg->subs[i].seen);
  }
  free(lg->conns);
  free(lg->subs);
  free(lg->pubs);
  free(lg->chan_subs);
  free(lg->dirty);
  free(lg->rbuf);
  free(lg->scratch);
  free(lg->live.writer_out.data);
  close(lg->ep);
  close(lg->tfd);
  free(lg);
}

int main(int argc, char **argv)
{
  lg_t *lg = xcalloc(1, sizeof(*lg));
  parse_opts(&lg->o, argc, argv);
  signal(SIGPIPE, SIG_IGN);
  raise_nofile((rlim_t)(lg->o.subscribers + lg->o.publishers) + 64);
  resolve(lg);
  init(lg);
  int rc;
  if (lg->o.idle) {
    rc = run_idle(lg);
  } else if (lg->o.query) {
    run_live(lg);
    rc = report_live(lg);
  } else {
    run_fanout(lg);
    rc = report_fanout(lg);
  }
  close_all(lg);
  destroy(lg);
  return rc;
}
