/*
 * libFuzzer target for the JWT verifier (src/core/auth_jwt.h).
 *
 * Input layout: byte 0 selects the mode, byte 1 is the leeway in seconds,
 * byte 2 a length, byte 3 an allocation count; the rest is the body.
 *  - mode bit 0 clear ("raw"): the body is a token, verified as it is;
 *  - mode bit 0 set ("signed"): the body is header JSON (its first byte-2
 *    bytes) then payload JSON; the harness base64url-encodes both and signs
 *    them with the fixed secret (HS256/384/512) or the fixed EC key (ES256),
 *    mode bits 1-2 choosing which, so the claims code past the signature is
 *    fuzzed too (a raw token with a valid signature is out of reach);
 *  - mode bit 3 set: the verification is repeated with the allocation after
 *    byte-3 successful ones failing (rt_malloc only: jansson is not routed
 *    through it, see load_object in auth_jwt.c).
 * The verifier accepts HS256, HS384, HS512 and ES256; the clock is fixed.
 *
 * Properties checked beyond "no crash, no leak":
 *  - the result is 0, RT_ETOKEN or RT_EEXPIRED (RT_ENOMEM only when failing
 *    allocations on purpose), and the same when verified again;
 *  - a refusal leaves the identity zeroed and its message is one of the
 *    fixed messages, so no byte of the token ever reaches a message;
 *  - an acceptance means the signature really verifies, recomputed here
 *    through other OpenSSL entry points (EVP_Q_mac, EVP_PKEY_verify on the
 *    digest) and another base64url decoder; and the identity matches the
 *    payload as jansson reads it (user id from sub/id, permissions, exp
 *    rounded down), with exp and nbf on the right side of the clock;
 *  - under failing allocations the result is the unfaulted one or
 *    RT_ENOMEM, and an acceptance yields the same identity;
 *  - OpenSSL's error queue is empty after every call.
 * The verifier takes whole tokens, so there is no incremental feed to
 * split; the header/payload split length comes from the input instead.
 */
#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/auth_jwt.h"

#define NOW 1700000000
#define SECRET "fuzz-secret-0123456789abcdef0123"

