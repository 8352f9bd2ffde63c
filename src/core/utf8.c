#include "utf8.h"

#include <string.h>

/*
 * A table-driven DFA over byte classes (RFC 3629 section 4, the UTF8-octets
 * grammar). Each byte maps to one of twelve classes; each state says what the
 * next byte may be. The restricted second bytes of E0, ED, F0 and F4 get their
 * own states, which is how overlongs, surrogates and code points past
 * U+10FFFF are refused at the first byte that makes them so.
 */

enum {
  C_ASCII,    /* 00..7F */
  C_CONT_LO,  /* 80..8F */
  C_CONT_MID, /* 90..9F */
  C_CONT_HI,  /* A0..BF */
  C_BAD,      /* C0, C1 (always overlong), F5..FF (past U+10FFFF) */
  C_LEAD2,    /* C2..DF */
  C_E0,       /* E0: second byte A0..BF, else overlong */
  C_LEAD3,    /* E1..EC, EE, EF */
  C_ED,       /* ED: second byte 80..9F, else a surrogate */
  C_F0,       /* F0: second byte 90..BF, else overlong */
  C_LEAD4,    /* F1..F3 */
  C_F4,       /* F4: second byte 80..8F, else past U+10FFFF */
  C_COUNT
};

enum {
  S_ACCEPT = RT_UTF8_ACCEPT,
  S_REJECT = RT_UTF8_REJECT,
  S_NEED1,    /* one continuation byte left */
  S_NEED2,    /* two left */
  S_NEED3,    /* three left */
  S_AFTER_E0, /* needs A0..BF, then one more */
  S_AFTER_ED, /* needs 80..9F, then one more */
  S_AFTER_F0, /* needs 90..BF, then two more */
  S_AFTER_F4, /* needs 80..8F, then two more */
  S_COUNT
};

static const uint8_t byte_class[256] = {
  /* 00..7F */
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  /* 80..8F, 90..9F, A0..BF */
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
  2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
  3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
  3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
  /* C0..DF */
  4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,
  5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,
  /* E0..EF */
  6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 7,
  /* F0..FF */
  9, 10, 10, 10, 11, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
};

#define R S_REJECT
static const uint8_t next_state[S_COUNT][C_COUNT] = {
  /*              ASCII     80..8F    90..9F    A0..BF    bad  C2..DF   E0          E1..  ED          F0          F1..F3   F4 */
  [S_ACCEPT]   = {S_ACCEPT, R,        R,        R,        R,   S_NEED1, S_AFTER_E0, S_NEED2, S_AFTER_ED, S_AFTER_F0, S_NEED3, S_AFTER_F4},
  [S_REJECT]   = {R, R, R, R, R, R, R, R, R, R, R, R},
  [S_NEED1]    = {R, S_ACCEPT, S_ACCEPT, S_ACCEPT, R, R, R, R, R, R, R, R},
  [S_NEED2]    = {R, S_NEED1, S_NEED1, S_NEED1, R, R, R, R, R, R, R, R},
  [S_NEED3]    = {R, S_NEED2, S_NEED2, S_NEED2, R, R, R, R, R, R, R, R},
  [S_AFTER_E0] = {R, R, R, S_NEED1, R, R, R, R, R, R, R, R},
  [S_AFTER_ED] = {R, S_NEED1, S_NEED1, R, R, R, R, R, R, R, R, R},
  [S_AFTER_F0] = {R, R, S_NEED2, S_NEED2, R, R, R, R, R, R, R, R},
  [S_AFTER_F4] = {R, S_NEED2, R, R, R, R, R, R, R, R, R, R},
};
#undef R

/*
 * Skips whole 8-byte words of ASCII from `i` and returns where the DFA must
 * resume: JSON text is mostly ASCII, so most bytes never reach the table.
 * memcpy keeps the loads legal at any alignment.
 */
static size_t skip_ascii(const uint8_t *p, size_t i, size_t n) {
  while (n - i >= 8) {
    uint64_t w;
    memcpy(&w, p + i, sizeof(w));
    if (w & UINT64_C(0x8080808080808080)) break;
    i += 8;
  }
  return i;
}

/*
 * Runs the DFA over p[0..n) from *state. REJECT is absorbing, so the loop
 * stops at the first invalid byte: RFC 6455 8.1 wants the connection failed
 * as soon as the data cannot be UTF-8, without waiting for the rest.
 */
uint32_t rt_utf8_feed(uint32_t *state, const uint8_t *p, size_t n) {
  uint32_t s = *state;
  size_t i = 0;
  while (i < n && s != S_REJECT) {
    if (s == S_ACCEPT) {
      i = skip_ascii(p, i, n);
      if (i == n) break;
    }
    s = next_state[s][byte_class[p[i++]]];
  }
  *state = s;
  return s;
}

int rt_utf8_valid(const uint8_t *p, size_t n) {
  uint32_t s = RT_UTF8_ACCEPT;
  return rt_utf8_feed(&s, p, n) == RT_UTF8_ACCEPT;
}
