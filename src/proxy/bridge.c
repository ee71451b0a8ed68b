/* The bridge: one client and its backend, relayed frame by frame.
 *
 * Reads go into the worker's scratch buffer, the pass-through stream
 * rewrites them in place (a fresh masking key toward the backend), and one
 * sendmsg forwards the result. Nothing is copied unless the other side is
 * slow: then the rest waits in that side's queue, and above the high-water
 * mark this side stops being read until the queue drains (backpressure).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "proxy/proxy_int.h"

/* Forwarded pieces gathered per read before one sendmsg; more than this
 * many (a flood of tiny control frames) go out in several calls. */
#define RELAY_IOV 64
/* How long an HTTP answer waits for the client to stop sending before the
 * socket is closed: long enough for the answer to arrive, short enough to
 * hold no resources. */
#define LINGER_MS 1000

typedef struct relay_out {
    uv_buf_t iov[RELAY_IOV];
    unsigned n;
    /* Toward a backend: the messages the pieces end, and whether they
     * begin at a message boundary. */
    uint32_t messages;
    bool whole;
} relay_out;

static void on_client_event(wsg_sock *s, int status, int events);
static void send_to_backend(wsg_bridge *b, relay_out *o);
static void send_to_client(wsg_bridge *b, relay_out *o);

uint64_t bridge_now(const wsg_bridge *b)
{
    return uv_now(&b->proxy->worker->loop);
}

const wsg_config *bridge_config(const wsg_bridge *b)
{
    return b->proxy->gw->cfg;
}

void bridge_arm(wsg_bridge *b, uint64_t due)
{
    if (!wsg_wheel_scheduled(&b->timer.node) || due < b->timer.node.due)
        wsg_timer_schedule(b->proxy->worker, &b->timer, due);
}

/* ---- lifetime --------------------------------------------------------- */

void bridge_not_pending(wsg_bridge *b)
{
    if (!(b->flags & BF_PENDING))
        return;
    b->flags &= (uint16_t)~BF_PENDING;
    atomic_fetch_sub_explicit(&b->proxy->gw->pending, 1, memory_order_relaxed);
}

/* Gives back the connection's place in its address's count: when it ends,
 * not when its socket is finally freed, so that a refused client may try
 * again at once. */
static void release_address(wsg_bridge *b)
{
    if (b->counted == NULL)
        return;
    wsg_clients_release(b->proxy->gw->addresses, b->counted, bridge_now(b));
    b->counted = NULL;
}

static void bridge_free(wsg_bridge *b)
{
    wsg_proxy *p = b->proxy;
    wsg_timer_cancel(p->worker, &b->timer);
    wsg_list_remove(&b->link);
    atomic_store_explicit(&p->live, wsg_proxy_live(p) - 1, memory_order_relaxed);
    wsg_buf_free(&b->held);
    upgrade_free(b);
    migrate_free(b);
    if (b->session)
        wsg_sessions_detach(p->gw->sessions, b->session,
                            past(uv_now(&p->worker->loop), b->msg_at));
    release_address(b);
    bridge_not_pending(b);
    free(b->request);
    free(b->agreed);
    wsg_fd_budget_give(&p->gw->fds, 2);
    atomic_fetch_sub_explicit(&p->gw->clients, 1, memory_order_relaxed);
    free(b);
}

static void on_client_closed(uv_handle_t *h)
{
    wsg_bridge *b = wsg_container_of(h, wsg_bridge, client.poll);
    if (--b->handles == 0)
        bridge_free(b);
}

static void on_upstream_closed(uv_handle_t *h)
{
    wsg_upstream *u = wsg_container_of(h, wsg_upstream, sock.poll);
    wsg_bridge *b = u->bridge;
    if (u->state == U_OPEN || u->state == U_RETIRING)
        wsg_buf_free(&u->held);
    else
        dial_free(u);
    free(u);
    if (--b->handles == 0)
        bridge_free(b);
}

void bridge_close_upstream(wsg_upstream *u)
{
    if (u->backend)
        wsg_backend_release(u->backend);
    u->backend = NULL;
    wsg_sock_close(&u->sock, on_upstream_closed);
}

void bridge_release_upstream(wsg_bridge *b)
{
    wsg_upstream *u = b->up;
    if (u == NULL)
        return;
    b->up = NULL;
    bridge_close_upstream(u);
}

static void close_client_socket(wsg_bridge *b)
{
    if (!wsg_sock_is_closing(&b->client))
        wsg_sock_close(&b->client, on_client_closed);
}

/* This worker's counters for the bridge's current backend. */
static wsg_backend_stats *backend_stats(const wsg_bridge *b)
{
    return &b->up->backend->stats[b->proxy->worker->index];
}

/* ---- reading control and backpressure ------------------------------- */

