#include "auth_jwt.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "alloc.h"

/* Which key an algorithm is verified with. */
typedef enum { KEY_SECRET, KEY_RSA, KEY_EC } key_kind_t;

typedef struct {
  const char *name;             /* JWS "alg" value */
  unsigned bit;                 /* RT_JWT_* */
  key_kind_t key;               /* the only key this algorithm may be checked with */
  const EVP_MD *(*md)(void);    /* digest */
} alg_t;

static const alg_t ALGS[] = {
    {"HS256", RT_JWT_HS256, KEY_SECRET, EVP_sha256},
    {"HS384", RT_JWT_HS384, KEY_SECRET, EVP_sha384},
    {"HS512", RT_JWT_HS512, KEY_SECRET, EVP_sha512},
    {"RS256", RT_JWT_RS256, KEY_RSA, EVP_sha256},
    {"ES256", RT_JWT_ES256, KEY_EC, EVP_sha256},
};
#define ALG_COUNT (sizeof(ALGS) / sizeof(ALGS[0]))

/* JWS ES256 signatures are the raw big-endian R and S of P-256, 32 bytes each (RFC 7518 3.4). */
#define ES256_HALF 32

/* Upper bound of the bytes the three segments of a token decode to. */
#define DECODED_MAX (RT_JWT_MAX_TOKEN_LEN / 4 * 3)

struct rt_jwt_verifier_s {
  unsigned algorithms;    /* accepted RT_JWT_* bits, each backed by its key */
  uint32_t leeway_s;      /* tolerated clock skew on exp/nbf */
  unsigned char *secret;  /* rt_malloc'd copy of the HMAC key, wiped on free; NULL if none */
  size_t secret_len;      /* bytes in secret (<= INT_MAX, as HMAC() takes an int) */
  EVP_PKEY *pkey;         /* RSA or EC P-256 public key; NULL if none */
  key_kind_t pkey_kind;   /* KEY_RSA or KEY_EC when pkey is set */
  size_t rsa_sig_len;     /* RS256 signature length: the modulus size in bytes */
};

/* ------------------------------------------------------------ jansson */

/*
 * Parses p[0..n) (decoded from the token) as a strict JSON object. jansson
 * allocates with its own allocator (malloc unless the embedder changed it),
 * not rt_malloc: jansson 2.14 does not survive an allocation failure in its
 * scanner (it asserts in lex_unget_unsave), so the OOM tests must not inject
 * failures there. Its other allocation failures read as malformed. The
 * messages never quote jansson's error text: it contains bytes of the token.
 */
static int load_object(const uint8_t *p, size_t n, const char *what, json_t **out,
                       rt_errbuf_t *err) {
  json_error_t jerr;
  *out = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &jerr);
  if (*out == NULL) {
    int dup = json_error_code(&jerr) == json_error_duplicate_key;
    return rt_errbuf_set(err, RT_ETOKEN, "Invalid token: malformed %s (%s)", what,
                         dup ? "duplicate key" : "invalid JSON");
  }
  if (!json_is_object(*out)) {
    json_decref(*out);
    *out = NULL;
    return rt_errbuf_set(err, RT_ETOKEN, "Invalid token: malformed %s (not a JSON object)", what);
  }
  return 0;
}

/* ------------------------------------------------------------ base64url */

static int b64url_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

/*
 * Decodes unpadded base64url (RFC 7515 section 2) into out, which has room
 * for n / 4 * 3 + 2 bytes. Refuses '=' and any byte outside the alphabet, a
 * length of 4k+1 (no whole byte), and non-zero unused bits in the last
 * character, so every byte string has exactly one accepted encoding.
 */
