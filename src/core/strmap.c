/* String-keyed index; see strmap.h for the rules. */
#include "strmap.h"

#include <string.h>

#include "alloc.h"
#include "errors.h"
#include "hash.h"

#define STRMAP_MIN_CAP 8 /* first slot array; power of two */

static unsigned char fold_byte(unsigned char c, int fold) {
  return fold && c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

/* FNV-1a from the seed over the (folded) bytes, then the MurmurHash3 finalizer (hash.h). */
uint64_t rt_strmap_hash(uint64_t seed, const char *key, size_t klen, int fold) {
  if (!fold) return rt_hash_bytes(seed, key, klen);
  uint64_t h = RT_FNV_OFFSET ^ seed;
  for (size_t i = 0; i < klen; i++) {
    h ^= fold_byte((unsigned char)key[i], 1);
    h *= RT_FNV_PRIME;
  }
  return rt_hash_mix(h);
}

static int keys_equal(const char *a, const char *b, size_t n, int fold) {
  if (!fold) return memcmp(a, b, n) == 0;
  for (size_t i = 0; i < n; i++)
    if (fold_byte((unsigned char)a[i], 1) != fold_byte((unsigned char)b[i], 1)) return 0;
  return 1;
}

void rt_strmap_init(rt_strmap_t *m, uint64_t seed, int fold) {
  memset(m, 0, sizeof(*m));
  m->seed = seed;
  m->fold = fold;
}

void rt_strmap_destroy(rt_strmap_t *m) {
  rt_free(m->slots);
  m->slots = NULL;
  m->cap = m->count = 0;
}

/* The slot holding key, or SIZE_MAX. */
static size_t find_slot(const rt_strmap_t *m, const char *key, size_t klen, uint64_t h) {
  size_t mask = m->cap - 1;
  for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
    const rt_strmap_slot_t *s = &m->slots[i];
    if (s->val == NULL) return SIZE_MAX;
    if (s->hash == h && s->klen == klen && keys_equal(s->key, key, klen, m->fold)) return i;
  }
}

void *rt_strmap_find(const rt_strmap_t *m, const char *key, size_t klen) {
  if (m->count == 0) return NULL;
  size_t i = find_slot(m, key, klen, rt_strmap_hash(m->seed, key, klen, m->fold));
  return i == SIZE_MAX ? NULL : m->slots[i].val;
}

static void place(rt_strmap_slot_t *slots, size_t cap, const rt_strmap_slot_t *s) {
  size_t i = (size_t)s->hash & (cap - 1);
  while (slots[i].val != NULL) i = (i + 1) & (cap - 1);
  slots[i] = *s;
}

int rt_strmap_reserve(rt_strmap_t *m) {
  if ((m->count + 1) * 2 <= m->cap) return 0;
  size_t ncap = m->cap ? m->cap * 2 : STRMAP_MIN_CAP;
  rt_strmap_slot_t *ns = rt_calloc(ncap, sizeof(*ns));
  if (ns == NULL) return RT_ENOMEM;
  for (size_t i = 0; i < m->cap; i++)
    if (m->slots[i].val != NULL) place(ns, ncap, &m->slots[i]);
  rt_free(m->slots);
  m->slots = ns;
  m->cap = ncap;
  return 0;
}

void rt_strmap_insert(rt_strmap_t *m, const char *key, size_t klen, void *val) {
  rt_strmap_slot_t s = {rt_strmap_hash(m->seed, key, klen, m->fold), key, klen, val};
  place(m->slots, m->cap, &s);
  m->count++;
}

/* Backward-shift deletion: later entries of the probe run move into the hole. */
void rt_strmap_remove(rt_strmap_t *m, const char *key, size_t klen) {
  if (m->count == 0) return;
  size_t mask = m->cap - 1;
  size_t hole = find_slot(m, key, klen, rt_strmap_hash(m->seed, key, klen, m->fold));
  if (hole == SIZE_MAX) return;
  for (size_t j = (hole + 1) & mask; m->slots[j].val != NULL; j = (j + 1) & mask) {
    size_t home = (size_t)m->slots[j].hash & mask;
    if (((j - home) & mask) >= ((j - hole) & mask)) {
      m->slots[hole] = m->slots[j];
      hole = j;
    }
  }
  m->slots[hole].val = NULL;
  m->count--;
}
