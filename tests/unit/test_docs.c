/*
 * docs/protocol.md and the error table (RT_ERRNO_MAP) must agree: every code
 * of the library is documented, either in the wire error table or in the
 * list of codes never sent, and every code the table documents exists.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "realtime/realtime.h"

static char *read_doc(void) {
  FILE *f = fopen(RT_SOURCE_DIR "/docs/protocol.md", "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
  s[n] = '\0';
  fclose(f);
  return s;
}

static const char *names[] = {
#define NAME_(code, name, msg) name,
    RT_ERRNO_MAP(NAME_)
#undef NAME_
};

static void test_every_code_is_documented(void **state) {
  char *doc = read_doc();
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    char quoted[64];
    snprintf(quoted, sizeof(quoted), "`%s`", names[i]);
    if (strstr(doc, quoted) == NULL) fail_msg("docs/protocol.md does not mention %s", quoted);
  }
  free(doc);
}

/* Rows of the error table look like "| `code` | ...". */
static void test_every_documented_code_exists(void **state) {
  char *doc = read_doc();
  int rows = 0;
  for (char *p = strstr(doc, "\n| `"); p != NULL; p = strstr(p + 1, "\n| `")) {
    char code[64];
    if (sscanf(p, "\n| `%63[a-z_]`", code) != 1) continue;
    int known = 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
      known |= strcmp(code, names[i]) == 0;
    if (!known && strchr(code, '_') != NULL)
      fail_msg("docs/protocol.md documents unknown error code %s", code);
    rows += known;
  }
  assert_true(rows >= 9);
  free(doc);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_code_is_documented),
      cmocka_unit_test(test_every_documented_code_exists),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
