/* Load-balancing policies: one file per algorithm behind one small ops
 * struct (STYLE.md, habit 10). A policy sees plain nodes (a name, a load, a
 * weight), never backends or sockets, so each is tested on its own.
 *
 * The registry calls a policy under its own lock: a policy's state needs no
 * locking of its own.
 */
#ifndef WSG_BALANCE_H
#define WSG_BALANCE_H

#include <stddef.h>
#include <stdint.h>

#include "core/str.h"

/* A backend as a policy sees it. */
typedef struct wsg_balance_node {
    wsg_str id;       /* stable name: consistent hashing places it by this */
    uint32_t index;   /* position in the service's full list (see rebuild) */
    uint32_t load;    /* sessions on it now */
    uint32_t weight;  /* relative capacity, at least 1 */
} wsg_balance_node;

typedef struct wsg_balance_params {
    double load_factor; /* consistent hashing: no node above this x average */
} wsg_balance_params;

typedef struct wsg_balancer_ops {
    const char *name;
    /* Returns the policy's state for one service; aborts on out-of-memory
     * (control plane). */
    void *(*create)(const wsg_balance_params *params);
    void (*destroy)(void *state);
    /* The service's members changed: `all` is the full list, each node's
     * index its position. */
    void (*rebuild)(void *state, const wsg_balance_node *all, size_t n);
    /* Chooses one of the n > 0 eligible nodes (a subset of the last rebuild,
     * in list order) for a new session with sticky key `key` (empty when the
     * client has none); `rnd` is a fresh random number. Returns an index
     * into `eligible`. */
    size_t (*pick)(void *state, const wsg_balance_node *eligible, size_t n, wsg_str key,
                   uint64_t rnd);
} wsg_balancer_ops;

extern const wsg_balancer_ops wsg_balance_round_robin;
extern const wsg_balancer_ops wsg_balance_least_conn;
extern const wsg_balancer_ops wsg_balance_p2c;
extern const wsg_balancer_ops wsg_balance_chash;

/* Finds a policy by name: "round-robin", "least-connections",
 * "power-of-two", "consistent-hash". NULL when unknown. */
const wsg_balancer_ops *wsg_balance_find(const char *name);

/* The names, comma-separated, for messages. */
const char *wsg_balance_names(void);

/* The least loaded of n > 0 nodes (load per weight); among equals, the
 * `turn`-th (mod their number), so ties share evenly when turn counts up. */
size_t wsg_balance_least_loaded(const wsg_balance_node *nodes, size_t n, uint64_t turn);

/* Compares load per weight: <0 when a is less loaded than b. */
int wsg_balance_cmp_load(const wsg_balance_node *a, const wsg_balance_node *b);

/* The hash consistent hashing places nodes and keys with (core/hash.h). */
uint64_t wsg_balance_hash(const void *p, size_t n);

#endif
