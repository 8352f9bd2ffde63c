#include "auth_apikey.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <string.h>

#include "alloc.h"
#include "perm.h"
#include "realtime/realtime.h"

#define DIGEST_LEN 32
#define MIN_BUCKETS 16
#define USER_PREFIX "apikey:"
#define USER_PREFIX_LEN (sizeof(USER_PREFIX) - 1)

/* One key. There is deliberately no field that could hold the key's bytes. */
typedef struct entry_s {
  struct entry_s *next;             /* next entry in the same bucket */
  unsigned char digest[DIGEST_LEN]; /* SHA-256 of the key */
  char *name;                       /* configured name, rt_malloc'd */
  rt_identity_t identity;           /* user_id "apikey:<name>" and permissions, copied out by lookups */
} entry_t;

struct rt_apikey_store_s {
  entry_t **buckets; /* chains, indexed by the digest's first bytes */
  size_t nbuckets;   /* a power of two, at least MIN_BUCKETS */
  size_t count;      /* keys stored */
};

/*
 * One-shot EVP_Digest: OpenSSL cleanses its internal hashing state when it
 * frees the context, and we copy the key nowhere, so after this returns the
 * only trace of the key in the process is the caller's own buffer.
 */
static int hash_key(const char *key, size_t len, unsigned char digest[DIGEST_LEN]) {
  unsigned int out_len = 0;
  if (EVP_Digest(key, len, digest, &out_len, EVP_sha256(), NULL) != 1 || out_len != DIGEST_LEN)
    return RT_ENOMEM;
  return 0;
}

static size_t bucket_index(const unsigned char *digest, size_t nbuckets) {
  uint64_t h;
  memcpy(&h, digest, sizeof(h));
  return (size_t)(h & (nbuckets - 1));
}

/*
 * Returns the link that points at the entry with this digest, or the NULL
 * link ending its bucket. Digests are compared with CRYPTO_memcmp so the
 * time taken does not depend on how many leading bytes agree.
 */
static entry_t **find_link(const rt_apikey_store_t *s, const unsigned char *digest) {
  entry_t **link = &s->buckets[bucket_index(digest, s->nbuckets)];
  while (*link != NULL && CRYPTO_memcmp((*link)->digest, digest, DIGEST_LEN) != 0)
    link = &(*link)->next;
  return link;
}

static void free_entry(entry_t *e) {
  rt_identity_destroy(&e->identity);
  rt_free(e->name);
  rt_free(e);
}

/*
 * Builds an entry with its own copies of the name and permissions. The
 * permissions go through rt_identity_copy from a borrowed view, so there is
 * one deep-copy routine for identities; the view is only read.
 */
static entry_t *new_entry(const unsigned char *digest, const char *name, const char *const *perms,
                          size_t n) {
  entry_t *e = rt_calloc(1, sizeof(*e));
  if (e == NULL) return NULL;
  memcpy(e->digest, digest, DIGEST_LEN);
  size_t name_len = strlen(name);
  char *user_id = rt_malloc(USER_PREFIX_LEN + name_len + 1);
  e->name = rt_strndup(name, name_len);
  rt_identity_t view = {NULL, n > 0 ? (char **)perms : NULL, n, 0};
  if (user_id == NULL || e->name == NULL || rt_identity_copy(&e->identity, &view) != 0) {
    rt_free(user_id);
    free_entry(e);
    return NULL;
  }
  memcpy(user_id, USER_PREFIX, USER_PREFIX_LEN);
  memcpy(user_id + USER_PREFIX_LEN, name, name_len + 1);
  e->identity.user_id = user_id;
  return e;
}

/*
 * Doubles the table once it holds as many keys as buckets. A failed
 * allocation is not an error: the table keeps working with longer chains
 * and tries again on the next add.
 */
static void grow(rt_apikey_store_t *s) {
  if (s->count < s->nbuckets) return;
  size_t n = s->nbuckets * 2;
  entry_t **buckets = rt_calloc(n, sizeof(*buckets));
  if (buckets == NULL) return;
  for (size_t i = 0; i < s->nbuckets; i++) {
    while (s->buckets[i] != NULL) {
      entry_t *e = s->buckets[i];
      s->buckets[i] = e->next;
      size_t b = bucket_index(e->digest, n);
      e->next = buckets[b];
      buckets[b] = e;
    }
  }
  rt_free(s->buckets);
  s->buckets = buckets;
  s->nbuckets = n;
}