void bridge_sync_reading(wsg_bridge *b)
{
    wsg_upstream *u = b->up;
    bool relaying = b->state == B_OPEN || b->state == B_CLOSING;
    bool client_on = b->state == B_REQUEST ||
                     (relaying && !(u && u->stall_at) && !migrate_hold_full(b)) ||
                     (b->state == B_ENDING && (b->flags & BF_LINGER) &&
                      wsg_sock_pending(&b->client) == 0);
    if (!wsg_sock_is_closing(&b->client))
        wsg_sock_set_reading(&b->client, client_on);
    if (u && !wsg_sock_is_closing(&u->sock)) {
        /* A new backend of a moving session is not read until the move is
         * complete, so its frames cannot cut into a retiring backend's. */
        bool up_on = u->state == U_HANDSHAKE ||
                     ((relaying || b->state == B_ANSWERING) && !b->stall_at && !b->mig);
        wsg_sock_set_reading(&u->sock, up_on);
    }
    wsg_upstream *r = b->mig ? b->mig->retiring : NULL;
    if (r && !wsg_sock_is_closing(&r->sock))
        wsg_sock_set_reading(&r->sock, relaying && !b->stall_at);
}

/* Called after bytes were queued toward the client: above the high-water
 * mark the backend stops being read, and the slow-consumer clock starts. */
static void note_client_backlog(wsg_bridge *b)
{
    if (b->stall_at || wsg_sock_pending(&b->client) <= bridge_config(b)->write_high_water)
        return;
    uint64_t now = bridge_now(b);
    b->stall_at = stamp(now);
    wsg_count(&b->proxy->counters, WSG_C_BACKPRESSURE_PAUSES, 1);
    if (b->up && b->up->backend)
        wsg_backend_count(&backend_stats(b)->backpressure_pauses, 1);
    bridge_sync_reading(b);
    bridge_arm(b, now + bridge_config(b)->slow_consumer_timeout);
}

static void note_backend_backlog(wsg_bridge *b)
{
    wsg_upstream *u = b->up;
    if (u->stall_at || wsg_sock_pending(&u->sock) <= bridge_config(b)->write_high_water)
        return;
    uint64_t now = bridge_now(b);
    u->stall_at = stamp(now);
    wsg_count(&b->proxy->counters, WSG_C_BACKPRESSURE_PAUSES, 1);
    wsg_backend_count(&backend_stats(b)->backpressure_pauses, 1);
    bridge_sync_reading(b);
    bridge_arm(b, now + bridge_config(b)->slow_consumer_timeout);
}

/* ---- writing ------------------------------------------------------------ */

static void client_gone(wsg_bridge *b, long err);

int bridge_write_client(wsg_bridge *b, const void *data, size_t len)
{
    uv_buf_t buf = uv_buf_init((char *)data, (unsigned)len);
    int rc = wsg_sock_write(&b->client, &buf, 1);
    if (rc < 0) {
        client_gone(b, rc);
        return rc;
    }
    b->bytes_out += len;
    note_client_backlog(b);
    return 0;
}

int bridge_write_backend(wsg_bridge *b, const void *data, size_t len)
{
    uv_buf_t buf = uv_buf_init((char *)data, (unsigned)len);
    int rc = wsg_sock_write(&b->up->sock, &buf, 1);
    if (rc < 0) {
        bridge_upstream_failed(b, "cannot write to the backend");
        return rc;
    }
    note_backend_backlog(b);
    return 0;
}

bool bridge_can_frame_client(const wsg_bridge *b)
{
    if (b->flags & BF_CLIENT_GOT_CLOSE || wsg_sock_is_closing(&b->client))
        return false;
    return b->up == NULL || wsg_ws_stream_at_frame_boundary(&b->up->rx);
}

bool bridge_can_frame_backend(const wsg_bridge *b)
{
    const wsg_upstream *u = b->up;
    return u && u->state == U_OPEN && !(b->flags & BF_BACKEND_GOT_CLOSE) &&
           !wsg_sock_is_closing(&u->sock) && wsg_ws_stream_at_frame_boundary(&b->rx);
}

/* Sends a close frame of our own to the client, when the stream toward it
 * is between frames; otherwise the TCP close alone must do. */
static void close_frame_to_client(wsg_bridge *b, uint16_t code, const char *reason)
{
    uint8_t frame[WSG_WS_MAX_CONTROL_FRAME];
    if (!bridge_can_frame_client(b))
        return;
    size_t n = wsg_ws_close_frame(frame, code, reason, NULL);
    b->flags |= BF_CLIENT_GOT_CLOSE;
    b->close_code = code;
    bridge_write_client(b, frame, n);
}

void bridge_close_frame_to_backend(wsg_bridge *b, uint16_t code, const char *reason)
{
    uint8_t frame[WSG_WS_MAX_CONTROL_FRAME];
    if (!bridge_can_frame_backend(b))
        return;
    size_t n = wsg_ws_close_frame(frame, code, reason, &b->proxy->worker->rng);
    b->flags |= BF_BACKEND_GOT_CLOSE;
    bridge_write_backend(b, frame, n);
}

