/* The WebSocket pass-through stream (src/ws/stream.c) and the frame and
 * UTF-8 primitives under it.
 *
 * Input layout:
 *
 *   byte 0   policy: bit 0 from_client, bit 1 remask, bit 2 validate_utf8,
 *            bit 3 permessage-deflate agreed, bit 4 STOP_AT_END before each
 *            call (as a migration sets it), bits 6-7 how the bytes arrive:
 *            0 whole, 1 pieces of 1-16 bytes, 2 pieces of 1-620 bytes,
 *            3 one byte at a time
 *   byte 1   max_message: 0 none, 1-127 that many bytes, else (b-127) KiB
 *   byte 2   seed of the piece sizes
 *   rest     the byte stream of one direction
 *
 * The stream is fed as the bridge feeds it: a PARTIAL span's bytes are
 * kept and put in front of the next piece, CONTROL frames from a client
 * are re-masked, and the walk stops at ERROR. A reference walker, written
 * from RFC 6455 without looking at the stream's state machine, reads the
 * same bytes in one go and says which frames are good, where messages
 * end and which fault comes first. The two must agree:
 *
 *   - the spans cover the input exactly, in order;
 *   - the bytes forwarded are the input frames with at most new masking
 *     keys: the same headers and, unmasked, the same payloads;
 *   - no DATA span holds a byte of a frame that turns out bad, except what
 *     earlier pieces had to forward before the bad byte arrived;
 *   - a fault is found in the call that first holds the byte showing it,
 *     with the close code the reference expects;
 *   - the messages counted so far are those the reference sees end.
 *
 * Masking keys come from a wsg_rand whose pool the harness fills before
 * each call, so runs repeat exactly (pieces are at most 620 bytes while
 * re-masking, fewer frames than the 128 keys a pool holds).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws/ws.h"

#include "fuzz_check.h"

#define NONE SIZE_MAX
#define MAX_REMASK_PIECE 620

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- the reference ------------------------------------------------------ */

/* UTF-8 as Unicode's table 3-7 of well-formed byte sequences lists it. */
typedef struct ref_utf8 {
    int need;
    uint8_t lo;
    uint8_t hi;
} ref_utf8;

static bool ref_utf8_byte(ref_utf8 *u, uint8_t b)
{
    if (u->need > 0) {
        if (b < u->lo || b > u->hi)
            return false;
        u->need--;
        u->lo = 0x80;
        u->hi = 0xbf;
        return true;
    }
    if (b < 0x80)
        return true;
    static const struct {
        uint8_t first, last;
        int need;
        uint8_t lo, hi;
    } table[] = {
        {0xc2, 0xdf, 1, 0x80, 0xbf}, {0xe0, 0xe0, 2, 0xa0, 0xbf}, {0xe1, 0xec, 2, 0x80, 0xbf},
        {0xed, 0xed, 2, 0x80, 0x9f}, {0xee, 0xef, 2, 0x80, 0xbf}, {0xf0, 0xf0, 3, 0x90, 0xbf},
        {0xf1, 0xf3, 3, 0x80, 0xbf}, {0xf4, 0xf4, 3, 0x80, 0x8f},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (b >= table[i].first && b <= table[i].last) {
            u->need = table[i].need;
            u->lo = table[i].lo;
            u->hi = table[i].hi;
            return true;
        }
    }
    return false;
}

/* Returns the index of the first byte that makes p[0..n) invalid, n when
 * it is valid but ends inside a character, or NONE when it is valid. */
static size_t ref_utf8_check(const uint8_t *p, size_t n)
{
    ref_utf8 u = {0};
    for (size_t i = 0; i < n; i++) {
        if (!ref_utf8_byte(&u, p[i]))
            return i;
    }
    return u.need ? n : NONE;
}