rt_apikey_store_t *rt_apikey_store_new(void) {
  rt_apikey_store_t *s = rt_calloc(1, sizeof(*s));
  if (s == NULL) return NULL;
  s->buckets = rt_calloc(MIN_BUCKETS, sizeof(*s->buckets));
  if (s->buckets == NULL) {
    rt_free(s);
    return NULL;
  }
  s->nbuckets = MIN_BUCKETS;
  return s;
}

void rt_apikey_store_free(rt_apikey_store_t *store) {
  if (store == NULL) return;
  for (size_t i = 0; i < store->nbuckets; i++) {
    while (store->buckets[i] != NULL) {
      entry_t *e = store->buckets[i];
      store->buckets[i] = e->next;
      free_entry(e);
    }
  }
  rt_free(store->buckets);
  rt_free(store);
}

int rt_apikey_name_valid(const char *name) {
  if (name == NULL) return 0;
  size_t len = strnlen(name, RT_APIKEY_NAME_MAX + 1);
  if (len == 0 || len > RT_APIKEY_NAME_MAX) return 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)name[i];
    if (c < 0x20 || c == 0x7f) return 0;
  }
  return 1;
}

static int perms_valid(const char *const *perms, size_t n) {
  if (n > 0 && perms == NULL) return 0;
  for (size_t i = 0; i < n; i++)
    if (!rt_perm_valid(perms[i])) return 0;
  return 1;
}

/*
 * Everything that can fail (validation, hashing, the duplicate check, the
 * entry's allocations) happens before the store is touched, so an error
 * leaves it exactly as it was.
 */
int rt_apikey_add(rt_apikey_store_t *store, const char *key, size_t key_len, const char *name,
                  const char *const *perms, size_t n) {
  if (store == NULL || key == NULL || key_len == 0) return RT_EINVAL;
  if (!rt_apikey_name_valid(name) || !perms_valid(perms, n)) return RT_EINVAL;
  unsigned char digest[DIGEST_LEN];
  int rc = hash_key(key, key_len, digest);
  if (rc != 0) return rc;
  if (*find_link(store, digest) != NULL) return RT_EEXIST;
  entry_t *e = new_entry(digest, name, perms, n);
  if (e == NULL) return RT_ENOMEM;
  grow(store);
  size_t b = bucket_index(digest, store->nbuckets);
  e->next = store->buckets[b];
  store->buckets[b] = e;
  store->count++;
  return 0;
}

int rt_apikey_revoke(rt_apikey_store_t *store, const char *key, size_t key_len) {
  if (store == NULL) return RT_EINVAL;
  if (key == NULL || key_len == 0) return RT_ENOENT;
  unsigned char digest[DIGEST_LEN];
  int rc = hash_key(key, key_len, digest);
  if (rc != 0) return rc;
  entry_t **link = find_link(store, digest);
  if (*link == NULL) return RT_ENOENT;
  entry_t *e = *link;
  *link = e->next;
  free_entry(e);
  store->count--;
  return 0;
}

int rt_apikey_lookup(const rt_apikey_store_t *store, const char *key, size_t key_len,
                     rt_identity_t *out, char **name_out) {
  memset(out, 0, sizeof(*out));
  if (name_out != NULL) *name_out = NULL;
  if (store == NULL || key == NULL || key_len == 0) return RT_ETOKEN;
  unsigned char digest[DIGEST_LEN];
  int rc = hash_key(key, key_len, digest);
  if (rc != 0) return rc;
  const entry_t *e = *find_link(store, digest);
  if (e == NULL) return RT_ETOKEN;
  if (rt_identity_copy(out, &e->identity) != 0) return RT_ENOMEM;
  if (name_out != NULL && (*name_out = rt_strdup(e->name)) == NULL) {
    rt_identity_destroy(out);
    return RT_ENOMEM;
  }
  return 0;
}

size_t rt_apikey_count(const rt_apikey_store_t *store) { return store != NULL ? store->count : 0; }
