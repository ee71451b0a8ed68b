/* The pass-through stream: one direction of a proxied WebSocket, walked
 * frame by frame without copying.
 *
 * Data frames are forwarded as they arrive, in pieces if need be; only
 * their headers are read (and, toward a backend, given a fresh masking key).
 * Control frames are handed over whole so the proxy can answer, swallow or
 * forward them. Every rule of RFC 6455 section 5 that a receiver must
 * enforce is checked here, so a bad frame never reaches the other side.
 */
#include <string.h>

#include "ws/ws.h"

/* Why a stream failed, and the close code that says so. The stream keeps
 * the index, so a later call reports the same reason. */
enum fault {
    F_NONE,
    F_UNMASKED,
    F_MASKED,
    F_RSV23,
    F_CONTROL_OPCODE,
    F_CONTROL_FRAGMENTED,
    F_CONTROL_TOO_LONG,
    F_CONTROL_RSV1,
    F_DATA_OPCODE,
    F_STRAY_CONTINUATION,
    F_CONTINUATION_RSV1,
    F_NESTED_MESSAGE,
    F_RSV1_NO_DEFLATE,
    F_TOO_BIG,
    F_LENGTH_TOP_BIT,
    F_BAD_UTF8,
    F_CUT_UTF8,
    F_CLOSE_PAYLOAD,
    F_CLOSE_REASON_UTF8,
};

static const struct {
    uint16_t code;
    const char *why;
} faults[] = {
    [F_NONE] = {0, NULL},
    [F_UNMASKED] = {WSG_WS_CLOSE_PROTOCOL, "unmasked frame from a client"},
    [F_MASKED] = {WSG_WS_CLOSE_PROTOCOL, "masked frame from a server"},
    [F_RSV23] = {WSG_WS_CLOSE_PROTOCOL, "RSV2 or RSV3 bit set without an extension"},
    [F_CONTROL_OPCODE] = {WSG_WS_CLOSE_PROTOCOL, "unknown control opcode"},
    [F_CONTROL_FRAGMENTED] = {WSG_WS_CLOSE_PROTOCOL, "fragmented control frame"},
    [F_CONTROL_TOO_LONG] = {WSG_WS_CLOSE_PROTOCOL, "control frame over 125 bytes"},
    [F_CONTROL_RSV1] = {WSG_WS_CLOSE_PROTOCOL, "RSV1 bit set on a control frame"},
    [F_DATA_OPCODE] = {WSG_WS_CLOSE_PROTOCOL, "unknown data opcode"},
    [F_STRAY_CONTINUATION] = {WSG_WS_CLOSE_PROTOCOL,
                              "continuation frame without a message to continue"},
    [F_CONTINUATION_RSV1] = {WSG_WS_CLOSE_PROTOCOL, "RSV1 bit set on a continuation frame"},
    [F_NESTED_MESSAGE] = {WSG_WS_CLOSE_PROTOCOL, "new message inside a fragmented message"},
    [F_RSV1_NO_DEFLATE] = {WSG_WS_CLOSE_PROTOCOL, "RSV1 bit set without permessage-deflate"},
    [F_TOO_BIG] = {WSG_WS_CLOSE_TOO_BIG, "message larger than the limit"},
    [F_LENGTH_TOP_BIT] = {WSG_WS_CLOSE_PROTOCOL, "64-bit payload length with the top bit set"},
    [F_BAD_UTF8] = {WSG_WS_CLOSE_BAD_DATA, "text message is not UTF-8"},
    [F_CUT_UTF8] = {WSG_WS_CLOSE_BAD_DATA, "text message ends inside a UTF-8 character"},
    [F_CLOSE_PAYLOAD] = {WSG_WS_CLOSE_PROTOCOL, "invalid close payload or code"},
    [F_CLOSE_REASON_UTF8] = {WSG_WS_CLOSE_BAD_DATA, "close reason is not UTF-8"},
};

static void span_error(wsg_ws_stream *s, wsg_ws_span *span, enum fault f)
{
    s->fault = (uint8_t)f;
    span->kind = WSG_WS_SPAN_ERROR;
    span->len = 0;
    span->close_code = faults[f].code;
    span->why = faults[f].why;
}

static bool needs_utf8_check(const wsg_ws_stream *s, const wsg_ws_policy *pol)
{
    return pol->validate_utf8 && (s->flags & WSG_WS_S_TEXT) && !(s->flags & WSG_WS_S_COMPRESSED);
}