/* A key made for this harness only (openssl genpkey, P-256); it protects nothing. */
static const char EC_PRIVATE_PEM[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg2KxkvQArdCUdyvjg\n"
    "1c5rLZW69fHSMFi2Nj9XrG2xWTGhRANCAARD2pchBs7OBv8DxNwZAvyJny5fs87/\n"
    "Gy6QdTuuf+PG5XOq9EIGDABMCVo+VoFP2utnmQBpcbfdAYo38w61fs/+\n"
    "-----END PRIVATE KEY-----\n";
static const char EC_PUBLIC_PEM[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEQ9qXIQbOzgb/A8TcGQL8iZ8uX7PO\n"
    "/xsukHU7rn/jxuVzqvRCBgwATAlaPlaBT9rrZ5kAaXG33QGKN/MOtX7P/g==\n"
    "-----END PUBLIC KEY-----\n";

#define CHECK(cond)                                                         \
  do {                                                                      \
    if (!(cond)) {                                                          \
      fprintf(stderr, "%s:%d: failed: %s\n", __FILE__, __LINE__, #cond);    \
      abort();                                                              \
    }                                                                       \
  } while (0)

static EVP_PKEY *ec_key;                  /* the private key, for signing */
static rt_jwt_verifier_t *verifiers[256]; /* one per leeway byte, built on first use */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  BIO *b = BIO_new_mem_buf(EC_PRIVATE_PEM, -1);
  ec_key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
  BIO_free(b);
  CHECK(ec_key != NULL);
  return 0;
}

static const rt_jwt_verifier_t *verifier_for(uint8_t leeway) {
  if (verifiers[leeway] == NULL) {
    rt_jwt_config_t cfg = {SECRET, strlen(SECRET), EC_PUBLIC_PEM, strlen(EC_PUBLIC_PEM),
                           RT_JWT_HMAC_ALGS | RT_JWT_ES256, leeway};
    rt_errbuf_t err;
    CHECK(rt_jwt_verifier_new(&cfg, &verifiers[leeway], &err) == 0);
  }
  return verifiers[leeway];
}

/* ------------------------------------------------------------ messages */

/* Every message rt_jwt_verify can produce; none has room for token bytes. */
static int known_message(const char *m) {
  static const char *fixed[] = {
      "Invalid token: empty",
      "Invalid token: longer than 8192 bytes",
      "Invalid token: malformed (expected 3 segments)",
      "Invalid token: malformed header (not base64url)",
      "Invalid token: malformed payload (not base64url)",
      "Invalid token: malformed signature (not base64url)",
      "Invalid token: malformed header (invalid JSON)",
      "Invalid token: malformed header (duplicate key)",
      "Invalid token: malformed header (not a JSON object)",
      "Invalid token: malformed payload (invalid JSON)",
      "Invalid token: malformed payload (duplicate key)",
      "Invalid token: malformed payload (not a JSON object)",
      "Invalid token: malformed header (alg missing or not a string)",
      "Invalid token: malformed header (typ not a string)",
      "Invalid token: unsupported critical header (crit)",
      "Invalid token: algorithm none not accepted",
      "Invalid token: unsupported algorithm",
      "Invalid token: algorithm RS256 not accepted",
      "Invalid token: bad signature",
      "Invalid token: claim exp is not a number",
      "Invalid token: claim nbf is not a number",
      "Invalid token: claim sub must be a non-empty string or an integer",
      "Invalid token: claim id must be a non-empty string or an integer",
      "Invalid token: claim permissions must be an array of strings",
      "Token expired",
      "Token not yet valid",
      "Out of memory",
  };
  for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
    if (strcmp(m, fixed[i]) == 0) return 1;
  return 0;
}

/* ------------------------------------------------------------ base64url */

static char *b64url_encode(const uint8_t *p, size_t n) {
  static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  char *out = malloc(n / 3 * 4 + 5);
  CHECK(out != NULL);
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16;
    if (i + 1 < n) v |= (uint32_t)p[i + 1] << 8;
    if (i + 2 < n) v |= p[i + 2];
    size_t chars = n - i >= 3 ? 4 : n - i + 1;
    for (size_t k = 0; k < chars; k++) out[o++] = abc[(v >> (18 - 6 * k)) & 63];
  }
  out[o] = '\0';
  return out;
}

/* Decodes an accepted segment with OpenSSL's base64 after mapping the alphabet back. */
static uint8_t *b64url_decode(const char *s, size_t n, size_t *out_len) {
  char *std = malloc(n + 4);
  uint8_t *out = malloc(n + 4);
  CHECK(std != NULL && out != NULL);
  for (size_t i = 0; i < n; i++) std[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
  size_t m = n, pad = 0;
  while (m % 4) std[m++] = '=', pad++;
  int got = EVP_DecodeBlock(out, (const unsigned char *)std, (int)m);
  CHECK(got >= 0 && (size_t)got >= pad);
  *out_len = (size_t)got - pad;
  free(std);
  return out;
}

/* ------------------------------------------------------------ signing */

static size_t es256_sign(const char *input, uint8_t *raw) {
  uint8_t der[128];
  size_t n = sizeof(der);
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  CHECK(ctx != NULL);
  CHECK(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, ec_key) == 1);
  CHECK(EVP_DigestSign(ctx, der, &n, (const unsigned char *)input, strlen(input)) == 1);
  EVP_MD_CTX_free(ctx);
  const unsigned char *p = der;
  ECDSA_SIG *s = d2i_ECDSA_SIG(NULL, &p, (long)n);
  CHECK(s != NULL);
  CHECK(BN_bn2binpad(ECDSA_SIG_get0_r(s), raw, 32) == 32);
  CHECK(BN_bn2binpad(ECDSA_SIG_get0_s(s), raw + 32, 32) == 32);
  ECDSA_SIG_free(s);
  return 64;
}

/* Builds b64(header).b64(payload).b64(sig) signed with algorithm `alg` (0-2 HS*, 3 ES256). */
static char *make_token(const uint8_t *h, size_t hn, const uint8_t *p, size_t pn, int alg) {
  char *hb = b64url_encode(h, hn), *pb = b64url_encode(p, pn);
  size_t in_len = strlen(hb) + 1 + strlen(pb);
  char *input = malloc(in_len + 1);
  CHECK(input != NULL);
  snprintf(input, in_len + 1, "%s.%s", hb, pb);
  uint8_t sig[EVP_MAX_MD_SIZE > 64 ? EVP_MAX_MD_SIZE : 64];
  size_t sn = 0;
  if (alg < 3) {
    const EVP_MD *md[] = {EVP_sha256(), EVP_sha384(), EVP_sha512()};
    unsigned int l = 0;
    CHECK(HMAC(md[alg], SECRET, (int)strlen(SECRET), (const unsigned char *)input, in_len, sig,
               &l) != NULL);
    sn = l;
  } else {
    sn = es256_sign(input, sig);
  }
  char *sb = b64url_encode(sig, sn);
  char *tok = malloc(in_len + strlen(sb) + 2);
  CHECK(tok != NULL);
  sprintf(tok, "%s.%s", input, sb);
  free(hb);
  free(pb);
  free(input);
  free(sb);
  return tok;
}

/* ------------------------------------------------------------ acceptance */

static int hmac_holds(const char *digest, const char *in, size_t n, const uint8_t *sig,
                      size_t sn) {
  uint8_t mac[EVP_MAX_MD_SIZE];
  size_t ml = 0;
  CHECK(EVP_Q_mac(NULL, "HMAC", NULL, digest, NULL, SECRET, strlen(SECRET),
                  (const unsigned char *)in, n, mac, sizeof(mac), &ml) != NULL);
  return ml == sn && memcmp(mac, sig, ml) == 0;
}

/* ES256 through the digest and EVP_PKEY_verify, a different path from EVP_DigestVerify. */
static int ecdsa_holds(const char *in, size_t n, const uint8_t *sig, size_t sn) {
  if (sn != 64) return 0;
  uint8_t digest[32], der[80];
  unsigned int dl = 0;
  CHECK(EVP_Digest(in, n, digest, &dl, EVP_sha256(), NULL) == 1);
  ECDSA_SIG *s = ECDSA_SIG_new();
  CHECK(s != NULL);
  CHECK(ECDSA_SIG_set0(s, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL)) == 1);
  unsigned char *p = der;
  int len = i2d_ECDSA_SIG(s, &p);
  ECDSA_SIG_free(s);
  CHECK(len > 0);
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(ec_key, NULL);
  CHECK(ctx != NULL && EVP_PKEY_verify_init(ctx) == 1);
  CHECK(EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1);
  int ok = EVP_PKEY_verify(ctx, der, (size_t)len, digest, dl) == 1;
  EVP_PKEY_CTX_free(ctx);
  ERR_clear_error();
  return ok;
}

