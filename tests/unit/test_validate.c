/*
 * Message validation tests. Every input is passed in an exact-size heap copy
 * without a NUL, so the length argument is the only bound and ASan catches
 * any read past it. Refusals are checked by their full message, which names
 * the reason, whether a key or a value held it, and the byte offset.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "validate.h"

static const rt_validate_config_t xss_on = {1, 64, 0};
static const rt_validate_config_t xss_off = {0, 64, 0};

static int run(const char *json, size_t len, const rt_validate_config_t *cfg, rt_errbuf_t *err) {
  char *copy = malloc(len ? len : 1);
  assert_non_null(copy);
  memcpy(copy, json, len);
  err->msg[0] = '\0';
  int rc = rt_validate_data(copy, len, cfg, err);
  free(copy);
  return rc;
}

static void expect_ok_cfg(const char *json, const rt_validate_config_t *cfg) {
  rt_errbuf_t err;
  int rc = run(json, strlen(json), cfg, &err);
  if (rc != 0) print_error("refused %s: %s\n", json, err.msg);
  assert_int_equal(rc, 0);
}

static void expect_ok(const char *json) { expect_ok_cfg(json, &xss_on); }

/* Refused with exactly `msg`; the same text passes with the XSS policy off. */
static void expect_refused(const char *json, const char *msg) {
  rt_errbuf_t err;
  int rc = run(json, strlen(json), &xss_on, &err);
  if (rc != RT_EMESSAGE) print_error("passed: %s\n", json);
  assert_int_equal(rc, RT_EMESSAGE);
  assert_string_equal(err.msg, msg);
  expect_ok_cfg(json, &xss_off);
}

/* Refused for `what` (the reason text) at `byte`, in a string value. */
static void expect_xss(const char *json, const char *what, size_t byte) {
  char msg[256];
  snprintf(msg, sizeof(msg), "Message refused: %s in a string (byte %zu)", what, byte);
  expect_refused(json, msg);
}

static void test_plain_data_passes(void **state) {
  (void)state;
  static const char *const ok[] = {
      "1", "-0.5e10", "true", "null", "\"\"", "[]", "{}", "\"hello world\"",
      "{\"text\":\"Hi <b>there</b>, see <a href=\\\"https://example.com/?a=1&b=2\\\">this</a>\"}",
      "{\"user\":{\"name\":\"Zo\\u00eb\",\"tags\":[\"a\",\"b\"],\"n\":[1,2,{\"x\":null}]}}",
      "\"caf\xc3\xa9 \xf0\x9f\x98\x80 \\ud83d\\ude00\"",
      "\"mailto:someone@example.com\"", "\"data:image/png;base64,iVBORw0KGgo=\"",
      "\"tel:+15551234\"", "\"http://x/javascript/\"", "\"a & b && c &amp; d &#; &#x; &\"",
      "\"5 < 6 and scripts are fine\"", "\"<p>paragraph</p><em>x</em>\"",
  };
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) expect_ok(ok[i]);
}

/* Text that only resembles a pattern is not one. */
static void test_near_misses_pass(void **state) {
  (void)state;
  static const char *const ok[] = {
      "\"the onion=good\"", "\"ongoing=yes\"", "\"money=5\"", "\"xonerror=1\"",
      "\"a.onerror=1\"", "\"onerror\"", "\"onerror is an attribute\"", "\"on=1\"",
      "\"once = twice\"",
      "\"onions onion=1\"", "\"one=1 two=2\"", "\"<img src=x;onerror=1>\"", "\"img-onload=1\"",
      "\"java script:\"", "\"javascript\"", "\"java-script:\"", "\"javascript :x\"",
      "\"vb script:\"", "\"data:text/plain,hi\"", "\"data:texthtml\"", "\"< script>\"",
      "\"<scr\\u0000ipt>\"", "\"&lt;script&gt;alert(1)&lt;/script&gt;\"", "\"javascript&colon\"",
      "\"javascript&colon x\"", "\"java&tabscript:\"", "\"<svg width=10>\"", "\"<ifram>\"",
      "\"<embe d>\"", "\"srcdocs=1\"", "\"http-equivalent=1\"", "\"scheme javascript\"",
      "\"jav&#x6;ascript:\"", "\"javascript&colonx;\"", "\"java&tabs;script:\"",
      "\"&#10000000000000000000000;\"", "\"&colon;&tab;&newline;\"",
  };
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) expect_ok(ok[i]);
}

