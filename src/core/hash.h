/* A 64-bit hash with good spread for short keys (FNV-1a, then a finaliser
 * that mixes every bit into every other): consistent hashing, the session
 * table, the per-address table. Not for secrets. */
#ifndef WSG_CORE_HASH_H
#define WSG_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t wsg_hash(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    /* FNV alone clusters keys that differ in their last bytes ("c1",
     * "c2", ...); this finaliser spreads them. */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

#endif
