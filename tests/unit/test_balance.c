/* Unit tests for src/balance: each policy is driven through its ops struct
 * over plain nodes, with loads and random numbers passed in, so nothing
 * here opens a socket or reads a clock (STYLE.md, habits 10 and 11).
 *
 * Simulations assign keys one at a time and count each session on the node
 * that took it, as the registry does; random numbers come from a seeded
 * splitmix64, so every run picks the same way. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "balance/balance.h"

#define MAX_NODES 320
#define ID_LEN 32
#define SIM_KEYS 10000

typedef struct cluster {
    wsg_balance_node nodes[MAX_NODES];
    char ids[MAX_NODES][ID_LEN];
    size_t n;
} cluster;

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Nodes "node-0".."node-(n-1)", weight 1, no load, each index its
 * position. */
static void cluster_init(cluster *c, size_t n)
{
    assert_true(n <= MAX_NODES);
    memset(c, 0, sizeof(*c));
    c->n = n;
    for (size_t i = 0; i < n; i++) {
        snprintf(c->ids[i], ID_LEN, "node-%zu", i);
        c->nodes[i] = (wsg_balance_node){wsg_str_cstr(c->ids[i]), (uint32_t)i, 0, 1};
    }
}

static wsg_str key_of(char *buf, size_t size, size_t k)
{
    int len = snprintf(buf, size, "c%zu", k);
    return wsg_str_make(buf, (size_t)len);
}

static void *policy_new(const wsg_balancer_ops *ops, double load_factor)
{
    wsg_balance_params params = {.load_factor = load_factor};
    void *state = ops->create(&params);
    assert_non_null(state);
    return state;
}

static size_t pick(const wsg_balancer_ops *ops, void *state, const wsg_balance_node *eligible,
                   size_t n, wsg_str key, uint64_t rnd)
{
    size_t i = ops->pick(state, eligible, n, key, rnd);
    if (i >= n)
        fail_msg("%s picked %zu of %zu eligible nodes", ops->name, i, n);
    return i;
}

/* The id of the node a key lands on, under consistent hashing, with every
 * node of c eligible and its loads as they are. */
static const char *owner_of(void *state, const cluster *c, wsg_str key)
{
    return c->nodes[pick(&wsg_balance_chash, state, c->nodes, c->n, key, 0)].id.p;
}

/* Assigns keys "c0".."c(keys-1)" one by one under consistent hashing with
 * bounded loads (load factor 1.25), counting each on the node it took.
 * Records each key's node id in owner[] (pointers into c->ids) and leaves
 * the final loads in c. Checks the bound after every pick: the chosen node
 * holds at most ceil(1.25 x its weighted share of all sessions). */
static void simulate_chash(cluster *c, size_t keys, const char **owner)
{
    void *state = policy_new(&wsg_balance_chash, 1.25);
    wsg_balance_chash.rebuild(state, c->nodes, c->n);
    uint64_t weight = 0;
    for (size_t i = 0; i < c->n; i++)
        weight += c->nodes[i].weight;
    char buf[32];
    for (size_t k = 0; k < keys; k++) {
        size_t i = pick(&wsg_balance_chash, state, c->nodes, c->n, key_of(buf, sizeof(buf), k), k);
        c->nodes[i].load++;
        owner[k] = c->ids[i];
        double share = 1.25 * (double)(k + 1) * c->nodes[i].weight / (double)weight;
        if ((double)c->nodes[i].load > share + 1.0)
            fail_msg("key %zu put %s at load %u, above its bound %.2f", k, c->ids[i],
                     c->nodes[i].load, share);
    }
    wsg_balance_chash.destroy(state);
}

static double moved_fraction(const char **a, const char **b, size_t keys)
{
    size_t moved = 0;
    for (size_t k = 0; k < keys; k++) {
        if (strcmp(a[k], b[k]) != 0)
            moved++;
    }
    return (double)moved / (double)keys;
}

static void expect_max_load(const cluster *c, double limit)
{
    for (size_t i = 0; i < c->n; i++) {
        if ((double)c->nodes[i].load > limit)
            fail_msg("%s ended at load %u, above %.1f", c->ids[i], c->nodes[i].load, limit);
    }
}

/* ---- the policy table and shared helpers ------------------------------- */

static void test_find_each_policy(void **unused)
{
    (void)unused;
    static const struct {
        const char *name;
        const wsg_balancer_ops *ops;
    } want[] = {
        {"round-robin", &wsg_balance_round_robin},
        {"least-connections", &wsg_balance_least_conn},
        {"power-of-two", &wsg_balance_p2c},
        {"consistent-hash", &wsg_balance_chash},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const wsg_balancer_ops *ops = wsg_balance_find(want[i].name);
        assert_ptr_equal(ops, want[i].ops);
        assert_string_equal(ops->name, want[i].name);
        assert_non_null(ops->create);
        assert_non_null(ops->destroy);
        assert_non_null(ops->rebuild);
        assert_non_null(ops->pick);
        assert_non_null(strstr(wsg_balance_names(), want[i].name));
    }
}

