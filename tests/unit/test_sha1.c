/*
 * SHA-1 for the accept key (src/core/sha1.h): the FIPS 180-4 / RFC 3174
 * example vectors, every length from 0 to 300 bytes (each padding case,
 * including the lengths 55, 56 and 64 at the block edges) against OpenSSL's
 * SHA1 as the oracle, and RFC 6455's own accept-key example.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/sha.h>

#include "core/handshake.h"
#include "core/sha1.h"

static void hex(const uint8_t *d, char out[41]) {
  for (int i = 0; i < 20; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void expect_digest(const void *data, size_t len, const char *want) {
  uint8_t d[RT_SHA1_LEN];
  char got[41];
  rt_sha1(data, len, d);
  hex(d, got);
  assert_string_equal(got, want);
}

static void test_fips_vectors(void **state) {
  (void)state;
  expect_digest("abc", 3, "a9993e364706816aba3e25717850c26c9cd0d89d");
  expect_digest("", 0, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  expect_digest(two_blocks, strlen(two_blocks), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
  size_t n = 1000000;
  char *a = malloc(n);
  assert_non_null(a);
  memset(a, 'a', n);
  expect_digest(a, n, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
  free(a);
}

static void test_every_length_against_openssl(void **state) {
  (void)state;
  uint8_t buf[300];
  uint32_t x = 12345;
  for (size_t i = 0; i < sizeof(buf); i++) {
    x = x * 1103515245u + 12345u;
    buf[i] = (uint8_t)(x >> 16);
  }
  for (size_t len = 0; len <= sizeof(buf); len++) {
    uint8_t ours[RT_SHA1_LEN], theirs[SHA_DIGEST_LENGTH];
    rt_sha1(buf, len, ours);
    SHA1(buf, len, theirs);
    if (memcmp(ours, theirs, RT_SHA1_LEN) != 0) print_error("length %zu differs\n", len);
    assert_memory_equal(ours, theirs, RT_SHA1_LEN);
  }
}

static void test_rfc6455_accept_key(void **state) {
  (void)state;
  char out[29];
  rt_handshake_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, out);
  assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fips_vectors),
      cmocka_unit_test(test_every_length_against_openssl),
      cmocka_unit_test(test_rfc6455_accept_key),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
