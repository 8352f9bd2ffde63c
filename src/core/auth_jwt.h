/*
 * JWT verification (RFC 7519 / RFC 7515 compact serialisation) for the
 * connection authenticator, plus the identity type shared with API keys.
 *
 * The set of accepted algorithms comes from the configuration and the keys,
 * never from the token: a token's "alg" only selects among what the verifier
 * was built to accept, and each algorithm is bound to one key type (HS* to
 * the shared secret, RS256 to an RSA public key, ES256 to an EC P-256 public
 * key). So "none" is always refused, and an HS256 token MAC'd with the PEM
 * text of the public key (the classic key-confusion attack) is never checked
 * against that PEM. Signatures are verified with OpenSSL EVP and HMAC tags
 * compared with CRYPTO_memcmp (constant time).
 *
 * Error messages say what is wrong with the token and never contain any of
 * its bytes, so they may be logged and sent to the client as they are.
 * Claims not listed here (iss, aud, iat, jti, ...) are ignored.
 */
#ifndef RT_CORE_AUTH_JWT_H
#define RT_CORE_AUTH_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "errors.h"

/* Algorithm bits for rt_jwt_config_t.algorithms. */
#define RT_JWT_HS256 (1u << 0)
#define RT_JWT_HS384 (1u << 1)
#define RT_JWT_HS512 (1u << 2)
#define RT_JWT_RS256 (1u << 3)
#define RT_JWT_ES256 (1u << 4)
#define RT_JWT_HMAC_ALGS (RT_JWT_HS256 | RT_JWT_HS384 | RT_JWT_HS512)
#define RT_JWT_ALL_ALGS (RT_JWT_HMAC_ALGS | RT_JWT_RS256 | RT_JWT_ES256)

/* Longest token rt_jwt_verify looks at, in bytes; longer ones are RT_ETOKEN. */
#define RT_JWT_MAX_TOKEN_LEN 8192

/* Smallest RSA modulus accepted for RS256, in bits. */
#define RT_JWT_MIN_RSA_BITS 2048

/*
 * Who a client is, from a verified token or an API key. All memory is
 * rt_malloc'd and owned by the struct; a zeroed struct is a valid empty one.
 */
typedef struct {
  char *user_id;            /* "sub" claim, else "id" (string or integer, as text); NULL if none */
  char **permissions;       /* the "permissions" array claim, strings rt_malloc'd; NULL if empty */
  size_t permission_count;  /* entries in permissions */
  int64_t expires_at;       /* "exp" in seconds since the epoch (rounded down), 0 = none */
} rt_identity_t;

/* Frees the fields of *id and leaves it zeroed. NULL is a no-op. */
void rt_identity_destroy(rt_identity_t *id);

/*
 * Deep-copies *src into *dst (whose previous contents are overwritten, not
 * freed). Returns 0, or RT_ENOMEM with *dst zeroed and nothing allocated.
 */
int rt_identity_copy(rt_identity_t *dst, const rt_identity_t *src);

/* Verifier settings. Everything is borrowed for the rt_jwt_verifier_new call only. */
typedef struct {
  const char *secret;          /* HS* shared secret (any bytes); NULL = no HMAC key */
  size_t secret_len;           /* bytes in secret; must be > 0 when secret is set */
  const char *public_key_pem;  /* "PUBLIC KEY" PEM text (RSA or EC P-256); NULL = none */
  size_t pem_len;              /* bytes in public_key_pem */
  unsigned algorithms;         /* RT_JWT_* bits; 0 = derive from the keys given */
  uint32_t leeway_s;           /* clock skew tolerated on exp and nbf, in seconds */
} rt_jwt_config_t;

/* An immutable verifier: keys, accepted algorithms and leeway. */
typedef struct rt_jwt_verifier_s rt_jwt_verifier_t;

/*
 * Builds a verifier from *cfg. The secret is copied (and wiped on free); the
 * PEM is parsed into a public key that must be RSA of at least 2048 bits or
 * EC on P-256. With algorithms == 0 the set is derived from the keys: HS256
 * for a secret, RS256 for an RSA key, ES256 for an EC key. An explicit set
 * must only name algorithms whose key is present and of the matching type.
 * Returns 0 and *out (free with rt_jwt_verifier_free), or RT_ECONFIG naming
 * jwtSecret, jwtPublicKeyFile or jwtAlgorithms in *err, RT_EINVAL for
 * unknown algorithm bits, or RT_ENOMEM. *out is NULL on error.
 * Once built, a verifier is read-only and may be shared between threads.
 */
int rt_jwt_verifier_new(const rt_jwt_config_t *cfg, rt_jwt_verifier_t **out, rt_errbuf_t *err);

/* Frees a verifier, wiping its copy of the secret. NULL is a no-op. */
void rt_jwt_verifier_free(rt_jwt_verifier_t *v);

/* The RT_JWT_* bits the verifier accepts (after deriving them from the keys). */
unsigned rt_jwt_verifier_algorithms(const rt_jwt_verifier_t *v);

/*
 * Verifies token[0..len) (borrowed, need not be NUL-terminated) at time
 * now_s (seconds since the epoch, injected so tests need no clock).
 *
 * Checks, in order: size (1..RT_JWT_MAX_TOKEN_LEN), exactly three base64url
 * segments (no padding, alphabet A-Za-z0-9-_ only, canonical trailing bits),
 * a header JSON object with a string "alg" (optional string "typ", no
 * "crit"), "alg" in the accepted set, the signature, then the payload JSON
 * object: "exp" and "nbf" when present must be numbers (integer or real);
 * exp <= now_s - leeway is expired, nbf > now_s + leeway is not yet valid;
 * "sub", else "id", a non-empty string or an integer, is the user id;
 * "permissions", when present, an array of strings. JSON must be strict
 * (duplicate keys refused).
 *
 * Returns 0 and fills *out (the caller owns it: rt_identity_destroy), or,
 * with *out zeroed and the reason in *err:
 *   RT_ETOKEN   "Invalid token: ..." (malformed, bad signature, algorithm
 *               not accepted, bad claim) or "Token not yet valid";
 *   RT_EEXPIRED "Token expired";
 *   RT_ENOMEM   out of memory in our allocations (jansson allocates on its
 *               own, see load_object in auth_jwt.c; its failures read as
 *               malformed).
 * Leaves no entries of its own on the thread's OpenSSL error queue (TLS code
 * on the same thread reads it), and keeps any that were there before.
 */
int rt_jwt_verify(const rt_jwt_verifier_t *v, const char *token, size_t len, int64_t now_s,
                  rt_identity_t *out, rt_errbuf_t *err);

/*
 * Parses a comma-separated list of algorithm names ("HS256, RS256"; names
 * are case-sensitive, spaces around them ignored) into RT_JWT_* bits.
 * Returns 0, or RT_ECONFIG naming jwtAlgorithms and the offending entry
 * ("none" is never accepted, an empty list or entry is an error).
 */
int rt_jwt_parse_algorithms(const char *comma_list, unsigned *mask, rt_errbuf_t *err);

/* The JWS name of one RT_JWT_* bit ("HS256"), or NULL for anything else. */
const char *rt_jwt_algorithm_name(unsigned alg);

#endif
