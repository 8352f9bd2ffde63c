/*
 * A string-keyed index: open addressing with linear probing, at most half
 * full, backward-shift deletion (no tombstones), keys hashed with the
 * library's seeded hash (hash.h), optionally ASCII-case-insensitive.
 *
 * The map borrows its keys: each entry's key bytes must live, unchanged, as
 * long as the entry (in practice the key is stored inside the value). Values
 * are non-NULL pointers the map never frees. Inserting cannot fail once
 * rt_strmap_reserve succeeded, so a caller can allocate, reserve, then insert
 * without an undo path. Loop-thread data: no locking.
 */
#ifndef RT_CORE_STRMAP_H
#define RT_CORE_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  uint64_t hash;   /* hash of the key, kept for probing and growth */
  const char *key; /* the key bytes, borrowed */
  size_t klen;     /* bytes of key */
  void *val;       /* the indexed object; NULL = empty slot */
} rt_strmap_slot_t;

typedef struct {
  rt_strmap_slot_t *slots; /* NULL until the first reserve */
  size_t cap;              /* slots, a power of two (0 before the first reserve) */
  size_t count;            /* used slots */
  uint64_t seed;           /* hash seed */
  int fold;                /* keys compare ASCII-case-insensitively */
} rt_strmap_t;

/* An empty map (no allocation). */
void rt_strmap_init(rt_strmap_t *m, uint64_t seed, int fold);
/* Frees the slot array (not the values); the map is empty and reusable after. */
void rt_strmap_destroy(rt_strmap_t *m);

/* The value stored under key, or NULL. */
void *rt_strmap_find(const rt_strmap_t *m, const char *key, size_t klen);
/* Makes room for one more entry: 0, or RT_ENOMEM with the map unchanged. */
int rt_strmap_reserve(rt_strmap_t *m);
/* Inserts after a successful reserve; key must not be present. val != NULL. */
void rt_strmap_insert(rt_strmap_t *m, const char *key, size_t klen, void *val);
/* Removes key, which must be present. */
void rt_strmap_remove(rt_strmap_t *m, const char *key, size_t klen);

/* Iteration: for (i = 0; i < m->cap; i++) if (m->slots[i].val) ... (no insert/remove meanwhile). */

/* The map's hash of key (exposed for seeding other tables from entropy). */
uint64_t rt_strmap_hash(uint64_t seed, const char *key, size_t klen, int fold);

#endif
