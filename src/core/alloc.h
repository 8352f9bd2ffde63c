/*
 * The library's allocator. Every allocation goes through these so that tests
 * can inject failures (rt_alloc_fail_after) and embedders can see our usage.
 */
#ifndef RT_CORE_ALLOC_H
#define RT_CORE_ALLOC_H

#include <stddef.h>

void *rt_malloc(size_t n);
void *rt_calloc(size_t n, size_t size);
void *rt_realloc(void *p, size_t n);
void rt_free(void *p);
/* Returns a new NUL-terminated copy of s[0..n), or NULL. */
char *rt_strndup(const char *s, size_t n);
char *rt_strdup(const char *s);

/*
 * Test hook: the allocation after the next `n` successful ones fails, and
 * every one after it until reset with n < 0. Not thread-safe; tests only.
 */
void rt_alloc_fail_after(long n);

#endif