static void test_find_unknown_policy(void **unused)
{
    (void)unused;
    assert_null(wsg_balance_find("random"));
    assert_null(wsg_balance_find(""));
    assert_null(wsg_balance_find("Round-Robin"));
    assert_null(wsg_balance_find("round-robin "));
    assert_null(wsg_balance_find("round"));
    assert_null(wsg_balance_find("consistent-hash-2"));
}

static void test_cmp_load(void **unused)
{
    (void)unused;
    wsg_balance_node a = {WSG_STR("a"), 0, 4, 2};
    wsg_balance_node b = {WSG_STR("b"), 1, 3, 1};
    /* 4/2 < 3/1 */
    assert_true(wsg_balance_cmp_load(&a, &b) < 0);
    assert_true(wsg_balance_cmp_load(&b, &a) > 0);
    /* 6/2 == 3/1 */
    a.load = 6;
    assert_int_equal(wsg_balance_cmp_load(&a, &b), 0);
    /* A weight of 0 counts as 1. */
    a.weight = 0;
    a.load = 3;
    assert_int_equal(wsg_balance_cmp_load(&a, &b), 0);
    /* No overflow at the extremes. */
    a = (wsg_balance_node){WSG_STR("a"), 0, UINT32_MAX, UINT32_MAX};
    b = (wsg_balance_node){WSG_STR("b"), 1, UINT32_MAX - 1, UINT32_MAX};
    assert_true(wsg_balance_cmp_load(&b, &a) < 0);
}

static void test_hash_stable_and_sensitive(void **unused)
{
    (void)unused;
    assert_true(wsg_balance_hash("client-1", 8) == wsg_balance_hash("client-1", 8));
    assert_true(wsg_balance_hash("", 0) == wsg_balance_hash("", 0));
    assert_true(wsg_balance_hash("client-1", 8) != wsg_balance_hash("client-2", 8));
    assert_true(wsg_balance_hash("ab", 2) != wsg_balance_hash("ba", 2));
    assert_true(wsg_balance_hash("a", 1) != wsg_balance_hash("", 0));
    /* Only n bytes count. */
    assert_true(wsg_balance_hash("abc", 2) == wsg_balance_hash("abX", 2));

    /* Keys that differ only in their last byte: all 256 hashes differ, in
     * all 64 bits and in the low 32 the session table uses. */
    static uint64_t seen[256];
    char key[] = "session-key-?";
    size_t len = sizeof(key) - 1;
    for (unsigned v = 0; v < 256; v++) {
        key[len - 1] = (char)v;
        seen[v] = wsg_balance_hash(key, len);
        assert_true(seen[v] == wsg_balance_hash(key, len));
        for (unsigned w = 0; w < v; w++) {
            if (seen[w] == seen[v] || (uint32_t)seen[w] == (uint32_t)seen[v])
                fail_msg("last byte %u and %u hash alike", w, v);
        }
    }
}

/* The finaliser exists so that "c1", "c2", ... spread: their low bits fill
 * 16 buckets evenly. */
static void test_hash_spreads_sequential_keys(void **unused)
{
    (void)unused;
    size_t buckets[16] = {0};
    char buf[32];
    for (size_t k = 0; k < 16000; k++) {
        wsg_str key = key_of(buf, sizeof(buf), k);
        buckets[wsg_balance_hash(key.p, key.len) & 15]++;
    }
    for (size_t b = 0; b < 16; b++) {
        if (buckets[b] < 850 || buckets[b] > 1150)
            fail_msg("bucket %zu holds %zu of 16000 keys", b, buckets[b]);
    }
}

/* ---- round-robin ---------------------------------------------------------- */

static void test_round_robin_cycles_evenly(void **unused)
{
    (void)unused;
    static const size_t sizes[] = {1, 2, 3, 4, 7};
    cluster c;
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        size_t n = sizes[s];
        cluster_init(&c, n);
        void *state = policy_new(&wsg_balance_round_robin, 0);
        wsg_balance_round_robin.rebuild(state, c.nodes, n);
        size_t counts[8] = {0};
        for (size_t k = 0; k < 10001; k++) {
            c.nodes[k % n].load = (uint32_t)(k * 7 % 13); /* ignored */
            counts[pick(&wsg_balance_round_robin, state, c.nodes, n, WSG_STR("key"), k)]++;
        }
        for (size_t i = 0; i < n; i++) {
            for (size_t j = 0; j < n; j++) {
                if (counts[i] > counts[j] + 1)
                    fail_msg("n=%zu: node %zu took %zu, node %zu took %zu", n, i, counts[i], j,
                             counts[j]);
            }
        }
        wsg_balance_round_robin.destroy(state);
    }
}