static void test_script_tags(void **state) {
  (void)state;
  expect_xss("{\"a\":\"<script>alert(1)</script>\"}", "<script> tag", 6);
  expect_xss("\"x</script>\"", "</script> tag", 2);
  expect_xss("\"<SCRIPT src=//evil>\"", "<script> tag", 1);
  expect_xss("\"<ScRiPt>\"", "<script> tag", 1);
  expect_xss("[1,\"ok\",{\"deep\":[\"a <script\"]}]", "<script> tag", 20);
  expect_xss("\"<iframe src=x>\"", "<iframe> tag", 1);
  expect_xss("\"<OBJECT data=x>\"", "<object> tag", 1);
  expect_xss("\"<embed src=x>\"", "<embed> tag", 1);
}

/* Escapes are decoded before matching; the byte is where the first escape starts. */
static void test_patterns_split_by_escapes(void **state) {
  (void)state;
  expect_xss("\"\\u003cscript>\"", "<script> tag", 1);
  expect_xss("\"<scr\\u0069pt>\"", "<script> tag", 1);
  expect_xss("\"ab\\u003C\\u0053\\u0043RIPT\"", "<script> tag", 3);
  expect_xss("\"\\u003c\\/script>\"", "</script> tag", 1);
  expect_xss("\"\\ud83d\\ude00<script\"", "<script> tag", 13);
  expect_xss("\"\xf0\x9f\x98\x80<script\"", "<script> tag", 5);
  expect_xss("\"\\u006aavascript:x\"", "javascript: URL", 1);
  expect_xss("\"\\u006fnerror=x\"", "inline event handler (onerror=)", 1);
}

static void test_url_schemes(void **state) {
  (void)state;
  expect_xss("\"javascript:alert(1)\"", "javascript: URL", 1);
  expect_xss("{\"href\":\"JaVaScRiPt:alert(1)\"}", "javascript: URL", 9);
  expect_xss("\"go to javascript:void(0)\"", "javascript: URL", 7);
  expect_xss("\"vbscript:msgbox(1)\"", "vbscript: URL", 1);
  expect_xss("\"data:text/html;base64,PHNjcmlwdD4=\"", "data:text/html URL", 1);
  expect_xss("\"DATA:Text/HTML,x\"", "data:text/html URL", 1);
  expect_xss("\"data:   text/html,x\"", "data:text/html URL", 1);
  expect_xss("\"data:\\ttext/html,x\"", "data:text/html URL", 1);
  /* A run of spaces longer than the match window still reads as one. */
  expect_xss("\"data:                                                  text/html,x\"",
             "data:text/html URL", 1);
}

/* Browsers drop tab, LF and CR inside a URL; the scheme is matched without them. */
static void test_url_whitespace_tricks(void **state) {
  (void)state;
  expect_xss("\"java\\tscript:alert(1)\"", "javascript: URL", 1);
  expect_xss("\"java\\nscript:x\"", "javascript: URL", 1);
  expect_xss("\"j\\ra\\r\\nv\\ta\\tscript\\n:x\"", "javascript: URL", 1);
  expect_xss("\"\\tjavascript:x\"", "javascript: URL", 3);
  expect_xss("\"vb\\u0009script:x\"", "vbscript: URL", 1);
}

/* Character references are decoded for the URL patterns (numeric, and &colon; &tab; &newline;). */
static void test_url_character_references(void **state) {
  (void)state;
  expect_xss("\"jav&#x61;script:alert(1)\"", "javascript: URL", 1);
  expect_xss("\"jav&#97;script:x\"", "javascript: URL", 1);
  expect_xss("\"jav&#0000097script:x\"", "javascript: URL", 1);
  expect_xss("\"&#X6A;avascript:x\"", "javascript: URL", 1);
  expect_xss("\"&#106&#97&#118&#97script:x\"", "javascript: URL", 1);
  expect_xss("\"javascript&colon;alert(1)\"", "javascript: URL", 1);
  expect_xss("\"javascript&#58;x\"", "javascript: URL", 1);
  expect_xss("\"java&Tab;script:x\"", "javascript: URL", 1);
  expect_xss("\"java&NewLine;script:x\"", "javascript: URL", 1);
  expect_xss("\"java&#9;script:x\"", "javascript: URL", 1);
  expect_xss("\"java&#x0A;script:x\"", "javascript: URL", 1);
  expect_xss("\"\\u0026#x6A;avascript:x\"", "javascript: URL", 1);
  expect_xss("\"&&#106;avascript:x\"", "javascript: URL", 2);
  expect_xss("\"&#;javascript:x\"", "javascript: URL", 4);
  expect_xss("\"javascript&#x3a\"", "javascript: URL", 1);
}