static int b64url_decode(const char *in, size_t n, uint8_t *out, size_t *out_len) {
  if (n % 4 == 1) return -1;
  uint32_t acc = 0;
  size_t bits = 0, o = 0;
  for (size_t i = 0; i < n; i++) {
    int v = b64url_value((unsigned char)in[i]);
    if (v < 0) return -1;
    acc = (acc << 6) | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (uint8_t)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  if (acc != 0) return -1;
  *out_len = o;
  return 0;
}

/* ------------------------------------------------------------ identity */

void rt_identity_destroy(rt_identity_t *id) {
  if (id == NULL) return;
  for (size_t i = 0; i < id->permission_count; i++) rt_free(id->permissions[i]);
  rt_free(id->permissions);
  rt_free(id->user_id);
  memset(id, 0, sizeof(*id));
}

int rt_identity_copy(rt_identity_t *dst, const rt_identity_t *src) {
  memset(dst, 0, sizeof(*dst));
  if (src->user_id != NULL && (dst->user_id = rt_strdup(src->user_id)) == NULL) return RT_ENOMEM;
  if (src->permission_count > 0) {
    dst->permissions = rt_calloc(src->permission_count, sizeof(char *));
    if (dst->permissions == NULL) goto oom;
    for (size_t i = 0; i < src->permission_count; i++) {
      if ((dst->permissions[i] = rt_strdup(src->permissions[i])) == NULL) goto oom;
      dst->permission_count = i + 1;
    }
  }
  dst->expires_at = src->expires_at;
  return 0;
oom:
  rt_identity_destroy(dst);
  return RT_ENOMEM;
}

/* ------------------------------------------------------------ algorithms */

static const alg_t *find_alg(const char *name, size_t n) {
  for (size_t i = 0; i < ALG_COUNT; i++)
    if (strlen(ALGS[i].name) == n && memcmp(ALGS[i].name, name, n) == 0) return &ALGS[i];
  return NULL;
}

const char *rt_jwt_algorithm_name(unsigned alg) {
  for (size_t i = 0; i < ALG_COUNT; i++)
    if (ALGS[i].bit == alg) return ALGS[i].name;
  return NULL;
}

static int is_blank(char c) { return c == ' ' || c == '\t'; }

/* Resolves one trimmed list entry s[0..n) to its bit, or names the problem. */
static int parse_one_algorithm(const char *s, size_t n, unsigned *bit, rt_errbuf_t *err) {
  if (n == 0) return rt_errbuf_set(err, RT_ECONFIG, "jwtAlgorithms: empty entry in the list");
  const alg_t *a = find_alg(s, n);
  if (a != NULL) {
    *bit = a->bit;
    return 0;
  }
  if (n == 4 && memcmp(s, "none", 4) == 0)
    return rt_errbuf_set(err, RT_ECONFIG, "jwtAlgorithms: \"none\" is never accepted");
  return rt_errbuf_set(err, RT_ECONFIG,
                       "jwtAlgorithms: unknown algorithm \"%.*s\" (use HS256, HS384, HS512, "
                       "RS256 or ES256)",
                       n > 32 ? 32 : (int)n, s);
}

int rt_jwt_parse_algorithms(const char *comma_list, unsigned *mask, rt_errbuf_t *err) {
  unsigned acc = 0;
  const char *p = comma_list;
  for (;;) {
    const char *end = strchr(p, ',');
    if (end == NULL) end = p + strlen(p);
    const char *q = end;
    while (p < q && is_blank(*p)) p++;
    while (q > p && is_blank(q[-1])) q--;
    unsigned bit = 0;
    int rc = parse_one_algorithm(p, (size_t)(q - p), &bit, err);
    if (rc != 0) return rc;
    acc |= bit;
    if (*end == '\0') break;
    p = end + 1;
  }
  *mask = acc;
  return 0;
}

/* ------------------------------------------------------------ verifier */

/*
 * Parses the PEM public key into v->pkey and classifies it. Only RSA of at
 * least RT_JWT_MIN_RSA_BITS (RS256) and EC on P-256 (ES256) are accepted,
 * so a key can never be used with a curve or size the algorithm does not
 * name; RSA-PSS-only keys are refused because RS256 is PKCS#1 v1.5.
 */
static int load_public_key(rt_jwt_verifier_t *v, const char *pem, size_t len, rt_errbuf_t *err) {
  if (len > INT_MAX) return rt_errbuf_set(err, RT_ECONFIG, "jwtPublicKeyFile: key file too large");
  BIO *bio = BIO_new_mem_buf(pem, (int)len);
  if (bio == NULL) return rt_errbuf_set(err, RT_ENOMEM, "Out of memory");
  v->pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
  BIO_free(bio);
  if (v->pkey == NULL)
    return rt_errbuf_set(err, RT_ECONFIG,
                         "jwtPublicKeyFile: no PEM public key (\"BEGIN PUBLIC KEY\") found");
  int type = EVP_PKEY_get_base_id(v->pkey);
  if (type == EVP_PKEY_RSA) {
    int bits = EVP_PKEY_get_bits(v->pkey);
    if (bits < RT_JWT_MIN_RSA_BITS)
      return rt_errbuf_set(err, RT_ECONFIG,
                           "jwtPublicKeyFile: RSA key of %d bits, at least %d required", bits,
                           RT_JWT_MIN_RSA_BITS);
    v->pkey_kind = KEY_RSA;
    v->rsa_sig_len = (size_t)EVP_PKEY_get_size(v->pkey);
    return 0;
  }
  if (type == EVP_PKEY_EC) {
    char group[64];
    if (EVP_PKEY_get_group_name(v->pkey, group, sizeof(group), NULL) != 1 ||
        OBJ_sn2nid(group) != NID_X9_62_prime256v1)
      return rt_errbuf_set(err, RT_ECONFIG, "jwtPublicKeyFile: EC key is not on curve P-256");
    v->pkey_kind = KEY_EC;
    return 0;
  }
  return rt_errbuf_set(err, RT_ECONFIG,
                       "jwtPublicKeyFile: unsupported key type (RSA or EC P-256 only)");
}

/* Names the key an explicitly configured algorithm lacks. */
static int missing_key(unsigned bit, rt_errbuf_t *err) {
  const char *name = rt_jwt_algorithm_name(bit);
  if (bit & RT_JWT_HMAC_ALGS)
    return rt_errbuf_set(err, RT_ECONFIG, "jwtAlgorithms: %s needs jwtSecret", name);
  return rt_errbuf_set(err, RT_ECONFIG, "jwtAlgorithms: %s needs %s public key in jwtPublicKeyFile",
                       name, bit == RT_JWT_RS256 ? "an RSA" : "an EC P-256");
}

/*
 * Settles the accepted set: what the keys make possible, restricted to the
 * configured bits. Every accepted algorithm has its key, which is what
 * makes key confusion impossible at verification time.
 */
static int choose_algorithms(rt_jwt_verifier_t *v, unsigned wanted, rt_errbuf_t *err) {
  unsigned possible = 0;
  if (v->pkey != NULL) possible = v->pkey_kind == KEY_RSA ? RT_JWT_RS256 : RT_JWT_ES256;
  if (wanted == 0) {
    v->algorithms = possible | (v->secret != NULL ? RT_JWT_HS256 : 0);
    return 0;
  }
  if (v->secret != NULL) possible |= RT_JWT_HMAC_ALGS;
  unsigned lacking = wanted & ~possible;
  if (lacking != 0) return missing_key(lacking & -lacking, err);
  v->algorithms = wanted;
  return 0;
}

static int check_config(const rt_jwt_config_t *cfg, rt_errbuf_t *err) {
  if (cfg->algorithms & ~RT_JWT_ALL_ALGS)
    return rt_errbuf_set(err, RT_EINVAL, "Unknown JWT algorithm bits 0x%x",
                         cfg->algorithms & ~RT_JWT_ALL_ALGS);
  if (cfg->secret == NULL && cfg->public_key_pem == NULL)
    return rt_errbuf_set(err, RT_ECONFIG, "No JWT key: set jwtSecret or jwtPublicKeyFile");
  if (cfg->secret != NULL && cfg->secret_len == 0)
    return rt_errbuf_set(err, RT_ECONFIG, "jwtSecret is empty");
  if (cfg->secret != NULL && cfg->secret_len > INT_MAX)
    return rt_errbuf_set(err, RT_ECONFIG, "jwtSecret is too long");
  return 0;
}

static int build_verifier(rt_jwt_verifier_t *v, const rt_jwt_config_t *cfg, rt_errbuf_t *err) {
  v->leeway_s = cfg->leeway_s;
  if (cfg->secret != NULL) {
    if ((v->secret = rt_malloc(cfg->secret_len)) == NULL)
      return rt_errbuf_set(err, RT_ENOMEM, "Out of memory");
    memcpy(v->secret, cfg->secret, cfg->secret_len);
    v->secret_len = cfg->secret_len;
  }
  if (cfg->public_key_pem != NULL) {
    int rc = load_public_key(v, cfg->public_key_pem, cfg->pem_len, err);
    if (rc != 0) return rc;
  }
  return choose_algorithms(v, cfg->algorithms, err);
}

int rt_jwt_verifier_new(const rt_jwt_config_t *cfg, rt_jwt_verifier_t **out, rt_errbuf_t *err) {
  *out = NULL;
  int rc = check_config(cfg, err);
  if (rc != 0) return rc;
  rt_jwt_verifier_t *v = rt_calloc(1, sizeof(*v));
  if (v == NULL) return rt_errbuf_set(err, RT_ENOMEM, "Out of memory");
  ERR_set_mark();
  rc = build_verifier(v, cfg, err);
  ERR_pop_to_mark();
  if (rc != 0) {
    rt_jwt_verifier_free(v);
    return rc;
  }
  *out = v;
  return 0;
}

void rt_jwt_verifier_free(rt_jwt_verifier_t *v) {
  if (v == NULL) return;
  if (v->secret != NULL) OPENSSL_cleanse(v->secret, v->secret_len);
  rt_free(v->secret);
  EVP_PKEY_free(v->pkey);
  rt_free(v);
}

unsigned rt_jwt_verifier_algorithms(const rt_jwt_verifier_t *v) { return v->algorithms; }

/* ------------------------------------------------------------ signatures */

static int bad_signature(rt_errbuf_t *err) {
  return rt_errbuf_set(err, RT_ETOKEN, "Invalid token: bad signature");
}

/*
 * HS*: recomputes the MAC of the signing input with the configured secret
 * and compares it in constant time. The length is not secret (it is fixed
 * by the algorithm), so a wrong length is refused before comparing.
 */
static int verify_hmac(const rt_jwt_verifier_t *v, const alg_t *a, const char *input, size_t n,
                       const uint8_t *sig, size_t sig_len, rt_errbuf_t *err) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  if (HMAC(a->md(), v->secret, (int)v->secret_len, (const unsigned char *)input, n, mac,
           &mac_len) == NULL)
    return rt_errbuf_set(err, RT_ENOMEM, "Out of memory");
  int ok = sig_len == mac_len && CRYPTO_memcmp(mac, sig, mac_len) == 0;
  OPENSSL_cleanse(mac, sizeof(mac));
  return ok ? 0 : bad_signature(err);
}

