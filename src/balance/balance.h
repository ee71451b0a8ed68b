/* Load-balancing policies: one file per algorithm behind one small ops
 * struct (STYLE.md, habit 10). A policy sees only the backends that are
 * eligible right now and the sticky key; it never touches sockets, so each
 * is tested on its own. */
#ifndef WSG_BALANCE_H
#define WSG_BALANCE_H

#include <stddef.h>

#include "core/str.h"

struct wsg_backend;

typedef struct wsg_balancer_ops {
    const char *name;
    /* Returns the policy's state for one service; aborts on out-of-memory
     * (control plane). */
    void *(*create)(void);
    void (*destroy)(void *state);
    /* Chooses one of n (n > 0) eligible backends; `key` is the sticky key,
     * empty when the client has none. Safe to call from several threads at
     * once. Returns an index below n. */
    size_t (*pick)(void *state, struct wsg_backend *const *eligible, size_t n, wsg_str key);
} wsg_balancer_ops;

extern const wsg_balancer_ops wsg_balance_round_robin;

/* Finds a policy by name ("round-robin"); NULL when unknown. */
const wsg_balancer_ops *wsg_balance_find(const char *name);

#endif
