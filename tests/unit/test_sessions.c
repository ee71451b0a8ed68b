/* Unit tests for src/registry/sessions: a sticky key finds its session and
 * its backend again after a reconnect, idle sessions expire or are evicted
 * oldest first, and every backend reference taken is given back. Time is
 * passed in (STYLE.md, habit 11), so nothing sleeps.
 *
 * Backends are made by hand: the registry's constructor is not public, and
 * a session only needs the reference count and an id. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "registry/sessions.h"

#define TIMEOUT 60000
#define MANY 5000

/* A backend holding one reference, the test's; wsg_backend_unref frees it
 * with the fields it owns. */
static wsg_backend *backend_new(const char *id)
{
    wsg_backend *b = calloc(1, sizeof(*b));
    assert_non_null(b);
    atomic_init(&b->refs, 1);
    b->id = strdup(id);
    assert_non_null(b->id);
    return b;
}

static unsigned refs(wsg_backend *b)
{
    return atomic_load(&b->refs);
}

static wsg_session *attach(wsg_sessions *t, const char *key, uint64_t now, wsg_backend **backend)
{
    return wsg_sessions_attach(t, wsg_str_cstr(key), now, backend);
}

/* Attaches a key that must already have a session with backend `want`,
 * returns the caller's reference and detaches again at `now`. */
static void expect_sticky(wsg_sessions *t, const char *key, wsg_backend *want, uint64_t now)
{
    wsg_backend *got = NULL;
    wsg_session *s = attach(t, key, now, &got);
    assert_non_null(s);
    if (got != want)
        fail_msg("key %s: backend %s, want %s", key, got ? got->id : "none",
                 want ? want->id : "none");
    if (got)
        wsg_backend_unref(got);
    wsg_sessions_detach(t, s, now);
}

/* ---- attach, assign, detach ----------------------------------------------- */

static void test_attach_new_key(void **unused)
{
    (void)unused;
    wsg_sessions t;
    wsg_sessions_init(&t, 100);
    wsg_backend *b = (wsg_backend *)&t; /* must be overwritten */
    wsg_session *s = attach(&t, "client-1", 1000, &b);
    assert_non_null(s);
    assert_null(b);
    assert_null(s->backend);
    assert_int_equal(s->sockets, 1);
    assert_int_equal(s->key_len, 8);
    assert_memory_equal(s->key, "client-1", 8);
    assert_int_equal(s->last_activity, 1000);
    assert_int_equal(wsg_sessions_count(&t), 1);
    wsg_sessions_deinit(&t);
}

static void test_assign_sets_backend(void **unused)
{
    (void)unused;
    wsg_sessions t;
    wsg_sessions_init(&t, 100);
    wsg_backend *a = backend_new("a");
    wsg_backend *b = backend_new("b");
    wsg_backend *got = NULL;
    wsg_session *s = attach(&t, "client-1", 1000, &got);
    wsg_sessions_assign(&t, s, a);
    assert_ptr_equal(s->backend, a);
    assert_int_equal(refs(a), 2);

    /* A move: the new backend is referenced, the old one let go. */
    wsg_sessions_assign(&t, s, b);
    assert_ptr_equal(s->backend, b);
    assert_int_equal(refs(a), 1);
    assert_int_equal(refs(b), 2);

    /* Assigning the same backend again changes nothing. */
    wsg_sessions_assign(&t, s, b);
    assert_int_equal(refs(b), 2);

    wsg_sessions_deinit(&t);
    assert_int_equal(refs(a), 1);
    assert_int_equal(refs(b), 1);
    wsg_backend_unref(a);
    wsg_backend_unref(b);
}

static void test_reconnect_finds_backend(void **unused)
{
    (void)unused;
    wsg_sessions t;
    wsg_sessions_init(&t, 100);
    wsg_backend *a = backend_new("a");
    wsg_backend *got = NULL;
    wsg_session *s = attach(&t, "client-1", 1000, &got);
    wsg_sessions_assign(&t, s, a);
    wsg_sessions_detach(&t, s, 2000);
    assert_int_equal(s->sockets, 0);
    assert_int_equal(wsg_sessions_count(&t), 1);
    assert_int_equal(refs(a), 2);

    wsg_session *again = attach(&t, "client-1", 3000, &got);
    assert_ptr_equal(again, s);
    assert_ptr_equal(got, a);
    assert_int_equal(refs(a), 3); /* the caller's reference */
    assert_int_equal(again->sockets, 1);
    assert_int_equal(again->last_activity, 3000);
    wsg_backend_unref(got);
    assert_int_equal(refs(a), 2);

    /* Another key is another session. */
    wsg_session *other = attach(&t, "client-2", 3000, &got);
    assert_non_null(other);
    assert_ptr_not_equal(other, s);
    assert_null(got);
    assert_int_equal(wsg_sessions_count(&t), 2);

    wsg_sessions_deinit(&t);
    assert_int_equal(refs(a), 1);
    wsg_backend_unref(a);
}

