/* Byte buffers: the one buffer type of wsgate.
 *
 * A wsg_buf is a single heap block holding its header and its bytes:
 *
 *     +------+------+-----+----------------------------------------+
 *     | head | tail | cap | data[0 .. cap)                         |
 *     +------+------+-----+----------------------------------------+
 *                          ^ consumed  ^ head    ^ tail      ^ cap
 *                                      [ readable )[ writable )
 *
 * Invariants: 0 <= head <= tail <= cap. Readable bytes are data[head, tail).
 * A connection with nothing pending holds no wsg_buf at all (the pointer is
 * NULL): that is what keeps an idle connection small. Functions that take a
 * `wsg_buf **` create the buffer on first use and free it when it empties.
 *
 * Allocation failures are reported, never fatal: a buffer belongs to one
 * connection, and only that connection fails (see STYLE.md, habit 9).
 */
#ifndef WSG_CORE_BUF_H
#define WSG_CORE_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct wsg_buf {
    uint32_t head;
    uint32_t tail;
    uint32_t cap;
    uint8_t data[];
} wsg_buf;

/* Largest buffer: capacities are powers of two that fit the 32-bit fields.
 * Callers bound themselves far below. */
#define WSG_BUF_MAX ((size_t)1 << 31)

static inline size_t wsg_buf_len(const wsg_buf *b)
{
    return b ? b->tail - b->head : 0;
}

static inline uint8_t *wsg_buf_begin(wsg_buf *b)
{
    return b->data + b->head;
}

/* Appends len bytes, creating or growing *bp as needed.
 * Returns 0, or -1 when memory is exhausted or the size would pass
 * WSG_BUF_MAX; *bp is then unchanged. */
int wsg_buf_append(wsg_buf **bp, const void *src, size_t len);

/* Drops n readable bytes from the front; frees the buffer and sets *bp to
 * NULL when it becomes empty. n must not exceed wsg_buf_len(*bp). */
void wsg_buf_consume(wsg_buf **bp, size_t n);

/* Frees the buffer (NULL is fine) and sets *bp to NULL. */
void wsg_buf_free(wsg_buf **bp);

#endif
