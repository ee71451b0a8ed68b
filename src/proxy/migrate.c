/* Live failover: a session moves to another backend while its client stays
 * connected.
 *
 * A session moves when its upstream ends without a close frame (EOF, reset,
 * unanswered pings), when its backend is declared down or unregistered, and
 * when its backend drains (then between two messages, losslessly). The move:
 *
 *   1. A failed upstream is dropped. If the backend was in the middle of a
 *      message toward the client, that message can never be completed: the
 *      client gets 1011 instead. If the client was in the middle of a message,
 *      the rest of it is dropped (counted): no backend gets half a message.
 *      A drained backend instead gets a close frame and retires: its answers
 *      to messages it already had still reach the client, until its own
 *      close frame (or CLOSE_TIMEOUT), so a drain loses nothing.
 *   2. Client frames arriving meanwhile are held, in order, up to
 *      MIGRATION_BUFFER; past that the client is simply not read.
 *   3. After a random delay (jitter, so that a big backend's death is no
 *      thundering herd) and within MIGRATION_CONCURRENCY dials per worker
 *      (the others queue, and a dial that ends hands its slot to the next at
 *      once), a backend chosen by the balancer, never the one left, is
 *      dialled with the same request, X-Wsgate-Migrated-From, and exactly
 *      the subprotocol and permessage-deflate parameters the session runs
 *      with. A backend that will not agree to them ends the session with
 *      1011.
 *   4. On its 101, once the retiring backend is done, the held frames go
 *      out first, then frames flow again.
 *      No backend found within MIGRATION_TIMEOUT: the client gets 1013.
 *
 * Messages already handed to a failed backend may have died with it (at
 * most once; the bytes are counted); none is delivered twice or truncated.
 */
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "proxy/proxy_int.h"

/* Pause between two dial rounds when no backend is eligible right now. */
#define RETRY_MS 200
/* Longest random delay before a moving session's first dial. */
#define MAX_JITTER_MS 500
/* Longest pause between two failed dials of one moving session. */
#define MAX_RETRY_BACKOFF_MS 1000

static uint32_t random_below(wsg_bridge *b, uint32_t n)
{
    uint32_t r;
    if (n == 0)
        return 0;
    wsg_rand_bytes(&b->proxy->worker->rng, &r, sizeof(r));
    return r % n;
}

bool migrate_possible(const wsg_bridge *b)
{
    const uint16_t closing = BF_CLIENT_SENT_CLOSE | BF_CLIENT_GOT_CLOSE | BF_BACKEND_SENT_CLOSE |
                            BF_BACKEND_GOT_CLOSE;
    return b->state == B_OPEN && !(b->flags & closing) && b->mig == NULL && b->up &&
           b->up->state == U_OPEN && !b->proxy->closing_all;
}

void migrate_abandon_retiring(wsg_bridge *b)
{
    migration *m = b->mig;
    if (m == NULL || m->retiring == NULL)
        return;
    bridge_close_upstream(m->retiring);
    m->retiring = NULL;
}

static void try_dial(wsg_bridge *b, uint64_t now);

/* A dial of `b`, if one was under way, ended: its slot goes to the
 * sessions queued for one, in the order they asked. */
static void end_dial(wsg_bridge *b)
{
    wsg_proxy *px = b->proxy;
    if (!b->mig->dialing)
        return;
    b->mig->dialing = false;
    px->dials_in_flight--;
    uint64_t now = bridge_now(b);
    while (!px->closing_all && !wsg_list_empty(&px->dial_queue) &&
           px->dials_in_flight < bridge_config(b)->migration_concurrency) {
        wsg_list *first = px->dial_queue.next;
        /* Always linked; said for clang's analyzer, which loses track of
         * the queue across try_dial(). */
        if (first->prev == NULL)
            break;
        wsg_list_remove(first);
        wsg_bridge *waiter = wsg_container_of(first, migration, queued)->bridge;
        if (waiter->state == B_ENDING)
            continue; /* it ended while queued; bridge_free() frees the rest */
        try_dial(waiter, now);
        bridge_arm(waiter, migrate_next_due(waiter));
    }
}

void migrate_free(wsg_bridge *b)
{
    migration *m = b->mig;
    if (m == NULL)
        return;
    migrate_abandon_retiring(b);
    if (wsg_list_linked(&m->queued))
        wsg_list_remove(&m->queued);
    end_dial(b);
    b->proxy->moving--;
    wsg_buf_free(&m->hold);
    wsg_buf_free(&m->early);
    if (m->left)
        wsg_backend_unref(m->left);
    free(m);
    b->mig = NULL;
}

void migrate_give_up(wsg_bridge *b, uint16_t code, const char *reason)
{
    wsg_count(&b->proxy->counters, WSG_C_MIGRATIONS_FAILED, 1);
    wsg_count(&b->proxy->counters, WSG_C_MIGRATION_LOST_BYTES,
              b->mig ? wsg_buf_len(b->mig->hold) : 0);
    wsg_log_warn("session could not move", "conn=%llu from=%s to=%s code=%u why=\"%s\"",
                 (unsigned long long)b->id, b->mig && b->mig->left ? b->mig->left->id : "-",
                 b->up && b->up->backend ? b->up->backend->id : "-", code, reason);
    migrate_free(b);
    bridge_close_both(b, code, reason, WSG_WS_CLOSE_GOING_AWAY, "session abandoned", reason);
}