/* ---- ending ------------------------------------------------------------- */

static void log_close(wsg_bridge *b, const char *why, uint64_t now)
{
    char client[64];
    char reason[160];
    wsg_peer_format(&b->peer, client, sizeof(client));
    wsg_log_quote(reason, sizeof(reason), why, strlen(why));
    wsg_log_info("connection closed",
                 "conn=%llu client=%s backend=%s code=%u duration_ms=%llu bytes_in=%llu "
                 "bytes_out=%llu reason=%s",
                 (unsigned long long)b->id, client,
                 b->up && b->up->backend ? b->up->backend->id : "-", b->close_code,
                 (unsigned long long)(now - b->opened_at), (unsigned long long)b->bytes_in,
                 (unsigned long long)b->bytes_out, reason);
}

static void finish_client(wsg_bridge *b)
{
    if ((b->flags & BF_LINGER) && !wsg_sock_is_closing(&b->client)) {
        /* Half-close and drain what the client still sends, so that its
         * kernel does not answer our close with a reset that could destroy
         * the answer before the client read it. */
        shutdown(b->client.fd, SHUT_WR);
        uint64_t linger_end = bridge_now(b) + LINGER_MS;
        if (linger_end < around(bridge_now(b), b->end_at))
            b->end_at = stamp(linger_end);
        bridge_sync_reading(b);
        wsg_timer_schedule(b->proxy->worker, &b->timer, around(bridge_now(b), b->end_at));
        return;
    }
    close_client_socket(b);
}

void bridge_end(wsg_bridge *b, const char *why)
{
    if (b->state == B_ENDING)
        return;
    uint64_t now = bridge_now(b);
    if (b->flags & BF_ESTABLISHED) {
        log_close(b, why, now);
        wsg_count(&b->proxy->counters, WSG_C_CONNECTIONS_CLOSED, 1);
        wsg_observe(&b->proxy->counters.duration, &wsg_duration_def,
                    (now - b->opened_at) * 1000);
    }
    b->state = B_ENDING;
    bridge_not_pending(b);
    release_address(b);
    migrate_abandon_retiring(b);
    b->end_at = stamp(now + bridge_config(b)->close_timeout);
    if (b->up && wsg_sock_pending(&b->up->sock) == 0)
        bridge_release_upstream(b);
    if (wsg_sock_pending(&b->client) == 0)
        finish_client(b);
    bridge_sync_reading(b);
    wsg_timer_schedule(b->proxy->worker, &b->timer, around(now, b->end_at));
}

/* Ends the session with our own close frames toward both sides. */
void bridge_close_both(wsg_bridge *b, uint16_t client_code, const char *client_reason,
                       uint16_t backend_code, const char *backend_reason, const char *why)
{
    close_frame_to_client(b, client_code, client_reason);
    bridge_close_frame_to_backend(b, backend_code, backend_reason);
    bridge_end(b, why);
}

void bridge_close_client(wsg_bridge *b, uint16_t code, const char *reason)
{
    bridge_close_both(b, code, reason, WSG_WS_CLOSE_GOING_AWAY, "client closed by the gateway",
                      reason);
}

void bridge_upstream_failed(wsg_bridge *b, const char *why)
{
    if (b->up && b->up->state == U_OPEN) {
        wsg_count(&b->proxy->counters, WSG_C_MIGRATION_UNANSWERED, b->up->unanswered);
        b->up->unanswered = 0;
    }
    if (b->state == B_ENDING) {
        bridge_release_upstream(b);
        return;
    }
    if (migrate_possible(b)) {
        /* The backend went away without a close frame: not the
         * application's decision, so the client stays and moves. */
        migrate_begin(b, why, false);
        return;
    }
    /* The backend is gone: nothing more can be framed toward it. */
    if (b->up)
        b->flags |= BF_BACKEND_GOT_CLOSE;
    close_frame_to_client(b, WSG_WS_CLOSE_INTERNAL, "backend connection lost");
    bridge_end(b, why);
    bridge_release_upstream(b);
}

static void client_gone(wsg_bridge *b, long err)
{
    if (b->state == B_ENDING) {
        close_client_socket(b);
        return;
    }
    /* Nothing more can reach the client. */
    b->flags |= BF_CLIENT_GOT_CLOSE;
    wsg_buf_free(&b->client.out);
    bridge_close_frame_to_backend(b, WSG_WS_CLOSE_GOING_AWAY, "client went away");
    bridge_end(b, err == UV_EOF ? "client closed the connection" : uv_strerror((int)err));
    close_client_socket(b);
}

/* ---- relaying --------------------------------------------------------- */

/* Adds a piece. Each span adds at most one, and the relay loops send a
 * full batch at the end of a span, so there is always room. */