static void test_inline_handlers(void **state) {
  (void)state;
  expect_xss("\"<img src=x onerror=alert(1)>\"", "inline event handler (onerror=)", 12);
  expect_xss("\"<svg/onload=alert(1)>\"", "inline event handler (onload=)", 6);
  expect_xss("\"ONERROR =x\"", "inline event handler (onerror=)", 1);
  expect_xss("\"onfocus\\t=x autofocus\"", "inline event handler (onfocus=)", 1);
  expect_xss("\"x' onmouseover='alert(1)\"", "inline event handler (onmouseover=)", 4);
  expect_xss("\"x\\\"onclick=alert(1)\"", "inline event handler (onclick=)", 4);
  expect_xss("\"<body\\nonload=x>\"", "inline event handler (onload=)", 8);
  expect_xss("\"<a\\u0020onclick=x>\"", "inline event handler (onclick=)", 9);
  expect_xss("\"<details open ontoggle=alert(1)>\"", "inline event handler (ontoggle=)", 15);
  expect_xss("\"<svg><animate onbegin=alert(1)>\"", "inline event handler (onbegin=)", 15);
  expect_xss("\"<x onanimationstart=y>\"", "inline event handler (onanimationstart=)", 4);
  expect_xss("\"<x onpointerdown\\f=y>\"", "inline event handler (onpointerdown=)", 4);
  expect_xss("\"<x oncontentvisibilityautostatechange=y>\"",
             "inline event handler (oncontentvisibilityautostatechange=)", 4);
  expect_xss("\"a onion=1 onload=2\"", "inline event handler (onload=)", 11);
}

static void test_dangerous_attributes(void **state) {
  (void)state;
  expect_xss("\"<x srcdoc=&lt;script&gt;>\"", "srcdoc attribute", 4);
  expect_xss("\"<meta http-equiv=\\\"refresh\\\" content=\\\"0;url=/\\\">\"",
             "http-equiv attribute", 7);
  expect_xss("\"<META HTTP-EQUIV = refresh>\"", "http-equiv attribute", 7);
}

/* Keys are checked like values, and the message says which it was. */
static void test_keys_are_checked(void **state) {
  (void)state;
  expect_refused("{\"<script>\":1}", "Message refused: <script> tag in a key (byte 2)");
  expect_refused("{\"a\":{\"b\":1,\"onerror=x\" : 2}}",
                 "Message refused: inline event handler (onerror=) in a key (byte 13)");
  expect_refused("{\"k\":\"javascript:x\"}",
                 "Message refused: javascript: URL in a string (byte 6)");
  expect_refused("[\"k\",\"<embed\"]", "Message refused: <embed> tag in a string (byte 6)");
}

/* Each string stands alone: a pattern split across two strings is not one. */
static void test_strings_are_separate(void **state) {
  (void)state;
  expect_ok("[\"<scr\",\"ipt>\"]");
  expect_ok("{\"<scr\":\"ipt\"}");
  expect_ok("[\"java\",\"script:\"]");
  expect_ok("[\"a onerr\",\"or=1\"]");
  expect_ok("[\"jav&#x6\",\"1;script:\"]");
}

/* Patterns far into long strings are found at the right byte; long clean text passes. */
static void test_long_strings(void **state) {
  (void)state;
  enum { N = 1 << 20 };
  char *json = malloc(N + 128);
  assert_non_null(json);
  json[0] = '"';
  for (size_t i = 1; i < N; i++) json[i] = "abcdefgh <scrip onerro javascrip"[i % 32];
  json[N] = '"';
  rt_errbuf_t err;
  assert_int_equal(run(json, N + 1, &xss_on, &err), 0);
  const char *tail = "<script>\"";
  memcpy(json + N, tail, strlen(tail));
  assert_int_equal(run(json, N + strlen(tail), &xss_on, &err), RT_EMESSAGE);
  char msg[128];
  snprintf(msg, sizeof(msg), "Message refused: <script> tag in a string (byte %d)", N);
  assert_string_equal(err.msg, msg);
  /* 40 escaped tabs: far more source bytes than the window holds units. */
  tail = "java\\t\\t\\t\\t\\t\\t\\t\\t\\t\\t\\t\\t\\t\\t\\t\\t\\t\\t\\t\\t"
         "\\t\\t\\t\\t\\t\\t\\t\\t\\t\\t\\t\\t\\t\\t\\t\\t\\t\\t\\t\\tscript:\"";
  memcpy(json + N, tail, strlen(tail));
  assert_int_equal(run(json, N + strlen(tail), &xss_on, &err), RT_EMESSAGE);
  snprintf(msg, sizeof(msg), "Message refused: javascript: URL in a string (byte %d)", N);
  assert_string_equal(err.msg, msg);
  free(json);
}

