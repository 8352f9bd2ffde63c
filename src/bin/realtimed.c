/*
 * realtimed: the SymbioseDB Realtime daemon.
 *
 * Builds one rt_config_t from defaults, an optional JSON file, REALTIME_*
 * variables and flags (in that order, so flags win), runs the server on its
 * own loop and stops it gracefully on SIGINT/SIGTERM. Once it accepts
 * connections it prints `listening on HOST:PORT` on stdout, which is what
 * tests wait for; everything else goes to stderr as timestamped log lines.
 *
 * Exit status: 0 after a clean stop (or --help, --version, a good
 * --check-config), 1 when the server cannot start or run or a second signal
 * cuts shutdown short, 2 for a bad flag or an invalid configuration.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "errors.h"
#include "log.h"
#include "realtime/realtime.h"

extern char **environ;

#define PROG "realtimed"
#define EXIT_USAGE 2
#define LOG_LINE_MAX 1280 /* prefix + the library's 1023-byte lines + newline */
#define PREFIX_MAX 32     /* "2026-11-28T05:50:00.123Z ERROR " */

typedef struct {
  const char *config_file;  /* --config FILE, NULL = none */
  const char *host;         /* --host value (borrowed from argv), NULL = not given */
  const char *port;         /* --port value, parsed by the config layer */
  const char *path;         /* --path value */
  const char *workers;      /* --workers value */
  int check_only;           /* --check-config: validate, report, exit */
  rt_log_level_t log_level; /* --log-level, default info */
} options_t;

typedef enum { PARSE_RUN, PARSE_EXIT_OK, PARSE_USAGE } parse_result_t;

enum { OPT_HOST = 256, OPT_PATH, OPT_CHECK, OPT_LOG_LEVEL, OPT_WORKERS };

static const struct option long_options[] = {
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {"host", required_argument, NULL, OPT_HOST},
    {"port", required_argument, NULL, 'p'},
    {"path", required_argument, NULL, OPT_PATH},
    {"workers", required_argument, NULL, OPT_WORKERS},
    {"config", required_argument, NULL, 'c'},
    {"check-config", no_argument, NULL, OPT_CHECK},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {NULL, 0, NULL, 0},
};

static const struct {
  const char *flag;    /* --log-level value */
  const char *label;   /* column in log lines */
  rt_log_level_t level;
} levels[] = {
    {"debug", "DEBUG", RT_LOG_DEBUG},
    {"info", "INFO", RT_LOG_INFO},
    {"warn", "WARN", RT_LOG_WARN},
    {"error", "ERROR", RT_LOG_ERROR},
};

#define DUPLICATE_SIGNAL_NS 100000000L /* a repeat within this window counts once */

/* State the signal handler reads; set before the handlers are installed. */
static rt_server_t *volatile signal_server;
static volatile sig_atomic_t first_signal; /* first termination signal, 0 = none yet */
static struct timespec first_signal_at;    /* CLOCK_MONOTONIC time of first_signal */
static rt_log_level_t log_min = RT_LOG_INFO;

/* ------------------------------------------------------------- logging */

static const char *level_label(rt_log_level_t level) {
  for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
    if (levels[i].level == level) return levels[i].label;
  }
  return "LOG";
}

/* Writes `value` as exactly `width` zero-padded decimal digits. */
static char *put_digits(char *p, unsigned long value, int width) {
  for (int i = width - 1; i >= 0; i--) {
    p[i] = (char)('0' + value % 10);
    value /= 10;
  }
  return p + width;
}

/* Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's civil_from_days). */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  unsigned doe = (unsigned)(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/*
 * Formats "2026-11-28T05:50:00.123Z LEVEL " (UTC, milliseconds) into buf,
 * which holds PREFIX_MAX bytes; no NUL is written. Only clock_gettime and
 * arithmetic, no gmtime_r or snprintf, so the signal handler can log in the
 * same format. Returns the length.
 */
static size_t format_prefix(char *buf, rt_log_level_t level) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t secs = ts.tv_sec, days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
  int64_t rem = secs - days * 86400, year;
  unsigned month, day;
  civil_from_days(days, &year, &month, &day);
  char *p = put_digits(buf, (unsigned long)year, 4);
  *p++ = '-';
  p = put_digits(p, month, 2);
  *p++ = '-';
  p = put_digits(p, day, 2);
  *p++ = 'T';
  p = put_digits(p, (unsigned long)(rem / 3600), 2);
  *p++ = ':';
  p = put_digits(p, (unsigned long)(rem / 60 % 60), 2);
  *p++ = ':';
  p = put_digits(p, (unsigned long)(rem % 60), 2);
  *p++ = '.';
  p = put_digits(p, (unsigned long)(ts.tv_nsec / 1000000), 3);
  *p++ = 'Z';
  *p++ = ' ';
  for (const char *l = level_label(level); *l != '\0'; l++) *p++ = *l;
  *p++ = ' ';
  return (size_t)(p - buf);
}

