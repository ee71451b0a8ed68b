#include "core/bucket.h"

#include <math.h>

bool wsg_bucket_take(wsg_bucket *b, double rate, double burst, uint64_t now_ms, uint32_t *wait_ms)
{
    uint32_t elapsed = (uint32_t)now_ms - b->at_ms;
    double tokens = b->tokens + (double)elapsed * rate / 1000.0;
    if (tokens > burst)
        tokens = burst;
    b->at_ms = (uint32_t)now_ms;
    if (tokens >= 1.0) {
        b->tokens = (float)(tokens - 1.0);
        return true;
    }
    b->tokens = (float)tokens;
    if (wait_ms)
        *wait_ms = rate > 0 ? (uint32_t)ceil((1.0 - tokens) * 1000.0 / rate) : UINT32_MAX;
    return false;
}
