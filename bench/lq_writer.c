/*
 * rt_lq_writer: the "other process" of the live-query benchmark (issue 5).
 *
 * Opens a SQLite database file and commits at a fixed rate for a bounded
 * time, each commit one statement in its own transaction, into a table
 * shaped like
 *
 *   CREATE TABLE events (id INTEGER PRIMARY KEY, grp INTEGER NOT NULL,
 *                        ts INTEGER NOT NULL)
 *
 * Commit i touches group i % G and writes CLOCK_MONOTONIC in nanoseconds,
 * taken just before the statement runs, into the timestamp column. A
 * receiver on the same machine (rt_loadgen --query) subtracts it from the
 * time a push carrying the row arrives: that is the change-to-push latency,
 * commit time included, with no clock skew. With --op insert a commit adds a
 * row (grp = i % G); with --op update it sets the timestamp of the newest row
 * of that group (nothing happens while the group is empty).
 *
 * Pacing: commit k is due at t0 + k / rate, computed from k so rounding
 * never drifts; a commit more than 1 ms behind its slot is counted as late
 * and sent at once, so a slow disk shows in the output instead of silently
 * lowering the rate. The run stops after --duration seconds or --commits
 * commits, whichever comes first; SIGINT/SIGTERM stop it early.
 *
 * Output, one line on stdout (rt_loadgen parses it):
 *   rt_lq_writer: commits=N inserts=I updates=U groups=G elapsed_s=S late=L busy=B
 * Exit status: 0 done; 1 a statement failed; 2 usage or open error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#define NS_PER_S 1000000000LL
#define LATE_NS 1000000LL       /* a commit this far behind its slot is late */
#define BUSY_TIMEOUT_MS 5000    /* longest wait for the server's lock-free reads to let go */
#define MAX_IDENT 64

typedef enum { OP_INSERT, OP_UPDATE } op_t;

typedef struct {
  const char *db_path;       /* database file (must exist with the table) */
  const char *table;         /* table written to */
  const char *group_column;  /* column holding the group (i % G) */
  const char *ts_column;     /* column receiving the CLOCK_MONOTONIC ns timestamp */
  const char *synchronous;   /* PRAGMA synchronous value for this connection */
  double rate;               /* commits per second */
  double duration;           /* longest run in seconds */
  long long commits;         /* most commits; 0 = bounded by duration only */
  int groups;                /* G */
  op_t op;                   /* insert or update */
} opts_t;

typedef struct {
  long long commits;  /* statements committed */
  long long inserts;  /* ... of them inserts */
  long long updates;  /* ... of them updates */
  long long late;     /* commits sent over LATE_NS behind their slot */
  long long busy;     /* commits retried because the database was locked */
} counts_t;

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
  (void)sig;
  stop_requested = 1;
}

static void die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int status, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  fputs("rt_lq_writer: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(status);
}

static int64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

/* Sleeps until the absolute CLOCK_MONOTONIC time `at` (or a signal). */
static void sleep_until(int64_t at)
{
  struct timespec ts = {.tv_sec = at / NS_PER_S, .tv_nsec = at % NS_PER_S};
  while (!stop_requested && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
    ;
}

/* Identifiers are spliced into the SQL (they cannot be bound), so they are
 * limited to plain names rather than quoted. */
static void check_ident(const char *what, const char *s)
{
  size_t n = strlen(s);
  if (n == 0 || n > MAX_IDENT || strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                           "0123456789_") != n || (s[0] >= '0' && s[0] <= '9'))
    die(2, "--%s: '%s' is not a plain SQL name", what, s);
}

static double parse_num(const char *name, const char *arg, double max)
{
  char *end;
  errno = 0;
  double v = strtod(arg, &end);
  if (end == arg || *end || errno || !(v >= 0 && v <= max))
    die(2, "--%s: '%s' is not a number in [0, %g]", name, arg, max);
  return v;
}

static void usage(FILE *f)
{
  fputs("usage: rt_lq_writer --db FILE [options]\n"
        "  --db FILE            database file (the table must exist)\n"
        "  --table NAME         table (events)\n"
        "  --group-column NAME  group column, commit i writes i % G (grp)\n"
        "  --ts-column NAME     column for the CLOCK_MONOTONIC ns timestamp (ts)\n"
        "  --groups G           number of groups (10)\n"
        "  --rate R             commits per second (100)\n"
        "  --duration S         seconds to run at most (10)\n"
        "  --commits N          commits to make at most (0 = by duration)\n"
        "  --op insert|update   insert a row, or update the newest row of the group (insert)\n"
        "  --synchronous MODE   PRAGMA synchronous: off, normal or full (normal)\n",
        f);
}