static void out_add(relay_out *o, uint8_t *p, size_t n)
{
    if (n == 0)
        return;
    o->iov[o->n++] = uv_buf_init((char *)p, (unsigned)n);
}

/* Counts the client messages written to the current backend that it has
 * not answered yet. */
static void note_unanswered(wsg_bridge *b, uint32_t messages)
{
    wsg_upstream *u = b->up;
    uint32_t sum = u->unanswered + messages;
    u->unanswered = sum > UINT16_MAX ? UINT16_MAX : (uint16_t)sum;
}

/* A write to the backend failed. A plain socket's sendmsg() fails whole:
 * then the backend took none of these pieces, and when they are whole
 * messages and the session moves, the next backend gets them instead.
 * (TLS writes record by record, and running out of memory comes after a
 * partial send: the backend may have some, so they are not sent again but
 * counted as possibly lost.) */
static void write_to_backend_failed(wsg_bridge *b, relay_out *o, unsigned n, int err)
{
    bool untouched = err != UV_ENOMEM && !wsg_sock_ssl(&b->up->sock);
    bool whole = o->whole && wsg_ws_stream_at_message_boundary(&b->rx);
    char why[96];
    snprintf(why, sizeof(why), "cannot write to the backend: %s", uv_strerror(err));
    bridge_upstream_failed(b, why);
    if (b->mig == NULL)
        return;
    if (!untouched) {
        wsg_count(&b->proxy->counters, WSG_C_MIGRATION_UNANSWERED, o->messages);
        return;
    }
    if (!whole || b->mig->dropping) {
        /* Part of a message at either end: no backend may get it. The
         * messages ending here are dropped; one cut at the end was
         * counted by migrate_begin(). */
        wsg_count(&b->proxy->counters, WSG_C_MIGRATION_DROPPED, o->messages);
        return;
    }
    if (migrate_hold(b, o->iov, n) < 0)
        bridge_close_client(b, WSG_WS_CLOSE_INTERNAL, "out of memory");
}

static void send_to_backend(wsg_bridge *b, relay_out *o)
{
    unsigned n = o->n;
    o->n = 0;
    if (n == 0)
        return;
    if (b->mig) {
        /* Between two backends: held, in order, for the next one. */
        if (migrate_hold(b, o->iov, n) < 0)
            bridge_close_client(b, WSG_WS_CLOSE_INTERNAL, "out of memory");
        else if (migrate_hold_full(b))
            bridge_sync_reading(b);
        return;
    }
    if (b->up == NULL || b->up->state != U_OPEN || wsg_sock_is_closing(&b->up->sock))
        return;
    int rc = wsg_sock_write(&b->up->sock, o->iov, n);
    if (rc < 0) {
        write_to_backend_failed(b, o, n, rc);
        return;
    }
    note_unanswered(b, o->messages);
    o->messages = 0;
    o->whole = wsg_ws_stream_at_message_boundary(&b->rx);
    note_backend_backlog(b);
}

static void send_to_client(wsg_bridge *b, relay_out *o)
{
    unsigned n = o->n;
    o->n = 0;
    if (n == 0 || wsg_sock_is_closing(&b->client))
        return;
    size_t bytes = 0;
    for (unsigned i = 0; i < n; i++)
        bytes += o->iov[i].len;
    if (wsg_sock_write(&b->client, o->iov, n) < 0) {
        client_gone(b, UV_EPIPE);
        return;
    }
    b->bytes_out += bytes;
    note_client_backlog(b);
}

static uint16_t close_code_of(const wsg_ws_span *span)
{
    if (span->header.len < 2)
        return WSG_WS_CLOSE_NO_STATUS;
    return (uint16_t)(span->payload[0] << 8 | span->payload[1]);
}

static bool relaying(const wsg_bridge *b)
{
    return b->state == B_OPEN || b->state == B_CLOSING;
}

static void enter_closing(wsg_bridge *b)
{
    b->state = B_CLOSING;
    uint64_t end = bridge_now(b) + bridge_config(b)->close_timeout;
    b->end_at = stamp(end);
    bridge_arm(b, end);
}