/* Returns the rule a header breaks, or F_NONE. */
static enum fault check_header(const wsg_ws_stream *s, const wsg_ws_policy *pol,
                               const wsg_ws_header *h)
{
    if (pol->from_client && !h->masked)
        return F_UNMASKED;
    if (!pol->from_client && h->masked)
        return F_MASKED;
    if (h->rsv & 3)
        return F_RSV23;
    if (h->opcode >= 8) {
        if (h->opcode > WSG_WS_OP_PONG)
            return F_CONTROL_OPCODE;
        if (!h->fin)
            return F_CONTROL_FRAGMENTED;
        if (h->len > WSG_WS_MAX_CONTROL_PAYLOAD)
            return F_CONTROL_TOO_LONG;
        if (h->rsv)
            return F_CONTROL_RSV1;
        return F_NONE;
    }
    if (h->opcode > WSG_WS_OP_BINARY)
        return F_DATA_OPCODE;
    bool in_message = s->flags & WSG_WS_S_IN_MESSAGE;
    if (h->opcode == WSG_WS_OP_CONT) {
        if (!in_message)
            return F_STRAY_CONTINUATION;
        if (h->rsv)
            return F_CONTINUATION_RSV1;
    } else {
        if (in_message)
            return F_NESTED_MESSAGE;
        if (h->rsv && !(s->flags & WSG_WS_S_DEFLATE))
            return F_RSV1_NO_DEFLATE;
    }
    uint64_t so_far = h->opcode == WSG_WS_OP_CONT ? s->msg_len : 0;
    if (pol->max_message && (h->len > pol->max_message || so_far > pol->max_message - h->len))
        return F_TOO_BIG;
    return F_NONE;
}

/* Starts a data frame whose header is at p: updates the message state and,
 * toward a backend, writes a fresh masking key into the header. */
static void begin_data_frame(wsg_ws_stream *s, const wsg_ws_policy *pol, wsg_rand *rng,
                             uint8_t *p, const wsg_ws_header *h)
{
    if (h->opcode != WSG_WS_OP_CONT) {
        s->msg_len = 0;
        s->utf8 = WSG_UTF8_OK;
        s->flags &= (uint8_t) ~(WSG_WS_S_TEXT | WSG_WS_S_COMPRESSED);
        if (h->opcode == WSG_WS_OP_TEXT)
            s->flags |= WSG_WS_S_TEXT;
        if (h->rsv & 4)
            s->flags |= WSG_WS_S_COMPRESSED;
    }
    s->msg_len += h->len;
    s->flags |= WSG_WS_S_IN_MESSAGE;
    s->flags = (uint8_t)((s->flags & ~WSG_WS_S_FRAME_FIN) | (h->fin ? WSG_WS_S_FRAME_FIN : 0));
    s->frame_left = h->len;
    s->phase = 0;
    s->flags &= (uint8_t) ~(WSG_WS_S_REKEY | WSG_WS_S_MASKED);
    if (h->masked) {
        s->flags |= WSG_WS_S_MASKED;
        memcpy(s->old_key, h->mask, 4);
        memcpy(s->new_key, h->mask, 4);
        if (pol->remask) {
            wsg_rand_bytes(rng, s->new_key, 4);
            memcpy(p + h->size - 4, s->new_key, 4);
            s->flags |= WSG_WS_S_REKEY;
        }
    }
}

/* Passes n payload bytes: re-masks them and checks text when asked.
 * Returns false when the text is not UTF-8. */
static bool pass_payload(wsg_ws_stream *s, const wsg_ws_policy *pol, uint8_t *p, size_t n)
{
    bool masked = s->flags & WSG_WS_S_MASKED;
    if (needs_utf8_check(s, pol)) {
        /* The text is checked in the clear, then masked with the key it is
         * forwarded with. */
        if (masked)
            wsg_ws_mask(p, n, s->old_key, s->phase);
        s->utf8 = wsg_utf8_feed(s->utf8, p, n);
        if (s->utf8 == WSG_UTF8_BAD)
            return false;
        if (masked)
            wsg_ws_mask(p, n, s->new_key, s->phase);
    } else if (s->flags & WSG_WS_S_REKEY) {
        /* One pass: XOR with old^new unmasks and masks at once. */
        uint8_t delta[4];
        for (int i = 0; i < 4; i++)
            delta[i] = s->old_key[i] ^ s->new_key[i];
        wsg_ws_mask(p, n, delta, s->phase);
    }
    s->phase = (uint8_t)((s->phase + n) & 3);
    s->frame_left -= n;
    return true;
}

/* Called when a data frame's last payload byte has passed. Returns false
 * when a text message ends inside a character. */
