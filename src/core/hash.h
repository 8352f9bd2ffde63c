/*
 * The string hash of every table in the library (hub channels, presence,
 * per-IP counts, live-query tables): FNV-1a started from a per-table seed,
 * then the MurmurHash3 64-bit finalizer. FNV-1a alone leaves the low bits
 * (which pick the slot in a power-of-two table) depending only on the low
 * bits of the input; the finalizer spreads every bit into them. The seed
 * makes a set of colliding keys prepared in advance unlikely to collide in
 * a given table, though this is not a keyed PRF like SipHash: the defences
 * in depth are the caps on what a client can insert (subscriptions,
 * connections per address).
 */
#ifndef RT_CORE_HASH_H
#define RT_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>

#define RT_FNV_OFFSET 0xcbf29ce484222325ULL
#define RT_FNV_PRIME 0x100000001b3ULL

/* MurmurHash3's fmix64. */
static inline uint64_t rt_hash_mix(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

static inline uint64_t rt_hash_bytes(uint64_t seed, const char *s, size_t n) {
  uint64_t h = RT_FNV_OFFSET ^ seed;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)s[i];
    h *= RT_FNV_PRIME;
  }
  return rt_hash_mix(h);
}

#endif