/* A control frame from the client. Returns false when the bridge ended. */
static bool client_control(wsg_bridge *b, relay_out *o, uint8_t *frame, const wsg_ws_span *span)
{
    if (liveness_is_our_pong(b, span))
        return true;
    /* Read the close code while the payload is still in the clear. */
    uint16_t code = close_code_of(span);
    wsg_ws_control_remask(frame, &span->header, &b->proxy->worker->rng);
    if (span->header.opcode != WSG_WS_OP_CLOSE) {
        out_add(o, frame, span->len);
        return true;
    }
    b->flags |= BF_CLIENT_SENT_CLOSE;
    if (!(b->flags & BF_CLIENT_GOT_CLOSE))
        b->close_code = code;
    if (b->mig) {
        /* No backend to ask: the gateway answers the close itself. */
        send_to_backend(b, o);
        migrate_free(b);
        bridge_release_upstream(b);
        bridge_close_both(b, b->close_code == WSG_WS_CLOSE_NO_STATUS ? WSG_WS_CLOSE_NORMAL
                                                                    : b->close_code,
                          "", WSG_WS_CLOSE_GOING_AWAY, "", "closed by the client while moving");
        return false;
    }
    if (!(b->flags & BF_BACKEND_GOT_CLOSE) && b->up && b->up->state == U_OPEN) {
        out_add(o, frame, span->len);
        b->flags |= BF_BACKEND_GOT_CLOSE;
    }
    if (b->flags & BF_CLIENT_GOT_CLOSE) {
        /* The client answered the backend's close: both handshakes done. */
        send_to_backend(b, o);
        bridge_end(b, "closed by the backend");
        return false;
    }
    enter_closing(b);
    return true;
}

static bool backend_control(wsg_bridge *b, relay_out *o, uint8_t *frame, const wsg_ws_span *span)
{
    if (liveness_is_our_pong(b, span))
        return true;
    if (span->header.opcode != WSG_WS_OP_CLOSE) {
        out_add(o, frame, span->len);
        return true;
    }
    b->flags |= BF_BACKEND_SENT_CLOSE;
    if (!(b->flags & BF_CLIENT_GOT_CLOSE)) {
        out_add(o, frame, span->len);
        b->flags |= BF_CLIENT_GOT_CLOSE;
        b->close_code = close_code_of(span);
    }
    if (b->flags & BF_CLIENT_SENT_CLOSE) {
        send_to_client(b, o);
        bridge_end(b, "closed by the client");
        return false;
    }
    enter_closing(b);
    return true;
}

static void protocol_error(wsg_bridge *b, const wsg_ws_span *span, bool from_client)
{
    char client[64];
    wsg_peer_format(&b->peer, client, sizeof(client));
    wsg_count(&b->proxy->counters, WSG_C_PROTOCOL_ERRORS, 1);
    wsg_log_info(from_client ? "client broke the WebSocket protocol"
                             : "backend broke the WebSocket protocol",
                 "conn=%llu client=%s code=%u why=\"%s\"", (unsigned long long)b->id, client,
                 span->close_code, span->why);
    if (from_client) {
        bridge_close_client(b, span->close_code, span->why);
    } else {
        bridge_close_both(b, WSG_WS_CLOSE_INTERNAL, "backend protocol error", span->close_code,
                          span->why, "backend broke the WebSocket protocol");
    }
}

/* Judges a new client message against MESSAGE_RATE. Returns false when
 * the bridge was closed for it; a message to drop sets BF_DROPPING. */
static bool over_message_rate(wsg_bridge *b, relay_out *o)
{
    const wsg_config *cfg = bridge_config(b);
    if (wsg_bucket_take(&b->messages, cfg->message_rate, cfg->message_burst, bridge_now(b), NULL))
        return true;
    if (strcmp(cfg->message_rate_action, "drop") == 0) {
        wsg_count(&b->proxy->counters, WSG_C_MESSAGES_DROPPED, 1);
        b->flags |= BF_DROPPING;
        return true;
    }
    send_to_backend(b, o);
    wsg_count(&b->proxy->counters, WSG_C_PROTOCOL_ERRORS, 1);
    bridge_close_client(b, WSG_WS_CLOSE_POLICY, "message rate exceeded");
    return false;
}

void bridge_relay_from_client(wsg_bridge *b, uint8_t *p, size_t n)
{
    wsg_proxy *px = b->proxy;
    relay_out o = {.n = 0, .whole = wsg_ws_stream_at_message_boundary(&b->rx)};
    bool limited = bridge_config(b)->message_rate > 0;
    while (n > 0 && relaying(b) && !(b->flags & BF_CLIENT_SENT_CLOSE)) {
        wsg_ws_span span;
        bool fresh = wsg_ws_stream_at_message_boundary(&b->rx);
        if (limited && fresh)
            b->rx.flags |= WSG_WS_S_STOP_AT_END; /* one message per span, to judge each */
        wsg_ws_stream_next(&b->rx, &px->from_client, &px->worker->rng, p, n, &span);
        switch (span.kind) {
        case WSG_WS_SPAN_DATA:
            if (limited && fresh && !over_message_rate(b, &o))
                return;
            if (b->flags & BF_DROPPING) {
                if (wsg_ws_stream_at_message_boundary(&b->rx))
                    b->flags &= (uint16_t)~BF_DROPPING;
                break;
            }
            if (b->mig && b->mig->dropping) {
                /* The rest of a message cut by a move: no backend may get
                 * half of it. The span ends where that message ends. */
                if (wsg_ws_stream_at_message_boundary(&b->rx))
                    b->mig->dropping = false;
                break;
            }
            out_add(&o, p, span.len);
            if (span.messages) {
                wsg_count(&px->counters, WSG_C_MESSAGES_FROM_CLIENTS, span.messages);
                b->msg_at = stamp(bridge_now(b));
                o.messages += span.messages;
            }
            break;
        case WSG_WS_SPAN_CONTROL:
            if (!client_control(b, &o, p, &span))
                return;
            break;
        case WSG_WS_SPAN_PARTIAL:
            if (wsg_buf_append(&b->held, p, span.len) < 0) {
                bridge_close_client(b, WSG_WS_CLOSE_INTERNAL, "out of memory");
                return;
            }
            break;
        case WSG_WS_SPAN_ERROR:
            send_to_backend(b, &o);
            protocol_error(b, &span, true);
            return;
        }
        p += span.len;
        n -= span.len;
        if (o.n == RELAY_IOV)
            send_to_backend(b, &o); /* whole spans: where the stream is now */
    }
    send_to_backend(b, &o);
    if (b->flags & BF_DRAIN_PENDING)
        migrate_check_drain(b);
}

