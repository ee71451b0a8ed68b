/* Random bytes for masking keys, handshake keys and ping tokens, drawn from
 * OpenSSL's CSPRNG in batches so that a frame costs a copy, not a call.
 *
 * One wsg_rand per thread; it is not shared, so it needs no lock. RFC 6455
 * section 5.3 wants masking keys unpredictable: OpenSSL's DRBG gives that.
 */
#ifndef WSG_CORE_RAND_H
#define WSG_CORE_RAND_H

#include <stddef.h>
#include <stdint.h>

#define WSG_RAND_POOL 512

typedef struct wsg_rand {
    uint32_t pos; /* next unused byte; WSG_RAND_POOL when empty */
    uint8_t pool[WSG_RAND_POOL];
} wsg_rand;

/* Starts empty: the first draw fills the pool. */
void wsg_rand_init(wsg_rand *r);

/* Fills out with n random bytes. Aborts if the system CSPRNG fails, since
 * predictable keys would silently weaken every connection. */
void wsg_rand_bytes(wsg_rand *r, void *out, size_t n);

#endif