/* write(2) until done; async-signal-safe. */
static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= (size_t)w;
  }
}

/* Appends a NUL-terminated string within cap; async-signal-safe. */
static size_t append(char *buf, size_t len, size_t cap, const char *s) {
  while (*s != '\0' && len < cap) buf[len++] = *s++;
  return len;
}

/*
 * Log sink: one write(2) per line, so lines from different threads never
 * interleave mid-line on stderr (pipes keep writes up to PIPE_BUF whole).
 */
static void log_to_stderr(rt_log_level_t level, const char *line, void *user_data) {
  _Static_assert(LOG_LINE_MAX > PREFIX_MAX + 1024, "room for the library's longest line");
  char out[LOG_LINE_MAX];
  size_t n = format_prefix(out, level);
  n = append(out, n, sizeof(out) - 1, line);
  out[n++] = '\n';
  write_all(STDERR_FILENO, out, n);
}

/* Logs from a signal handler in the sink's format, honouring the level. */
static void log_from_signal(rt_log_level_t level, const char *a, const char *b) {
  if (level < log_min) return;
  char out[PREFIX_MAX + 96];
  size_t n = format_prefix(out, level);
  n = append(out, n, sizeof(out) - 1, a);
  n = append(out, n, sizeof(out) - 1, b);
  out[n++] = '\n';
  write_all(STDERR_FILENO, out, n);
}

/* ------------------------------------------------------------- flags */

static void print_help(void) {
  printf(
      "Usage: " PROG " [OPTIONS]\n"
      "SymbioseDB Realtime: WebSocket pub/sub server.\n"
      "\n"
      "  -c, --config FILE     JSON config file (keys below)\n"
      "      --host HOST       listen address (default 0.0.0.0)\n"
      "  -p, --port PORT       listen port, 0 picks a free one (default 8080)\n"
      "      --path PATH       WebSocket endpoint path (default /ws)\n"
      "      --workers N       event-loop threads sharing the port, 1-64\n"
      "                        (default: the number of online CPUs)\n"
      "      --check-config    load and validate the configuration, print the result, exit\n"
      "      --log-level LEVEL debug, info, warn or error (default info)\n"
      "  -h, --help            show this help\n"
      "  -V, --version         show the version\n"
      "\n"
      "Precedence: flags > environment > config file > defaults.\n"
      "Once accepting connections, prints `listening on HOST:PORT` on stdout.\n"
      "\n"
      "Config keys and their environment variables:\n");
  for (size_t i = 0; rt_config_key(i) != NULL; i++) {
    char env[128];
    if (rt_config_env_name(rt_config_key(i), env, sizeof(env)) != 0) {
      snprintf(env, sizeof(env), "(config file only)");
    }
    printf("  %-32s %s\n", rt_config_key(i), env);
  }
  printf(
      "\n"
      "Nested keys are objects in the file: {\"rateLimit\": {\"windowMs\": 60000}}.\n"
      "jwtAlgorithms is an array in the file and a comma list in the environment\n"
      "(HS256, HS384, HS512, RS256, ES256; default: HS256 with jwtSecret, RS256 and\n"
      "ES256 with jwtPublicKeyFile). apiKeys is an array of\n"
      "{\"key\": \"...\", \"name\": \"...\", \"permissions\": [\"read:<pattern>\", ...]}.\n"
      "requireAuth needs jwtSecret, jwtPublicKeyFile or apiKeys. Secrets are never printed.\n"
      "queries names the live queries clients may subscribe to, by a name of 1-64\n"
      "[A-Za-z0-9_.:-]: {\"pending_orders\": {\"sql\": \"SELECT id, status FROM orders\n"
      "WHERE status = $1\", \"permission\": \"read:orders\", \"key\": \"id\"}}; only \"sql\"\n"
      "is required.\n"
      "database.path is the SQLite file (default realtime.db, created if missing),\n"
      "database.setup SQL run once at start; liveQueries.* limit each evaluation\n"
      "(timeout 1000 ms, maxRows 10000, maxBytes 1048576; allowRawSql off).\n"
      "\n"
      "Exit status: 0 ok, 1 server failure, 2 bad flag or configuration.\n");
}