/* A retiring backend's frames: its data messages still go to the client;
 * its close ends its retirement; its pings have no one to answer. Returns
 * false when the retirement ended. */
static bool retiring_control(wsg_bridge *b, const wsg_ws_span *span)
{
    if (span->header.opcode != WSG_WS_OP_CLOSE)
        return true;
    migrate_retired(b);
    return false;
}

static bool current(const wsg_bridge *b, const wsg_upstream *u)
{
    return u == b->up || (b->mig && u == b->mig->retiring);
}

void bridge_relay_from_backend(wsg_bridge *b, wsg_upstream *u, uint8_t *p, size_t n)
{
    wsg_proxy *px = b->proxy;
    bool retiring = u->state == U_RETIRING;
    relay_out o = {.n = 0};
    while (n > 0 && relaying(b) && current(b, u) && !(b->flags & BF_BACKEND_SENT_CLOSE)) {
        wsg_ws_span span;
        wsg_ws_stream_next(&u->rx, &px->from_backend, &px->worker->rng, p, n, &span);
        if (retiring && span.kind == WSG_WS_SPAN_CONTROL) {
            send_to_client(b, &o);
            if (!retiring_control(b, &span))
                return;
            p += span.len;
            n -= span.len;
            continue;
        }
        switch (span.kind) {
        case WSG_WS_SPAN_DATA:
            out_add(&o, p, span.len);
            if (span.messages) {
                wsg_count(&px->counters, WSG_C_MESSAGES_FROM_BACKENDS, span.messages);
                b->msg_at = stamp(bridge_now(b));
            }
            break;
        case WSG_WS_SPAN_CONTROL:
            if (!backend_control(b, &o, p, &span))
                return;
            break;
        case WSG_WS_SPAN_PARTIAL:
            if (wsg_buf_append(&u->held, p, span.len) < 0) {
                bridge_upstream_failed(b, "out of memory");
                return;
            }
            break;
        case WSG_WS_SPAN_ERROR:
            send_to_client(b, &o);
            if (retiring) {
                migrate_retired(b);
                return;
            }
            protocol_error(b, &span, false);
            return;
        }
        p += span.len;
        n -= span.len;
        if (o.n == RELAY_IOV)
            send_to_client(b, &o);
    }
    send_to_client(b, &o);
    if (b->flags & BF_DRAIN_PENDING)
        migrate_check_drain(b);
}

/* Puts bytes held back from the last read in front of the new ones, in
 * the headroom the scratch buffer keeps for this. */
static uint8_t *join_held(wsg_buf **held, uint8_t *p, size_t *n)
{
    size_t h = wsg_buf_len(*held);
    if (h == 0)
        return p;
    /* A held piece is at most one control frame (WSG_WS_MAX_CONTROL_FRAME),
     * which fits the headroom. */
    p -= h;
    memcpy(p, wsg_buf_begin(*held), h);
    *n += h;
    wsg_buf_free(held);
    return p;
}

/* Gateway-added latency, from a read to the write of what it brought, is
 * timed on one read in eight: the clock costs little, but not nothing. */
static uint64_t sample_start(wsg_proxy *px)
{
    return (++px->sample & 7) == 0 ? uv_hrtime() : 0;
}

static void sample_end(wsg_proxy *px, uint64_t t0)
{
    if (t0)
        wsg_observe(&px->counters.latency, &wsg_latency_def, (uv_hrtime() - t0) / 1000);
}