/* Each node is taken once in every n consecutive picks. */
static void test_round_robin_takes_turns(void **unused)
{
    (void)unused;
    cluster c;
    cluster_init(&c, 5);
    void *state = policy_new(&wsg_balance_round_robin, 0);
    wsg_balance_round_robin.rebuild(state, c.nodes, c.n);
    for (size_t round = 0; round < 20; round++) {
        bool seen[5] = {false};
        for (size_t k = 0; k < 5; k++) {
            size_t i = pick(&wsg_balance_round_robin, state, c.nodes, 5, WSG_STR(""), 0);
            assert_false(seen[i]);
            seen[i] = true;
        }
    }
    wsg_balance_round_robin.destroy(state);
}

/* ---- least-connections ---------------------------------------------------- */

static void test_least_conn_picks_lowest(void **unused)
{
    (void)unused;
    cluster c;
    cluster_init(&c, 4);
    void *state = policy_new(&wsg_balance_least_conn, 0);
    wsg_balance_least_conn.rebuild(state, c.nodes, c.n);
    const uint32_t loads[] = {3, 1, 2, 9};
    for (size_t i = 0; i < 4; i++)
        c.nodes[i].load = loads[i];
    for (size_t k = 0; k < 20; k++)
        assert_int_equal(pick(&wsg_balance_least_conn, state, c.nodes, 4, WSG_STR("k"), k), 1);

    /* Per unit of weight: 8/4 = 2 beats 3/1 and 5/2. */
    const uint32_t weighted_loads[] = {3, 8, 5, 9};
    const uint32_t weights[] = {1, 4, 2, 1};
    for (size_t i = 0; i < 4; i++) {
        c.nodes[i].load = weighted_loads[i];
        c.nodes[i].weight = weights[i];
    }
    for (size_t k = 0; k < 20; k++)
        assert_int_equal(pick(&wsg_balance_least_conn, state, c.nodes, 4, WSG_STR("k"), k), 1);
    wsg_balance_least_conn.destroy(state);
}

static void test_least_conn_spreads_full_tie(void **unused)
{
    (void)unused;
    cluster c;
    cluster_init(&c, 4);
    void *state = policy_new(&wsg_balance_least_conn, 0);
    wsg_balance_least_conn.rebuild(state, c.nodes, c.n);
    size_t counts[4] = {0};
    for (size_t k = 0; k < 4000; k++) {
        for (size_t i = 0; i < 4; i++)
            c.nodes[i].load = 7;
        counts[pick(&wsg_balance_least_conn, state, c.nodes, 4, WSG_STR("k"), 0)]++;
    }
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(counts[i], 1000);
    wsg_balance_least_conn.destroy(state);
}

/* Ties among some of the nodes: the header promises that equal backends
 * share evenly, whatever sits between them in the list. */
static void test_least_conn_spreads_partial_tie(void **unused)
{
    (void)unused;
    cluster c;
    cluster_init(&c, 4);
    void *state = policy_new(&wsg_balance_least_conn, 0);
    wsg_balance_least_conn.rebuild(state, c.nodes, c.n);
    const uint32_t loads[] = {0, 5, 0, 0};
    for (size_t i = 0; i < 4; i++)
        c.nodes[i].load = loads[i];
    size_t counts[4] = {0};
    for (size_t k = 0; k < 3000; k++)
        counts[pick(&wsg_balance_least_conn, state, c.nodes, 4, WSG_STR("k"), 0)]++;
    wsg_balance_least_conn.destroy(state);
    assert_int_equal(counts[1], 0);
    for (size_t i = 0; i < 4; i++) {
        if (i != 1 && (counts[i] < 900 || counts[i] > 1100))
            fail_msg("tied nodes 0, 2, 3 took %zu, %zu, %zu of 3000; want about 1000 each",
                     counts[0], counts[2], counts[3]);
    }
}

/* Counting sessions as they come, a node of weight 2 ends with twice the
 * sessions of a node of weight 1. */
