#include "core/buf.h"

#include <stdlib.h>
#include <string.h>

/* Smallest block worth allocating: one small frame or a short HTTP answer
 * fits without a second allocation. */
#define BUF_MIN_CAP 256

static size_t grown_capacity(size_t need)
{
    size_t cap = BUF_MIN_CAP;
    while (cap < need)
        cap *= 2;
    return cap;
}

int wsg_buf_append(wsg_buf **bp, const void *src, size_t len)
{
    wsg_buf *b = *bp;
    if (len == 0)
        return 0;
    if (b == NULL) {
        if (len > WSG_BUF_MAX)
            return -1;
        size_t cap = grown_capacity(len);
        b = malloc(sizeof(*b) + cap);
        if (b == NULL)
            return -1;
        b->head = 0;
        b->tail = 0;
        b->cap = (uint32_t)cap;
        *bp = b;
    } else if ((size_t)(b->cap - b->tail) < len) {
        size_t used = b->tail - b->head;
        if (len > WSG_BUF_MAX - used)
            return -1;
        if (used + len <= b->cap / 2) {
            /* Plenty of room once the consumed front is reclaimed. */
            memmove(b->data, b->data + b->head, used);
        } else {
            size_t cap = grown_capacity(used + len);
            wsg_buf *nb = malloc(sizeof(*nb) + cap);
            if (nb == NULL)
                return -1;
            memcpy(nb->data, b->data + b->head, used);
            nb->cap = (uint32_t)cap;
            free(b);
            b = nb;
            *bp = b;
        }
        b->head = 0;
        b->tail = (uint32_t)used;
    }
    memcpy(b->data + b->tail, src, len);
    b->tail += (uint32_t)len;
    return 0;
}

void wsg_buf_consume(wsg_buf **bp, size_t n)
{
    wsg_buf *b = *bp;
    if (b == NULL)
        return;
    b->head += (uint32_t)n;
    if (b->head >= b->tail)
        wsg_buf_free(bp);
}

void wsg_buf_free(wsg_buf **bp)
{
    free(*bp);
    *bp = NULL;
}