static void client_read(wsg_bridge *b)
{
    wsg_proxy *px = b->proxy;
    uint8_t *buf = px->worker->scratch + WSG_SCRATCH_HEADROOM;
    long n = wsg_sock_read(&b->client, buf, WSG_SCRATCH_SIZE);
    if (n == 0)
        return;
    if (n < 0) {
        client_gone(b, n);
        return;
    }
    b->rx_at = stamp(bridge_now(b));
    b->ping_at = 0;
    b->bytes_in += (uint64_t)n;
    wsg_count(&px->counters, WSG_C_BYTES_FROM_CLIENTS, (uint64_t)n);
    if (b->up && b->up->state == U_OPEN)
        wsg_backend_count(&backend_stats(b)->bytes_out, (uint64_t)n);
    size_t len = (size_t)n;
    uint8_t *p = join_held(&b->held, buf, &len);
    uint64_t t0 = sample_start(px);
    bridge_relay_from_client(b, p, len);
    sample_end(px, t0);
}

static void upstream_read(wsg_bridge *b, wsg_upstream *u)
{
    wsg_proxy *px = b->proxy;
    uint8_t *buf = px->worker->scratch + WSG_SCRATCH_HEADROOM;
    long n = wsg_sock_read(&u->sock, buf, WSG_SCRATCH_SIZE);
    if (n == 0)
        return;
    if (n < 0) {
        if (u->state == U_RETIRING)
            migrate_retired(b);
        else
            bridge_upstream_failed(b, n == UV_EOF ? "backend closed the connection"
                                                  : uv_strerror((int)n));
        return;
    }
    u->rx_at = stamp(bridge_now(b));
    u->ping_at = 0;
    u->unanswered = 0;
    wsg_count(&px->counters, WSG_C_BYTES_FROM_BACKENDS, (uint64_t)n);
    wsg_backend_count(&u->backend->stats[px->worker->index].bytes_in, (uint64_t)n);
    size_t len = (size_t)n;
    uint8_t *p = join_held(&u->held, buf, &len);
    uint64_t t0 = sample_start(px);
    bridge_relay_from_backend(b, u, p, len);
    sample_end(px, t0);
}

/* After an HTTP answer: drop whatever the client still sends until it
 * closes or the linger time is up. */
static void linger_read(wsg_bridge *b)
{
    uint8_t *buf = b->proxy->worker->scratch + WSG_SCRATCH_HEADROOM;
    long n = wsg_sock_read(&b->client, buf, WSG_SCRATCH_SIZE);
    if (n < 0)
        close_client_socket(b);
}

/* ---- events ------------------------------------------------------------- */

static void client_drained(wsg_bridge *b)
{
    size_t pending = wsg_sock_pending(&b->client);
    if (b->state == B_ENDING) {
        if (pending == 0)
            finish_client(b);
        return;
    }
    if (b->stall_at && pending <= bridge_config(b)->write_high_water / 2) {
        b->stall_at = 0;
        bridge_sync_reading(b);
    }
}

static void backend_drained(wsg_bridge *b)
{
    wsg_upstream *u = b->up;
    size_t pending = wsg_sock_pending(&u->sock);
    if (b->state == B_ENDING) {
        if (pending == 0)
            bridge_release_upstream(b);
        return;
    }
    if (u->stall_at && pending <= bridge_config(b)->write_high_water / 2) {
        u->stall_at = 0;
        bridge_sync_reading(b);
    }
    if (pending == 0 && (b->flags & BF_DRAIN_PENDING))
        migrate_check_drain(b);
}

static void on_client_event(wsg_sock *s, int status, int events)
{
    wsg_bridge *b = wsg_container_of(s, wsg_bridge, client);
    if (status < 0) {
        client_gone(b, wsg_sock_error(s, status));
        return;
    }
    if (events & UV_WRITABLE) {
        int rc = wsg_sock_flush(s);
        if (rc < 0) {
            client_gone(b, rc);
            return;
        }
        client_drained(b);
    }
    if (!(events & UV_READABLE) || wsg_sock_is_closing(s))
        return;
    switch ((bridge_state)b->state) {
    case B_REQUEST:
        upgrade_on_client_readable(b);
        break;
    case B_OPEN:
    case B_CLOSING:
        client_read(b);
        break;
    case B_ENDING:
        linger_read(b);
        break;
    default:
        break;
    }
}

/* A retiring backend: flush what was queued for it (our close frame),
 * read its last answers. */
static void retiring_event(wsg_bridge *b, wsg_upstream *u, int status, int events)
{
    if (status < 0 || ((events & UV_WRITABLE) && wsg_sock_flush(&u->sock) < 0)) {
        migrate_retired(b);
        return;
    }
    if ((events & UV_READABLE) && !wsg_sock_is_closing(&u->sock))
        upstream_read(b, u);
}

