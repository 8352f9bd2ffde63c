/*
 * Unit tests for the incremental UTF-8 validator (src/core/utf8.h): the
 * boundaries of each sequence length, every invalid class (overlongs,
 * surrogates, past U+10FFFF, stray and missing continuations), splits at
 * every byte, the ASCII word fast path at every offset, and an exhaustive
 * comparison against a straightforward reference decoder.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/utf8.h"

#define S(lit) (const uint8_t *)(lit), sizeof(lit) - 1

/*
 * Reference: decodes one sequence the slow, obvious way (RFC 3629 section 3).
 * Returns its length, 0 when p[0..n) is a valid but unfinished prefix, or -1.
 */
static int ref_sequence(const uint8_t *p, size_t n) {
  static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
  uint8_t b = p[0];
  int need = b < 0x80 ? 1 : (b & 0xe0) == 0xc0 ? 2 : (b & 0xf0) == 0xe0 ? 3 : (b & 0xf8) == 0xf0 ? 4 : -1;
  if (need < 0) return -1;
  uint32_t cp = need == 1 ? b : need == 2 ? (b & 0x1fu) : need == 3 ? (b & 0x0fu) : (b & 0x07u);
  for (int i = 1; i < need; i++) {
    if ((size_t)i >= n) {
      /* Unfinished: valid only if some completion could be a valid code point. */
      uint32_t lo = cp << (6 * (need - i)), hi = lo | ((1u << (6 * (need - i))) - 1);
      if (hi < min_cp[need] || lo > 0x10ffff) return -1;
      if (need == 3 && lo >= 0xd800 && hi <= 0xdfff) return -1;
      return 0;
    }
    if ((p[i] & 0xc0) != 0x80) return -1;
    cp = (cp << 6) | (p[i] & 0x3fu);
  }
  if (cp < min_cp[need] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return -1;
  return need;
}

/* Reference verdict for a whole buffer: 1 valid, 0 valid prefix, -1 invalid. */
static int ref_validate(const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    int r = ref_sequence(p + i, n - i);
    if (r <= 0) return r;
    i += (size_t)r;
  }
  return 1;
}

static uint32_t feed_all(const uint8_t *p, size_t n) {
  uint32_t s = RT_UTF8_ACCEPT;
  return rt_utf8_feed(&s, p, n);
}

static void assert_verdict(const uint8_t *p, size_t n, int expect) {
  uint32_t s = feed_all(p, n);
  if (expect == 1) assert_int_equal(s, RT_UTF8_ACCEPT);
  if (expect == -1) assert_int_equal(s, RT_UTF8_REJECT);
  if (expect == 0) {
    assert_int_not_equal(s, RT_UTF8_ACCEPT);
    assert_int_not_equal(s, RT_UTF8_REJECT);
  }
  assert_int_equal(rt_utf8_valid(p, n), expect == 1);
}

static void test_valid_boundaries(void **state) {
  (void)state;
  assert_verdict(S(""), 1);
  assert_verdict(S("hello, world"), 1);
  assert_verdict(S("\x00\x7f"), 1);
  assert_verdict(S("\xc2\x80"), 1);             /* U+0080 */
  assert_verdict(S("\xdf\xbf"), 1);             /* U+07FF */
  assert_verdict(S("\xe0\xa0\x80"), 1);         /* U+0800 */
  assert_verdict(S("\xed\x9f\xbf"), 1);         /* U+D7FF, last before surrogates */
  assert_verdict(S("\xee\x80\x80"), 1);         /* U+E000, first after */
  assert_verdict(S("\xef\xbf\xbf"), 1);         /* U+FFFF */
  assert_verdict(S("\xf0\x90\x80\x80"), 1);     /* U+10000 */
  assert_verdict(S("\xf4\x8f\xbf\xbf"), 1);     /* U+10FFFF */
  assert_verdict(S("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"), 1); /* Autobahn 6.2: kosme */
}

static void test_overlong_rejected(void **state) {
  (void)state;
  assert_verdict(S("\xc0\x80"), -1);
  assert_verdict(S("\xc0\xaf"), -1);
  assert_verdict(S("\xc1\xbf"), -1);
  assert_verdict(S("\xe0\x80\x80"), -1);
  assert_verdict(S("\xe0\x9f\xbf"), -1);
  assert_verdict(S("\xf0\x80\x80\x80"), -1);
  assert_verdict(S("\xf0\x8f\xbf\xbf"), -1);
  assert_verdict(S("\xf8\x88\x80\x80\x80"), -1);
  assert_verdict(S("\xfc\x84\x80\x80\x80\x80"), -1);
}