static json_t *decode_json(const char *s, size_t n) {
  size_t dn = 0;
  uint8_t *d = b64url_decode(s, n, &dn);
  json_error_t jerr;
  json_t *j = json_loadb((const char *)d, dn, JSON_REJECT_DUPLICATES, &jerr);
  free(d);
  CHECK(json_is_object(j));
  return j;
}

/* The signature of an accepted token verifies, recomputed independently. */
static void check_signature(const char *tok, size_t len) {
  const char *d1 = memchr(tok, '.', len);
  CHECK(d1 != NULL);
  const char *d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok));
  CHECK(d2 != NULL && memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok)) == NULL);
  json_t *h = decode_json(tok, (size_t)(d1 - tok));
  const char *alg = json_string_value(json_object_get(h, "alg"));
  CHECK(alg != NULL);
  size_t sn = 0;
  uint8_t *sig = b64url_decode(d2 + 1, len - (size_t)(d2 + 1 - tok), &sn);
  size_t n = (size_t)(d2 - tok);
  int ok = 0;
  if (strcmp(alg, "HS256") == 0) ok = hmac_holds("SHA256", tok, n, sig, sn);
  else if (strcmp(alg, "HS384") == 0) ok = hmac_holds("SHA384", tok, n, sig, sn);
  else if (strcmp(alg, "HS512") == 0) ok = hmac_holds("SHA512", tok, n, sig, sn);
  else if (strcmp(alg, "ES256") == 0) ok = ecdsa_holds(tok, n, sig, sn);
  CHECK(ok);
  free(sig);
  json_decref(h);
}

static void check_user_id(json_t *payload, const rt_identity_t *id) {
  json_t *j = json_object_get(payload, "sub");
  if (j == NULL) j = json_object_get(payload, "id");
  if (j == NULL) {
    CHECK(id->user_id == NULL);
  } else if (json_is_string(j)) {
    CHECK(id->user_id != NULL && strcmp(id->user_id, json_string_value(j)) == 0);
  } else {
    char num[32];
    CHECK(json_is_integer(j));
    snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(j));
    CHECK(id->user_id != NULL && strcmp(id->user_id, num) == 0);
  }
}

static void check_permissions(json_t *payload, const rt_identity_t *id) {
  json_t *arr = json_object_get(payload, "permissions");
  CHECK(id->permission_count == json_array_size(arr));
  CHECK((id->permissions == NULL) == (id->permission_count == 0));
  for (size_t i = 0; i < id->permission_count; i++) {
    json_t *s = json_array_get(arr, i);
    CHECK(strlen(id->permissions[i]) == json_string_length(s));
    CHECK(memcmp(id->permissions[i], json_string_value(s), json_string_length(s)) == 0);
  }
}

