/* A token bucket: `rate` tokens a second up to `burst`, time passed in
 * (STYLE.md, habit 11). Used for the rate limits per address and per
 * connection. */
#ifndef WSG_CORE_BUCKET_H
#define WSG_CORE_BUCKET_H

#include <stdbool.h>
#include <stdint.h>

typedef struct wsg_bucket {
    float tokens;
    uint32_t at_ms; /* when tokens was last brought up to date (wraps: fine for deltas) */
} wsg_bucket;

/* A full bucket at now_ms. */
static inline void wsg_bucket_init(wsg_bucket *b, double burst, uint64_t now_ms)
{
    b->tokens = (float)burst;
    b->at_ms = (uint32_t)now_ms;
}

/* Takes one token if there is one. Returns true when taken; otherwise
 * *wait_ms (when not NULL) says how long until one is there. */
bool wsg_bucket_take(wsg_bucket *b, double rate, double burst, uint64_t now_ms,
                     uint32_t *wait_ms);

#endif
