#include "core/pool.h"

#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#define SLAB_BYTES (256 * 1024)
/* madvise works on whole pages; 4 KiB is the smallest page Linux has. */
#define PAGE 4096

typedef struct free_slot {
    struct free_slot *next;
} free_slot;

struct wsg_slab {
    wsg_slab *next;
    wsg_slab *prev;
    free_slot *free;
    size_t used;
    int fresh; /* slots not threaded yet (new, or pages given back) */
};

/* Slots start after the header, 16-byte aligned. */
static size_t header_size(void)
{
    return (sizeof(wsg_slab) + 15) & ~(size_t)15;
}

void wsg_pool_init(wsg_pool *p, size_t object_size)
{
    memset(p, 0, sizeof(*p));
    p->object_size = object_size;
    p->slot_size = (sizeof(wsg_slab *) + object_size + 15) & ~(size_t)15;
    p->per_slab = (SLAB_BYTES - header_size()) / p->slot_size;
    if (p->per_slab == 0)
        p->per_slab = 1;
}

static size_t slab_bytes(const wsg_pool *p)
{
    return header_size() + p->per_slab * p->slot_size;
}

static void unlink_slab(wsg_pool *p, wsg_slab *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        p->slabs = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->next = s->prev = NULL;
}

static void push_front(wsg_pool *p, wsg_slab *s)
{
    s->prev = NULL;
    s->next = p->slabs;
    if (p->slabs)
        p->slabs->prev = s;
    p->slabs = s;
}

static wsg_slab *new_slab(wsg_pool *p)
{
    void *mem = mmap(NULL, slab_bytes(p), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                     0);
    if (mem == MAP_FAILED)
        return NULL;
    wsg_slab *s = mem;
    s->used = 0;
    s->fresh = 1;
    push_front(p, s);
    p->slab_count++;
    return s;
}

/* Threads the slots in address order, so the first ones are used first
 * and a quiet pool touches few pages. */
static void thread_slots(wsg_pool *p, wsg_slab *s)
{
    uint8_t *slots = (uint8_t *)s + header_size();
    s->free = NULL;
    for (size_t i = p->per_slab; i > 0; i--) {
        free_slot *f = (free_slot *)(slots + (i - 1) * p->slot_size);
        f->next = s->free;
        s->free = f;
    }
    s->fresh = 0;
}

void wsg_pool_deinit(wsg_pool *p)
{
    while (p->slabs) {
        wsg_slab *s = p->slabs;
        unlink_slab(p, s);
        munmap(s, slab_bytes(p));
    }
    p->slab_count = 0;
}

void *wsg_pool_get(wsg_pool *p)
{
    wsg_slab *s = p->slabs;
    if (s == NULL || (s->free == NULL && !s->fresh))
        s = new_slab(p);
    if (s == NULL)
        return NULL;
    if (s->fresh)
        thread_slots(p, s);
    free_slot *f = s->free;
    /* a slab here has a free slot: it has one listed, or is fresh and thread_slots listed them. */
    // NOLINTNEXTLINE(clang-analyzer-core.NullDereference)
    s->free = f->next;
    s->used++;
    if (s->free == NULL && s->next) {
        /* Full: behind the slabs that still have room. */
        unlink_slab(p, s);
        wsg_slab *tail = p->slabs;
        while (tail->next)
            tail = tail->next;
        tail->next = s;
        s->prev = tail;
    }
    uint8_t *slot = (uint8_t *)f;
    *(wsg_slab **)slot = s;
    void *object = slot + sizeof(wsg_slab *);
    memset(object, 0, p->object_size);
    return object;
}

void wsg_pool_put(wsg_pool *p, void *object)
{
    if (object == NULL)
        return;
    uint8_t *slot = (uint8_t *)object - sizeof(wsg_slab *);
    wsg_slab *s = *(wsg_slab **)slot;
    free_slot *f = (free_slot *)slot;
    f->next = s->free;
    s->free = f;
    s->used--;
    if (s != p->slabs) {
        /* It has room again: to the front. */
        unlink_slab(p, s);
        push_front(p, s);
    }
    /* An empty slab goes back when another one still has room, so one
     * half-used slab absorbs the next burst without a map and unmap. */
    if (s->used == 0 && s->next && (s->next->free || s->next->fresh)) {
        unlink_slab(p, s);
        munmap(s, slab_bytes(p));
        p->slab_count--;
    } else if (s->used == 0) {
        /* The slab that stays gives its pages back; they come back zeroed
         * on the next burst. */
        uintptr_t at = (uintptr_t)s;
        size_t from = ((at + header_size() + PAGE - 1) & ~(uintptr_t)(PAGE - 1)) - at;
        size_t to = ((at + slab_bytes(p)) & ~(uintptr_t)(PAGE - 1)) - at;
        if (to > from)
            madvise((char *)s + from, to - from, MADV_DONTNEED);
        s->free = NULL;
        s->fresh = 1;
    }
}