static void print_hint(void) { fprintf(stderr, "Try '" PROG " --help' for more information.\n"); }

static parse_result_t usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static parse_result_t usage_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, PROG ": ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  print_hint();
  return PARSE_USAGE;
}

static int parse_level(const char *text, rt_log_level_t *out) {
  for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
    if (strcmp(text, levels[i].flag) == 0) {
      *out = levels[i].level;
      return 0;
    }
  }
  return -1;
}

/*
 * Parses argv into opts. getopt_long reports unknown flags and missing values
 * itself, naming the flag; we add the --help hint. Values for config keys
 * are kept as text and parsed by the config layer, so flags, variables and
 * the file share one set of rules and messages.
 */
static parse_result_t parse_args(int argc, char **argv, options_t *opts) {
  memset(opts, 0, sizeof(*opts));
  opts->log_level = RT_LOG_INFO;
  int c;
  while ((c = getopt_long(argc, argv, "hVp:c:", long_options, NULL)) != -1) {
    switch (c) {
      case 'h': print_help(); return PARSE_EXIT_OK;
      case 'V': printf(PROG " %s\n", RT_VERSION_STRING); return PARSE_EXIT_OK;
      case 'c': opts->config_file = optarg; break;
      case 'p': opts->port = optarg; break;
      case OPT_HOST: opts->host = optarg; break;
      case OPT_PATH: opts->path = optarg; break;
      case OPT_WORKERS: opts->workers = optarg; break;
      case OPT_CHECK: opts->check_only = 1; break;
      case OPT_LOG_LEVEL:
        if (parse_level(optarg, &opts->log_level) != 0) {
          return usage_error("--log-level must be debug, info, warn or error (got \"%s\")", optarg);
        }
        break;
      default: print_hint(); return PARSE_USAGE; /* getopt_long named the flag */
    }
  }
  if (optind < argc) return usage_error("unexpected argument '%s'", argv[optind]);
  return PARSE_RUN;
}

/* ------------------------------------------------------------- config */

/* Warns about REALTIME_* variables that match no key: a typo there would otherwise pass silently. */
static void warn_unknown_env(void) {
  static const char prefix[] = "REALTIME_";
  for (char **e = environ; e != NULL && *e != NULL; e++) {
    if (strncmp(*e, prefix, sizeof(prefix) - 1) != 0) continue;
    char name[128];
    size_t n = strcspn(*e, "=");
    if (n >= sizeof(name)) n = sizeof(name) - 1;
    memcpy(name, *e, n);
    name[n] = '\0';
    if (rt_config_key_for_env(name) == NULL) {
      rt_log(RT_LOG_WARN, "ignoring unknown environment variable %s", name);
    }
  }
}

/*
 * The daemon's default is one worker per online CPU (the library's is 1:
 * an embedder opts in). A file, REALTIME_WORKERS or --workers overrides it.
 */
static uint32_t default_workers(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > 64 ? 64 : (uint32_t)n;
}

/* defaults < file < environment < flags, then derived defaults and the cross-field checks. */
static int build_config(const options_t *opts, rt_config_store_t *store, rt_config_t *cfg,
                        rt_errbuf_t *err) {
  const struct {
    const char *key, *value, *flag;
  } flags[] = {
      {"host", opts->host, "--host"},
      {"port", opts->port, "--port"},
      {"path", opts->path, "--path"},
      {"workers", opts->workers, "--workers"},
  };
  rt_config_init(cfg);
  cfg->workers = default_workers();
  int rc = 0;
  if (opts->config_file != NULL) rc = rt_config_load_file(store, cfg, opts->config_file, err);
  if (rc == 0) rc = rt_config_apply_env(store, cfg, environ, err);
  for (size_t i = 0; rc == 0 && i < sizeof(flags) / sizeof(flags[0]); i++) {
    if (flags[i].value == NULL) continue;
    rc = rt_config_set(store, cfg, flags[i].key, flags[i].value, flags[i].flag, err);
  }
  if (rc != 0) return rc;
  rt_config_resolve(store, cfg);
  return rt_config_validate(cfg, err);
}

/* ------------------------------------------------------------- signals */

/* True for a repeat of the first signal within DUPLICATE_SIGNAL_NS; async-signal-safe. */
static int is_duplicate_delivery(int signo) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  long long ns = (long long)(now.tv_sec - first_signal_at.tv_sec) * 1000000000LL +
                 (now.tv_nsec - first_signal_at.tv_nsec);
  return signo == first_signal && ns < DUPLICATE_SIGNAL_NS;
}