static void test_two_sockets_share_session(void **unused)
{
    (void)unused;
    wsg_sessions t;
    wsg_sessions_init(&t, 100);
    wsg_backend *a = backend_new("a");
    wsg_backend *got1 = NULL;
    wsg_backend *got2 = NULL;
    wsg_session *s1 = attach(&t, "tab", 1000, &got1);
    wsg_sessions_assign(&t, s1, a);
    wsg_session *s2 = attach(&t, "tab", 1100, &got2);
    assert_ptr_equal(s1, s2);
    assert_int_equal(s1->sockets, 2);
    assert_int_equal(wsg_sessions_count(&t), 1);
    assert_null(got1);
    assert_ptr_equal(got2, a);
    assert_int_equal(refs(a), 3);
    wsg_backend_unref(got2);

    /* One socket leaves: the session is still connected, not idle. */
    wsg_sessions_detach(&t, s1, 1200);
    assert_int_equal(s1->sockets, 1);
    assert_false(wsg_list_linked(&s1->idle));
    wsg_sessions_detach(&t, s2, 1300);
    assert_int_equal(s1->sockets, 0);
    assert_true(wsg_list_linked(&s1->idle));
    assert_int_equal(s1->last_activity, 1300);

    wsg_sessions_deinit(&t);
    assert_int_equal(refs(a), 1);
    wsg_backend_unref(a);
}

/* Keys are compared whole: a prefix, a longer key and another case are
 * other sessions. */
static void test_keys_compared_exactly(void **unused)
{
    (void)unused;
    wsg_sessions t;
    wsg_sessions_init(&t, 100);
    wsg_backend *got = NULL;
    static const char *const keys[] = {"abc", "ab", "abcd", "ABC", "abd"};
    wsg_session *s[5];
    for (size_t i = 0; i < 5; i++) {
        s[i] = attach(&t, keys[i], 1, &got);
        assert_non_null(s[i]);
        for (size_t j = 0; j < i; j++)
            assert_ptr_not_equal(s[i], s[j]);
    }
    assert_int_equal(wsg_sessions_count(&t), 5);
    /* Keys with NUL bytes inside compare by length, not as C strings. */
    wsg_session *n1 = wsg_sessions_attach(&t, wsg_str_make("x\0y", 3), 1, &got);
    wsg_session *n2 = wsg_sessions_attach(&t, wsg_str_make("x\0z", 3), 1, &got);
    assert_non_null(n1);
    assert_non_null(n2);
    assert_ptr_not_equal(n1, n2);
    assert_ptr_equal(wsg_sessions_attach(&t, wsg_str_make("x\0y", 3), 1, &got), n1);
    assert_int_equal(n1->sockets, 2);
    wsg_sessions_deinit(&t);
}

static void test_key_limits(void **unused)
{
    (void)unused;
    wsg_sessions t;
    wsg_sessions_init(&t, 100);
    wsg_backend *got = (wsg_backend *)&t;
    assert_null(wsg_sessions_attach(&t, wsg_str_make("", 0), 1, &got));
    assert_null(got);

    static char big[70000];
    memset(big, 'k', sizeof(big));
    got = (wsg_backend *)&t;
    assert_null(wsg_sessions_attach(&t, wsg_str_make(big, 1025), 1, &got));
    assert_null(got);
    got = (wsg_backend *)&t;
    assert_null(wsg_sessions_attach(&t, wsg_str_make(big, 70000), 1, &got));
    assert_null(got);
    assert_int_equal(wsg_sessions_count(&t), 0);

    /* 1024 bytes is still a key, and found again. */
    wsg_session *s = wsg_sessions_attach(&t, wsg_str_make(big, 1024), 1, &got);
    assert_non_null(s);
    assert_int_equal(s->key_len, 1024);
    assert_ptr_equal(wsg_sessions_attach(&t, wsg_str_make(big, 1024), 1, &got), s);
    /* A one-byte key too. */
    assert_non_null(wsg_sessions_attach(&t, wsg_str_make(big, 1), 1, &got));
    assert_int_equal(wsg_sessions_count(&t), 2);
    wsg_sessions_deinit(&t);
}

