/* A pool of same-sized objects in slabs of their own, for the state that
 * lives only while a connection upgrades.
 *
 * Handshakes borrow several kilobytes each and give them back a moment
 * later. From the general heap, those blocks would sit between the small
 * objects that stay (a session, a bridge), and once freed leave holes that
 * no page release can reclaim: the idle connections would seem to weigh
 * what their handshakes did. Slabs are mapped apart from the heap, reused
 * while busy, and unmapped when a burst is over (all but one, to absorb the
 * next).
 *
 *   slab: [header | slot | slot | ... ]     slot: [slab * | object]
 *
 * One pool per thread: no locking.
 */
#ifndef WSG_CORE_POOL_H
#define WSG_CORE_POOL_H

#include <stddef.h>

typedef struct wsg_slab wsg_slab;

typedef struct wsg_pool {
    size_t object_size;
    size_t slot_size;
    size_t per_slab;
    wsg_slab *slabs;   /* slabs with at least one free slot first */
    size_t slab_count;
} wsg_pool;

void wsg_pool_init(wsg_pool *p, size_t object_size);

/* Unmaps every slab; objects still out are gone with them. */
void wsg_pool_deinit(wsg_pool *p);

/* A zeroed object, or NULL when memory ran out. */
void *wsg_pool_get(wsg_pool *p);

/* Gives an object back (NULL is fine). */
void wsg_pool_put(wsg_pool *p, void *object);

#endif