/*
 * SIGINT/SIGTERM: the first asks the server to stop gracefully through
 * rt_server_stop_async (uv_async_send underneath, which is async-signal-safe);
 * a second one while shutdown is under way exits at once. The same signal
 * arriving twice within 100 ms counts once: timeout(1) and some supervisors
 * signal both the child and its process group, which is one request, not an
 * impatient operator. Both signals are blocked while the handler runs, so
 * its state is never raced.
 */
static void on_terminate(int signo) {
  int saved = errno;
  const char *name = signo == SIGINT ? "SIGINT" : "SIGTERM";
  if (first_signal != 0) {
    if (!is_duplicate_delivery(signo)) {
      log_from_signal(RT_LOG_ERROR, name, " again during shutdown, exiting immediately");
      _exit(1);
    }
  } else {
    first_signal = signo;
    clock_gettime(CLOCK_MONOTONIC, &first_signal_at);
    log_from_signal(RT_LOG_INFO, name, " received, shutting down");
    rt_server_stop_async(signal_server);
  }
  errno = saved;
}

static void set_signal_handlers(void (*handler)(int)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGINT);
  sigaddset(&sa.sa_mask, SIGTERM);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

static void ignore_sigpipe(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = SIG_IGN;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGPIPE, &sa, NULL);
}

/* ------------------------------------------------------------- serving */

/* IPv6 hosts print bracketed ("[::1]:8080") so the port stays unambiguous. */
static const char *bracket_open(const char *host) { return strchr(host, ':') ? "[" : ""; }
static const char *bracket_close(const char *host) { return strchr(host, ':') ? "]" : ""; }

/* The line integration tests wait for, on stdout and flushed at once. */
static void announce(const char *host, int port) {
  printf("listening on %s%s%s:%d\n", bracket_open(host), host, bracket_close(host), port);
  fflush(stdout);
}

/*
 * Starts the server and runs it until a signal stops it. The handlers go in
 * right after a successful start and before the announcement, so a test
 * that sends SIGTERM as soon as it reads `listening on` always gets a
 * graceful stop rather than the default disposition.
 */
static int serve(const rt_config_t *cfg) {
  rt_server_t *srv = NULL;
  int rc = rt_server_new(cfg, &srv);
  if (rc != 0) {
    rt_log(RT_LOG_ERROR, "cannot create the server: %s", rt_strerror(rc));
    return 1;
  }
  rc = rt_server_start(srv);
  if (rc != 0) {
    rt_log(RT_LOG_ERROR, "cannot start on %s%s%s:%d: %s", bracket_open(cfg->host), cfg->host,
           bracket_close(cfg->host), cfg->port, rt_strerror(rc));
    rt_server_free(srv);
    return 1;
  }
  signal_server = srv;
  set_signal_handlers(on_terminate);
  rt_log(RT_LOG_INFO, PROG " %s running, pid %ld, endpoint %s", RT_VERSION_STRING,
         (long)getpid(), cfg->path);
  announce(cfg->host, rt_server_port(srv));
  rc = rt_server_run(srv);
  set_signal_handlers(SIG_DFL);
  rt_server_free(srv);
  if (rc != 0) {
    rt_log(RT_LOG_ERROR, "server loop failed: %s", rt_strerror(rc));
    return 1;
  }
  rt_log(RT_LOG_INFO, "stopped");
  return 0;
}

int main(int argc, char **argv) {
  options_t opts;
  parse_result_t parsed = parse_args(argc, argv, &opts);
  if (parsed != PARSE_RUN) return parsed == PARSE_EXIT_OK ? 0 : EXIT_USAGE;
  log_min = opts.log_level;
  rt_log_set_sink(log_to_stderr, opts.log_level, NULL);
  ignore_sigpipe();
  warn_unknown_env();

  rt_config_store_t store;
  rt_config_t cfg;
  rt_errbuf_t err = {""};
  rt_config_store_init(&store);
  int rc = build_config(&opts, &store, &cfg, &err);
  if (rc != 0) {
    fprintf(stderr, PROG ": %s\n", err.msg);
    rt_config_store_destroy(&store);
    return rc == RT_ENOMEM ? 1 : EXIT_USAGE;
  }
  if (opts.check_only) {
    printf("configuration ok\n");
    rt_config_store_destroy(&store);
    return 0;
  }
  int status = serve(&cfg);
  rt_config_store_destroy(&store);
  return status;
}