/*
 * EVP_DigestVerify of a DER (ES256) or PKCS#1 v1.5 (RS256) signature with
 * SHA-256. Setting up the context can only fail for lack of memory; the
 * verification itself returning anything but 1 is a bad signature.
 */
static int digest_verify(const rt_jwt_verifier_t *v, const char *input, size_t n,
                         const uint8_t *sig, size_t sig_len, rt_errbuf_t *err) {
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (ctx == NULL) return rt_errbuf_set(err, RT_ENOMEM, "Out of memory");
  EVP_PKEY_CTX *pctx = NULL;
  int ok = EVP_DigestVerifyInit(ctx, &pctx, EVP_sha256(), NULL, v->pkey) == 1;
  if (ok && v->pkey_kind == KEY_RSA) ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) > 0;
  if (!ok) {
    EVP_MD_CTX_free(ctx);
    return rt_errbuf_set(err, RT_ENOMEM, "Out of memory");
  }
  int rc = EVP_DigestVerify(ctx, sig, sig_len, (const unsigned char *)input, n);
  EVP_MD_CTX_free(ctx);
  return rc == 1 ? 0 : bad_signature(err);
}

/*
 * Converts a JWS ES256 signature (R || S, 32 bytes each) to the DER
 * ECDSA-Sig-Value OpenSSL verifies. der has room for 72 bytes, the most two
 * 32-byte INTEGERs take (a leading zero each, plus headers).
 */
