/* Liveness of a proxied connection: pings toward a silent side, and the
 * deadlines that end it (pong, slow consumer, idle, close handshake, a
 * migration's dial). One timer per connection, armed for the earliest rule
 * that may act, so a quiet connection costs no work between deadlines.
 *
 * wsgate's own pings carry a 4-byte token of this gateway and the send
 * time, so their pongs are recognised and never forwarded.
 */
#include <string.h>

#include "proxy/proxy_int.h"

bool liveness_is_our_pong(const wsg_bridge *b, const wsg_ws_span *span)
{
    return span->header.opcode == WSG_WS_OP_PONG && span->header.len == 12 &&
           memcmp(span->payload, b->proxy->gw->ping_token, 4) == 0;
}

static void ping_payload(const wsg_bridge *b, uint64_t now, uint8_t out[12])
{
    memcpy(out, b->proxy->gw->ping_token, 4);
    for (int i = 0; i < 8; i++)
        out[4 + i] = (uint8_t)(now >> (56 - 8 * i));
}

static void ping_client(wsg_bridge *b, uint64_t now)
{
    uint8_t payload[12];
    uint8_t frame[WSG_WS_MAX_CONTROL_FRAME];
    if (!bridge_can_frame_client(b))
        return;
    ping_payload(b, now, payload);
    size_t n = wsg_ws_control_frame(frame, WSG_WS_OP_PING, payload, sizeof(payload), NULL);
    b->ping_at = stamp(now);
    bridge_write_client(b, frame, n);
}

static void ping_backend(wsg_bridge *b, uint64_t now)
{
    uint8_t payload[12];
    uint8_t frame[WSG_WS_MAX_CONTROL_FRAME];
    if (!bridge_can_frame_backend(b))
        return;
    ping_payload(b, now, payload);
    size_t n = wsg_ws_control_frame(frame, WSG_WS_OP_PING, payload, sizeof(payload),
                                    &b->proxy->worker->rng);
    b->up->ping_at = stamp(now);
    bridge_write_backend(b, frame, n);
}

static uint64_t earliest(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* The next moment a liveness rule may act, from the current state. */
static uint64_t next_check(const wsg_bridge *b, uint64_t now)
{
    const wsg_config *cfg = bridge_config(b);
    const wsg_upstream *u = b->up;
    uint64_t due = b->ping_at ? past(now, b->ping_at) + cfg->pong_timeout
                              : past(now, b->rx_at) + cfg->ping_interval;
    if (u && u->state == U_OPEN) {
        due = earliest(due, u->ping_at ? past(now, u->ping_at) + cfg->pong_timeout
                                       : past(now, u->rx_at) + cfg->ping_interval);
        if (u->stall_at)
            due = earliest(due, past(now, u->stall_at) + cfg->slow_consumer_timeout);
    }
    if (b->stall_at)
        due = earliest(due, past(now, b->stall_at) + cfg->slow_consumer_timeout);
    if (cfg->idle_timeout)
        due = earliest(due, past(now, b->msg_at) + cfg->idle_timeout);
    if (b->state == B_CLOSING)
        due = earliest(due, around(now, b->end_at));
    if (b->mig)
        due = earliest(due, migrate_next_due(b));
    return due;
}

void liveness_check(wsg_bridge *b, uint64_t now)
{
    const wsg_config *cfg = bridge_config(b);
    wsg_counters *c = &b->proxy->counters;
    wsg_upstream *u = b->up;

    if (b->state == B_CLOSING && now >= around(now, b->end_at)) {
        bridge_end(b, "close handshake timed out");
        return;
    }
    if (b->mig) {
        if (u && u->state != U_OPEN && now >= dial_deadline(u))
            migrate_dial_failed(b, "backend did not answer in time");
        migrate_on_timer(b, now);
        if (b->state == B_ENDING)
            return;
        u = b->up;
    }
    if (b->ping_at && now >= past(now, b->ping_at) + cfg->pong_timeout) {
        wsg_count(c, WSG_C_PING_TIMEOUTS, 1);
        bridge_close_both(b, WSG_WS_CLOSE_GOING_AWAY, "ping timeout", WSG_WS_CLOSE_GOING_AWAY,
                   "client went away", "client did not answer a ping");
        return;
    }
    if (u && u->state == U_OPEN && !b->mig && u->ping_at &&
        now >= past(now, u->ping_at) + cfg->pong_timeout) {
        wsg_count(c, WSG_C_PING_TIMEOUTS, 1);
        bridge_upstream_failed(b, "backend did not answer a ping");
        return;
    }
    if (b->stall_at && now >= past(now, b->stall_at) + cfg->slow_consumer_timeout) {
        wsg_count(c, WSG_C_SLOW_CONSUMERS, 1);
        bridge_close_client(b, WSG_WS_CLOSE_POLICY, "slow consumer");
        return;
    }
    if (u && u->stall_at && now >= past(now, u->stall_at) + cfg->slow_consumer_timeout) {
        wsg_count(c, WSG_C_SLOW_CONSUMERS, 1);
        bridge_close_both(b, WSG_WS_CLOSE_INTERNAL, "backend not reading", WSG_WS_CLOSE_POLICY,
                   "slow consumer", "backend stopped reading");
        return;
    }
    if (cfg->idle_timeout && now >= past(now, b->msg_at) + cfg->idle_timeout) {
        wsg_count(c, WSG_C_IDLE_TIMEOUTS, 1);
        bridge_close_both(b, WSG_WS_CLOSE_GOING_AWAY, "idle timeout", WSG_WS_CLOSE_GOING_AWAY,
                   "idle timeout", "idle timeout");
        return;
    }
    if (!b->ping_at && now >= past(now, b->rx_at) + cfg->ping_interval)
        ping_client(b, now);
    if (b->state == B_ENDING)
        return;
    if (b->up && b->up->state == U_OPEN && !b->mig && !b->up->ping_at &&
        now >= past(now, b->up->rx_at) + cfg->ping_interval)
        ping_backend(b, now);
    if (b->state == B_ENDING)
        return;
    uint64_t due = next_check(b, now);
    /* A ping that had to wait for a frame boundary is tried next tick. */
    if (due <= now)
        due = now + 1;
    wsg_timer_schedule(b->proxy->worker, &b->timer, due);
}