static void test_surrogates_rejected(void **state) {
  (void)state;
  assert_verdict(S("\xed\xa0\x80"), -1); /* U+D800 */
  assert_verdict(S("\xed\xad\xbf"), -1); /* U+DB7F */
  assert_verdict(S("\xed\xb0\x80"), -1); /* U+DC00 */
  assert_verdict(S("\xed\xbf\xbf"), -1); /* U+DFFF */
  assert_verdict(S("\xed\xa0\x80\xed\xb0\x80"), -1); /* a surrogate pair, CESU-8 style */
}

static void test_beyond_max_rejected(void **state) {
  (void)state;
  assert_verdict(S("\xf4\x90\x80\x80"), -1); /* U+110000 */
  assert_verdict(S("\xf4\xbf\xbf\xbf"), -1);
  assert_verdict(S("\xf5\x80\x80\x80"), -1);
  assert_verdict(S("\xf7\xbf\xbf\xbf"), -1);
  for (int b = 0xf5; b <= 0xff; b++) {
    uint8_t one = (uint8_t)b;
    assert_verdict(&one, 1, -1);
  }
}

static void test_bad_continuations(void **state) {
  (void)state;
  assert_verdict(S("\x80"), -1);
  assert_verdict(S("\xbf"), -1);
  assert_verdict(S("a\x80" "b"), -1);
  assert_verdict(S("\xc2\x41"), -1);
  assert_verdict(S("\xe1\x80\x41"), -1);
  assert_verdict(S("\xf1\x80\x80\x41"), -1);
  assert_verdict(S("\xc2\xc2\x80"), -1);
  assert_verdict(S("\xe1\x80\x80\x80"), -1); /* one continuation too many */
}

static void test_truncated_is_incomplete(void **state) {
  (void)state;
  assert_verdict(S("\xc2"), 0);
  assert_verdict(S("\xe0\xa0"), 0);
  assert_verdict(S("\xe1"), 0);
  assert_verdict(S("\xf0\x90\x80"), 0);
  assert_verdict(S("\xf4\x8f"), 0);
  assert_verdict(S("ok\xf3"), 0);
}

/* Fail fast (RFC 6455 8.1): the first byte that makes the input invalid is the one that rejects. */
static void test_rejects_at_first_bad_byte(void **state) {
  (void)state;
  static const struct { const char *s; size_t len, bad_at; } cases[] = {
    {"ab\xed\xa0\x80", 5, 3},     {"\xe0\x9f\x80", 3, 1}, {"\xf0\x8f\x80\x80", 4, 1},
    {"\xf4\x90\x80\x80", 4, 1},   {"xy\xc0\x80", 4, 2},   {"\xf5", 1, 0},
    {"\xe1\x80\x41", 3, 2},       {"\xce\xba\x80", 3, 2},
  };
  for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
    uint32_t s = RT_UTF8_ACCEPT;
    const uint8_t *p = (const uint8_t *)cases[c].s;
    for (size_t i = 0; i < cases[c].len; i++) {
      uint32_t r = rt_utf8_feed(&s, p + i, 1);
      assert_int_equal(r, s);
      if (i < cases[c].bad_at) assert_int_not_equal(r, RT_UTF8_REJECT);
      else assert_int_equal(r, RT_UTF8_REJECT);
    }
  }
}

static void test_reject_is_sticky(void **state) {
  (void)state;
  uint32_t s = RT_UTF8_ACCEPT;
  assert_int_equal(rt_utf8_feed(&s, S("\xff")), RT_UTF8_REJECT);
  assert_int_equal(rt_utf8_feed(&s, S("plain ascii, long enough for words")), RT_UTF8_REJECT);
  assert_int_equal(rt_utf8_feed(&s, S("")), RT_UTF8_REJECT);
  assert_int_equal(s, RT_UTF8_REJECT);
}

/* Autobahn 6.x style: a valid multi-byte text split into two feeds at every point. */
static void test_valid_split_at_every_point(void **state) {
  (void)state;
  static const uint8_t text[] =
      "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 \xf0\x9f\x98\x80 \xe2\x82\xac \xf4\x8f\xbf\xbf";
  size_t n = sizeof(text) - 1;
  for (size_t cut = 0; cut <= n; cut++) {
    uint32_t s = RT_UTF8_ACCEPT;
    assert_int_not_equal(rt_utf8_feed(&s, text, cut), RT_UTF8_REJECT);
    assert_int_equal(rt_utf8_feed(&s, text + cut, n - cut), RT_UTF8_ACCEPT);
  }
  uint32_t s = RT_UTF8_ACCEPT;
  for (size_t i = 0; i < n; i++) assert_int_not_equal(rt_utf8_feed(&s, text + i, 1), RT_UTF8_REJECT);
  assert_int_equal(s, RT_UTF8_ACCEPT);
}