static void test_least_conn_weights(void **unused)
{
    (void)unused;
    cluster c;
    cluster_init(&c, 3);
    c.nodes[1].weight = 2;
    void *state = policy_new(&wsg_balance_least_conn, 0);
    wsg_balance_least_conn.rebuild(state, c.nodes, c.n);
    for (size_t k = 0; k < 8000; k++)
        c.nodes[pick(&wsg_balance_least_conn, state, c.nodes, 3, WSG_STR("k"), k)].load++;
    assert_in_range(c.nodes[0].load, 1998, 2002);
    assert_in_range(c.nodes[1].load, 3996, 4004);
    assert_in_range(c.nodes[2].load, 1998, 2002);
    wsg_balance_least_conn.destroy(state);
}

/* ---- power of two choices ------------------------------------------------- */

static void test_p2c_single_node(void **unused)
{
    (void)unused;
    cluster c;
    cluster_init(&c, 1);
    c.nodes[0].load = 1000;
    void *state = policy_new(&wsg_balance_p2c, 0);
    wsg_balance_p2c.rebuild(state, c.nodes, c.n);
    static const uint64_t rnds[] = {0, 1, 2, 0xffffffffULL, 1ULL << 32, UINT64_MAX};
    for (size_t k = 0; k < sizeof(rnds) / sizeof(rnds[0]); k++)
        assert_int_equal(pick(&wsg_balance_p2c, state, c.nodes, 1, WSG_STR("k"), rnds[k]), 0);
    wsg_balance_p2c.destroy(state);
}

/* With two nodes both are the choices, so the less loaded always wins. */
static void test_p2c_two_nodes(void **unused)
{
    (void)unused;
    cluster c;
    cluster_init(&c, 2);
    void *state = policy_new(&wsg_balance_p2c, 0);
    wsg_balance_p2c.rebuild(state, c.nodes, c.n);
    uint64_t seed = 1;
    for (size_t k = 0; k < 2000; k++) {
        uint64_t rnd = k < 1000 ? k : splitmix64(&seed);
        c.nodes[0].load = 5;
        c.nodes[1].load = 3;
        assert_int_equal(pick(&wsg_balance_p2c, state, c.nodes, 2, WSG_STR("k"), rnd), 1);
        c.nodes[0].load = 3;
        c.nodes[1].load = 5;
        assert_int_equal(pick(&wsg_balance_p2c, state, c.nodes, 2, WSG_STR("k"), rnd), 0);
        /* 4/2 < 3/1 */
        c.nodes[0].load = 4;
        c.nodes[0].weight = 2;
        c.nodes[1].load = 3;
        assert_int_equal(pick(&wsg_balance_p2c, state, c.nodes, 2, WSG_STR("k"), rnd), 0);
        c.nodes[0].weight = 1;
    }
    /* Equal loads: the random number decides, and both get their share. */
    size_t counts[2] = {0};
    c.nodes[0].load = 2;
    c.nodes[1].load = 2;
    for (size_t k = 0; k < 2000; k++)
        counts[pick(&wsg_balance_p2c, state, c.nodes, 2, WSG_STR("k"), splitmix64(&seed))]++;
    assert_in_range(counts[0], 800, 1200);
    wsg_balance_p2c.destroy(state);
}

/* The less loaded of two distinct, uniformly drawn choices: with distinct
 * loads the i-th least loaded of n wins in (n-1-i) of the n(n-1)/2 pairs,
 * and the most loaded never wins. */
static void test_p2c_never_more_loaded_choice(void **unused)
{
    (void)unused;
    cluster c;
    cluster_init(&c, 4);
    const uint32_t loads[] = {3, 0, 2, 1}; /* ranks: node 1, 3, 2, 0 */
    for (size_t i = 0; i < 4; i++)
        c.nodes[i].load = loads[i];
    void *state = policy_new(&wsg_balance_p2c, 0);
    wsg_balance_p2c.rebuild(state, c.nodes, c.n);
    size_t counts[4] = {0};
    uint64_t seed = 42;
    const size_t picks = 60000;
    for (size_t k = 0; k < picks; k++)
        counts[pick(&wsg_balance_p2c, state, c.nodes, 4, WSG_STR("k"), splitmix64(&seed))]++;
    assert_int_equal(counts[0], 0);
    const double want[4] = {0.0, 3.0 / 6, 1.0 / 6, 2.0 / 6};
    for (size_t i = 1; i < 4; i++) {
        double got = (double)counts[i] / (double)picks;
        if (got < want[i] - 0.02 || got > want[i] + 0.02)
            fail_msg("node %zu (load %u) won %.3f of picks, want %.3f", i, loads[i], got, want[i]);
    }
    wsg_balance_p2c.destroy(state);
}

/* A fixed sequence of random numbers gives a fixed sequence of picks, none
 * of them the most loaded node. */