void migrate_begin(wsg_bridge *b, const char *why, bool graceful)
{
    wsg_proxy *px = b->proxy;
    wsg_upstream *u = b->up;
    uint64_t now = bridge_now(b);
    if (!wsg_ws_stream_at_message_boundary(&u->rx)) {
        /* The client has part of a message no other backend can finish. */
        wsg_count(&px->counters, WSG_C_MIGRATIONS_FAILED, 1);
        bridge_close_both(b, WSG_WS_CLOSE_INTERNAL, "backend failed mid-message",
                          WSG_WS_CLOSE_GOING_AWAY, "session abandoned", why);
        bridge_release_upstream(b);
        return;
    }
    migration *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        bridge_close_both(b, WSG_WS_CLOSE_INTERNAL, "out of memory", WSG_WS_CLOSE_GOING_AWAY,
                          "session abandoned", "out of memory while moving");
        bridge_release_upstream(b);
        return;
    }
    bool retire = graceful && bridge_can_frame_backend(b);
    if (retire)
        bridge_close_frame_to_backend(b, WSG_WS_CLOSE_GOING_AWAY, "session moved");
    else
        wsg_count(&px->counters, WSG_C_MIGRATION_LOST_BYTES, wsg_sock_pending(&u->sock));
    m->bridge = b;
    m->left = u->backend;
    wsg_backend_ref(m->left);
    atomic_fetch_add_explicit(&m->left->migrations_out, 1, memory_order_relaxed);
    m->started = now;
    m->deadline = now + bridge_config(b)->migration_timeout;
    /* Spread the dials of many sessions leaving at once over a window
     * that grows with their number. */
    uint32_t window = px->moving / 4 < MAX_JITTER_MS ? px->moving / 4 : MAX_JITTER_MS;
    m->not_before = now + random_below(b, window + 1);
    b->mig = m;
    px->moving++;
    if (!wsg_ws_stream_at_message_boundary(&b->rx)) {
        m->dropping = true;
        b->rx.flags |= WSG_WS_S_STOP_AT_END;
        wsg_count(&px->counters, WSG_C_MIGRATION_DROPPED, 1);
    }
    b->flags &= (uint16_t)~(BF_DRAIN_PENDING | BF_BACKEND_GOT_CLOSE);
    wsg_log_info("session moving", "conn=%llu from=%s why=\"%s\"", (unsigned long long)b->id,
                 m->left->id, why);
    if (retire) {
        /* The old backend keeps its socket (and its session count) until it
         * has answered what it was asked and closed. */
        u->state = U_RETIRING;
        m->retiring = u;
        m->retire_deadline = now + bridge_config(b)->close_timeout;
        b->up = NULL;
    } else {
        bridge_release_upstream(b);
    }
    bridge_sync_reading(b);
    bridge_arm(b, m->not_before);
}

static void try_dial(wsg_bridge *b, uint64_t now)
{
    wsg_proxy *px = b->proxy;
    migration *m = b->mig;
    if (px->dials_in_flight >= bridge_config(b)->migration_concurrency) {
        /* end_dial() calls it; until then only the deadline is due. */
        wsg_list_insert_tail(&px->dial_queue, &m->queued);
        m->not_before = m->deadline;
        return;
    }
    wsg_service *svc = wsg_registry_service(px->gw->registry, wsg_str_cstr(m->left->service));
    if (svc == NULL)
        svc = px->gw->registry->default_service;
    wsg_str key = b->session ? wsg_str_make(b->session->key, b->session->key_len)
                             : wsg_str_make(NULL, 0);
    wsg_backend *next = wsg_registry_pick(px->gw->registry, svc, key, NULL, m->left, now);
    if (next == NULL) {
        m->not_before = now + RETRY_MS;
        return;
    }
    m->dials++;
    int rc = dial_start(b, next, m->left->id);
    if (rc < 0) {
        wsg_backend_mark_suspect(next, now, SUSPECT_MS);
        wsg_backend_release(next);
        m->not_before = now + 10;
        return;
    }
    m->dialing = true;
    px->dials_in_flight++;
}

void migrate_on_timer(wsg_bridge *b, uint64_t now)
{
    migration *m = b->mig;
    if (m->retiring && now >= m->retire_deadline) {
        /* It did not close in time: what it still owes is lost. */
        migrate_retired(b);
        if (b->mig == NULL || b->state == B_ENDING)
            return;
        m = b->mig;
    }
    if (now >= m->deadline) {
        migrate_give_up(b, WSG_WS_CLOSE_TRY_LATER, "no backend available");
        return;
    }
    if (!m->dialing && !m->ready && now >= m->not_before)
        try_dial(b, now);
}