static bool end_data_frame(wsg_ws_stream *s, const wsg_ws_policy *pol, wsg_ws_span *span)
{
    if (!(s->flags & WSG_WS_S_FRAME_FIN))
        return true;
    if (needs_utf8_check(s, pol) && s->utf8 != WSG_UTF8_OK)
        return false;
    s->flags &= (uint8_t)~WSG_WS_S_IN_MESSAGE;
    span->messages++;
    return true;
}

static void take_control(wsg_ws_stream *s, uint8_t *p, size_t n, const wsg_ws_header *h,
                         wsg_ws_span *span)
{
    size_t total = h->size + (size_t)h->len;
    if (n < total) {
        span->kind = WSG_WS_SPAN_PARTIAL;
        span->len = n;
        return;
    }
    uint8_t *payload = p + h->size;
    if (h->masked)
        wsg_ws_mask(payload, (size_t)h->len, h->mask, 0);
    if (h->opcode == WSG_WS_OP_CLOSE) {
        uint16_t code;
        int bad = wsg_ws_close_payload_check(payload, (size_t)h->len, &code);
        if (bad) {
            span_error(s, span,
                       bad == WSG_WS_CLOSE_BAD_DATA ? F_CLOSE_REASON_UTF8 : F_CLOSE_PAYLOAD);
            return;
        }
    }
    span->kind = WSG_WS_SPAN_CONTROL;
    span->len = total;
    span->header = *h;
    span->payload = payload;
}

void wsg_ws_stream_next(wsg_ws_stream *s, const wsg_ws_policy *pol, wsg_rand *rng, uint8_t *p,
                        size_t n, wsg_ws_span *span)
{
    size_t pos = 0;
    size_t frame_start = 0; /* header offset of the data frame being passed */
    size_t keep = 0;        /* on error: bytes before the bad frame */
    enum fault f = F_NONE;

    span->messages = 0;
    if (s->fault) {
        span_error(s, span, (enum fault)s->fault);
        return;
    }
    while (pos < n) {
        if (s->frame_left > 0) {
            size_t chunk = s->frame_left < n - pos ? (size_t)s->frame_left : n - pos;
            keep = frame_start;
            if (!pass_payload(s, pol, p + pos, chunk)) {
                f = F_BAD_UTF8;
                goto failed;
            }
            pos += chunk;
            uint32_t ended = span->messages;
            if (s->frame_left == 0 && !end_data_frame(s, pol, span)) {
                f = F_CUT_UTF8;
                goto failed;
            }
            if (span->messages != ended && (s->flags & WSG_WS_S_STOP_AT_END)) {
                s->flags &= (uint8_t)~WSG_WS_S_STOP_AT_END;
                break;
            }
            continue;
        }
        wsg_ws_header h;
        int rc = wsg_ws_header_parse(p + pos, n - pos, &h);
        if (rc == WSG_WS_AGAIN) {
            if (pos > 0)
                break;
            span->kind = WSG_WS_SPAN_PARTIAL;
            span->len = n;
            return;
        }
        keep = pos;
        f = rc < 0 ? F_LENGTH_TOP_BIT : check_header(s, pol, &h);
        if (f != F_NONE)
            goto failed;
        if (h.opcode >= 8) {
            if (pos > 0)
                break;
            take_control(s, p, n, &h, span);
            return;
        }
        frame_start = pos;
        begin_data_frame(s, pol, rng, p + pos, &h);
        pos += h.size;
        uint32_t ended = span->messages;
        if (h.len == 0 && !end_data_frame(s, pol, span)) {
            f = F_CUT_UTF8;
            goto failed;
        }
        if (span->messages != ended && (s->flags & WSG_WS_S_STOP_AT_END)) {
            s->flags &= (uint8_t)~WSG_WS_S_STOP_AT_END;
            break;
        }
    }
    span->kind = WSG_WS_SPAN_DATA;
    span->len = pos;
    return;

failed:
    s->fault = (uint8_t)f;
    if (keep > 0) {
        /* Forward the good frames before the bad one; the next call
         * reports the fault. */
        span->kind = WSG_WS_SPAN_DATA;
        span->len = keep;
        return;
    }
    span_error(s, span, f);
}

void wsg_ws_control_remask(uint8_t *frame, const wsg_ws_header *h, wsg_rand *rng)
{
    uint8_t key[4];
    wsg_rand_bytes(rng, key, 4);
    memcpy(frame + h->size - 4, key, 4);
    wsg_ws_mask(frame + h->size, (size_t)h->len, key, 0);
}