static void test_p2c_deterministic_sequence(void **unused)
{
    (void)unused;
    cluster c;
    cluster_init(&c, 3);
    const uint32_t loads[] = {0, 5, 9};
    for (size_t i = 0; i < 3; i++)
        c.nodes[i].load = loads[i];
    void *a = policy_new(&wsg_balance_p2c, 0);
    void *b = policy_new(&wsg_balance_p2c, 0);
    wsg_balance_p2c.rebuild(a, c.nodes, c.n);
    wsg_balance_p2c.rebuild(b, c.nodes, c.n);
    static const uint64_t edges[] = {0xffffffffULL, 1ULL << 32, (1ULL << 32) + 1,
                                     3ULL << 32,    UINT64_MAX, UINT64_MAX - 1};
    size_t first[1000 + 6];
    size_t counts[3] = {0};
    for (size_t k = 0; k < 1006; k++) {
        uint64_t rnd = k < 1000 ? (uint64_t)k * 0x10000000fULL : edges[k - 1000];
        first[k] = pick(&wsg_balance_p2c, a, c.nodes, 3, WSG_STR("k"), rnd);
        assert_int_not_equal(first[k], 2);
        counts[first[k]]++;
    }
    assert_true(counts[0] > 0);
    assert_true(counts[1] > 0);
    for (size_t k = 0; k < 1006; k++) {
        uint64_t rnd = k < 1000 ? (uint64_t)k * 0x10000000fULL : edges[k - 1000];
        assert_int_equal(pick(&wsg_balance_p2c, b, c.nodes, 3, WSG_STR("other"), rnd), first[k]);
    }
    wsg_balance_p2c.destroy(a);
    wsg_balance_p2c.destroy(b);
}

/* ---- every policy --------------------------------------------------------- */

/* Eligible nodes are a subset of the last rebuild, their index fields
 * pointing into the full list: every policy returns an index into the
 * subset, and load-aware ones choose by the subset's loads. */
static void test_all_policies_honour_subset(void **unused)
{
    (void)unused;
    static const char *const names[] = {"round-robin", "least-connections", "power-of-two",
                                        "consistent-hash"};
    cluster c;
    cluster_init(&c, 8);
    static const size_t members[] = {1, 4, 6};
    wsg_balance_node eligible[3];
    uint64_t seed = 7;
    char buf[32];
    for (size_t p = 0; p < 4; p++) {
        const wsg_balancer_ops *ops = wsg_balance_find(names[p]);
        void *state = policy_new(ops, 1.25);
        ops->rebuild(state, c.nodes, c.n);
        size_t counts[3] = {0};
        for (size_t k = 0; k < 3000; k++) {
            for (size_t e = 0; e < 3; e++)
                eligible[e] = c.nodes[members[e]];
            size_t i =
                pick(ops, state, eligible, 3, key_of(buf, sizeof(buf), k), splitmix64(&seed));
            counts[i]++;
            c.nodes[members[i]].load++;
        }
        for (size_t e = 0; e < 3; e++) {
            if (counts[e] < 750)
                fail_msg("%s: eligible node %zu took %zu of 3000", ops->name, e, counts[e]);
        }
        for (size_t i = 0; i < c.n; i++)
            c.nodes[i].load = 0;
        ops->destroy(state);
    }
}

/* ---- consistent hashing --------------------------------------------------- */

static void test_chash_same_key_same_node(void **unused)
{
    (void)unused;
    cluster c;
    cluster_init(&c, 5);
    void *state = policy_new(&wsg_balance_chash, 1.25);
    wsg_balance_chash.rebuild(state, c.nodes, c.n);
    static const char *first[1000];
    char buf[32];
    for (size_t k = 0; k < 1000; k++) {
        wsg_str key = key_of(buf, sizeof(buf), k);
        first[k] = owner_of(state, &c, key);
        assert_string_equal(owner_of(state, &c, key), first[k]);
    }

    /* The same members again, whether rebuilt in place, in a new state or
     * listed in another order: each key keeps its node. */
    wsg_balance_chash.rebuild(state, c.nodes, c.n);
    void *other = policy_new(&wsg_balance_chash, 1.25);
    cluster reversed;
    cluster_init(&reversed, 5);
    for (size_t i = 0; i < 5; i++)
        memcpy(reversed.ids[i], c.ids[4 - i], ID_LEN);
    for (size_t i = 0; i < 5; i++)
        reversed.nodes[i].id = wsg_str_cstr(reversed.ids[i]);
    wsg_balance_chash.rebuild(other, reversed.nodes, reversed.n);
    for (size_t k = 0; k < 1000; k++) {
        wsg_str key = key_of(buf, sizeof(buf), k);
        assert_string_equal(owner_of(state, &c, key), first[k]);
        assert_string_equal(owner_of(other, &reversed, key), first[k]);
    }
    wsg_balance_chash.destroy(state);
    wsg_balance_chash.destroy(other);
}

