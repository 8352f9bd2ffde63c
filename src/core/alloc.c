#include "alloc.h"

#include <stdlib.h>
#include <string.h>

/* Negative: no failure injection (the normal case, one well-predicted branch). */
static long fail_countdown = -1;

static int should_fail(void) {
  if (fail_countdown < 0) return 0;
  if (fail_countdown == 0) return 1;
  fail_countdown--;
  return 0;
}

void rt_alloc_fail_after(long n) { fail_countdown = n; }

void *rt_malloc(size_t n) { return should_fail() ? NULL : malloc(n ? n : 1); }

void *rt_calloc(size_t n, size_t size) { return should_fail() ? NULL : calloc(n ? n : 1, size ? size : 1); }

void *rt_realloc(void *p, size_t n) { return should_fail() ? NULL : realloc(p, n ? n : 1); }

void rt_free(void *p) { free(p); }

char *rt_strndup(const char *s, size_t n) {
  char *d = rt_malloc(n + 1);
  if (d == NULL) return NULL;
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

char *rt_strdup(const char *s) { return rt_strndup(s, strlen(s)); }