/* Builds "\"" + n copies of fill + tail + "\"" in out. */
static const char *padded(char *out, size_t cap, const char *head, char fill, size_t n,
                          const char *tail) {
  size_t hl = strlen(head), tl = strlen(tail);
  assert_true(hl + n + tl + 3 <= cap);
  out[0] = '"';
  memcpy(out + 1, head, hl);
  memset(out + 1 + hl, fill, n);
  memcpy(out + 1 + hl + n, tail, tl);
  out[1 + hl + n + tl] = '"';
  out[2 + hl + n + tl] = '\0';
  return out;
}

/*
 * Plain stretches before a trigger byte are skipped without decoding; what
 * precedes a pattern (the scheme text, the attribute name, the whitespace
 * before '=', the byte before the name, the string start) still counts.
 */
static void test_plain_stretches(void **state) {
  (void)state;
  char b[512];
  expect_xss(padded(b, sizeof(b), "", 'a', 100, " javascript:x"), "javascript: URL", 102);
  const char *onerror = "inline event handler (onerror=)";
  expect_xss(padded(b, sizeof(b), "", 'a', 100, " onerror=x"), onerror, 102);
  expect_xss(padded(b, sizeof(b), "x onerror", ' ', 200, "=1"), onerror, 3);
  expect_xss(padded(b, sizeof(b), "onerror", ' ', 200, "=1"), onerror, 1);
  expect_xss(padded(b, sizeof(b), "a <scr", 'i', 1, "pt"), "<script> tag", 3);
  expect_xss(padded(b, sizeof(b), "data:", ' ', 300, "text/html"), "data:text/html URL", 1);
  expect_xss(padded(b, sizeof(b), "<x/", 'a', 0, "onload=1"), "inline event handler (onload=)", 4);
  expect_ok(padded(b, sizeof(b), "", 'a', 100, "onerror=x"));
  expect_ok(padded(b, sizeof(b), "", 'a', 100, "javascript :x"));
  expect_ok(padded(b, sizeof(b), "x ", 'a', 41, "onerror=x"));
  expect_ok(padded(b, sizeof(b), "x on", 'e', 100, "rror=x"));
  expect_ok(padded(b, sizeof(b), "<", 'a', 100, " = x:"));
  /* Raw control bytes are not JSON, but are judged like their escapes. */
  expect_xss("\"v\n\nbscript:x\"", "vbscript: URL", 1);
  expect_xss("\"zzzzzzzzzzzz v\n\n\r\n\tbscript:x\"", "vbscript: URL", 14);
}

/* Nesting up to the limit passes (and is still scanned); one more level is refused. */
static void test_depth(void **state) {
  (void)state;
  enum { D = 500 };
  char *json = malloc(2 * D + 32);
  assert_non_null(json);
  memset(json, '[', D);
  size_t len = D;
  len += (size_t)sprintf(json + len, "\"ok\"");
  memset(json + len, ']', D);
  len += D;
  rt_validate_config_t cfg = {1, D, 0};
  rt_errbuf_t err;
  assert_int_equal(run(json, len, &cfg, &err), 0);
  cfg.max_depth = D - 1;
  assert_int_equal(run(json, len, &cfg, &err), RT_EDEPTH);
  char msg[128];
  snprintf(msg, sizeof(msg), "JSON nesting too deep at byte %d (limit %d)", D - 1, D - 1);
  assert_string_equal(err.msg, msg);
  cfg.max_depth = 0;
  assert_int_equal(run(json, len, &cfg, &err), 0);

  memcpy(json + D, "\"<script\"", 9);
  len = D + 9;
  memset(json + len, ']', D);
  len += D;
  cfg.max_depth = D;
  assert_int_equal(run(json, len, &cfg, &err), RT_EMESSAGE);
  snprintf(msg, sizeof(msg), "Message refused: <script> tag in a string (byte %d)", D + 1);
  assert_string_equal(err.msg, msg);
  free(json);
}

static void test_depth_counts_containers_only(void **state) {
  (void)state;
  rt_validate_config_t cfg = {1, 2, 0};
  expect_ok_cfg("[{\"a\":\"[[[[{{{{\"},[1,2]]", &cfg);
  expect_ok_cfg("\"[[[[\"", &cfg);
  expect_ok_cfg("[[],[],{},{\"x\":1}]", &cfg);
  rt_errbuf_t err;
  assert_int_equal(run("[{\"a\":[1]}]", 11, &cfg, &err), RT_EDEPTH);
  assert_string_equal(err.msg, "JSON nesting too deep at byte 6 (limit 2)");
  cfg.max_depth = 1;
  expect_ok_cfg("[1,\"]\",\"[\"]", &cfg);
}