/* With no load to bound it, the ring alone spreads keys over the nodes. */
static void test_chash_spreads_keys(void **unused)
{
    (void)unused;
    cluster c;
    cluster_init(&c, 5);
    void *state = policy_new(&wsg_balance_chash, 1.25);
    wsg_balance_chash.rebuild(state, c.nodes, c.n);
    size_t counts[5] = {0};
    char buf[32];
    for (size_t k = 0; k < SIM_KEYS; k++)
        counts[pick(&wsg_balance_chash, state, c.nodes, 5, key_of(buf, sizeof(buf), k), 0)]++;
    for (size_t i = 0; i < 5; i++) {
        if (counts[i] < 1000 || counts[i] > 3000)
            fail_msg("%s holds %zu of %d keys; want about 2000", c.ids[i], counts[i], SIM_KEYS);
    }
    wsg_balance_chash.destroy(state);
}

static void test_chash_empty_key_least_loaded(void **unused)
{
    (void)unused;
    cluster c;
    cluster_init(&c, 3);
    const uint32_t loads[] = {5, 2, 7};
    for (size_t i = 0; i < 3; i++)
        c.nodes[i].load = loads[i];
    void *state = policy_new(&wsg_balance_chash, 1.25);
    wsg_balance_chash.rebuild(state, c.nodes, c.n);
    for (size_t k = 0; k < 10; k++)
        assert_int_equal(pick(&wsg_balance_chash, state, c.nodes, 3, WSG_STR(""), k), 1);
    /* By weight: 5/4 beats 2/1. */
    c.nodes[0].weight = 4;
    for (size_t k = 0; k < 10; k++)
        assert_int_equal(pick(&wsg_balance_chash, state, c.nodes, 3, WSG_STR(""), k), 0);
    /* Counting sessions as they come, empty keys spread evenly. */
    for (size_t i = 0; i < 3; i++) {
        c.nodes[i].load = 0;
        c.nodes[i].weight = 1;
    }
    for (size_t k = 0; k < 300; k++)
        c.nodes[pick(&wsg_balance_chash, state, c.nodes, 3, WSG_STR(""), k)].load++;
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(c.nodes[i].load, 100);
    wsg_balance_chash.destroy(state);
}

/* Before the first rebuild there is no ring: keys go to the least loaded. */
static void test_chash_without_ring_least_loaded(void **unused)
{
    (void)unused;
    cluster c;
    cluster_init(&c, 3);
    c.nodes[0].load = 4;
    c.nodes[2].load = 1;
    c.nodes[1].load = 3;
    void *state = policy_new(&wsg_balance_chash, 1.25);
    assert_int_equal(pick(&wsg_balance_chash, state, c.nodes, 3, WSG_STR("c1"), 0), 2);
    wsg_balance_chash.rebuild(state, c.nodes, 0);
    assert_int_equal(pick(&wsg_balance_chash, state, c.nodes, 3, WSG_STR("c1"), 0), 2);
    wsg_balance_chash.destroy(state);
}

/* Adding a fifth node to four moves about 1/5 of the keys, and bounded
 * loads keep every node within 1.25 x the average throughout. */
static void test_chash_bounded_add_node(void **unused)
{
    (void)unused;
    static const char *before[SIM_KEYS];
    static const char *after[SIM_KEYS];
    static cluster four;
    static cluster five;
    cluster_init(&four, 4);
    cluster_init(&five, 5);
    simulate_chash(&four, SIM_KEYS, before);
    simulate_chash(&five, SIM_KEYS, after);
    expect_max_load(&four, 1.25 * SIM_KEYS / 4);
    expect_max_load(&five, 1.25 * SIM_KEYS / 5);
    double moved = moved_fraction(before, after, SIM_KEYS);
    if (moved < 0.10 || moved > 0.30)
        fail_msg("adding a fifth node moved %.1f%% of keys; want 10%%..30%%", moved * 100);
}

/* Removing one of five nodes (not the last in the list, so the others'
 * indices shift) moves about 1/5 of the keys. */