static int es256_to_der(const uint8_t *raw, uint8_t *der, size_t *der_len) {
  ECDSA_SIG *s = ECDSA_SIG_new();
  BIGNUM *r = BN_bin2bn(raw, ES256_HALF, NULL);
  BIGNUM *t = BN_bin2bn(raw + ES256_HALF, ES256_HALF, NULL);
  if (s == NULL || r == NULL || t == NULL || ECDSA_SIG_set0(s, r, t) != 1) {
    BN_free(r);
    BN_free(t);
    ECDSA_SIG_free(s);
    return RT_ENOMEM;
  }
  int n = i2d_ECDSA_SIG(s, NULL);
  unsigned char *p = der;
  if (n <= 0 || n > 72 || i2d_ECDSA_SIG(s, &p) != n) {
    ECDSA_SIG_free(s);
    return RT_ENOMEM;
  }
  ECDSA_SIG_free(s);
  *der_len = (size_t)n;
  return 0;
}

/*
 * Verifies the signature with the one key the algorithm is bound to. The
 * caller has checked the algorithm is accepted, which implies its key
 * exists and has the right type (choose_algorithms).
 */
static int verify_signature(const rt_jwt_verifier_t *v, const alg_t *a, const char *input,
                            size_t n, const uint8_t *sig, size_t sig_len, rt_errbuf_t *err) {
  if (a->key == KEY_SECRET) return verify_hmac(v, a, input, n, sig, sig_len, err);
  if (a->key == KEY_RSA) {
    if (sig_len != v->rsa_sig_len) return bad_signature(err);
    return digest_verify(v, input, n, sig, sig_len, err);
  }
  if (sig_len != 2 * ES256_HALF) return bad_signature(err);
  uint8_t der[72];
  size_t der_len = 0;
  if (es256_to_der(sig, der, &der_len) != 0) return rt_errbuf_set(err, RT_ENOMEM, "Out of memory");
  return digest_verify(v, input, n, der, der_len, err);
}