/* ---- expiry --------------------------------------------------------------- */

static void test_connected_never_expires(void **unused)
{
    (void)unused;
    wsg_sessions t;
    wsg_sessions_init(&t, 100);
    wsg_backend *a = backend_new("a");
    wsg_backend *got = NULL;
    wsg_session *s = attach(&t, "client-1", 1000, &got);
    wsg_sessions_assign(&t, s, a);
    wsg_session *s2 = attach(&t, "client-1", 1000, &got);
    wsg_backend_unref(got);
    assert_int_equal(wsg_sessions_expire(&t, 1000 + 10 * TIMEOUT, TIMEOUT), 0);
    assert_int_equal(wsg_sessions_expire(&t, UINT64_MAX, 1), 0);
    /* Still one socket. */
    wsg_sessions_detach(&t, s2, 1000);
    assert_int_equal(wsg_sessions_expire(&t, UINT64_MAX, 1), 0);
    assert_int_equal(wsg_sessions_count(&t), 1);
    assert_int_equal(t.expired, 0);
    assert_int_equal(refs(a), 2);
    wsg_sessions_deinit(&t);
    wsg_backend_unref(a);
}

static void test_idle_expires_after_timeout(void **unused)
{
    (void)unused;
    wsg_sessions t;
    wsg_sessions_init(&t, 100);
    wsg_backend *a = backend_new("a");
    wsg_backend *got = NULL;
    wsg_session *s = attach(&t, "client-1", 1000, &got);
    wsg_sessions_assign(&t, s, a);
    /* The socket's last message, not the detach, starts the idle time. */
    wsg_sessions_detach(&t, s, 5000);
    for (uint64_t now = 5000; now < 5000 + TIMEOUT; now += 997)
        assert_int_equal(wsg_sessions_expire(&t, now, TIMEOUT), 0);
    assert_int_equal(wsg_sessions_expire(&t, 5000 + TIMEOUT - 1, TIMEOUT), 0);
    assert_int_equal(wsg_sessions_count(&t), 1);
    expect_sticky(&t, "client-1", a, 5000);

    assert_int_equal(wsg_sessions_expire(&t, 5000 + TIMEOUT + 1, TIMEOUT), 1);
    assert_int_equal(wsg_sessions_count(&t), 0);
    assert_int_equal(t.expired, 1);
    assert_int_equal(refs(a), 1);

    /* Forgotten: the key starts over with no backend. */
    expect_sticky(&t, "client-1", NULL, 6000 + TIMEOUT);
    wsg_sessions_deinit(&t);
    wsg_backend_unref(a);
}

/* A detach whose last activity is older than the attach keeps the attach
 * time: the session was in use until then. */
static void test_detach_keeps_latest_activity(void **unused)
{
    (void)unused;
    wsg_sessions t;
    wsg_sessions_init(&t, 100);
    wsg_backend *got = NULL;
    wsg_session *s = attach(&t, "client-1", 9000, &got);
    wsg_sessions_detach(&t, s, 100);
    assert_int_equal(s->last_activity, 9000);
    assert_int_equal(wsg_sessions_expire(&t, 9000 + TIMEOUT - 1, TIMEOUT), 0);
    assert_int_equal(wsg_sessions_expire(&t, 9000 + TIMEOUT + 1, TIMEOUT), 1);
    wsg_sessions_deinit(&t);
}

/* Each loop reads its own clock, so the sweep may run with a `now` a little
 * behind a socket's last message. Such a session is not idle at all, let
 * alone older than the timeout. */
static void test_activity_after_now_does_not_expire(void **unused)
{
    (void)unused;
    wsg_sessions t;
    wsg_sessions_init(&t, 100);
    wsg_backend *got = NULL;
    wsg_session *s = attach(&t, "client-1", 5000, &got);
    wsg_sessions_detach(&t, s, 5010);
    size_t expired = wsg_sessions_expire(&t, 5000, TIMEOUT);
    size_t count = wsg_sessions_count(&t);
    wsg_sessions_deinit(&t);
    if (expired != 0 || count != 1)
        fail_msg("activity 5010, expire at 5000 with timeout %d: %zu expired, %zu left; "
                 "want 0 expired, 1 left",
                 TIMEOUT, expired, count);
}