/* exp and nbf of an accepted token are on the right side of the clock. */
static void check_times(json_t *payload, const rt_identity_t *id, uint8_t leeway) {
  json_t *exp = json_object_get(payload, "exp"), *nbf = json_object_get(payload, "nbf");
  if (exp == NULL) {
    CHECK(id->expires_at == 0);
  } else {
    double e = json_number_value(exp);
    CHECK(e > (double)NOW - leeway);
    /* e is positive here, so truncation is the floor */
    if (json_is_integer(exp)) CHECK(id->expires_at == json_integer_value(exp));
    else if (e < 9223372036854775808.0) CHECK(id->expires_at == (int64_t)e);
    else CHECK(id->expires_at == INT64_MAX);
  }
  if (nbf != NULL) CHECK(json_number_value(nbf) <= (double)NOW + leeway);
}

static void check_accepted(const char *tok, size_t len, const rt_identity_t *id, uint8_t leeway) {
  check_signature(tok, len);
  const char *d1 = memchr(tok, '.', len), *d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok));
  json_t *payload = decode_json(d1 + 1, (size_t)(d2 - d1 - 1));
  check_user_id(payload, id);
  check_permissions(payload, id);
  check_times(payload, id, leeway);
  json_decref(payload);
}

/* ------------------------------------------------------------ driver */

static int identity_equal(const rt_identity_t *a, const rt_identity_t *b) {
  if ((a->user_id == NULL) != (b->user_id == NULL)) return 0;
  if (a->user_id != NULL && strcmp(a->user_id, b->user_id) != 0) return 0;
  if (a->permission_count != b->permission_count || a->expires_at != b->expires_at) return 0;
  for (size_t i = 0; i < a->permission_count; i++)
    if (strcmp(a->permissions[i], b->permissions[i]) != 0) return 0;
  return 1;
}

static int is_zero(const rt_identity_t *id) {
  return id->user_id == NULL && id->permissions == NULL && id->permission_count == 0 &&
         id->expires_at == 0;
}

static void run(const char *tok, size_t len, uint8_t leeway, int oom, long fail_after) {
  const rt_jwt_verifier_t *v = verifier_for(leeway);
  char *copy = malloc(len ? len : 1);
  CHECK(copy != NULL);
  memcpy(copy, tok, len);
  rt_identity_t id, again;
  rt_errbuf_t err = {{0}}, err2 = {{0}};
  int rc = rt_jwt_verify(v, copy, len, NOW, &id, &err);
  CHECK(rc == 0 || rc == RT_ETOKEN || rc == RT_EEXPIRED);
  CHECK(ERR_peek_error() == 0);
  if (rc == 0) {
    check_accepted(copy, len, &id, leeway);
  } else {
    CHECK(is_zero(&id));
    if (!known_message(err.msg)) {
      fprintf(stderr, "unexpected message: %s\n", err.msg);
      abort();
    }
  }
  if (oom) rt_alloc_fail_after(fail_after);
  int rc2 = rt_jwt_verify(v, copy, len, NOW, &again, &err2);
  rt_alloc_fail_after(-1);
  CHECK(ERR_peek_error() == 0);
  if (!(oom && rc2 == RT_ENOMEM)) {
    CHECK(rc2 == rc);
    CHECK(strcmp(err.msg, err2.msg) == 0);
    CHECK(identity_equal(&id, &again));
  } else {
    CHECK(is_zero(&again));
    CHECK(strcmp(err2.msg, "Out of memory") == 0);
  }
  rt_identity_destroy(&id);
  rt_identity_destroy(&again);
  free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 4) return 0;
  uint8_t mode = data[0], leeway = data[1], split = data[2];
  int oom = (mode & 8) != 0;
  long fail_after = data[3];
  const uint8_t *body = data + 4;
  size_t n = size - 4;
  if ((mode & 1) == 0) {
    run((const char *)body, n, leeway, oom, fail_after);
    return 0;
  }
  if (n > RT_JWT_MAX_TOKEN_LEN) return 0;
  size_t hn = split < n ? split : n;
  char *tok = make_token(body, hn, body + hn, n - hn, (mode >> 1) & 3);
  run(tok, strlen(tok), leeway, oom, fail_after);
  free(tok);
  return 0;
}