static bool ref_close_code_ok(unsigned c)
{
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

typedef struct ref_frame {
    size_t start;
    size_t hsize;
    uint64_t len;
    bool fin;
    uint8_t rsv;
    uint8_t opcode;
    bool masked;
    uint8_t key[4];
} ref_frame;

enum ref_fault { RF_NONE, RF_HEADER, RF_CONTROL, RF_UTF8 };

typedef struct ref_result {
    ref_frame *frames; /* accepted frames, the last maybe unfinished */
    size_t count;
    size_t *msg_ends; /* where each message that ends ends */
    size_t msg_count;
    enum ref_fault fault;
    uint16_t code;
    size_t fault_start;  /* the bad frame's first byte */
    size_t detect;       /* the first byte that shows the fault */
    size_t partial_from; /* an unfinished header or control frame; NONE */
} ref_result;

static void ref_fail(ref_result *r, enum ref_fault f, uint16_t code, size_t start, size_t detect)
{
    r->fault = f;
    r->code = code;
    r->fault_start = start;
    r->detect = detect;
}

/* RFC 6455 section 5 (and RFC 7692 for RSV1), as a receiver applies it. */
static void ref_walk(const uint8_t *q, size_t n, const wsg_ws_policy *pol, bool deflate,
                     ref_result *r)
{
    size_t pos = 0;
    bool in_msg = false;
    bool text = false;
    bool compressed = false;
    uint64_t msg_len = 0;
    ref_utf8 u = {0};
    r->partial_from = NONE;
    while (pos < n) {
        size_t avail = n - pos;
        if (avail < 2) {
            r->partial_from = pos;
            return;
        }
        uint8_t b0 = q[pos];
        uint8_t b1 = q[pos + 1];
        unsigned len7 = b1 & 0x7f;
        bool masked = b1 & 0x80;
        size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
        if (avail < 2 + ext) {
            r->partial_from = pos;
            return;
        }
        if (len7 == 127 && (q[pos + 2] & 0x80)) {
            ref_fail(r, RF_HEADER, 1002, pos, pos + 9);
            return;
        }
        size_t hsize = 2 + ext + (masked ? 4 : 0);
        if (avail < hsize) {
            r->partial_from = pos;
            return;
        }
        uint64_t len = len7;
        if (ext) {
            len = 0;
            for (size_t i = 0; i < ext; i++)
                len = len << 8 | q[pos + 2 + i];
        }
        ref_frame fr = {
            .start = pos,
            .hsize = hsize,
            .len = len,
            .fin = b0 & 0x80,
            .rsv = (b0 >> 4) & 7,
            .opcode = b0 & 15,
            .masked = masked,
        };
        if (masked)
            memcpy(fr.key, q + pos + hsize - 4, 4);
        bool control = fr.opcode >= 8;
        bool bad = pol->from_client != masked || (fr.rsv & 3);
        if (control)
            bad = bad || fr.opcode > 10 || !fr.fin || len > 125 || fr.rsv;
        else if (fr.opcode >= 3)
            bad = true;
        else if (fr.opcode == 0)
            bad = bad || !in_msg || fr.rsv;
        else
            bad = bad || in_msg || (fr.rsv && !deflate);
        if (bad) {
            ref_fail(r, RF_HEADER, 1002, pos, pos + hsize - 1);
            return;
        }
        if (!control && pol->max_message) {
            unsigned __int128 total = (unsigned __int128)(fr.opcode == 0 ? msg_len : 0) + len;
            if (total > pol->max_message) {
                ref_fail(r, RF_HEADER, 1009, pos, pos + hsize - 1);
                return;
            }
        }
        size_t body = pos + hsize;
        if (control) {
            if (avail < hsize + len) {
                r->partial_from = pos;
                return;
            }
            uint8_t payload[125];
            for (size_t i = 0; i < len; i++)
                payload[i] = q[body + i] ^ (masked ? fr.key[i & 3] : 0);
            uint16_t code = 0;
            if (fr.opcode == 8 && len == 1)
                code = 1002;
            else if (fr.opcode == 8 && len >= 2 && !ref_close_code_ok(payload[0] << 8 | payload[1]))
                code = 1002;
            else if (fr.opcode == 8 && len > 2 && ref_utf8_check(payload + 2, len - 2) != NONE)
                code = 1007;
            if (code) {
                ref_fail(r, RF_CONTROL, code, pos, body + len - 1);
                return;
            }
            r->frames[r->count++] = fr;
            pos = body + len;
            continue;
        }
        r->frames[r->count++] = fr;
        if (fr.opcode != 0) {
            text = fr.opcode == 1;
            compressed = fr.rsv & 4;
            msg_len = 0;
            u = (ref_utf8){0};
        }
        msg_len += len;
        in_msg = true;
        bool check = pol->validate_utf8 && text && !compressed;
        uint64_t have = n - body < len ? n - body : len;
        for (size_t i = 0; check && i < have; i++) {
            uint8_t c = q[body + i] ^ (masked ? fr.key[i & 3] : 0);
            if (!ref_utf8_byte(&u, c)) {
                ref_fail(r, RF_UTF8, 1007, pos, body + i);
                return;
            }
        }
        if (have < len)
            return; /* the frame goes on past the input */
        size_t end = body + (size_t)len;
        if (fr.fin) {
            if (check && u.need) {
                ref_fail(r, RF_UTF8, 1007, pos, end - 1);
                return;
            }
            in_msg = false;
            r->msg_ends[r->msg_count++] = end;
        }
        pos = end;
    }
}

static size_t ref_messages_until(const ref_result *r, size_t upto)
{
    size_t k = 0;
    while (k < r->msg_count && r->msg_ends[k] <= upto)
        k++;
    return k;
}

/* The forwarded bytes out[0..fwd) must be the input frames q with, at
 * most, other masking keys. */
static void check_forwarded(const ref_result *r, const uint8_t *q, const uint8_t *out, size_t fwd)
{
    for (size_t i = 0; i < r->count; i++) {
        const ref_frame *fr = &r->frames[i];
        if (fr->start >= fwd)
            break;
        size_t body = fr->start + fr->hsize;
        CHECK(body <= fwd); /* a header is never forwarded in part */
        size_t fixed = fr->hsize - (fr->masked ? 4 : 0);
        CHECK(memcmp(out + fr->start, q + fr->start, fixed) == 0);
        static const uint8_t zero[4];
        const uint8_t *okey = fr->masked ? out + body - 4 : zero;
        const uint8_t *ikey = fr->masked ? fr->key : zero;
        size_t end = fwd - body < fr->len ? fwd : body + (size_t)fr->len;
        for (size_t k = body; k < end; k++)
            CHECK((out[k] ^ okey[(k - body) & 3]) == (q[k] ^ ikey[(k - body) & 3]));
    }
}

/* ---- the stream as the bridge drives it ---------------------------------- */

static uint32_t lcg_next(uint32_t *state)
{
    *state = *state * 1103515245u + 12345u;
    return *state >> 16;
}

/* Refills the key pool from a counter: repeatable keys. */
static void rng_refill(wsg_rand *rng, uint32_t *counter)
{
    for (size_t i = 0; i < WSG_RAND_POOL; i++)
        rng->pool[i] = (uint8_t)(lcg_next(counter) ^ i);
    rng->pos = 0;
}

static size_t next_piece(unsigned mode, bool remask, uint32_t *seed, size_t left)
{
    size_t n;
    switch (mode) {
    case 0:
        n = remask ? 1 + lcg_next(seed) % MAX_REMASK_PIECE : left;
        break;
    case 1:
        n = 1 + lcg_next(seed) % 16;
        break;
    case 2:
        n = 1 + lcg_next(seed) % MAX_REMASK_PIECE;
        break;
    default:
        n = 1;
        break;
    }
    return n < left ? n : left;
}

static void run_stream(const uint8_t *q, size_t n, const wsg_ws_policy *pol, bool deflate,
                       bool stop_at_end, unsigned mode, uint32_t seed)
{
    ref_result ref = {
        .frames = malloc((n / 2 + 1) * sizeof(ref_frame)),
        .msg_ends = malloc((n / 2 + 1) * sizeof(size_t)),
    };
    CHECK(ref.frames && ref.msg_ends);
    ref_walk(q, n, pol, deflate, &ref);

    uint8_t *out = malloc(n ? n : 1);
    uint8_t held[WSG_WS_MAX_CONTROL_FRAME] = {0};
    size_t pending = 0;
    size_t fwd = 0;  /* bytes forwarded: every DATA and CONTROL span */
    size_t read = 0; /* input bytes handed to the stream */
    size_t messages = 0;
    size_t detect_from = NONE; /* the call that found the fault: its range */
    size_t detect_to = NONE;
    bool failed = false;
    uint16_t code = 0;
    uint32_t keys = seed * 2654435761u;
    wsg_rand rng;
    wsg_ws_stream s = {.flags = deflate ? WSG_WS_S_DEFLATE : 0};
    CHECK(out != NULL);
    wsg_rand_init(&rng);

    while (read < n && !failed) {
        size_t take = next_piece(mode, pol->remask, &seed, n - read);
        size_t len = pending + take;
        uint8_t *buf = malloc(len);
        CHECK(buf != NULL);
        memcpy(buf, held, pending);
        memcpy(buf + pending, q + read, take);
        read += take;
        pending = 0;
        size_t off = 0;
        while (off < len) {
            wsg_ws_span span;
            memset(&span, 0xa5, sizeof(span));
            CHECK(fwd + len - off == read); /* the call starts where forwarding stopped */
            rng_refill(&rng, &keys);
            if (stop_at_end)
                s.flags |= WSG_WS_S_STOP_AT_END;
            bool had_fault = s.fault != 0;
            wsg_ws_stream_next(&s, pol, &rng, buf + off, len - off, &span);
            if (!had_fault && s.fault) {
                detect_from = fwd;
                detect_to = read;
            }
            uint8_t *at = buf + off;
            switch (span.kind) {
            case WSG_WS_SPAN_DATA:
                CHECK(span.len > 0 && span.len <= len - off);
                memcpy(out + fwd, at, span.len);
                fwd += span.len;
                off += span.len;
                messages += span.messages;
                if (stop_at_end && span.messages) {
                    CHECK(span.messages == 1);
                    CHECK(!(s.flags & WSG_WS_S_STOP_AT_END));
                    CHECK(wsg_ws_stream_at_message_boundary(&s));
                }
                break;
            case WSG_WS_SPAN_CONTROL: {
                const wsg_ws_header *h = &span.header;
                CHECK(span.messages == 0);
                CHECK(h->opcode >= 8 && h->opcode <= 10 && h->fin && h->len <= 125);
                CHECK(span.len == h->size + h->len && span.len <= len - off);
                CHECK(span.payload == at + h->size);
                CHECK(memcmp(at, q + fwd, h->size) == 0);
                for (size_t i = 0; i < h->len; i++)
                    CHECK(span.payload[i] == (q[fwd + h->size + i] ^ h->mask[i & 3]));
                if (h->opcode == WSG_WS_OP_CLOSE) {
                    uint16_t c;
                    CHECK(wsg_ws_close_payload_check(span.payload, (size_t)h->len, &c) == 0);
                }
                if (h->masked) {
                    rng_refill(&rng, &keys);
                    wsg_ws_control_remask(at, h, &rng);
                }
                memcpy(out + fwd, at, span.len);
                fwd += span.len;
                off += span.len;
                break;
            }
            case WSG_WS_SPAN_PARTIAL:
                /* What the bridge holds must fit its headroom. */
                CHECK(span.len == len - off && span.len < WSG_WS_MAX_CONTROL_FRAME);
                CHECK(memcmp(at, q + fwd, span.len) == 0);
                memcpy(held, at, span.len);
                pending = span.len;
                off = len;
                break;
            case WSG_WS_SPAN_ERROR:
                CHECK(span.len == 0 && span.why != NULL && span.why[0] != '\0');
                code = span.close_code;
                failed = true;
                off = len;
                break;
            default:
                CHECK(!"unknown span kind");
            }
            CHECK(messages == ref_messages_until(&ref, fwd));
        }
        free(buf);
    }

    if (failed) {
        CHECK(ref.fault != RF_NONE);
        CHECK(code == ref.code);
        CHECK(detect_from <= ref.detect && ref.detect < detect_to);
        if (ref.fault == RF_UTF8)
            CHECK(fwd == (detect_from > ref.fault_start ? detect_from : ref.fault_start));
        else
            CHECK(fwd == ref.fault_start);
        /* The error is sticky. */
        uint8_t one = 0x81;
        wsg_ws_span again;
        wsg_ws_stream_next(&s, pol, &rng, &one, 1, &again);
        CHECK(again.kind == WSG_WS_SPAN_ERROR && again.close_code == code);
    } else {
        CHECK(ref.fault == RF_NONE);
        CHECK(fwd + pending == n);
        CHECK(pending == 0 ? ref.partial_from == NONE : ref.partial_from == fwd);
    }
    check_forwarded(&ref, q, out, fwd);
    free(out);
    free(ref.frames);
    free(ref.msg_ends);
}

/* ---- primitives -------------------------------------------------------- */

static uint8_t *copy_of(const uint8_t *p, size_t n)
{
    uint8_t *c = malloc(n ? n : 1);
    CHECK(c != NULL);
    if (n)
        memcpy(c, p, n);
    return c;
}

/* wsg_ws_header_parse on every prefix, and back through header_write. */
static void check_header_codec(const uint8_t *q, size_t n)
{
    wsg_ws_header h;
    size_t lim = n < WSG_WS_MAX_HEADER ? n : WSG_WS_MAX_HEADER;
    int full = wsg_ws_header_parse(q, n, &h);
    CHECK(full == -1 || (full >= 0 && full <= WSG_WS_MAX_HEADER));
    int seen = 0;
    for (size_t k = 0; k <= lim; k++) {
        wsg_ws_header hk;
        uint8_t *c = copy_of(q, k);
        int rc = wsg_ws_header_parse(c, k, &hk);
        free(c);
        /* 0 until enough bytes are there, then the final answer. */
        CHECK(rc == 0 || rc == full);
        if (seen)
            CHECK(rc == seen);
        if (rc != 0)
            seen = rc;
        if (rc > 0)
            CHECK((size_t)rc <= k);
    }
    if (full <= 0)
        return;
    CHECK(h.size == full && h.rsv <= 7 && h.opcode <= 15);
    uint8_t out[WSG_WS_MAX_HEADER];
    size_t w = wsg_ws_header_write(out, h.fin, h.rsv, h.opcode, h.len, h.masked ? h.mask : NULL);
    size_t minimal = (h.len < 126 ? 2 : h.len <= 0xffff ? 4 : 10) + (h.masked ? 4 : 0);
    CHECK(w == minimal);
    wsg_ws_header back;
    CHECK(wsg_ws_header_parse(out, w, &back) == (int)w);
    CHECK(back.len == h.len && back.fin == h.fin && back.rsv == h.rsv && back.opcode == h.opcode &&
          back.masked == h.masked);
    CHECK(memcmp(back.mask, h.mask, 4) == 0);
    if ((size_t)full == minimal)
        CHECK(memcmp(out, q, w) == 0);
}

/* wsg_ws_mask against a plain XOR, at every alignment the input picks. */
static void check_mask(const uint8_t *q, size_t n, const uint8_t *key, unsigned phase,
                       unsigned align)
{
    uint8_t *buf = malloc(n + 8);
    CHECK(buf != NULL);
    memcpy(buf + align, q, n);
    unsigned end = wsg_ws_mask(buf + align, n, key, phase);
    CHECK(end == ((phase + n) & 3));
    for (size_t i = 0; i < n; i++)
        CHECK(buf[align + i] == (q[i] ^ key[(phase + i) & 3]));
    free(buf);
}

/* wsg_utf8_feed: whole, in pieces and byte by byte agree, and agree with
 * the table. */
static void check_utf8(const uint8_t *q, size_t n, uint32_t seed)
{
    uint32_t whole = wsg_utf8_feed(WSG_UTF8_OK, q, n);
    uint32_t pieces = WSG_UTF8_OK;
    uint32_t bytes = WSG_UTF8_OK;
    for (size_t off = 0; off < n;) {
        size_t k = 1 + lcg_next(&seed) % 24;
        if (k > n - off)
            k = n - off;
        pieces = wsg_utf8_feed(pieces, q + off, k);
        off += k;
    }
    for (size_t i = 0; i < n; i++)
        bytes = wsg_utf8_feed(bytes, q + i, 1);
    CHECK(whole == pieces && whole == bytes);
    size_t bad = ref_utf8_check(q, n);
    if (bad == NONE)
        CHECK(whole == WSG_UTF8_OK && wsg_utf8_valid(q, n));
    else if (bad == n)
        CHECK(whole != WSG_UTF8_OK && whole != WSG_UTF8_BAD);
    else
        CHECK(whole == WSG_UTF8_BAD);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    uint8_t flags = data[0];
    uint8_t limit = data[1];
    const uint8_t *q = data + 3;
    size_t n = size - 3;
    wsg_ws_policy pol = {
        .from_client = flags & 1,
        .remask = flags & 2,
        .validate_utf8 = flags & 4,
        .max_message = limit == 0    ? 0
                       : limit < 128 ? limit
                                     : (uint64_t)(limit - 127) * 1024,
    };
    run_stream(q, n, &pol, flags & 8, flags & 16, flags >> 6, data[2]);
    check_header_codec(q, n);
    check_utf8(q, n, data[2]);
    const uint8_t key[4] = {data[0], data[1], data[2], (uint8_t)(data[0] ^ data[2])};
    check_mask(q, n, key, data[1] & 3, data[2] & 7);
    return 0;
}