/* Expiry takes sessions oldest first by last activity, whatever order they
 * were detached in, and stops at the first that is young enough. */
static void test_expire_in_activity_order(void **unused)
{
    (void)unused;
    wsg_sessions t;
    wsg_sessions_init(&t, 100);
    wsg_backend *b[5];
    wsg_session *s[5];
    wsg_backend *got = NULL;
    static const char *const keys[] = {"k0", "k1", "k2", "k3", "k4"};
    /* Detached in the order 3, 0, 4, 1, 2 with activity 400, 100, 500, 200,
     * 300: the activity order is k0, k1, k2, k3, k4. */
    static const size_t order[] = {3, 0, 4, 1, 2};
    for (size_t i = 0; i < 5; i++) {
        b[i] = backend_new(keys[i]);
        s[i] = attach(&t, keys[i], 0, &got);
        wsg_sessions_assign(&t, s[i], b[i]);
    }
    for (size_t i = 0; i < 5; i++)
        wsg_sessions_detach(&t, s[order[i]], 100 * (order[i] + 1));

    assert_int_equal(wsg_sessions_expire(&t, TIMEOUT + 99, TIMEOUT), 0);
    for (size_t i = 0; i < 5; i++) {
        uint64_t now = TIMEOUT + 100 * (i + 1) + 1;
        assert_int_equal(wsg_sessions_expire(&t, now, TIMEOUT), 1);
        assert_int_equal(wsg_sessions_count(&t), 4 - i);
        for (size_t j = 0; j < 5; j++)
            assert_int_equal(refs(b[j]), j <= i ? 1 : 2);
    }
    assert_int_equal(t.expired, 5);

    /* Several at once. */
    for (size_t i = 0; i < 5; i++) {
        s[i] = attach(&t, keys[i], 0, &got);
        wsg_sessions_detach(&t, s[i], 1000 - 100 * i);
    }
    assert_int_equal(wsg_sessions_expire(&t, TIMEOUT + 801, TIMEOUT), 3);
    assert_int_equal(wsg_sessions_count(&t), 2);
    assert_ptr_equal(attach(&t, "k0", 2000, &got), s[0]);
    assert_ptr_equal(attach(&t, "k1", 2000, &got), s[1]);
    assert_int_equal(wsg_sessions_count(&t), 2);

    wsg_sessions_deinit(&t);
    for (size_t i = 0; i < 5; i++)
        wsg_backend_unref(b[i]);
}

/* A reconnect takes the session off the idle list: it no longer expires,
 * and its new detach time counts. */
static void test_reattach_leaves_idle_list(void **unused)
{
    (void)unused;
    wsg_sessions t;
    wsg_sessions_init(&t, 100);
    wsg_backend *got = NULL;
    wsg_session *a = attach(&t, "a", 0, &got);
    wsg_session *b = attach(&t, "b", 0, &got);
    wsg_sessions_detach(&t, a, 100);
    wsg_sessions_detach(&t, b, 200);
    assert_ptr_equal(attach(&t, "a", 300, &got), a);
    assert_int_equal(wsg_sessions_expire(&t, UINT64_MAX - 1, TIMEOUT), 1); /* b */
    assert_int_equal(wsg_sessions_count(&t), 1);
    wsg_sessions_detach(&t, a, 400);
    assert_int_equal(wsg_sessions_expire(&t, 400 + TIMEOUT - 1, TIMEOUT), 0);
    assert_int_equal(wsg_sessions_expire(&t, 400 + TIMEOUT + 1, TIMEOUT), 1);
    wsg_sessions_deinit(&t);
}

/* ---- eviction ------------------------------------------------------------- */

/* A full table forgets its longest idle session for a new key. */
static void test_evicts_longest_idle(void **unused)
{
    (void)unused;
    wsg_sessions t;
    wsg_sessions_init(&t, 3);
    wsg_backend *b[3];
    wsg_session *s[3];
    wsg_backend *got = NULL;
    static const char *const keys[] = {"A", "B", "C"};
    for (size_t i = 0; i < 3; i++) {
        b[i] = backend_new(keys[i]);
        s[i] = attach(&t, keys[i], 0, &got);
        wsg_sessions_assign(&t, s[i], b[i]);
    }
    for (size_t i = 0; i < 3; i++)
        wsg_sessions_detach(&t, s[i], 10 * (i + 1));

    wsg_session *d = attach(&t, "D", 40, &got);
    assert_non_null(d);
    assert_int_equal(wsg_sessions_count(&t), 3);
    assert_int_equal(t.evicted, 1);
    assert_int_equal(refs(b[0]), 1);
    assert_int_equal(refs(b[1]), 2);
    assert_int_equal(refs(b[2]), 2);
    expect_sticky(&t, "B", b[1], 50);
    expect_sticky(&t, "C", b[2], 60);
    assert_int_equal(t.evicted, 1);

    wsg_sessions_deinit(&t);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(refs(b[i]), 1);
        wsg_backend_unref(b[i]);
    }
}