/* ------------------------------------------------------------ token shape */

/* The three segments of a compact JWS, decoded. */
typedef struct {
  size_t signing_len;       /* bytes of "header.payload", the signed input */
  const uint8_t *header;    /* decoded header JSON */
  size_t header_len;
  const uint8_t *payload;   /* decoded payload JSON */
  size_t payload_len;
  const uint8_t *sig;       /* decoded signature */
  size_t sig_len;
} parts_t;

static int decode_segment(const char *s, size_t n, const char *what, uint8_t **cursor,
                          const uint8_t **out, size_t *out_len, rt_errbuf_t *err) {
  if (b64url_decode(s, n, *cursor, out_len) != 0)
    return rt_errbuf_set(err, RT_ETOKEN, "Invalid token: malformed %s (not base64url)", what);
  *out = *cursor;
  *cursor += *out_len;
  return 0;
}

/*
 * Splits the token at its two dots and decodes each segment into buf
 * (DECODED_MAX bytes, enough for any token within the size cap).
 */
static int split_token(const char *t, size_t len, uint8_t *buf, parts_t *p, rt_errbuf_t *err) {
  if (len == 0) return rt_errbuf_set(err, RT_ETOKEN, "Invalid token: empty");
  if (len > RT_JWT_MAX_TOKEN_LEN)
    return rt_errbuf_set(err, RT_ETOKEN, "Invalid token: longer than %d bytes",
                         RT_JWT_MAX_TOKEN_LEN);
  const char *d1 = memchr(t, '.', len);
  const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - t)) : NULL;
  if (d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - t)) != NULL)
    return rt_errbuf_set(err, RT_ETOKEN, "Invalid token: malformed (expected 3 segments)");
  uint8_t *cur = buf;
  int rc = decode_segment(t, (size_t)(d1 - t), "header", &cur, &p->header, &p->header_len, err);
  if (rc == 0)
    rc = decode_segment(d1 + 1, (size_t)(d2 - d1 - 1), "payload", &cur, &p->payload,
                        &p->payload_len, err);
  if (rc == 0)
    rc = decode_segment(d2 + 1, len - (size_t)(d2 + 1 - t), "signature", &cur, &p->sig,
                        &p->sig_len, err);
  p->signing_len = (size_t)(d2 - t);
  return rc;
}

/*
 * Reads the header: "alg" must be a string naming an algorithm we know,
 * "typ" if present a string, and "crit" absent (RFC 7515 4.1.11: a recipient
 * must refuse critical extensions it does not understand, and we understand
 * none). Other header fields (kid, jku, x5u, ...) are ignored; keys never
 * come from the token.
 */