static void parse_opts(opts_t *o, int argc, char **argv)
{
  static const struct option longopts[] = {
      {"db", required_argument, NULL, 'd'},           {"table", required_argument, NULL, 't'},
      {"group-column", required_argument, NULL, 'g'}, {"ts-column", required_argument, NULL, 's'},
      {"groups", required_argument, NULL, 'G'},       {"rate", required_argument, NULL, 'r'},
      {"duration", required_argument, NULL, 'D'},     {"commits", required_argument, NULL, 'n'},
      {"op", required_argument, NULL, 'o'},           {"synchronous", required_argument, NULL, 'S'},
      {"help", no_argument, NULL, 'h'},               {NULL, 0, NULL, 0},
  };
  *o = (opts_t){.table = "events", .group_column = "grp", .ts_column = "ts",
                .synchronous = "normal", .rate = 100, .duration = 10, .groups = 10};
  int c;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
    case 'd': o->db_path = optarg; break;
    case 't': o->table = optarg; break;
    case 'g': o->group_column = optarg; break;
    case 's': o->ts_column = optarg; break;
    case 'G': o->groups = (int)parse_num("groups", optarg, 1e6); break;
    case 'r': o->rate = parse_num("rate", optarg, 1e6); break;
    case 'D': o->duration = parse_num("duration", optarg, 86400); break;
    case 'n': o->commits = (long long)parse_num("commits", optarg, 1e12); break;
    case 'S': o->synchronous = optarg; break;
    case 'o':
      if (strcmp(optarg, "insert") != 0 && strcmp(optarg, "update") != 0)
        die(2, "--op: 'insert' or 'update', not '%s'", optarg);
      o->op = optarg[0] == 'i' ? OP_INSERT : OP_UPDATE;
      break;
    case 'h': usage(stdout); exit(0);
    default: usage(stderr); exit(2);
    }
  }
  if (optind < argc)
    die(2, "unexpected argument '%s'", argv[optind]);
  if (!o->db_path)
    die(2, "--db FILE is required");
  if (o->groups < 1 || o->rate <= 0)
    die(2, "--groups and --rate must be above 0");
  if (strcmp(o->synchronous, "off") != 0 && strcmp(o->synchronous, "normal") != 0 &&
      strcmp(o->synchronous, "full") != 0)
    die(2, "--synchronous: off, normal or full, not '%s'", o->synchronous);
  check_ident("table", o->table);
  check_ident("group-column", o->group_column);
  check_ident("ts-column", o->ts_column);
}

/* Opens the existing file (never creates one: a typo in the path must not
 * produce a silent run against an empty database), waits up to
 * BUSY_TIMEOUT_MS for locks, and prepares the one statement the run uses. */
static sqlite3_stmt *open_db(const opts_t *o, sqlite3 **db)
{
  char sql[512], pragma[64];
  sqlite3_stmt *st = NULL;
  if (sqlite3_open_v2(o->db_path, db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
    die(2, "%s: %s", o->db_path, *db ? sqlite3_errmsg(*db) : "cannot open");
  sqlite3_busy_timeout(*db, BUSY_TIMEOUT_MS);
  snprintf(pragma, sizeof(pragma), "PRAGMA synchronous=%s", o->synchronous);
  if (sqlite3_exec(*db, pragma, NULL, NULL, NULL) != SQLITE_OK)
    die(2, "%s: %s", pragma, sqlite3_errmsg(*db));
  if (o->op == OP_INSERT)
    snprintf(sql, sizeof(sql), "INSERT INTO %s (%s, %s) VALUES (?1, ?2)", o->table,
             o->group_column, o->ts_column);
  else
    snprintf(sql, sizeof(sql),
             "UPDATE %s SET %s = ?2 WHERE rowid = (SELECT max(rowid) FROM %s WHERE %s = ?1)",
             o->table, o->ts_column, o->table, o->group_column);
  if (sqlite3_prepare_v2(*db, sql, -1, &st, NULL) != SQLITE_OK)
    die(2, "%s: %s", sql, sqlite3_errmsg(*db));
  return st;
}

/* Runs one commit (autocommit: the statement is its own transaction). A
 * locked database is retried after the busy timeout gave up, counted, so a
 * contended run shows it; any other error ends the run. Returns the rows
 * changed. */
static int commit_one(sqlite3 *db, sqlite3_stmt *st, int group, counts_t *n)
{
  for (;;) {
    sqlite3_bind_int(st, 1, group);
    sqlite3_bind_int64(st, 2, now_ns());
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
      return sqlite3_changes(db);
    if ((rc != SQLITE_BUSY && rc != SQLITE_LOCKED) || stop_requested)
      die(1, "commit %lld failed: %s", n->commits, sqlite3_errmsg(db));
    n->busy++;
  }
}

int main(int argc, char **argv)
{
  opts_t o;
  counts_t n = {0};
  sqlite3 *db = NULL;
  parse_opts(&o, argc, argv);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  sqlite3_stmt *st = open_db(&o, &db);
  int64_t t0 = now_ns(), stop_at = t0 + (int64_t)(o.duration * NS_PER_S);
  while (!stop_requested && (o.commits == 0 || n.commits < o.commits)) {
    int64_t due = t0 + (int64_t)((double)n.commits * NS_PER_S / o.rate);
    if (due >= stop_at)
      break;
    int64_t now = now_ns();
    if (due > now)
      sleep_until(due);
    else if (now - due > LATE_NS)
      n.late++;
    if (stop_requested)
      break;
    int changed = commit_one(db, st, (int)(n.commits % o.groups), &n);
    if (o.op == OP_INSERT)
      n.inserts += changed;
    else
      n.updates += changed;
    n.commits++;
  }
  double elapsed = (double)(now_ns() - t0) / NS_PER_S;
  sqlite3_finalize(st);
  sqlite3_close(db);
  printf("rt_lq_writer: commits=%lld inserts=%lld updates=%lld groups=%d elapsed_s=%.3f "
         "late=%lld busy=%lld\n",
         n.commits, n.inserts, n.updates, o.groups, elapsed, n.late, n.busy);
  return 0;
}