/* The longest idle by last activity, not by detach order: C detached first
 * with activity 100, then A with 50, then B with 70: A goes, then B. */
static void test_evicts_by_activity_not_detach_order(void **unused)
{
    (void)unused;
    wsg_sessions t;
    wsg_sessions_init(&t, 3);
    wsg_backend *b[3];
    wsg_session *s[3];
    wsg_backend *got = NULL;
    static const char *const keys[] = {"A", "B", "C"};
    for (size_t i = 0; i < 3; i++) {
        b[i] = backend_new(keys[i]);
        s[i] = attach(&t, keys[i], 0, &got);
        wsg_sessions_assign(&t, s[i], b[i]);
    }
    wsg_sessions_detach(&t, s[2], 100);
    wsg_sessions_detach(&t, s[0], 50);
    wsg_sessions_detach(&t, s[1], 70);

    wsg_session *d = attach(&t, "D", 200, &got);
    assert_non_null(d);
    assert_int_equal(refs(b[0]), 1); /* A evicted */
    assert_int_equal(refs(b[1]), 2);
    assert_int_equal(refs(b[2]), 2);

    /* D is connected, so the next new key takes B, the next oldest. */
    assert_non_null(attach(&t, "E", 210, &got));
    assert_int_equal(refs(b[1]), 1);
    assert_int_equal(refs(b[2]), 2);
    assert_int_equal(t.evicted, 2);
    assert_int_equal(wsg_sessions_count(&t), 3);

    wsg_sessions_deinit(&t);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(refs(b[i]), 1);
        wsg_backend_unref(b[i]);
    }
}

/* Connected sessions are never evicted: with none idle the table grows
 * past its limit. A known key evicts nothing. */
static void test_full_table_keeps_connected(void **unused)
{
    (void)unused;
    wsg_sessions t;
    wsg_sessions_init(&t, 2);
    wsg_backend *got = NULL;
    wsg_session *a = attach(&t, "A", 0, &got);
    wsg_session *b = attach(&t, "B", 0, &got);
    assert_non_null(attach(&t, "C", 0, &got));
    assert_int_equal(wsg_sessions_count(&t), 3);
    assert_int_equal(t.evicted, 0);

    wsg_sessions_detach(&t, a, 10);
    wsg_sessions_detach(&t, b, 20);
    /* Known keys: no room needed. */
    assert_ptr_equal(attach(&t, "A", 30, &got), a);
    assert_ptr_equal(attach(&t, "A", 30, &got), a);
    assert_int_equal(t.evicted, 0);
    assert_int_equal(wsg_sessions_count(&t), 3);
    /* A new key evicts B, the only idle one. */
    assert_non_null(attach(&t, "D", 40, &got));
    assert_int_equal(t.evicted, 1);
    assert_int_equal(wsg_sessions_count(&t), 3);
    wsg_sessions_deinit(&t);
}

/* A limit of 0 means 1. */
static void test_max_zero_means_one(void **unused)
{
    (void)unused;
    wsg_sessions t;
    wsg_sessions_init(&t, 0);
    wsg_backend *got = NULL;
    wsg_session *a = attach(&t, "A", 0, &got);
    wsg_sessions_detach(&t, a, 10);
    assert_non_null(attach(&t, "B", 20, &got));
    assert_int_equal(wsg_sessions_count(&t), 1);
    assert_int_equal(t.evicted, 1);
    wsg_sessions_deinit(&t);
}

/* ---- growth and references ------------------------------------------------ */

