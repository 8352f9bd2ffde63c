/*
 * The API-key store: keys from the config file's "apiKeys" and those added
 * at run time (the seed's addApiKey), each with a name and permissions.
 *
 * A key is never stored: the store keeps its SHA-256 digest only, and a
 * lookup hashes the presented key and compares digests with CRYPTO_memcmp,
 * so neither memory dumps nor comparison timing reveal a key. The digests
 * sit in a hash table indexed by the digest's own bytes; that index reveals
 * nothing about a key the caller does not already hold. SHA-256 is not a
 * password hash: keys must be long random strings (at least 128 bits of
 * entropy), not something a person chose, because a stolen digest of a
 * guessable key can be brute-forced offline.
 *
 * Ownership: every pointer passed in is borrowed for the call; the store
 * copies the name and permissions. Results are new copies the caller owns.
 * A store belongs to one thread (the loop thread): no call is thread-safe.
 */
#ifndef RT_CORE_AUTH_APIKEY_H
#define RT_CORE_AUTH_APIKEY_H

#include <stddef.h>

#include "auth_jwt.h"

#define RT_APIKEY_NAME_MAX 128 /* longest key name, in bytes */

typedef struct rt_apikey_store_s rt_apikey_store_t;

/* Returns a new, empty store (free with rt_apikey_store_free), or NULL when out of memory. */
rt_apikey_store_t *rt_apikey_store_new(void);

/* Frees the store and every entry. NULL is a no-op. */
void rt_apikey_store_free(rt_apikey_store_t *store);

/*
 * 1 when `name` (NUL-terminated, borrowed) is acceptable as a key name:
 * 1..RT_APIKEY_NAME_MAX bytes, none of them a control character (bytes
 * 0x00-0x1f and 0x7f), because names appear in logs and, as
 * "apikey:<name>", as the user id. UTF-8 and spaces are allowed. Config
 * validation uses it to report a bad name before the store is built.
 */
int rt_apikey_name_valid(const char *name);

/*
 * Adds the key key[0..key_len) (any bytes, borrowed, need not be
 * NUL-terminated) under `name` with the permissions perms[0..n) (each
 * checked with rt_perm_valid; perms may be NULL when n is 0). Only the
 * key's digest is kept. Several keys may share a name (key rotation).
 * Returns 0; RT_EINVAL for a NULL store, a NULL or empty key, an invalid
 * name (rt_apikey_name_valid) or an invalid or NULL permission; RT_EEXIST
 * when the key is already present (whatever its name); RT_ENOMEM (also
 * when OpenSSL cannot hash). On error the store is unchanged.
 */
int rt_apikey_add(rt_apikey_store_t *store, const char *key, size_t key_len, const char *name,
                  const char *const *perms, size_t n);

/*
 * Removes the key key[0..key_len) (borrowed). Identities handed out
 * earlier by rt_apikey_lookup are copies and stay valid; the caller decides
 * what to do with connections that authenticated with the key.
 * Returns 0, RT_ENOENT when the key is not present (an empty or NULL key
 * never is), RT_EINVAL for a NULL store, or RT_ENOMEM when OpenSSL cannot hash.
 */
int rt_apikey_revoke(rt_apikey_store_t *store, const char *key, size_t key_len);

/*
 * Looks up the presented key key[0..key_len) (borrowed, untrusted). On a
 * match fills *out with new deep copies the caller owns (free with
 * rt_identity_destroy): user_id "apikey:<name>", the key's permissions,
 * expires_at 0 (keys do not expire, they are revoked); and, when name_out
 * is non-NULL, sets *name_out to a new rt_malloc'd copy of the name (free
 * with rt_free).
 * Returns 0; RT_ETOKEN when the key is unknown (also NULL, empty, or a NULL
 * store); RT_ENOMEM. On every error *out is zeroed and *name_out is NULL,
 * so destroying them is always safe. `out` must not be NULL.
 */
int rt_apikey_lookup(const rt_apikey_store_t *store, const char *key, size_t key_len,
                     rt_identity_t *out, char **name_out);

/* Number of keys in the store (0 for NULL). */
size_t rt_apikey_count(const rt_apikey_store_t *store);

#endif