static int read_header(const parts_t *p, const alg_t **alg, rt_errbuf_t *err) {
  json_t *h = NULL;
  int rc = load_object(p->header, p->header_len, "header", &h, err);
  if (rc != 0) return rc;
  json_t *a = json_object_get(h, "alg");
  json_t *typ = json_object_get(h, "typ");
  if (!json_is_string(a))
    rc = rt_errbuf_set(err, RT_ETOKEN,
                       "Invalid token: malformed header (alg missing or not a string)");
  else if (typ != NULL && !json_is_string(typ))
    rc = rt_errbuf_set(err, RT_ETOKEN, "Invalid token: malformed header (typ not a string)");
  else if (json_object_get(h, "crit") != NULL)
    rc = rt_errbuf_set(err, RT_ETOKEN, "Invalid token: unsupported critical header (crit)");
  else if ((*alg = find_alg(json_string_value(a), json_string_length(a))) == NULL)
    rc = strcmp(json_string_value(a), "none") == 0
             ? rt_errbuf_set(err, RT_ETOKEN, "Invalid token: algorithm none not accepted")
             : rt_errbuf_set(err, RT_ETOKEN, "Invalid token: unsupported algorithm");
  json_decref(h);
  return rc;
}

/* ------------------------------------------------------------ claims */

/* A JSON number as its floor plus "had a fractional part", saturated to int64. */
typedef struct {
  int64_t whole; /* floor of the value */
  int frac;      /* 1 when the value is strictly above `whole` */
} num_t;

/* Reads a JSON integer or real without libm: reals within int64 are floored exactly. */
static int read_number(const json_t *j, num_t *n) {
  if (json_is_integer(j)) {
    n->whole = json_integer_value(j);
    n->frac = 0;
    return 0;
  }
  if (!json_is_real(j)) return -1;
  double d = json_real_value(j);
  n->frac = 0;
  if (d >= 9223372036854775808.0) {
    n->whole = INT64_MAX;
  } else if (d < -9223372036854775808.0) {
    n->whole = INT64_MIN;
  } else {
    int64_t w = (int64_t)d;
    if ((double)w > d) w--;
    n->whole = w;
    n->frac = (double)w != d;
  }
  return 0;
}

static int64_t add_sat(int64_t a, uint32_t b) {
  return a > INT64_MAX - (int64_t)b ? INT64_MAX : a + b;
}

static int64_t sub_sat(int64_t a, uint32_t b) {
  return a < INT64_MIN + (int64_t)b ? INT64_MIN : a - b;
}

/* Reads an optional numeric claim; *present tells whether it was there. */
static int read_time_claim(json_t *payload, const char *name, num_t *n, int *present,
                           rt_errbuf_t *err) {
  json_t *j = json_object_get(payload, name);
  *present = j != NULL;
  if (j != NULL && read_number(j, n) != 0)
    return rt_errbuf_set(err, RT_ETOKEN, "Invalid token: claim %s is not a number", name);
  return 0;
}

/*
 * exp and nbf against now_s with the leeway (RFC 7519 4.1.4/4.1.5): the
 * token is expired when exp <= now - leeway and not yet valid when
 * nbf > now + leeway. Comparisons are exact for fractional times.
 */
static int check_times(const rt_jwt_verifier_t *v, json_t *payload, int64_t now_s,
                       int64_t *expires_at, rt_errbuf_t *err) {
  num_t exp = {0, 0}, nbf = {0, 0};
  int has_exp = 0, has_nbf = 0;
  int rc = read_time_claim(payload, "exp", &exp, &has_exp, err);
  if (rc == 0) rc = read_time_claim(payload, "nbf", &nbf, &has_nbf, err);
  if (rc != 0) return rc;
  int64_t oldest = sub_sat(now_s, v->leeway_s), newest = add_sat(now_s, v->leeway_s);
  if (has_exp && (exp.whole < oldest || (exp.whole == oldest && !exp.frac)))
    return rt_errbuf_set(err, RT_EEXPIRED, "Token expired");
  if (has_nbf && (nbf.whole > newest || (nbf.whole == newest && nbf.frac)))
    return rt_errbuf_set(err, RT_ETOKEN, "Token not yet valid");
  *expires_at = has_exp ? exp.whole : 0;
  return 0;
}