static void test_table_grows(void **unused)
{
    (void)unused;
    static wsg_sessions t;
    static wsg_session *s[MANY];
    static char keys[MANY][16];
    wsg_sessions_init(&t, MANY * 2);
    size_t initial = t.bucket_count;
    wsg_backend *a = backend_new("a");
    wsg_backend *got = NULL;
    for (size_t i = 0; i < MANY; i++) {
        snprintf(keys[i], sizeof(keys[i]), "client-%zu", i);
        s[i] = attach(&t, keys[i], i, &got);
        assert_non_null(s[i]);
        assert_null(got);
        if (i % 2 == 0)
            wsg_sessions_assign(&t, s[i], a);
    }
    assert_int_equal(wsg_sessions_count(&t), MANY);
    assert_true(t.bucket_count > initial);
    assert_true(t.bucket_count >= MANY);
    assert_int_equal(t.bucket_count & (t.bucket_count - 1), 0);
    assert_int_equal(refs(a), 1 + MANY / 2);

    /* Every key still finds its own session after the rehashes. */
    for (size_t i = 0; i < MANY; i++) {
        wsg_session *again = attach(&t, keys[i], MANY + i, &got);
        assert_ptr_equal(again, s[i]);
        assert_int_equal(again->sockets, 2);
        assert_ptr_equal(got, i % 2 == 0 ? a : NULL);
        if (got)
            wsg_backend_unref(got);
        wsg_sessions_detach(&t, again, MANY + i);
        wsg_sessions_detach(&t, again, MANY + i);
    }
    assert_int_equal(wsg_sessions_count(&t), MANY);
    assert_int_equal(wsg_sessions_expire(&t, 2 * MANY + TIMEOUT, TIMEOUT), MANY);
    assert_int_equal(wsg_sessions_count(&t), 0);
    assert_int_equal(refs(a), 1);
    wsg_sessions_deinit(&t);
    wsg_backend_unref(a);
}

/* Whatever happened to the sessions (moves, reconnects, evictions, some
 * still connected), deinit gives back every reference the table held. */
static void test_refs_restored_after_deinit(void **unused)
{
    (void)unused;
    wsg_sessions t;
    wsg_sessions_init(&t, 8);
    wsg_backend *a = backend_new("a");
    wsg_backend *b = backend_new("b");
    wsg_backend *got = NULL;
    char key[16];
    for (size_t i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "k%zu", i % 12);
        wsg_session *s = attach(&t, key, 10 * i, &got);
        assert_non_null(s);
        if (got)
            wsg_backend_unref(got);
        wsg_sessions_assign(&t, s, i % 3 ? a : b);
        if (i % 4 == 0)
            wsg_sessions_assign(&t, s, i % 3 ? b : a);
        if (i % 5 != 0)
            wsg_sessions_detach(&t, s, 10 * i + 5);
    }
    assert_true(refs(a) > 1);
    assert_true(refs(b) > 1);
    wsg_sessions_expire(&t, 150 + TIMEOUT, TIMEOUT);
    wsg_sessions_deinit(&t);
    assert_int_equal(refs(a), 1);
    assert_int_equal(refs(b), 1);
    wsg_backend_unref(a);
    wsg_backend_unref(b);
}

/* A table can be set up again after deinit. */
static void test_reinit(void **unused)
{
    (void)unused;
    wsg_sessions t;
    wsg_backend *got = NULL;
    for (int round = 0; round < 3; round++) {
        wsg_sessions_init(&t, 4);
        assert_int_equal(wsg_sessions_count(&t), 0);
        assert_non_null(attach(&t, "k", 1, &got));
        assert_int_equal(wsg_sessions_count(&t), 1);
        wsg_sessions_deinit(&t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attach_new_key),
        cmocka_unit_test(test_assign_sets_backend),
        cmocka_unit_test(test_reconnect_finds_backend),
        cmocka_unit_test(test_two_sockets_share_session),
        cmocka_unit_test(test_keys_compared_exactly),
        cmocka_unit_test(test_key_limits),
        cmocka_unit_test(test_connected_never_expires),
        cmocka_unit_test(test_idle_expires_after_timeout),
        cmocka_unit_test(test_detach_keeps_latest_activity),
        cmocka_unit_test(test_activity_after_now_does_not_expire),
        cmocka_unit_test(test_expire_in_activity_order),
        cmocka_unit_test(test_reattach_leaves_idle_list),
        cmocka_unit_test(test_evicts_longest_idle),
        cmocka_unit_test(test_evicts_by_activity_not_detach_order),
        cmocka_unit_test(test_full_table_keeps_connected),
        cmocka_unit_test(test_max_zero_means_one),
        cmocka_unit_test(test_table_grows),
        cmocka_unit_test(test_refs_restored_after_deinit),
        cmocka_unit_test(test_reinit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