static void test_chash_bounded_remove_node(void **unused)
{
    (void)unused;
    static const char *before[SIM_KEYS];
    static const char *after[SIM_KEYS];
    static cluster five;
    static cluster four;
    cluster_init(&five, 5);
    simulate_chash(&five, SIM_KEYS, before);
    cluster_init(&four, 4);
    static const size_t kept[] = {0, 1, 3, 4};
    for (size_t i = 0; i < 4; i++) {
        memcpy(four.ids[i], five.ids[kept[i]], ID_LEN);
        four.nodes[i].id = wsg_str_cstr(four.ids[i]);
    }
    simulate_chash(&four, SIM_KEYS, after);
    expect_max_load(&four, 1.25 * SIM_KEYS / 4);
    double moved = moved_fraction(before, after, SIM_KEYS);
    if (moved < 0.10 || moved > 0.35)
        fail_msg("removing one of five nodes moved %.1f%% of keys; want 10%%..35%%", moved * 100);
    /* Every key of the removed node moved, of course. */
    for (size_t k = 0; k < SIM_KEYS; k++) {
        if (strcmp(before[k], "node-2") == 0)
            assert_string_not_equal(after[k], "node-2");
    }
}

/* A load factor of 1 allows no node above the average (rounded up). */
static void test_chash_load_factor_one(void **unused)
{
    (void)unused;
    cluster c;
    cluster_init(&c, 4);
    void *state = policy_new(&wsg_balance_chash, 1.0);
    wsg_balance_chash.rebuild(state, c.nodes, c.n);
    char buf[32];
    for (size_t k = 0; k < 1000; k++) {
        size_t i = pick(&wsg_balance_chash, state, c.nodes, 4, key_of(buf, sizeof(buf), k), 0);
        c.nodes[i].load++;
        uint32_t bound = (uint32_t)((k + 1 + 3) / 4);
        if (c.nodes[i].load > bound)
            fail_msg("after %zu keys %s holds %u, above %u", k + 1, c.ids[i], c.nodes[i].load,
                     bound);
    }
    wsg_balance_chash.destroy(state);
}

/* Weight 2 gets about twice the keys of weight 1: on the ring alone, and
 * with loads counted and bounded. */
static void test_chash_weights(void **unused)
{
    (void)unused;
    cluster c;
    cluster_init(&c, 3);
    c.nodes[2].weight = 2;
    void *state = policy_new(&wsg_balance_chash, 1.25);
    wsg_balance_chash.rebuild(state, c.nodes, c.n);
    size_t counts[3] = {0};
    char buf[32];
    for (size_t k = 0; k < SIM_KEYS; k++)
        counts[pick(&wsg_balance_chash, state, c.nodes, 3, key_of(buf, sizeof(buf), k), 0)]++;
    double ratio = 2.0 * (double)counts[2] / (double)(counts[0] + counts[1]);
    if (ratio < 1.5 || ratio > 2.5)
        fail_msg("ring only: weight 2 took %zu, weight 1 took %zu and %zu", counts[2], counts[0],
                 counts[1]);
    wsg_balance_chash.destroy(state);

    static const char *owner[SIM_KEYS];
    simulate_chash(&c, SIM_KEYS, owner);
    ratio = 2.0 * c.nodes[2].load / (double)(c.nodes[0].load + c.nodes[1].load);
    if (ratio < 1.6 || ratio > 2.4)
        fail_msg("bounded: weight 2 took %u, weight 1 took %u and %u", c.nodes[2].load,
                 c.nodes[0].load, c.nodes[1].load);
    expect_max_load(&c, 1.25 * SIM_KEYS / 4 * 2);
}

/* Only eligible nodes are chosen; a key whose node is eligible stays on it,
 * and the others land on an eligible node. */
static void test_chash_subset_honoured(void **unused)
{
    (void)unused;
    cluster c;
    cluster_init(&c, 6);
    void *state = policy_new(&wsg_balance_chash, 1.25);
    wsg_balance_chash.rebuild(state, c.nodes, c.n);
    wsg_balance_node eligible[3] = {c.nodes[1], c.nodes[3], c.nodes[4]};
    size_t kept = 0;
    size_t counts[3] = {0};
    char buf[32];
    for (size_t k = 0; k < 3000; k++) {
        wsg_str key = key_of(buf, sizeof(buf), k);
        const char *full = owner_of(state, &c, key);
        size_t i = pick(&wsg_balance_chash, state, eligible, 3, key, 0);
        counts[i]++;
        bool full_eligible = false;
        for (size_t e = 0; e < 3; e++)
            full_eligible |= strcmp(full, eligible[e].id.p) == 0;
        if (full_eligible) {
            assert_string_equal(eligible[i].id.p, full);
            kept++;
        }
    }
    assert_in_range(kept, 1000, 2000);
    for (size_t e = 0; e < 3; e++)
        assert_true(counts[e] > 500);

    /* One eligible node takes everything, even keys of the others. */
    for (size_t k = 0; k < 100; k++)
        assert_int_equal(
            pick(&wsg_balance_chash, state, &c.nodes[5], 1, key_of(buf, sizeof(buf), k), 0), 0);
    wsg_balance_chash.destroy(state);
}

