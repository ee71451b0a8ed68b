/* Sticky sessions: sticky key (the clientId) -> backend, kept after the
 * socket closes so that a reconnect lands on the same backend.
 *
 * One hash table with one mutex, taken when a session attaches, detaches,
 * moves or is swept: per connection, never per message. A session with a
 * connected socket never expires; one without sockets sits in an LRU list
 * by its last activity and is forgotten after SESSION_TIMEOUT, or earlier
 * when the table is full (the longest idle goes first).
 *
 * Memory per session: sizeof(wsg_session) (48 bytes) + the key, rounded up
 * to malloc's 16-byte chunks with its 8-byte header, plus one bucket
 * pointer: 88 bytes per session for a 16-byte clientId, measured with
 * mallinfo2 over 1,000,000 sessions.
 */
#ifndef WSG_SESSIONS_H
#define WSG_SESSIONS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "core/list.h"
#include "core/str.h"
#include "registry/registry.h"

typedef struct wsg_session {
    struct wsg_session *next; /* hash chain */
    wsg_list idle;            /* in the LRU while no socket uses it */
    wsg_backend *backend;     /* a reference; NULL before the first pick */
    uint64_t last_activity;   /* monotonic ms */
    uint16_t sockets;         /* connected sockets using this session */
    uint16_t key_len;
    char key[];
} wsg_session;

typedef struct wsg_sessions {
    pthread_mutex_t lock;
    wsg_session **buckets;
    size_t bucket_count; /* a power of two */
    size_t count;
    size_t max;
    wsg_list idle;       /* oldest activity first */
    uint64_t evicted;
    uint64_t expired;
} wsg_sessions;

void wsg_sessions_init(wsg_sessions *t, size_t max);
void wsg_sessions_deinit(wsg_sessions *t);

/* Finds or creates the session of `key` and counts a socket on it. Returns
 * the session (it stays valid until the matching detach) with *backend
 * set to its backend with a new reference (NULL when it has none yet), or
 * NULL when out of memory or the key is longer than 1024 bytes. */
wsg_session *wsg_sessions_attach(wsg_sessions *t, wsg_str key, uint64_t now,
                                 wsg_backend **backend);

/* Sets the backend of a session (after a pick or a move). */
void wsg_sessions_assign(wsg_sessions *t, wsg_session *s, wsg_backend *b);

/* Ends one socket's use of a session; `last_activity` is the socket's last
 * message time. */
void wsg_sessions_detach(wsg_sessions *t, wsg_session *s, uint64_t last_activity);

/* Forgets idle sessions older than `timeout` ms. Returns how many. */
size_t wsg_sessions_expire(wsg_sessions *t, uint64_t now, uint64_t timeout);

/* Sessions now (connected or idle). */
size_t wsg_sessions_count(wsg_sessions *t);

#endif
