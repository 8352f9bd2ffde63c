/*
 * Incremental UTF-8 validation (RFC 3629): rejects overlongs, surrogates and
 * code points past U+10FFFF, and carries state across calls so a message can
 * be validated fragment by fragment (RFC 6455 8.1: fail fast on the first
 * invalid byte, even mid-message).
 */
#ifndef RT_CORE_UTF8_H
#define RT_CORE_UTF8_H

#include <stddef.h>
#include <stdint.h>

#define RT_UTF8_ACCEPT 0 /* state between complete code points */
#define RT_UTF8_REJECT 1 /* sticky: input was invalid */

/*
 * Feeds bytes into `*state` (start at RT_UTF8_ACCEPT). Returns the new state:
 * RT_UTF8_REJECT on invalid input, RT_UTF8_ACCEPT at a code point boundary,
 * another value when a sequence is incomplete.
 */
uint32_t rt_utf8_feed(uint32_t *state, const uint8_t *p, size_t n);
/* Whole-buffer convenience: 1 when p[0..n) is complete valid UTF-8. */
int rt_utf8_valid(const uint8_t *p, size_t n);

#endif
