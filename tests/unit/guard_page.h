/* Test helper: puts a parser's input so that it ends right before an
 * unreadable page, so reading one byte too far crashes the test instead of
 * passing unnoticed (STYLE.md, habit 2; picohttpparser's test.c).
 *
 *   base                                   base + cap
 *   |  ... unused ...  | input (n bytes)  | PROT_NONE page |
 *                      ^ guard_page_put()
 */
#ifndef WSG_TEST_GUARD_PAGE_H
#define WSG_TEST_GUARD_PAGE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct guard_page {
    uint8_t *base; /* start of the mapping */
    size_t cap;    /* readable and writable bytes before the guard page */
    size_t map_len;
} guard_page;

/* Maps room for at least cap bytes followed by one PROT_NONE page. Aborts
 * on failure: a test without its guard would prove nothing. */
static inline void guard_page_init(guard_page *g, size_t cap)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t usable = (cap + page - 1) / page * page;
    if (usable == 0)
        usable = page;
    g->map_len = usable + page;
    g->base = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g->base == MAP_FAILED || mprotect(g->base + usable, page, PROT_NONE) != 0) {
        perror("guard_page_init");
        abort();
    }
    g->cap = usable;
}

static inline void guard_page_deinit(guard_page *g)
{
    munmap(g->base, g->map_len);
    g->base = NULL;
}

/* Where n bytes start when they end at the guard page. */
static inline uint8_t *guard_page_end(guard_page *g, size_t n)
{
    if (n > g->cap) {
        fprintf(stderr, "guard_page: %zu bytes do not fit in %zu\n", n, g->cap);
        abort();
    }
    return g->base + g->cap - n;
}

/* Copies n bytes to end at the guard page and returns where they start.
 * src may itself lie in the mapping. */
static inline uint8_t *guard_page_put(guard_page *g, const void *src, size_t n)
{
    uint8_t *p = guard_page_end(g, n);
    if (n > 0)
        memmove(p, src, n);
    return p;
}

#endif