void bridge_on_upstream_event(wsg_sock *s, int status, int events)
{
    wsg_upstream *u = wsg_container_of(s, wsg_upstream, sock);
    wsg_bridge *b = u->bridge;
    if (b->mig && b->mig->retiring == u) {
        retiring_event(b, u, status, events);
        return;
    }
    if (b->up != u)
        return; /* a released upstream: its close is on the way */
    if (u->state != U_OPEN) {
        dial_on_event(u, status < 0 ? -1 : events);
        return;
    }
    if (status < 0) {
        bridge_upstream_failed(b, uv_strerror(wsg_sock_error(s, status)));
        return;
    }
    if (events & UV_WRITABLE) {
        int rc = wsg_sock_flush(s);
        if (rc < 0) {
            bridge_upstream_failed(b, uv_strerror(rc));
            return;
        }
        backend_drained(b);
    }
    if ((events & UV_READABLE) && b->up == u && !wsg_sock_is_closing(s))
        upstream_read(b, u);
}

/* ---- timers ------------------------------------------------------------- */

static void on_timer(wsg_timer *t)
{
    wsg_bridge *b = wsg_container_of(t, wsg_bridge, timer);
    uint64_t now = bridge_now(b);
    switch ((bridge_state)b->state) {
    case B_REQUEST:
    case B_CONNECTING:
    case B_ANSWERING:
        upgrade_timeout(b);
        break;
    case B_OPEN:
    case B_CLOSING:
        liveness_check(b, now);
        break;
    case B_ENDING:
        if (now >= around(now, b->end_at)) {
            bridge_release_upstream(b);
            close_client_socket(b);
        } else {
            wsg_timer_schedule(b->proxy->worker, &b->timer, around(now, b->end_at));
        }
        break;
    }
}

/* ---- opening ------------------------------------------------------------ */

static void log_open(const wsg_bridge *b, const wsg_str path)
{
    char client[64];
    char quoted[300];
    wsg_peer_format(&b->peer, client, sizeof(client));
    wsg_log_quote(quoted, sizeof(quoted), path.p, path.len);
    wsg_log_info("connection open", "conn=%llu client=%s backend=%s path=%s",
                 (unsigned long long)b->id, client, b->up->backend->id, quoted);
}

void bridge_open(wsg_bridge *b)
{
    uint64_t now = bridge_now(b);
    b->state = B_OPEN;
    b->flags |= BF_ESTABLISHED;
    bridge_not_pending(b);
    b->rx_at = stamp(now);
    b->msg_at = stamp(now);
    b->up->rx_at = stamp(now);
    wsg_count(&b->proxy->counters, WSG_C_CONNECTIONS_OPENED, 1);
    log_open(b, upgrade_target(b));
    bridge_sync_reading(b);
    wsg_timer_schedule(b->proxy->worker, &b->timer, now + bridge_config(b)->ping_interval);
    if (b->held) {
        /* Frames the client sent before it saw our 101. */
        wsg_buf *early = b->held;
        b->held = NULL;
        bridge_relay_from_client(b, wsg_buf_begin(early), wsg_buf_len(early));
        free(early);
    }
}

/* ---- creating and shutting down ----------------------------------------- */

wsg_bridge *bridge_create(wsg_proxy *p, int fd, const wsg_peer *peer)
{
    wsg_bridge *b = calloc(1, sizeof(*b));
    if (b == NULL || wsg_sock_open(&p->worker->loop, &b->client, fd, on_client_event) < 0) {
        free(b);
        return NULL;
    }
    uint64_t now = uv_now(&p->worker->loop);
    b->proxy = p;
    b->handles = 1;
    b->id = ++p->next_seq << 8 | (p->worker->index & 0xff);
    b->opened_at = now;
    b->rx_at = stamp(now);
    b->msg_at = stamp(now);
    b->close_code = WSG_WS_CLOSE_ABNORMAL;
    b->state = B_REQUEST;
    b->flags = BF_PENDING;
    atomic_fetch_add_explicit(&p->gw->pending, 1, memory_order_relaxed);
    wsg_bucket_init(&b->messages, p->gw->cfg->message_burst, now);
    b->timer.fire = on_timer;
    b->peer = *peer;
    wsg_list_insert_tail(&p->bridges, &b->link);
    atomic_store_explicit(&p->live, wsg_proxy_live(p) + 1, memory_order_relaxed);
    wsg_timer_schedule(p->worker, &b->timer, now + p->gw->cfg->handshake_timeout);
    bridge_sync_reading(b);
    return b;
}

void bridge_shutdown(wsg_bridge *b, bool now)
{
    if (relaying(b))
        bridge_close_both(b, WSG_WS_CLOSE_GOING_AWAY, "gateway shutting down",
                          WSG_WS_CLOSE_GOING_AWAY, "gateway shutting down", "gateway shutdown");
    else
        bridge_end(b, "gateway shutdown");
    if (!now)
        return;
    /* One last try to hand over what is queued, then close. */
    if (b->up)
        wsg_sock_flush(&b->up->sock);
    bridge_release_upstream(b);
    wsg_sock_flush(&b->client);
    close_client_socket(b);
}