static void test_size_limit(void **state) {
  (void)state;
  rt_validate_config_t cfg = {1, 64, 10};
  rt_errbuf_t err;
  expect_ok_cfg("\"12345678\"", &cfg);
  assert_int_equal(run("\"123456789\"", 11, &cfg, &err), RT_ETOOLARGE);
  assert_string_equal(err.msg, "Message too large: data is 11 bytes (limit 10)");
  /* Checked before anything is read: size wins over a pattern. */
  assert_int_equal(run("\"<script>\"x", 11, &cfg, &err), RT_ETOOLARGE);
}

/* The first problem in the text wins. */
static void test_first_problem_wins(void **state) {
  (void)state;
  rt_validate_config_t cfg = {1, 1, 0};
  rt_errbuf_t err;
  const char *a = "[[\"<script\"]]";
  assert_int_equal(run(a, strlen(a), &cfg, &err), RT_EDEPTH);
  const char *b = "[\"<script\",[1]]";
  assert_int_equal(run(b, strlen(b), &cfg, &err), RT_EMESSAGE);
}

static void test_xss_off(void **state) {
  (void)state;
  expect_ok_cfg("{\"<script>\":\"javascript:alert(1) <img src=x onerror=y>\"}", &xss_off);
  rt_validate_config_t cfg = {0, 1, 0};
  rt_errbuf_t err;
  assert_int_equal(run("[[\"<script\"]]", 13, &cfg, &err), RT_EDEPTH);
  assert_int_equal(run("[\"[[\"]", 6, &cfg, &err), 0);
}

/* Not JSON is outside the contract, but is read within bounds and gets a verdict. */
static void test_malformed_input_is_safe(void **state) {
  (void)state;
  static const char *const bad[] = {"\"abc", "\"\\", "\"\\u12", "\"\\u12\"", "\"\\q\"", "\"a\\"};
  rt_errbuf_t err;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(run(bad[i], strlen(bad[i]), &xss_on, &err), RT_EJSON);
    int rc = run(bad[i], strlen(bad[i]), &xss_off, &err);
    assert_true(rc == 0 || rc == RT_EJSON);
  }
  assert_int_equal(run("\"\\ud800<script\"", 15, &xss_on, &err), RT_EMESSAGE);
  assert_int_equal(run("\"\\ud800\\u0041\"", 14, &xss_on, &err), 0);
  assert_int_equal(run("\"", 1, &xss_on, &err), RT_EJSON);
  assert_int_equal(run("", 0, &xss_on, &err), 0);
  assert_int_equal(run("]]]]", 4, &xss_on, &err), 0);
  assert_int_equal(rt_validate_data("\"<script\"", 9, &xss_on, NULL), RT_EMESSAGE);
}

/* Every byte value at every place of a short string: no crash, no read past the end. */
static void test_all_bytes_safe(void **state) {
  (void)state;
  char json[8] = "\"&#x<a\"";
  rt_errbuf_t err;
  for (int pos = 1; pos < 6; pos++) {
    for (int b = 0; b < 256; b++) {
      char copy[8];
      memcpy(copy, json, sizeof(copy));
      copy[pos] = (char)b;
      for (size_t len = 0; len <= 7; len++) (void)run(copy, len, &xss_on, &err);
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_plain_data_passes),
      cmocka_unit_test(test_near_misses_pass),
      cmocka_unit_test(test_script_tags),
      cmocka_unit_test(test_patterns_split_by_escapes),
      cmocka_unit_test(test_url_schemes),
      cmocka_unit_test(test_url_whitespace_tricks),
      cmocka_unit_test(test_url_character_references),
      cmocka_unit_test(test_inline_handlers),
      cmocka_unit_test(test_dangerous_attributes),
      cmocka_unit_test(test_keys_are_checked),
      cmocka_unit_test(test_strings_are_separate),
      cmocka_unit_test(test_long_strings),
      cmocka_unit_test(test_plain_stretches),
      cmocka_unit_test(test_depth),
      cmocka_unit_test(test_depth_counts_containers_only),
      cmocka_unit_test(test_size_limit),
      cmocka_unit_test(test_first_problem_wins),
      cmocka_unit_test(test_xss_off),
      cmocka_unit_test(test_malformed_input_is_safe),
      cmocka_unit_test(test_all_bytes_safe),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
