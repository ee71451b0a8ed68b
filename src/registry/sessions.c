#include "registry/sessions.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"

#define MAX_KEY 1024
#define INITIAL_BUCKETS 1024

void wsg_sessions_init(wsg_sessions *t, size_t max)
{
    memset(t, 0, sizeof(*t));
    pthread_mutex_init(&t->lock, NULL);
    t->bucket_count = INITIAL_BUCKETS;
    t->buckets = calloc(t->bucket_count, sizeof(*t->buckets));
    if (t->buckets == NULL) {
        fputs("wsgate: out of memory creating the session table\n", stderr);
        abort();
    }
    t->max = max ? max : 1;
    wsg_list_init(&t->idle);
}

static void session_free(wsg_session *s)
{
    if (s->backend) {
        atomic_fetch_sub_explicit(&s->backend->sticky, 1, memory_order_relaxed);
        wsg_backend_unref(s->backend);
    }
    free(s);
}

void wsg_sessions_deinit(wsg_sessions *t)
{
    for (size_t i = 0; i < t->bucket_count; i++) {
        wsg_session *s = t->buckets[i];
        while (s) {
            wsg_session *next = s->next;
            session_free(s);
            s = next;
        }
    }
    free(t->buckets);
    pthread_mutex_destroy(&t->lock);
    memset(t, 0, sizeof(*t));
}

static uint32_t hash_key(const char *key, size_t len)
{
    return (uint32_t)wsg_hash(key, len);
}

static void unlink_session(wsg_sessions *t, wsg_session *s)
{
    wsg_session **pp = &t->buckets[hash_key(s->key, s->key_len) & (t->bucket_count - 1)];
    while (*pp != s)
        pp = &(*pp)->next;
    *pp = s->next;
    if (wsg_list_linked(&s->idle))
        wsg_list_remove(&s->idle);
    t->count--;
}

/* Doubles the table when it averages more than one session per bucket.
 * A failed allocation keeps the old table: longer chains, nothing lost. */
static void maybe_grow(wsg_sessions *t)
{
    if (t->count <= t->bucket_count)
        return;
    size_t n = t->bucket_count * 2;
    wsg_session **grown = calloc(n, sizeof(*grown));
    if (grown == NULL)
        return;
    for (size_t i = 0; i < t->bucket_count; i++) {
        wsg_session *s = t->buckets[i];
        while (s) {
            wsg_session *next = s->next;
            size_t b = hash_key(s->key, s->key_len) & (n - 1);
            s->next = grown[b];
            grown[b] = s;
            s = next;
        }
    }
    free(t->buckets);
    t->buckets = grown;
    t->bucket_count = n;
}

/* Makes room for one more by forgetting the longest idle session. With no
 * idle session to forget, the table grows past its limit: a connected
 * client's session is never dropped. */
static void make_room(wsg_sessions *t)
{
    if (t->count < t->max || wsg_list_empty(&t->idle))
        return;
    wsg_session *oldest = wsg_container_of(t->idle.next, wsg_session, idle);
    unlink_session(t, oldest);
    session_free(oldest);
    t->evicted++;
}

wsg_session *wsg_sessions_attach(wsg_sessions *t, wsg_str key, uint64_t now,
                                 wsg_backend **backend)
{
    *backend = NULL;
    if (key.len == 0 || key.len > MAX_KEY)
        return NULL;
    uint32_t hash = hash_key(key.p, key.len);
    pthread_mutex_lock(&t->lock);
    wsg_session *s = t->buckets[hash & (t->bucket_count - 1)];
    while (s && !(s->key_len == key.len && memcmp(s->key, key.p, key.len) == 0))
        s = s->next;
    if (s == NULL) {
        make_room(t);
        s = calloc(1, sizeof(*s) + key.len);
        if (s == NULL) {
            pthread_mutex_unlock(&t->lock);
            return NULL;
        }
        s->key_len = (uint16_t)key.len;
        memcpy(s->key, key.p, key.len);
        size_t b = hash & (t->bucket_count - 1);
        s->next = t->buckets[b];
        t->buckets[b] = s;
        t->count++;
        maybe_grow(t);
    }
    if (wsg_list_linked(&s->idle))
        wsg_list_remove(&s->idle);
    if (s->sockets == UINT16_MAX) {
        /* 65535 sockets of one client: no more share the session. */
        pthread_mutex_unlock(&t->lock);
        return NULL;
    }
    s->sockets++;
    s->last_activity = now;
    if (s->backend) {
        wsg_backend_ref(s->backend);
        *backend = s->backend;
    }
    pthread_mutex_unlock(&t->lock);
    return s;
}

void wsg_sessions_assign(wsg_sessions *t, wsg_session *s, wsg_backend *b)
{
    pthread_mutex_lock(&t->lock);
    wsg_backend *old = s->backend;
    wsg_backend_ref(b);
    atomic_fetch_add_explicit(&b->sticky, 1, memory_order_relaxed);
    s->backend = b;
    pthread_mutex_unlock(&t->lock);
    if (old) {
        atomic_fetch_sub_explicit(&old->sticky, 1, memory_order_relaxed);
        wsg_backend_unref(old);
    }
}

void wsg_sessions_detach(wsg_sessions *t, wsg_session *s, uint64_t last_activity)
{
    pthread_mutex_lock(&t->lock);
    if (last_activity > s->last_activity)
        s->last_activity = last_activity;
    if (--s->sockets == 0) {
        /* Keep the list ordered by activity. A socket's last message is
         * usually recent, so the place is found a few steps from the end. */
        wsg_list *at = t->idle.prev;
        while (at != &t->idle &&
               wsg_container_of(at, wsg_session, idle)->last_activity > s->last_activity)
            at = at->prev;
        wsg_list_insert_tail(at->next, &s->idle);
    }
    pthread_mutex_unlock(&t->lock);
}

size_t wsg_sessions_expire(wsg_sessions *t, uint64_t now, uint64_t timeout)
{
    size_t n = 0;
    pthread_mutex_lock(&t->lock);
    while (!wsg_list_empty(&t->idle)) {
        wsg_session *s = wsg_container_of(t->idle.next, wsg_session, idle);
        /* Activity may be stamped a moment after `now` was read. */
        /* unlink_session took the freed session off the idle list: s is the next one. */
        // NOLINTNEXTLINE(clang-analyzer-unix.Malloc)
        if (s->last_activity > now || now - s->last_activity < timeout)
            break;
        unlink_session(t, s);
        session_free(s);
        n++;
    }
    t->expired += n;
    pthread_mutex_unlock(&t->lock);
    return n;
}

size_t wsg_sessions_count(wsg_sessions *t)
{
    pthread_mutex_lock(&t->lock);
    size_t n = t->count;
    pthread_mutex_unlock(&t->lock);
    return n;
}