/* More than 256 members: the eligibility map moves to the heap. The
 * mapping stays consistent for subsets that include members past 256. */
static void test_chash_many_members(void **unused)
{
    (void)unused;
    static cluster c;
    static wsg_balance_node subset[MAX_NODES];
    cluster_init(&c, 300);
    void *state = policy_new(&wsg_balance_chash, 1.25);
    wsg_balance_chash.rebuild(state, c.nodes, c.n);

    /* Every third member left out; the rest include indices 257..299. */
    size_t n = 0;
    for (size_t i = 0; i < c.n; i++) {
        if (i % 3 != 0)
            subset[n++] = c.nodes[i];
    }
    size_t kept = 0;
    size_t high = 0;
    char buf[32];
    for (size_t k = 0; k < 2000; k++) {
        wsg_str key = key_of(buf, sizeof(buf), k);
        size_t full = pick(&wsg_balance_chash, state, c.nodes, c.n, key, 0);
        assert_string_equal(owner_of(state, &c, key), c.ids[full]);
        if (full > 256)
            high++;
        size_t i = pick(&wsg_balance_chash, state, subset, n, key, 0);
        assert_true(subset[i].index % 3 != 0);
        if (full % 3 != 0) {
            assert_int_equal(subset[i].index, full);
            kept++;
        }
    }
    assert_true(high > 0);
    assert_in_range(kept, 1100, 1560);

    /* Only members past the stack map's size. */
    n = 0;
    for (size_t i = 257; i < c.n; i++)
        subset[n++] = c.nodes[i];
    for (size_t k = 0; k < 500; k++) {
        size_t i = pick(&wsg_balance_chash, state, subset, n, key_of(buf, sizeof(buf), k), 0);
        assert_true(subset[i].index >= 257);
    }
    wsg_balance_chash.destroy(state);
}

/* A rebuild replaces the ring: after shrinking to two members, keys map
 * exactly as in a state built with those two from the start. */
static void test_chash_rebuild_replaces_ring(void **unused)
{
    (void)unused;
    cluster c;
    cluster_init(&c, 4);
    void *state = policy_new(&wsg_balance_chash, 1.25);
    void *fresh = policy_new(&wsg_balance_chash, 1.25);
    wsg_balance_chash.rebuild(state, c.nodes, 4);
    wsg_balance_chash.rebuild(state, c.nodes, 2);
    wsg_balance_chash.rebuild(fresh, c.nodes, 2);
    char buf[32];
    size_t counts[2] = {0};
    for (size_t k = 0; k < 1000; k++) {
        wsg_str key = key_of(buf, sizeof(buf), k);
        size_t i = pick(&wsg_balance_chash, state, c.nodes, 2, key, 0);
        assert_int_equal(pick(&wsg_balance_chash, fresh, c.nodes, 2, key, 0), i);
        counts[i]++;
    }
    assert_true(counts[0] > 300);
    assert_true(counts[1] > 300);
    wsg_balance_chash.destroy(state);
    wsg_balance_chash.destroy(fresh);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find_each_policy),
        cmocka_unit_test(test_find_unknown_policy),
        cmocka_unit_test(test_cmp_load),
        cmocka_unit_test(test_hash_stable_and_sensitive),
        cmocka_unit_test(test_hash_spreads_sequential_keys),
        cmocka_unit_test(test_round_robin_cycles_evenly),
        cmocka_unit_test(test_round_robin_takes_turns),
        cmocka_unit_test(test_least_conn_picks_lowest),
        cmocka_unit_test(test_least_conn_spreads_full_tie),
        cmocka_unit_test(test_least_conn_spreads_partial_tie),
        cmocka_unit_test(test_least_conn_weights),
        cmocka_unit_test(test_p2c_single_node),
        cmocka_unit_test(test_p2c_two_nodes),
        cmocka_unit_test(test_p2c_never_more_loaded_choice),
        cmocka_unit_test(test_p2c_deterministic_sequence),
        cmocka_unit_test(test_all_policies_honour_subset),
        cmocka_unit_test(test_chash_same_key_same_node),
        cmocka_unit_test(test_chash_spreads_keys),
        cmocka_unit_test(test_chash_empty_key_least_loaded),
        cmocka_unit_test(test_chash_without_ring_least_loaded),
        cmocka_unit_test(test_chash_bounded_add_node),
        cmocka_unit_test(test_chash_bounded_remove_node),
        cmocka_unit_test(test_chash_load_factor_one),
        cmocka_unit_test(test_chash_weights),
        cmocka_unit_test(test_chash_subset_honoured),
        cmocka_unit_test(test_chash_many_members),
        cmocka_unit_test(test_chash_rebuild_replaces_ring),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