/* Autobahn 6.3/6.4 style: an invalid sequence split at every point is still rejected. */
static void test_invalid_split_at_every_point(void **state) {
  (void)state;
  static const uint8_t text[] =
      "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64";
  size_t n = sizeof(text) - 1;
  for (size_t cut = 0; cut <= n; cut++) {
    uint32_t s = RT_UTF8_ACCEPT;
    rt_utf8_feed(&s, text, cut);
    assert_int_equal(rt_utf8_feed(&s, text + cut, n - cut), RT_UTF8_REJECT);
  }
}

/* The 8-byte ASCII skip must not step over a non-ASCII byte at any offset or alignment. */
static void test_ascii_fast_path_offsets(void **state) {
  (void)state;
  uint8_t buf[80];
  for (size_t start = 0; start < 8; start++) {
    for (size_t bad = start; bad < sizeof(buf); bad++) {
      memset(buf, 'a', sizeof(buf));
      buf[bad] = 0x80;
      assert_int_equal(feed_all(buf + start, sizeof(buf) - start), RT_UTF8_REJECT);
      buf[bad] = 0xc3; /* lead byte that needs a continuation: 'a' is not one */
      if (bad + 1 < sizeof(buf))
        assert_int_equal(feed_all(buf + start, sizeof(buf) - start), RT_UTF8_REJECT);
      else
        assert_verdict(buf + start, sizeof(buf) - start, 0);
      if (bad + 1 < sizeof(buf)) {
        buf[bad + 1] = 0xa9; /* U+00E9 straddling words */
        assert_int_equal(feed_all(buf + start, sizeof(buf) - start), RT_UTF8_ACCEPT);
      }
    }
  }
}

/* Every 1-, 2- and 3-byte string, and 4-byte strings over the interesting byte range, agree with the reference. */
static void test_exhaustive_against_reference(void **state) {
  (void)state;
  uint8_t b[4];
  for (unsigned x = 0; x < 256; x++) {
    b[0] = (uint8_t)x;
    assert_verdict(b, 1, ref_validate(b, 1));
    for (unsigned y = 0; y < 256; y++) {
      b[1] = (uint8_t)y;
      assert_verdict(b, 2, ref_validate(b, 2));
      for (unsigned z = 0; z < 256; z++) {
        b[2] = (uint8_t)z;
        int want = ref_validate(b, 3);
        uint32_t s = RT_UTF8_ACCEPT;
        uint32_t got = rt_utf8_feed(&s, b, 3);
        if (want == 1) assert_int_equal(got, RT_UTF8_ACCEPT);
        else if (want == -1) assert_int_equal(got, RT_UTF8_REJECT);
        else assert_true(got != RT_UTF8_ACCEPT && got != RT_UTF8_REJECT);
      }
    }
  }
  for (unsigned x = 0xf0; x <= 0xf8; x++)
    for (unsigned y = 0x70; y <= 0xc2; y++)
      for (unsigned z = 0x7e; z <= 0xc1; z++)
        for (unsigned w = 0x7e; w <= 0xc1; w++) {
          b[0] = (uint8_t)x, b[1] = (uint8_t)y, b[2] = (uint8_t)z, b[3] = (uint8_t)w;
          assert_int_equal(rt_utf8_valid(b, 4), ref_validate(b, 4) == 1);
        }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_valid_boundaries),
      cmocka_unit_test(test_overlong_rejected),
      cmocka_unit_test(test_surrogates_rejected),
      cmocka_unit_test(test_beyond_max_rejected),
      cmocka_unit_test(test_bad_continuations),
      cmocka_unit_test(test_truncated_is_incomplete),
      cmocka_unit_test(test_rejects_at_first_bad_byte),
      cmocka_unit_test(test_reject_is_sticky),
      cmocka_unit_test(test_valid_split_at_every_point),
      cmocka_unit_test(test_invalid_split_at_every_point),
      cmocka_unit_test(test_ascii_fast_path_offsets),
      cmocka_unit_test(test_exhaustive_against_reference),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