uint64_t migrate_next_due(const wsg_bridge *b)
{
    const migration *m = b->mig;
    uint64_t due = m->deadline;
    if (!m->dialing && !m->ready && m->not_before < due)
        due = m->not_before;
    if (m->dialing && b->up && dial_deadline(b->up) && dial_deadline(b->up) < due)
        due = dial_deadline(b->up);
    if (m->retiring && m->retire_deadline < due)
        due = m->retire_deadline;
    return due;
}

void migrate_dial_failed(wsg_bridge *b, const char *why)
{
    migration *m = b->mig;
    wsg_upstream *u = b->up;
    uint64_t now = bridge_now(b);
    if (u && u->backend)
        proxy_backend_failed(b, u->backend, "backend unreachable", why);
    bridge_release_upstream(b);
    end_dial(b);
    m->ready = false;
    /* The next backend at once, but a session that keeps failing (every
     * backend left is suspect: tried as a last resort) backs off, doubling
     * up to a second. */
    uint32_t shift = m->dials < 7 ? m->dials : 7;
    uint32_t backoff = 10u << shift;
    if (backoff > MAX_RETRY_BACKOFF_MS)
        backoff = MAX_RETRY_BACKOFF_MS;
    m->not_before = now + backoff / 2 + random_below(b, backoff / 2 + 1);
    bridge_arm(b, m->not_before);
}

/* The move is done: the next backend gets what was held, then frames
 * flow both ways again. */
static void complete(wsg_bridge *b)
{
    wsg_proxy *px = b->proxy;
    migration *m = b->mig;
    wsg_upstream *u = b->up;
    uint64_t now = bridge_now(b);
    char client[64];
    size_t held = wsg_buf_len(m->hold);
    if (held) {
        uv_buf_t buf = uv_buf_init((char *)wsg_buf_begin(m->hold), (unsigned)held);
        if (wsg_sock_write(&u->sock, &buf, 1) < 0) {
            migrate_dial_failed(b, "cannot write to the backend");
            return;
        }
    }
    if (b->session)
        wsg_sessions_assign(px->gw->sessions, b->session, u->backend);
    atomic_fetch_add_explicit(&u->backend->migrations_in, 1, memory_order_relaxed);
    wsg_registry_record_migration(px->gw->registry, m->left->id, u->backend->id, now);
    wsg_count(&px->counters, WSG_C_MIGRATIONS, 1);
    wsg_peer_format(&b->peer, client, sizeof(client));
    wsg_log_info("session migrated", "conn=%llu client=%s from=%s to=%s held_bytes=%zu ms=%llu",
                 (unsigned long long)b->id, client, m->left->id, u->backend->id, held,
                 (unsigned long long)(now - m->started));
    u->rx_at = stamp(now);
    wsg_buf *early = m->early;
    m->early = NULL;
    migrate_free(b);
    bridge_sync_reading(b);
    bridge_arm(b, now + bridge_config(b)->ping_interval);
    if (early && b->up == u)
        bridge_relay_from_backend(b, u, wsg_buf_begin(early), wsg_buf_len(early));
    wsg_buf_free(&early);
}

void migrate_switched(wsg_bridge *b, const uint8_t *early, size_t n)
{
    migration *m = b->mig;
    end_dial(b);
    if (n && wsg_buf_append(&m->early, early, n) < 0) {
        migrate_dial_failed(b, "out of memory");
        return;
    }
    m->ready = true;
    if (m->retiring == NULL)
        complete(b);
}

void migrate_retired(wsg_bridge *b)
{
    migration *m = b->mig;
    wsg_upstream *r = m ? m->retiring : NULL;
    if (r == NULL)
        return;
    if (!wsg_ws_stream_at_message_boundary(&r->rx)) {
        /* It stopped in the middle of a message to the client. */
        m->retiring = NULL;
        bridge_close_upstream(r);
        migrate_give_up(b, WSG_WS_CLOSE_INTERNAL, "backend failed mid-message");
        return;
    }
    m->retiring = NULL;
    bridge_close_upstream(r);
    if (m->ready)
        complete(b);
    else
        bridge_arm(b, migrate_next_due(b));
}

int migrate_hold(wsg_bridge *b, const uv_buf_t *bufs, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (wsg_buf_append(&b->mig->hold, bufs[i].base, bufs[i].len) < 0)
            return -1;
    }
    return 0;
}

bool migrate_hold_full(const wsg_bridge *b)
{
    return b->mig && wsg_buf_len(b->mig->hold) >= bridge_config(b)->migration_buffer;
}

void migrate_check_drain(wsg_bridge *b)
{
    wsg_upstream *u = b->up;
    if (!(b->flags & BF_DRAIN_PENDING) || !migrate_possible(b))
        return;
    /* Between two messages both ways, with nothing still queued for the
     * old backend: the move loses nothing. */
    if (!wsg_ws_stream_at_message_boundary(&b->rx) || !wsg_ws_stream_at_message_boundary(&u->rx) ||
        u->held || wsg_sock_pending(&u->sock) > 0)
        return;
    migrate_begin(b, "backend draining", true);
}