/* "sub", else "id": a non-empty string or an integer (written in decimal). */
static int read_user_id(json_t *payload, char **out, rt_errbuf_t *err) {
  const char *name = "sub";
  json_t *j = json_object_get(payload, name);
  if (j == NULL) j = json_object_get(payload, name = "id");
  if (j == NULL) return 0;
  if (json_is_string(j) && json_string_length(j) > 0) {
    *out = rt_strndup(json_string_value(j), json_string_length(j));
  } else if (json_is_integer(j)) {
    char num[24];
    snprintf(num, sizeof(num), "%" PRId64, (int64_t)json_integer_value(j));
    *out = rt_strdup(num);
  } else {
    return rt_errbuf_set(err, RT_ETOKEN,
                         "Invalid token: claim %s must be a non-empty string or an integer", name);
  }
  return *out == NULL ? rt_errbuf_set(err, RT_ENOMEM, "Out of memory") : 0;
}

/* "permissions": absent, or an array whose every element is a string. */
static int read_permissions(json_t *payload, rt_identity_t *id, rt_errbuf_t *err) {
  json_t *arr = json_object_get(payload, "permissions");
  if (arr == NULL) return 0;
  size_t n = json_array_size(arr);
  int all_strings = json_is_array(arr);
  for (size_t i = 0; all_strings && i < n; i++)
    all_strings = json_is_string(json_array_get(arr, i));
  if (!all_strings)
    return rt_errbuf_set(err, RT_ETOKEN,
                         "Invalid token: claim permissions must be an array of strings");
  if (n == 0) return 0;
  if ((id->permissions = rt_calloc(n, sizeof(char *))) == NULL)
    return rt_errbuf_set(err, RT_ENOMEM, "Out of memory");
  for (size_t i = 0; i < n; i++) {
    json_t *s = json_array_get(arr, i);
    if ((id->permissions[i] = rt_strndup(json_string_value(s), json_string_length(s))) == NULL)
      return rt_errbuf_set(err, RT_ENOMEM, "Out of memory");
    id->permission_count = i + 1;
  }
  return 0;
}

static int read_claims(const rt_jwt_verifier_t *v, const parts_t *p, int64_t now_s,
                       rt_identity_t *out, rt_errbuf_t *err) {
  json_t *payload = NULL;
  int rc = load_object(p->payload, p->payload_len, "payload", &payload, err);
  if (rc != 0) return rc;
  rc = check_times(v, payload, now_s, &out->expires_at, err);
  if (rc == 0) rc = read_user_id(payload, &out->user_id, err);
  if (rc == 0) rc = read_permissions(payload, out, err);
  json_decref(payload);
  if (rc != 0) rt_identity_destroy(out);
  return rc;
}

/* ------------------------------------------------------------ verify */

/*
 * Structure first, then the algorithm against the configured set, then the
 * signature, and only then the claims: nothing in an unauthenticated
 * payload influences the result beyond "malformed".
 */
static int verify_token(const rt_jwt_verifier_t *v, const char *token, size_t len, int64_t now_s,
                        rt_identity_t *out, rt_errbuf_t *err) {
  uint8_t buf[DECODED_MAX];
  parts_t p;
  int rc = split_token(token, len, buf, &p, err);
  if (rc != 0) return rc;
  const alg_t *alg = NULL;
  if ((rc = read_header(&p, &alg, err)) != 0) return rc;
  if (!(v->algorithms & alg->bit))
    return rt_errbuf_set(err, RT_ETOKEN, "Invalid token: algorithm %s not accepted", alg->name);
  rc = verify_signature(v, alg, token, p.signing_len, p.sig, p.sig_len, err);
  if (rc != 0) return rc;
  return read_claims(v, &p, now_s, out, err);
}

int rt_jwt_verify(const rt_jwt_verifier_t *v, const char *token, size_t len, int64_t now_s,
                  rt_identity_t *out, rt_errbuf_t *err) {
  memset(out, 0, sizeof(*out));
  ERR_set_mark();
  int rc = verify_token(v, token, len, now_s, out, err);
  ERR_pop_to_mark();
  return rc;
}
