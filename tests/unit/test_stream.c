/* The pass-through stream (src/ws/stream.c): spans, re-masking, message
 * accounting and every receiver rule of RFC 6455 section 5, with input fed
 * whole, split at every offset and one byte at a time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "guard_page.h"
#include "ws/ws.h"

enum { MASK_AUTO, MASK_YES, MASK_NO };

/* One frame to send: masked by direction unless `mask` says otherwise. */
typedef struct frame_spec {
    bool fin;
    uint8_t rsv;
    uint8_t opcode;
    int mask;
    const void *payload;
    size_t len;
} frame_spec;

static const wsg_ws_policy client_pol = {.from_client = true, .remask = true};
static const wsg_ws_policy server_pol = {.from_client = false};

static wsg_rand rng;
static guard_page guard;
static uint8_t blob[70000];

static int setup(void **state)
{
    (void)state;
    wsg_rand_init(&rng);
    guard_page_init(&guard, 256 * 1024);
    for (size_t i = 0; i < sizeof(blob); i++)
        blob[i] = (uint8_t)(i * 131 + (i >> 8));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    guard_page_deinit(&guard);
    return 0;
}

static frame_spec fs(bool fin, uint8_t opcode, const char *text)
{
    return (frame_spec){.fin = fin, .opcode = opcode, .payload = text, .len = strlen(text)};
}

static frame_spec fsb(bool fin, uint8_t opcode, const void *p, size_t len)
{
    return (frame_spec){.fin = fin, .opcode = opcode, .payload = p, .len = len};
}

static frame_spec with_rsv(frame_spec f, uint8_t rsv)
{
    f.rsv = rsv;
    return f;
}

static frame_spec with_mask(frame_spec f, int mask)
{
    f.mask = mask;
    return f;
}

/* The key frame i of an input is sent with; i = 0 gets RFC 6455's example
 * key, under which "Hello" masks to bytes that are not UTF-8. */
static void key_for(unsigned i, uint8_t key[4])
{
    key[0] = (uint8_t)(0x37 ^ i);
    key[1] = 0xfa;
    key[2] = (uint8_t)(0x21 + i);
    key[3] = 0x3d;
}

static size_t put_frame(uint8_t *out, const frame_spec *f, bool from_client, unsigned i)
{
    bool masked = f->mask == MASK_YES || (f->mask == MASK_AUTO && from_client);
    uint8_t key[4];
    key_for(i, key);
    size_t size = wsg_ws_header_write(out, f->fin, f->rsv, f->opcode, f->len, masked ? key : NULL);
    if (f->len > 0)
        memcpy(out + size, f->payload, f->len);
    if (masked)
        wsg_ws_mask(out + size, f->len, key, 0);
    return size + f->len;
}

/* Writes the frames one after another; edges, when given, gets the offset
 * of each frame and the end (n + 1 entries). */
static size_t put_frames_at(uint8_t *out, const frame_spec *fr, size_t n, bool from_client,
                            size_t *edges)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (edges)
            edges[i] = len;
        len += put_frame(out + len, &fr[i], from_client, (unsigned)i);
    }
    if (edges)
        edges[n] = len;
    return len;
}

static size_t put_frames(uint8_t *out, const frame_spec *fr, size_t n, bool from_client)
{
    return put_frames_at(out, fr, n, from_client, NULL);
}

static size_t frames_size(const frame_spec *fr, size_t n)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += WSG_WS_MAX_HEADER + fr[i].len;
    return len;
}

static wsg_ws_stream new_stream(uint8_t flags)
{
    wsg_ws_stream s;
    memset(&s, 0, sizeof(s));
    s.flags = flags;
    return s;
}

/* One call on in[0..n) copied right before the guard page. Returns where
 * the copy is, so that rewritten bytes can be read. */
static uint8_t *feed(wsg_ws_stream *s, const wsg_ws_policy *pol, const void *in, size_t n,
                     wsg_ws_span *span)
{
    uint8_t *p = guard_page_put(&guard, in, n);
    memset(span, 0xee, sizeof(*span));
    wsg_ws_stream_next(s, pol, &rng, p, n, span);
    return p;
}

/* ---- the driver: a proxy's read loop ------------------------------------ */

typedef struct result {
    uint8_t *out; /* every forwarded byte, control frames re-masked */
    size_t out_len;
    uint8_t *ctl; /* control payloads as CONTROL spans gave them */
    size_t ctl_len;
    uint32_t messages;
    unsigned controls;
    uint16_t close_code; /* 0 unless an ERROR came */
    const char *why;
    size_t held; /* PARTIAL bytes still held at the end */
} result;

static void result_free(result *r)
{
    free(r->out);
    free(r->ctl);
}

/* Feeds in[0..n) as a proxy reads it: `first` bytes, then `step` bytes at
 * a time (0: all the rest). PARTIAL bytes go in front of the next read;
 * control frames toward a server are re-masked before forwarding. Stops at
 * the first ERROR. Unread bytes stay in place against the guard page, so
 * every call sees its input end there. */
static void drive(wsg_ws_stream *s, const wsg_ws_policy *pol, const uint8_t *in, size_t n,
                  size_t first, size_t step, result *r)
{
    memset(r, 0, sizeof(*r));
    r->out = malloc(n + 1);
    r->ctl = malloc(n + 1);
    assert_non_null(r->out);
    assert_non_null(r->ctl);
    uint8_t *cur = NULL;
    size_t held = 0;
    size_t fed = 0;
    while (fed < n) {
        size_t piece = fed == 0 ? first : step ? step : n - fed;
        if (piece > n - fed)
            piece = n - fed;
        uint8_t *dst = guard_page_end(&guard, held + piece);
        if (held > 0)
            memmove(dst, cur, held);
        memcpy(dst + held, in + fed, piece);
        cur = dst;
        held += piece;
        fed += piece;
        while (held > 0) {
            wsg_ws_span span;
            memset(&span, 0xee, sizeof(span));
            wsg_ws_stream_next(s, pol, &rng, cur, held, &span);
            if (span.kind == WSG_WS_SPAN_ERROR) {
                assert_int_equal(span.len, 0);
                assert_non_null(span.why);
                r->close_code = span.close_code;
                r->why = span.why;
                r->held = held;
                return;
            }
            if (span.kind == WSG_WS_SPAN_PARTIAL) {
                assert_int_equal(span.len, held);
                /* Held bytes are fed again: they must be as they came. */
                assert_memory_equal(cur, in + fed - held, held);
                break;
            }
            assert_true(span.len > 0 && span.len <= held);
            if (span.kind == WSG_WS_SPAN_CONTROL) {
                assert_true(span.header.opcode >= 8);
                assert_int_equal(span.len, span.header.size + span.header.len);
                assert_ptr_equal(span.payload, cur + span.header.size);
                memcpy(r->ctl + r->ctl_len, span.payload, (size_t)span.header.len);
                r->ctl_len += (size_t)span.header.len;
                r->controls++;
                if (span.header.masked)
                    wsg_ws_control_remask(cur, &span.header, &rng);
            } else {
                assert_int_equal(span.kind, WSG_WS_SPAN_DATA);
                r->messages += span.messages;
            }
            memcpy(r->out + r->out_len, cur, span.len);
            r->out_len += span.len;
            cur += span.len;
            held -= span.len;
        }
    }
    r->held = held;
}

typedef struct schedule {
    size_t first;
    size_t step;
} schedule;

/* Whole, one byte at a time, a few read sizes, and split at every offset;
 * for long inputs, at every offset near a frame edge and a sample between. */
static size_t make_schedules(size_t n, const size_t *edges, size_t nedges, schedule **out)
{
    static const size_t steps[] = {2, 3, 5, 7, 64, 1000};
    schedule *sc = malloc((n + 16) * sizeof(*sc));
    assert_non_null(sc);
    size_t k = 0;
    sc[k++] = (schedule){n, 0};
    sc[k++] = (schedule){1, 1};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        if (steps[i] < n)
            sc[k++] = (schedule){steps[i], steps[i]};
    }
    for (size_t cut = 1; cut < n; cut++) {
        bool near_edge = false;
        for (size_t e = 0; e < nedges; e++)
            near_edge |= cut + 20 >= edges[e] && cut <= edges[e] + 20;
        if (n <= 4096 || near_edge || cut % 997 == 0)
            sc[k++] = (schedule){cut, 0};
    }
    *out = sc;
    return k;
}

/* Parses the forwarded bytes back into frames and compares them, payloads
 * unmasked, with what was sent. */
static void check_frames(const uint8_t *out, size_t n, const frame_spec *want, size_t nwant,
                         bool masked)
{
    static uint8_t payload[sizeof(blob)];
    size_t pos = 0;
    for (size_t i = 0; i < nwant; i++) {
        wsg_ws_header h;
        int size = wsg_ws_header_parse(out + pos, n - pos, &h);
        if (size <= 0)
            fail_msg("frame %zu: no header at %zu of %zu", i, pos, n);
        assert_int_equal(h.fin, want[i].fin);
        assert_int_equal(h.rsv, want[i].rsv);
        assert_int_equal(h.opcode, want[i].opcode);
        assert_int_equal(h.masked, masked);
        assert_true(h.len == want[i].len);
        assert_true(n - pos - (size_t)size >= want[i].len);
        memcpy(payload, out + pos + size, want[i].len);
        wsg_ws_mask(payload, want[i].len, h.mask, 0);
        if (want[i].len > 0 && memcmp(payload, want[i].payload, want[i].len) != 0)
            fail_msg("frame %zu: payload differs", i);
        pos += (size_t)size + want[i].len;
    }
    assert_int_equal(pos, n);
}

/* Feeds the frames every way and checks that they all pass, as sent. */
static void expect_ok(const wsg_ws_policy *pol, uint8_t flags, const frame_spec *fr, size_t nfr)
{
    uint8_t *in = malloc(frames_size(fr, nfr));
    size_t *edges = malloc((nfr + 1) * sizeof(*edges));
    assert_non_null(in);
    assert_non_null(edges);
    size_t n = put_frames_at(in, fr, nfr, pol->from_client, edges);
    uint32_t want_messages = 0;
    unsigned want_controls = 0;
    uint8_t *want_ctl = malloc(n + 1);
    size_t want_ctl_len = 0;
    for (size_t i = 0; i < nfr; i++) {
        if (fr[i].opcode >= 8) {
            want_controls++;
            memcpy(want_ctl + want_ctl_len, fr[i].payload, fr[i].len);
            want_ctl_len += fr[i].len;
        } else if (fr[i].fin) {
            want_messages++;
        }
    }

    schedule *sc;
    size_t nsc = make_schedules(n, edges, nfr + 1, &sc);
    for (size_t i = 0; i < nsc; i++) {
        wsg_ws_stream s = new_stream(flags);
        result r;
        drive(&s, pol, in, n, sc[i].first, sc[i].step, &r);
        if (r.close_code != 0)
            fail_msg("reads of %zu then %zu: error %u (%s)", sc[i].first, sc[i].step, r.close_code,
                     r.why);
        assert_int_equal(r.held, 0);
        assert_int_equal(r.messages, want_messages);
        assert_int_equal(r.controls, want_controls);
        assert_int_equal(r.ctl_len, want_ctl_len);
        assert_memory_equal(r.ctl, want_ctl, want_ctl_len);
        check_frames(r.out, r.out_len, fr, nfr, pol->from_client);
        if (!pol->from_client)
            assert_memory_equal(r.out, in, n);
        assert_true(wsg_ws_stream_at_message_boundary(&s));
        result_free(&r);
    }
    free(sc);
    free(want_ctl);
    free(edges);
    free(in);
}

/* Feeds good frames then a bad one (given as bytes) every way. The good
 * frames must all pass and the bad one must not: whole, not a byte of it;
 * in pieces, at most the bytes before the fault when `in_payload`. */
static void expect_error_bytes(const wsg_ws_policy *pol, uint8_t flags, const frame_spec *good,
                               size_t ngood, const uint8_t *bad, size_t bad_len, uint16_t code,
                               bool in_payload, int line)
{
    uint8_t *in = malloc(frames_size(good, ngood) + bad_len);
    size_t *edges = malloc((ngood + 2) * sizeof(*edges));
    assert_non_null(in);
    assert_non_null(edges);
    size_t prefix = put_frames_at(in, good, ngood, pol->from_client, edges);
    memcpy(in + prefix, bad, bad_len);
    size_t n = prefix + bad_len;
    edges[ngood + 1] = n;
    uint32_t want_messages = 0;
    for (size_t i = 0; i < ngood; i++)
        want_messages += good[i].opcode < 8 && good[i].fin;

    schedule *sc;
    size_t nsc = make_schedules(n, edges, ngood + 2, &sc);
    for (size_t i = 0; i < nsc; i++) {
        wsg_ws_stream s = new_stream(flags);
        result r;
        drive(&s, pol, in, n, sc[i].first, sc[i].step, &r);
        if (r.close_code != code)
            fail_msg("line %d, reads of %zu then %zu: close code %u, want %u", line, sc[i].first,
                     sc[i].step, r.close_code, code);
        assert_true(r.why[0] != '\0');
        assert_int_equal(r.messages, want_messages);
        size_t most = sc[i].first == n || !in_payload ? prefix : n;
        if (r.out_len < prefix || r.out_len > most)
            fail_msg("line %d, reads of %zu then %zu: forwarded %zu, want %zu..%zu", line,
                     sc[i].first, sc[i].step, r.out_len, prefix, most);
        if (r.out_len == prefix)
            check_frames(r.out, r.out_len, good, ngood, pol->from_client);

        /* Sticky: good input later gets the same answer. */
        static const uint8_t ping[] = {0x89, 0x00};
        static const uint8_t masked_ping[] = {0x89, 0x80, 1, 2, 3, 4};
        for (int k = 0; k < 2; k++) {
            wsg_ws_span span;
            if (pol->from_client)
                feed(&s, pol, masked_ping, sizeof(masked_ping), &span);
            else
                feed(&s, pol, ping, sizeof(ping), &span);
            assert_int_equal(span.kind, WSG_WS_SPAN_ERROR);
            assert_int_equal(span.len, 0);
            assert_int_equal(span.close_code, code);
            assert_string_equal(span.why, r.why);
        }
        result_free(&r);
    }
    free(sc);
    free(edges);
    free(in);
}

static void expect_error(const wsg_ws_policy *pol, uint8_t flags, const frame_spec *good,
                         size_t ngood, frame_spec bad, uint16_t code, bool in_payload, int line)
{
    uint8_t *buf = malloc(WSG_WS_MAX_HEADER + bad.len);
    assert_non_null(buf);
    size_t len = put_frame(buf, &bad, pol->from_client, (unsigned)ngood);
    expect_error_bytes(pol, flags, good, ngood, buf, len, code, in_payload, line);
    free(buf);
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const wsg_ws_policy *const both[] = {&client_pol, &server_pol};

/* ---- re-masking and pass-through ---------------------------------------- */

static void test_remask_rewrites_key(void **state)
{
    (void)state;
    static const uint8_t hello[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                    0x7f, 0x9f, 0x4d, 0x51, 0x58};
    wsg_ws_stream s = new_stream(0);
    wsg_ws_span span;
    uint8_t *p = feed(&s, &client_pol, hello, sizeof(hello), &span);
    assert_int_equal(span.kind, WSG_WS_SPAN_DATA);
    assert_int_equal(span.len, sizeof(hello));
    assert_int_equal(span.messages, 1);
    assert_memory_equal(p, hello, 2);
    assert_memory_equal(s.old_key, hello + 2, 4);
    assert_memory_equal(p + 2, s.new_key, 4);

    wsg_ws_header h;
    assert_int_equal(wsg_ws_header_parse(p, sizeof(hello), &h), 6);
    wsg_ws_mask(p + 6, 5, h.mask, 0);
    assert_memory_equal(p + 6, "Hello", 5);

    /* Eight frames in one span: each gets its own fresh key. */
    frame_spec fr[8];
    for (int i = 0; i < 8; i++)
        fr[i] = fsb(true, WSG_WS_OP_BINARY, blob + i, (size_t)(i * 17));
    uint8_t in[8 * (WSG_WS_MAX_HEADER + 125)];
    size_t n = put_frames(in, fr, 8, true);
    s = new_stream(0);
    p = feed(&s, &client_pol, in, n, &span);
    assert_int_equal(span.kind, WSG_WS_SPAN_DATA);
    assert_int_equal(span.len, n);
    assert_int_equal(span.messages, 8);
    check_frames(p, n, fr, 8, true);
    unsigned kept = 0;
    size_t pos = 0;
    for (unsigned i = 0; i < 8; i++) {
        uint8_t old[4];
        key_for(i, old);
        assert_int_equal(wsg_ws_header_parse(p + pos, n - pos, &h), 6);
        kept += memcmp(h.mask, old, 4) == 0;
        pos += h.size + (size_t)h.len;
    }
    assert_true(kept < 8);
}

static void test_remask_across_reads(void **state)
{
    (void)state;
    frame_spec f = fsb(true, WSG_WS_OP_BINARY, blob, 1000);
    uint8_t in[WSG_WS_MAX_HEADER + 1000];
    size_t n = put_frame(in, &f, true, 3);
    /* Reads of every size up to 9, after a first read that stops at every
     * offset of the first words: the payload is cut at every phase. */
    for (size_t first = 1; first <= 24; first++) {
        for (size_t step = 1; step <= 9; step++) {
            wsg_ws_stream s = new_stream(0);
            result r;
            drive(&s, &client_pol, in, n, first, step, &r);
            assert_int_equal(r.close_code, 0);
            assert_int_equal(r.messages, 1);
            check_frames(r.out, r.out_len, &f, 1, true);
            result_free(&r);
        }
    }
}

static void test_server_direction_unchanged(void **state)
{
    (void)state;
    frame_spec fr[] = {
        fs(true, WSG_WS_OP_TEXT, "Hello"),
        fsb(true, WSG_WS_OP_BINARY, blob, 300),
        fs(false, WSG_WS_OP_TEXT, "frag"),
        fs(true, WSG_WS_OP_CONT, "ment"),
    };
    uint8_t in[400];
    size_t n = put_frames(in, fr, COUNT(fr), false);
    wsg_ws_stream s = new_stream(0);
    wsg_ws_span span;
    uint8_t *p = feed(&s, &server_pol, in, n, &span);
    assert_int_equal(span.kind, WSG_WS_SPAN_DATA);
    assert_int_equal(span.len, n);
    assert_int_equal(span.messages, 3);
    assert_memory_equal(p, in, n);

    static const uint8_t ping[] = {0x89, 0x05, 'H', 'e', 'l', 'l', 'o'};
    p = feed(&s, &server_pol, ping, sizeof(ping), &span);
    assert_int_equal(span.kind, WSG_WS_SPAN_CONTROL);
    assert_int_equal(span.len, sizeof(ping));
    assert_memory_equal(p, ping, sizeof(ping));
    assert_int_equal(span.header.masked, 0);
}

static void test_client_without_remask_unchanged(void **state)
{
    (void)state;
    static const wsg_ws_policy keep_keys = {.from_client = true};
    frame_spec fr[] = {
        fs(true, WSG_WS_OP_TEXT, "Hello"),
        fsb(false, WSG_WS_OP_BINARY, blob, 300),
        fsb(true, WSG_WS_OP_CONT, blob, 3),
    };
    uint8_t in[400];
    size_t n = put_frames(in, fr, COUNT(fr), true);
    wsg_ws_stream s = new_stream(0);
    wsg_ws_span span;
    uint8_t *p = feed(&s, &keep_keys, in, n, &span);
    assert_int_equal(span.kind, WSG_WS_SPAN_DATA);
    assert_int_equal(span.len, n);
    assert_int_equal(span.messages, 2);
    assert_memory_equal(p, in, n);
    expect_ok(&keep_keys, 0, fr, COUNT(fr));
}

/* ---- spans ---------------------------------------------------------------- */

static void test_data_span_covers_frames(void **state)
{
    (void)state;
    frame_spec fr[] = {
        fs(true, WSG_WS_OP_TEXT, "one"),
        fsb(true, WSG_WS_OP_BINARY, blob, 200),
        fs(false, WSG_WS_OP_TEXT, "two-"),
        fs(true, WSG_WS_OP_CONT, "three"),
    };
    for (size_t d = 0; d < COUNT(both); d++) {
        uint8_t in[400];
        size_t n = put_frames(in, fr, COUNT(fr), both[d]->from_client);
        wsg_ws_stream s = new_stream(0);
        wsg_ws_span span;
        uint8_t *p = feed(&s, both[d], in, n, &span);
        assert_int_equal(span.kind, WSG_WS_SPAN_DATA);
        assert_int_equal(span.len, n);
        assert_int_equal(span.messages, 3);
        check_frames(p, n, fr, COUNT(fr), both[d]->from_client);
        assert_true(wsg_ws_stream_at_message_boundary(&s));
    }
}

static void test_control_span(void **state)
{
    (void)state;
    static const uint8_t close_payload[] = {0x03, 0xe8, 'b', 'y', 'e'};
    frame_spec controls[] = {
        fs(true, WSG_WS_OP_PING, "ping!"),
        fs(true, WSG_WS_OP_PONG, ""),
        fsb(true, WSG_WS_OP_CLOSE, close_payload, sizeof(close_payload)),
        fsb(true, WSG_WS_OP_PING, blob, 125),
        fsb(true, WSG_WS_OP_CLOSE, blob, 0),
    };
    for (size_t d = 0; d < COUNT(both); d++) {
        bool client = both[d]->from_client;
        for (size_t c = 0; c < COUNT(controls); c++) {
            uint8_t in[WSG_WS_MAX_CONTROL_FRAME + 20];
            size_t n = put_frame(in, &controls[c], client, 5);
            wsg_ws_stream s = new_stream(0);
            wsg_ws_span span;
            uint8_t *p = feed(&s, both[d], in, n, &span);
            assert_int_equal(span.kind, WSG_WS_SPAN_CONTROL);
            assert_int_equal(span.len, n);
            assert_int_equal(span.messages, 0);
            assert_int_equal(span.header.opcode, controls[c].opcode);
            assert_int_equal(span.header.fin, 1);
            assert_int_equal(span.header.masked, client);
            assert_true(span.header.len == controls[c].len);
            assert_int_equal(span.header.size, client ? 6 : 2);
            if (client) {
                uint8_t key[4];
                key_for(5, key);
                assert_memory_equal(span.header.mask, key, 4);
            }
            assert_ptr_equal(span.payload, p + span.header.size);
            assert_memory_equal(span.payload, controls[c].payload, controls[c].len);
            assert_true(wsg_ws_stream_at_message_boundary(&s));

            /* A control frame behind a data frame gets its own span. */
            frame_spec pair[] = {fs(true, WSG_WS_OP_TEXT, "data"), controls[c]};
            n = put_frames(in, pair, 2, client);
            s = new_stream(0);
            feed(&s, both[d], in, n, &span);
            assert_int_equal(span.kind, WSG_WS_SPAN_DATA);
            assert_int_equal(span.len, (client ? 6 : 2) + 4);
            assert_int_equal(span.messages, 1);
            size_t first = span.len;
            p = feed(&s, both[d], in + first, n - first, &span);
            assert_int_equal(span.kind, WSG_WS_SPAN_CONTROL);
            assert_int_equal(span.len, n - first);
            assert_memory_equal(span.payload, controls[c].payload, controls[c].len);
        }
    }
}

static void test_control_remask(void **state)
{
    (void)state;
    frame_spec ping = fs(true, WSG_WS_OP_PING, "are you there");
    uint8_t in[64];
    size_t n = put_frame(in, &ping, true, 0);
    wsg_ws_stream s = new_stream(0);
    wsg_ws_span span;
    uint8_t *p = feed(&s, &client_pol, in, n, &span);
    assert_int_equal(span.kind, WSG_WS_SPAN_CONTROL);
    wsg_ws_control_remask(p, &span.header, &rng);
    check_frames(p, n, &ping, 1, true);
    assert_memory_equal(p, in, 2);
}

static void test_partial_span(void **state)
{
    (void)state;
    for (size_t d = 0; d < COUNT(both); d++) {
        const wsg_ws_policy *pol = both[d];
        bool client = pol->from_client;
        uint8_t in[600];
        wsg_ws_span span;

        /* Every prefix of a header, for each length form. */
        static const size_t lens[] = {5, 300, 66000};
        for (size_t l = 0; l < COUNT(lens); l++) {
            frame_spec f = fsb(true, WSG_WS_OP_BINARY, blob, lens[l]);
            uint8_t hdr[WSG_WS_MAX_HEADER];
            uint8_t key[4];
            key_for(0, key);
            size_t hsize = wsg_ws_header_write(hdr, true, 0, f.opcode, f.len, client ? key : NULL);
            for (size_t k = 1; k < hsize; k++) {
                wsg_ws_stream s = new_stream(0);
                uint8_t *p = feed(&s, pol, hdr, k, &span);
                assert_int_equal(span.kind, WSG_WS_SPAN_PARTIAL);
                assert_int_equal(span.len, k);
                assert_memory_equal(p, hdr, k);
                assert_true(wsg_ws_stream_at_message_boundary(&s));
            }
        }

        /* Every prefix of a control frame. */
        frame_spec ping = fs(true, WSG_WS_OP_PING, "incomplete ping");
        size_t n = put_frame(in, &ping, client, 0);
        for (size_t k = 1; k < n; k++) {
            wsg_ws_stream s = new_stream(0);
            uint8_t *p = feed(&s, pol, in, k, &span);
            assert_int_equal(span.kind, WSG_WS_SPAN_PARTIAL);
            assert_int_equal(span.len, k);
            assert_memory_equal(p, in, k);
        }

        /* A data frame, then the start of a header or of a control frame:
         * DATA first, then PARTIAL for the rest. */
        frame_spec pair[] = {fs(true, WSG_WS_OP_TEXT, "whole"), ping};
        n = put_frames(in, pair, 2, client);
        size_t data_len = (client ? 6 : 2) + 5;
        for (size_t k = data_len + 1; k < n; k++) {
            wsg_ws_stream s = new_stream(0);
            feed(&s, pol, in, k, &span);
            assert_int_equal(span.kind, WSG_WS_SPAN_DATA);
            assert_int_equal(span.len, data_len);
            assert_int_equal(span.messages, 1);
            uint8_t *p = feed(&s, pol, in + data_len, k - data_len, &span);
            assert_int_equal(span.kind, WSG_WS_SPAN_PARTIAL);
            assert_int_equal(span.len, k - data_len);
            assert_memory_equal(p, in + data_len, k - data_len);
        }

        /* A data frame's payload is not held back: it passes as it comes. */
        frame_spec big = fsb(true, WSG_WS_OP_BINARY, blob, 500);
        n = put_frame(in, &big, client, 0);
        wsg_ws_stream s = new_stream(0);
        feed(&s, pol, in, 100, &span);
        assert_int_equal(span.kind, WSG_WS_SPAN_DATA);
        assert_int_equal(span.len, 100);
        assert_int_equal(span.messages, 0);
        assert_false(wsg_ws_stream_at_frame_boundary(&s));
        feed(&s, pol, in + 100, n - 100, &span);
        assert_int_equal(span.kind, WSG_WS_SPAN_DATA);
        assert_int_equal(span.len, n - 100);
        assert_int_equal(span.messages, 1);
        assert_true(wsg_ws_stream_at_message_boundary(&s));
    }
}

/* ---- message accounting and boundaries -------------------------------------- */

static void test_messages_counter(void **state)
{
    (void)state;
    for (size_t d = 0; d < COUNT(both); d++) {
        const wsg_ws_policy *pol = both[d];
        bool client = pol->from_client;
        uint8_t in[200];
        wsg_ws_span span;

        /* A fragmented message counts once, at its FIN frame. */
        frame_spec frag[] = {
            fs(false, WSG_WS_OP_TEXT, "a"),
            fs(false, WSG_WS_OP_CONT, "b"),
            fs(true, WSG_WS_OP_CONT, "c"),
        };
        size_t n = put_frames(in, frag, 3, client);
        wsg_ws_stream s = new_stream(0);
        feed(&s, pol, in, n, &span);
        assert_int_equal(span.kind, WSG_WS_SPAN_DATA);
        assert_int_equal(span.messages, 1);

        s = new_stream(0);
        size_t pos = 0;
        for (int i = 0; i < 3; i++) {
            size_t one = (client ? 6 : 2) + 1;
            feed(&s, pol, in + pos, one, &span);
            assert_int_equal(span.kind, WSG_WS_SPAN_DATA);
            assert_int_equal(span.messages, i == 2);
            pos += one;
        }

        /* Zero-length frames, alone and in a fragmented message around a
         * control frame. */
        frame_spec empty[] = {
            fs(true, WSG_WS_OP_TEXT, ""),    fs(true, WSG_WS_OP_BINARY, ""),
            fs(false, WSG_WS_OP_BINARY, ""), fs(false, WSG_WS_OP_CONT, ""),
            fs(true, WSG_WS_OP_CONT, ""),
        };
        n = put_frames(in, empty, COUNT(empty), client);
        s = new_stream(0);
        feed(&s, pol, in, n, &span);
        assert_int_equal(span.kind, WSG_WS_SPAN_DATA);
        assert_int_equal(span.len, n);
        assert_int_equal(span.messages, 3);

        frame_spec around[] = {
            fs(false, WSG_WS_OP_TEXT, ""),
            fs(true, WSG_WS_OP_PING, ""),
            fs(true, WSG_WS_OP_CONT, ""),
        };
        n = put_frames(in, around, 3, client);
        size_t hsize = client ? 6 : 2;
        s = new_stream(0);
        feed(&s, pol, in, n, &span);
        assert_int_equal(span.kind, WSG_WS_SPAN_DATA);
        assert_int_equal(span.len, hsize);
        assert_int_equal(span.messages, 0);
        feed(&s, pol, in + hsize, n - hsize, &span);
        assert_int_equal(span.kind, WSG_WS_SPAN_CONTROL);
        feed(&s, pol, in + 2 * hsize, n - 2 * hsize, &span);
        assert_int_equal(span.kind, WSG_WS_SPAN_DATA);
        assert_int_equal(span.messages, 1);

        /* A message counts when its last payload byte passes, not at its
         * header. */
        frame_spec ten = fsb(true, WSG_WS_OP_BINARY, blob, 10);
        n = put_frame(in, &ten, client, 0);
        s = new_stream(0);
        feed(&s, pol, in, hsize, &span);
        assert_int_equal(span.messages, 0);
        feed(&s, pol, in + hsize, 9, &span);
        assert_int_equal(span.messages, 0);
        feed(&s, pol, in + hsize + 9, 1, &span);
        assert_int_equal(span.messages, 1);
    }
}

static void test_boundaries(void **state)
{
    (void)state;
    for (size_t d = 0; d < COUNT(both); d++) {
        const wsg_ws_policy *pol = both[d];
        bool client = pol->from_client;
        size_t hsize = client ? 6 : 2;
        frame_spec fr[] = {
            fsb(false, WSG_WS_OP_TEXT, "0123456789", 10),
            fs(true, WSG_WS_OP_PING, "p"),
            fsb(true, WSG_WS_OP_CONT, "abcde", 5),
            fs(true, WSG_WS_OP_BINARY, "x"),
        };
        uint8_t in[200];
        size_t n = put_frames(in, fr, COUNT(fr), client);
        wsg_ws_stream s = new_stream(0);
        wsg_ws_span span;
        assert_true(wsg_ws_stream_at_frame_boundary(&s));
        assert_true(wsg_ws_stream_at_message_boundary(&s));

        size_t pos = 0;
        feed(&s, pol, in, hsize + 4, &span);
        pos += span.len;
        assert_false(wsg_ws_stream_at_frame_boundary(&s));
        assert_false(wsg_ws_stream_at_message_boundary(&s));

        feed(&s, pol, in + pos, 6, &span);
        pos += span.len;
        assert_true(wsg_ws_stream_at_frame_boundary(&s));
        assert_false(wsg_ws_stream_at_message_boundary(&s));

        feed(&s, pol, in + pos, n - pos, &span);
        assert_int_equal(span.kind, WSG_WS_SPAN_CONTROL);
        pos += span.len;
        assert_true(wsg_ws_stream_at_frame_boundary(&s));
        assert_false(wsg_ws_stream_at_message_boundary(&s));

        feed(&s, pol, in + pos, hsize, &span);
        pos += span.len;
        assert_false(wsg_ws_stream_at_frame_boundary(&s));
        assert_false(wsg_ws_stream_at_message_boundary(&s));

        feed(&s, pol, in + pos, 5, &span);
        pos += span.len;
        assert_int_equal(span.messages, 1);
        assert_true(wsg_ws_stream_at_frame_boundary(&s));
        assert_true(wsg_ws_stream_at_message_boundary(&s));

        /* A held partial header forwards nothing: still between messages. */
        feed(&s, pol, in + pos, 1, &span);
        assert_int_equal(span.kind, WSG_WS_SPAN_PARTIAL);
        assert_true(wsg_ws_stream_at_message_boundary(&s));

        feed(&s, pol, in + pos, n - pos, &span);
        assert_int_equal(span.kind, WSG_WS_SPAN_DATA);
        assert_int_equal(span.len, n - pos);
        assert_true(wsg_ws_stream_at_message_boundary(&s));
    }
}

/* ---- errors ----------------------------------------------------------------- */

static void test_error_masking_direction(void **state)
{
    (void)state;
    static const wsg_ws_policy keep_keys = {.from_client = true};
    frame_spec ok[] = {fs(true, WSG_WS_OP_TEXT, "ok")};
    frame_spec open[] = {fs(false, WSG_WS_OP_TEXT, "ok")};
    const wsg_ws_policy *clients[] = {&client_pol, &keep_keys};
    for (size_t c = 0; c < COUNT(clients); c++) {
        const wsg_ws_policy *pol = clients[c];
        frame_spec bad = with_mask(fs(true, WSG_WS_OP_TEXT, "hi"), MASK_NO);
        expect_error(pol, 0, NULL, 0, bad, WSG_WS_CLOSE_PROTOCOL, false, __LINE__);
        expect_error(pol, 0, ok, 1, bad, WSG_WS_CLOSE_PROTOCOL, false, __LINE__);
        bad = with_mask(fs(true, WSG_WS_OP_PING, ""), MASK_NO);
        expect_error(pol, 0, ok, 1, bad, WSG_WS_CLOSE_PROTOCOL, false, __LINE__);
        bad = with_mask(fs(true, WSG_WS_OP_CONT, "x"), MASK_NO);
        expect_error(pol, 0, open, 1, bad, WSG_WS_CLOSE_PROTOCOL, false, __LINE__);
    }
    frame_spec bad = with_mask(fs(true, WSG_WS_OP_TEXT, "hi"), MASK_YES);
    expect_error(&server_pol, 0, NULL, 0, bad, WSG_WS_CLOSE_PROTOCOL, false, __LINE__);
    expect_error(&server_pol, 0, ok, 1, bad, WSG_WS_CLOSE_PROTOCOL, false, __LINE__);
    bad = with_mask(fs(true, WSG_WS_OP_CLOSE, ""), MASK_YES);
    expect_error(&server_pol, 0, ok, 1, bad, WSG_WS_CLOSE_PROTOCOL, false, __LINE__);
}

static void test_error_rsv(void **state)
{
    (void)state;
    static const uint8_t rsv23[] = {1, 2, 3, 5, 6, 7};
    static const uint8_t flags[] = {0, WSG_WS_S_DEFLATE};
    frame_spec open[] = {fs(false, WSG_WS_OP_BINARY, "open")};
    for (size_t d = 0; d < COUNT(both); d++) {
        for (size_t f = 0; f < COUNT(flags); f++) {
            for (size_t r = 0; r < COUNT(rsv23); r++) {
                frame_spec bad = with_rsv(fs(true, WSG_WS_OP_TEXT, "rsv"), rsv23[r]);
                expect_error(both[d], flags[f], NULL, 0, bad, WSG_WS_CLOSE_PROTOCOL, false,
                             __LINE__);
                bad.opcode = WSG_WS_OP_PING;
                expect_error(both[d], flags[f], NULL, 0, bad, WSG_WS_CLOSE_PROTOCOL, false,
                             __LINE__);
                bad.opcode = WSG_WS_OP_CONT;
                expect_error(both[d], flags[f], open, 1, bad, WSG_WS_CLOSE_PROTOCOL, false,
                             __LINE__);
            }
        }
        /* RSV1 needs permessage-deflate. */
        frame_spec bad = with_rsv(fs(true, WSG_WS_OP_TEXT, "deflated?"), 4);
        expect_error(both[d], 0, NULL, 0, bad, WSG_WS_CLOSE_PROTOCOL, false, __LINE__);
        bad.opcode = WSG_WS_OP_BINARY;
        expect_error(both[d], 0, NULL, 0, bad, WSG_WS_CLOSE_PROTOCOL, false, __LINE__);

        /* With it, RSV1 is for a message's first frame only (RFC 7692
         * section 6.1), never for control frames. */
        frame_spec first[] = {with_rsv(fs(false, WSG_WS_OP_TEXT, "deflated"), 4)};
        bad = with_rsv(fs(true, WSG_WS_OP_CONT, "more"), 4);
        expect_error(both[d], WSG_WS_S_DEFLATE, first, 1, bad, WSG_WS_CLOSE_PROTOCOL, false,
                     __LINE__);
        static const uint8_t ops[] = {WSG_WS_OP_PING, WSG_WS_OP_PONG, WSG_WS_OP_CLOSE};
        for (size_t o = 0; o < COUNT(ops); o++) {
            bad = with_rsv(fs(true, ops[o], ""), 4);
            expect_error(both[d], WSG_WS_S_DEFLATE, NULL, 0, bad, WSG_WS_CLOSE_PROTOCOL, false,
                         __LINE__);
        }
    }
}

static void test_rsv1_with_deflate(void **state)
{
    (void)state;
    static const wsg_ws_policy client_utf8 = {
        .from_client = true, .remask = true, .validate_utf8 = true};
    static const wsg_ws_policy server_utf8 = {.validate_utf8 = true};
    const wsg_ws_policy *pols[] = {&client_utf8, &server_utf8};
    frame_spec fr[] = {
        with_rsv(fs(true, WSG_WS_OP_TEXT, "\xff\xfe compressed bytes are not UTF-8"), 4),
        with_rsv(fs(false, WSG_WS_OP_BINARY, "part"), 4),
        fs(true, WSG_WS_OP_PING, ""),
        fs(true, WSG_WS_OP_CONT, "\xff"),
        with_rsv(fs(false, WSG_WS_OP_TEXT, "\xc0"), 4),
        fs(true, WSG_WS_OP_CONT, "\x80"),
        fs(true, WSG_WS_OP_TEXT, "plain text after compressed messages"),
        fs(true, WSG_WS_OP_BINARY, "\xff"),
    };
    for (size_t d = 0; d < COUNT(pols); d++)
        expect_ok(pols[d], WSG_WS_S_DEFLATE, fr, COUNT(fr));
}

static void test_error_opcodes(void **state)
{
    (void)state;
    static const uint8_t bad_ops[] = {3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf};
    frame_spec open[] = {fs(false, WSG_WS_OP_TEXT, "open")};
    frame_spec done[] = {fs(true, WSG_WS_OP_TEXT, "done")};
    for (size_t d = 0; d < COUNT(both); d++) {
        for (size_t o = 0; o < COUNT(bad_ops); o++) {
            for (int fin = 0; fin <= 1; fin++) {
                frame_spec bad = fs(fin, bad_ops[o], "?");
                expect_error(both[d], 0, NULL, 0, bad, WSG_WS_CLOSE_PROTOCOL, false, __LINE__);
                expect_error(both[d], 0, open, 1, bad, WSG_WS_CLOSE_PROTOCOL, false, __LINE__);
                expect_error(both[d], 0, done, 1, bad, WSG_WS_CLOSE_PROTOCOL, false, __LINE__);
            }
        }
    }
}

static void test_error_control_frames(void **state)
{
    (void)state;
    static const uint8_t ops[] = {WSG_WS_OP_PING, WSG_WS_OP_PONG, WSG_WS_OP_CLOSE};
    uint8_t long_close[126];
    long_close[0] = 0x03;
    long_close[1] = 0xe8;
    memset(long_close + 2, 'x', sizeof(long_close) - 2);
    frame_spec open[] = {fs(false, WSG_WS_OP_TEXT, "open")};
    for (size_t d = 0; d < COUNT(both); d++) {
        for (size_t o = 0; o < COUNT(ops); o++) {
            frame_spec bad = fsb(true, ops[o], long_close, 126);
            expect_error(both[d], 0, NULL, 0, bad, WSG_WS_CLOSE_PROTOCOL, false, __LINE__);
            expect_error(both[d], 0, open, 1, bad, WSG_WS_CLOSE_PROTOCOL, false, __LINE__);
            bad.len = 1000;
            bad.payload = blob;
            expect_error(both[d], 0, NULL, 0, bad, WSG_WS_CLOSE_PROTOCOL, false, __LINE__);

            bad = fsb(false, ops[o], long_close, 2);
            expect_error(both[d], 0, NULL, 0, bad, WSG_WS_CLOSE_PROTOCOL, false, __LINE__);
            expect_error(both[d], 0, open, 1, bad, WSG_WS_CLOSE_PROTOCOL, false, __LINE__);
            bad.len = 0;
            expect_error(both[d], 0, NULL, 0, bad, WSG_WS_CLOSE_PROTOCOL, false, __LINE__);

            /* 125 bytes is the most a control frame may carry. */
            frame_spec ok[] = {fsb(true, ops[o], long_close, 125)};
            expect_ok(both[d], 0, ok, 1);
        }
    }
}

static void test_error_fragmentation(void **state)
{
    (void)state;
    for (size_t d = 0; d < COUNT(both); d++) {
        const wsg_ws_policy *pol = both[d];
        frame_spec cont = fs(true, WSG_WS_OP_CONT, "more");
        expect_error(pol, 0, NULL, 0, cont, WSG_WS_CLOSE_PROTOCOL, false, __LINE__);
        cont.fin = false;
        expect_error(pol, 0, NULL, 0, cont, WSG_WS_CLOSE_PROTOCOL, false, __LINE__);
        frame_spec done[] = {fs(true, WSG_WS_OP_TEXT, "done")};
        expect_error(pol, 0, done, 1, cont, WSG_WS_CLOSE_PROTOCOL, false, __LINE__);
        frame_spec done2[] = {fs(false, WSG_WS_OP_BINARY, "a"), fs(true, WSG_WS_OP_CONT, "b"),
                              fs(true, WSG_WS_OP_PING, "")};
        expect_error(pol, 0, done2, 3, cont, WSG_WS_CLOSE_PROTOCOL, false, __LINE__);

        frame_spec open_text[] = {fs(false, WSG_WS_OP_TEXT, "a")};
        frame_spec open_bin[] = {fs(false, WSG_WS_OP_BINARY, "a"), fs(false, WSG_WS_OP_CONT, "b"),
                                 fs(true, WSG_WS_OP_PONG, "")};
        static const uint8_t ops[] = {WSG_WS_OP_TEXT, WSG_WS_OP_BINARY};
        for (size_t o = 0; o < COUNT(ops); o++) {
            for (int fin = 0; fin <= 1; fin++) {
                frame_spec bad = fs(fin, ops[o], "nested");
                expect_error(pol, 0, open_text, 1, bad, WSG_WS_CLOSE_PROTOCOL, false, __LINE__);
                expect_error(pol, 0, open_bin, 3, bad, WSG_WS_CLOSE_PROTOCOL, false, __LINE__);
            }
        }

        /* Control frames may come between fragments. */
        static const uint8_t bye[] = {0x03, 0xe8};
        frame_spec fine[] = {
            fs(false, WSG_WS_OP_TEXT, "a"),     fs(true, WSG_WS_OP_PING, "1"),
            fs(true, WSG_WS_OP_PONG, "2"),      fs(false, WSG_WS_OP_CONT, "b"),
            fs(true, WSG_WS_OP_PING, ""),       fs(true, WSG_WS_OP_CONT, "c"),
            fsb(true, WSG_WS_OP_CLOSE, bye, 2),
        };
        expect_ok(pol, 0, fine, COUNT(fine));
    }
}

static void test_error_close_payload(void **state)
{
    (void)state;
    static const unsigned bad_codes[] = {0,    1,    999,  1004, 1005, 1006, 1015,
                                         1016, 1100, 2000, 2999, 5000, 65535};
    frame_spec open[] = {fs(false, WSG_WS_OP_TEXT, "open"), fs(true, WSG_WS_OP_PING, "")};
    for (size_t d = 0; d < COUNT(both); d++) {
        const wsg_ws_policy *pol = both[d];
        frame_spec bad = fs(true, WSG_WS_OP_CLOSE, "\x03");
        expect_error(pol, 0, NULL, 0, bad, WSG_WS_CLOSE_PROTOCOL, false, __LINE__);
        expect_error(pol, 0, open, 2, bad, WSG_WS_CLOSE_PROTOCOL, false, __LINE__);

        for (size_t c = 0; c < COUNT(bad_codes); c++) {
            uint8_t p[5] = {(uint8_t)(bad_codes[c] >> 8), (uint8_t)bad_codes[c], 'b', 'y', 'e'};
            expect_error(pol, 0, NULL, 0, fsb(true, WSG_WS_OP_CLOSE, p, 2), WSG_WS_CLOSE_PROTOCOL,
                         false, __LINE__);
            expect_error(pol, 0, open, 2, fsb(true, WSG_WS_OP_CLOSE, p, 5), WSG_WS_CLOSE_PROTOCOL,
                         false, __LINE__);
        }

        static const char *const bad_reasons[] = {
            "\x03\xe8\xff",
            "\x03\xe8"
            "ok\xc0\x80",
            "\x03\xe8\xed\xa0\x80",
            "\x03\xe8"
            "cut \xe2\x82",
        };
        for (size_t r = 0; r < COUNT(bad_reasons); r++) {
            bad = fs(true, WSG_WS_OP_CLOSE, bad_reasons[r]);
            expect_error(pol, 0, NULL, 0, bad, WSG_WS_CLOSE_BAD_DATA, false, __LINE__);
            expect_error(pol, 0, open, 2, bad, WSG_WS_CLOSE_BAD_DATA, false, __LINE__);
        }

        /* Every code, whole input only: valid ones pass as CONTROL. */
        for (unsigned code = 0; code <= 5000; code++) {
            uint8_t p[2] = {(uint8_t)(code >> 8), (uint8_t)code};
            frame_spec f = fsb(true, WSG_WS_OP_CLOSE, p, 2);
            uint8_t in[16];
            size_t n = put_frame(in, &f, pol->from_client, 0);
            wsg_ws_stream s = new_stream(0);
            wsg_ws_span span;
            feed(&s, pol, in, n, &span);
            bool valid = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
                         (code >= 3000 && code <= 4999);
            if (valid) {
                assert_int_equal(span.kind, WSG_WS_SPAN_CONTROL);
            } else {
                assert_int_equal(span.kind, WSG_WS_SPAN_ERROR);
                assert_int_equal(span.close_code, WSG_WS_CLOSE_PROTOCOL);
            }
        }

        frame_spec fine[] = {
            fs(true, WSG_WS_OP_CLOSE, ""),
            fs(true, WSG_WS_OP_CLOSE, "\x03\xe8"),
            fs(true, WSG_WS_OP_CLOSE, "\x0f\xa0h\xc3\xa9llo"),
        };
        expect_ok(pol, 0, fine, COUNT(fine));
    }
}

static void test_error_too_big(void **state)
{
    (void)state;
    static const wsg_ws_policy client_max = {
        .from_client = true, .remask = true, .max_message = 100};
    static const wsg_ws_policy server_max = {.max_message = 100};
    const wsg_ws_policy *pols[] = {&client_max, &server_max};
    for (size_t d = 0; d < COUNT(pols); d++) {
        const wsg_ws_policy *pol = pols[d];
        expect_error(pol, 0, NULL, 0, fsb(true, WSG_WS_OP_TEXT, blob, 101), WSG_WS_CLOSE_TOO_BIG,
                     false, __LINE__);
        expect_error(pol, 0, NULL, 0, fsb(false, WSG_WS_OP_BINARY, blob, 5000),
                     WSG_WS_CLOSE_TOO_BIG, false, __LINE__);

        frame_spec sixty[] = {fsb(false, WSG_WS_OP_BINARY, blob, 60)};
        expect_error(pol, 0, sixty, 1, fsb(true, WSG_WS_OP_CONT, blob, 41), WSG_WS_CLOSE_TOO_BIG,
                     false, __LINE__);
        frame_spec ninety[] = {fsb(false, WSG_WS_OP_TEXT, blob, 60), fs(true, WSG_WS_OP_PING, ""),
                               fsb(false, WSG_WS_OP_CONT, blob, 30),
                               fsb(false, WSG_WS_OP_CONT, blob, 0)};
        expect_error(pol, 0, ninety, 4, fsb(false, WSG_WS_OP_CONT, blob, 11), WSG_WS_CLOSE_TOO_BIG,
                     false, __LINE__);
        frame_spec full[] = {fsb(false, WSG_WS_OP_BINARY, blob, 100)};
        expect_error(pol, 0, full, 1, fsb(true, WSG_WS_OP_CONT, blob, 1), WSG_WS_CLOSE_TOO_BIG,
                     false, __LINE__);

        /* A length far over the limit is refused at its header. */
        uint8_t huge[WSG_WS_MAX_HEADER];
        uint8_t key[4] = {1, 2, 3, 4};
        size_t hn = wsg_ws_header_write(huge, true, 0, WSG_WS_OP_BINARY, UINT64_C(1) << 40,
                                        pol->from_client ? key : NULL);
        expect_error_bytes(pol, 0, NULL, 0, huge, hn, WSG_WS_CLOSE_TOO_BIG, false, __LINE__);

        /* Up to the limit is fine; control frames do not count; each
         * message starts again from zero. */
        frame_spec fine[] = {
            fsb(true, WSG_WS_OP_TEXT, blob, 0),     fsb(true, WSG_WS_OP_BINARY, blob, 100),
            fsb(false, WSG_WS_OP_BINARY, blob, 60), fsb(true, WSG_WS_OP_PING, blob, 125),
            fsb(false, WSG_WS_OP_CONT, blob, 0),    fsb(true, WSG_WS_OP_CONT, blob, 40),
            fsb(true, WSG_WS_OP_BINARY, blob, 100),
        };
        expect_ok(pol, 0, fine, COUNT(fine));
    }
}

static void test_error_length_top_bit(void **state)
{
    (void)state;
    static const uint8_t server_bad[] = {0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 5};
    static const uint8_t client_bad[] = {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4};
    frame_spec ok[] = {fs(true, WSG_WS_OP_TEXT, "ok")};
    expect_error_bytes(&server_pol, 0, NULL, 0, server_bad, sizeof(server_bad),
                       WSG_WS_CLOSE_PROTOCOL, false, __LINE__);
    expect_error_bytes(&server_pol, 0, ok, 1, server_bad, sizeof(server_bad), WSG_WS_CLOSE_PROTOCOL,
                       false, __LINE__);
    expect_error_bytes(&client_pol, 0, NULL, 0, client_bad, sizeof(client_bad),
                       WSG_WS_CLOSE_PROTOCOL, false, __LINE__);
    expect_error_bytes(&client_pol, 0, ok, 1, client_bad, sizeof(client_bad), WSG_WS_CLOSE_PROTOCOL,
                       false, __LINE__);
}

static const wsg_ws_policy client_utf8 = {
    .from_client = true, .remask = true, .validate_utf8 = true};
static const wsg_ws_policy server_utf8 = {.validate_utf8 = true};

static void test_error_text_not_utf8(void **state)
{
    (void)state;
    const wsg_ws_policy *pols[] = {&client_utf8, &server_utf8};
    for (size_t d = 0; d < COUNT(pols); d++) {
        const wsg_ws_policy *pol = pols[d];
        frame_spec ok[] = {fs(true, WSG_WS_OP_TEXT, "fine \xc3\xa9")};
        expect_error(pol, 0, NULL, 0, fs(true, WSG_WS_OP_TEXT, "\xff"), WSG_WS_CLOSE_BAD_DATA, true,
                     __LINE__);
        expect_error(pol, 0, ok, 1, fs(true, WSG_WS_OP_TEXT, "ok\xc0\x80ok"), WSG_WS_CLOSE_BAD_DATA,
                     true, __LINE__);
        expect_error(pol, 0, ok, 1, fs(false, WSG_WS_OP_TEXT, "\xed\xa0\x80"),
                     WSG_WS_CLOSE_BAD_DATA, true, __LINE__);
        /* A message may not end inside a character. */
        expect_error(pol, 0, ok, 1, fs(true, WSG_WS_OP_TEXT, "abc\xe2\x82"), WSG_WS_CLOSE_BAD_DATA,
                     true, __LINE__);

        frame_spec open[] = {fs(false, WSG_WS_OP_TEXT, "ab\xe2\x82")};
        expect_error(pol, 0, open, 1, fs(true, WSG_WS_OP_CONT, "A"), WSG_WS_CLOSE_BAD_DATA, true,
                     __LINE__);
        frame_spec open2[] = {fs(false, WSG_WS_OP_TEXT, "ab\xe2")};
        expect_error(pol, 0, open2, 1, fs(true, WSG_WS_OP_CONT, "\x82"), WSG_WS_CLOSE_BAD_DATA,
                     true, __LINE__);
        expect_error(pol, 0, open, 1, fs(true, WSG_WS_OP_CONT, ""), WSG_WS_CLOSE_BAD_DATA, true,
                     __LINE__);
        frame_spec open3[] = {fs(false, WSG_WS_OP_TEXT, "a"), fs(true, WSG_WS_OP_PING, "")};
        expect_error(pol, 0, open3, 2, fsb(true, WSG_WS_OP_CONT, "x\xf4\x90\x80\x80", 5),
                     WSG_WS_CLOSE_BAD_DATA, true, __LINE__);

        /* Long text with the bad byte deep inside, past several words. */
        static char long_text[700];
        memset(long_text, 'a', sizeof(long_text) - 1);
        long_text[650] = (char)0x80;
        expect_error(pol, 0, ok, 1, fs(true, WSG_WS_OP_TEXT, long_text), WSG_WS_CLOSE_BAD_DATA,
                     true, __LINE__);
    }
}

static void test_text_utf8_across_frames(void **state)
{
    (void)state;
    const wsg_ws_policy *pols[] = {&client_utf8, &server_utf8};
    /* kosme, cut inside characters at every frame edge. */
    frame_spec fr[] = {
        fs(false, WSG_WS_OP_TEXT, "\xce"),
        fs(false, WSG_WS_OP_CONT, "\xba\xe1"),
        fs(true, WSG_WS_OP_PING, "between"),
        fs(false, WSG_WS_OP_CONT, "\xbd"),
        fs(false, WSG_WS_OP_CONT, ""),
        fs(false, WSG_WS_OP_CONT, "\xb9\xcf\x83\xce\xbc\xce"),
        fs(true, WSG_WS_OP_CONT, "\xb5"),
        fs(true, WSG_WS_OP_TEXT, "\xf0\x9f\x98\x80 new message, new state"),
        fs(true, WSG_WS_OP_BINARY, "\xff binary is not checked \xc0"),
        fs(false, WSG_WS_OP_BINARY, "\xe2"),
        fs(true, WSG_WS_OP_CONT, ""),
        fs(true, WSG_WS_OP_TEXT, ""),
    };
    for (size_t d = 0; d < COUNT(pols); d++)
        expect_ok(pols[d], 0, fr, COUNT(fr));

    /* Without validate_utf8, text is not looked at. */
    frame_spec bad_text[] = {fs(true, WSG_WS_OP_TEXT, "\xff\xfe"),
                             fs(true, WSG_WS_OP_TEXT, "\xe2")};
    expect_ok(&client_pol, 0, bad_text, COUNT(bad_text));
    expect_ok(&server_pol, 0, bad_text, COUNT(bad_text));
}

/* validate_utf8 is about the text, whatever the policy does with keys: a
 * client stream that keeps the client's keys must check unmasked text. */
static void test_utf8_checked_without_remask_accepts_text(void **state)
{
    (void)state;
    static const wsg_ws_policy keep_keys = {.from_client = true, .validate_utf8 = true};
    /* Frame 0 is masked with RFC 6455's key: "Hello" goes on the wire as
     * 7f 9f 4d 51 58, which is not UTF-8. */
    frame_spec fr[] = {fs(true, WSG_WS_OP_TEXT, "Hello"), fs(true, WSG_WS_OP_TEXT, "h\xc3\xa9")};
    expect_ok(&keep_keys, 0, fr, COUNT(fr));
}

static void test_utf8_checked_without_remask_rejects_text(void **state)
{
    (void)state;
    static const wsg_ws_policy keep_keys = {.from_client = true, .validate_utf8 = true};
    /* C0 80 masked with 80 80 80 80 is 40 00: fine as bytes, bad as text. */
    static const uint8_t key[4] = {0x80, 0x80, 0x80, 0x80};
    uint8_t bad[8];
    size_t n = wsg_ws_header_write(bad, true, 0, WSG_WS_OP_TEXT, 2, key);
    bad[n] = 0xc0;
    bad[n + 1] = 0x80;
    wsg_ws_mask(bad + n, 2, key, 0);
    expect_error_bytes(&keep_keys, 0, NULL, 0, bad, n + 2, WSG_WS_CLOSE_BAD_DATA, true, __LINE__);
}

static void test_good_frames_then_bad(void **state)
{
    (void)state;
    frame_spec fr[] = {
        fs(true, WSG_WS_OP_TEXT, "one"),
        fs(false, WSG_WS_OP_BINARY, "two"),
        fs(true, WSG_WS_OP_CONT, "three"),
        with_mask(fs(true, WSG_WS_OP_TEXT, "unmasked"), MASK_NO),
    };
    uint8_t in[200];
    size_t good = put_frames(in, fr, 3, true);
    size_t n = good + put_frame(in + good, &fr[3], true, 3);
    wsg_ws_stream s = new_stream(0);
    wsg_ws_span span;
    uint8_t *p = feed(&s, &client_pol, in, n, &span);
    assert_int_equal(span.kind, WSG_WS_SPAN_DATA);
    assert_int_equal(span.len, good);
    assert_int_equal(span.messages, 2);
    check_frames(p, good, fr, 3, true);
    /* The bad frame is left as it came. */
    assert_memory_equal(p + good, in + good, n - good);

    feed(&s, &client_pol, in + good, n - good, &span);
    assert_int_equal(span.kind, WSG_WS_SPAN_ERROR);
    assert_int_equal(span.len, 0);
    assert_int_equal(span.close_code, WSG_WS_CLOSE_PROTOCOL);
    assert_non_null(span.why);
    const char *why = span.why;

    /* Sticky, whatever comes next. */
    feed(&s, &client_pol, in, good, &span);
    assert_int_equal(span.kind, WSG_WS_SPAN_ERROR);
    assert_int_equal(span.close_code, WSG_WS_CLOSE_PROTOCOL);
    assert_string_equal(span.why, why);
    assert_int_equal(span.messages, 0);

    /* The same with a payload fault: the UTF-8 error comes on the next call. */
    frame_spec text[] = {fs(true, WSG_WS_OP_TEXT, "good"), fs(true, WSG_WS_OP_TEXT,
                                                              "b\xff"
                                                              "d")};
    n = put_frames(in, text, 2, false);
    s = new_stream(0);
    feed(&s, &server_utf8, in, n, &span);
    assert_int_equal(span.kind, WSG_WS_SPAN_DATA);
    assert_int_equal(span.len, 6);
    assert_int_equal(span.messages, 1);
    feed(&s, &server_utf8, in + 6, n - 6, &span);
    assert_int_equal(span.kind, WSG_WS_SPAN_ERROR);
    assert_int_equal(span.close_code, WSG_WS_CLOSE_BAD_DATA);
}

/* ---- the whole picture: long mixed input, fed every way ------------------------ */

static void test_mixed_sequence(void **state)
{
    (void)state;
    static const uint8_t bye[] = {0x03, 0xe8, 'b', 'y', 'e'};
    static char ascii[201];
    memset(ascii, 'x', 200);
    frame_spec fr[] = {
        fs(true, WSG_WS_OP_TEXT, "Hello"),
        fs(true, WSG_WS_OP_PING, "ping-1"),
        fsb(true, WSG_WS_OP_BINARY, blob, 300),
        fs(false, WSG_WS_OP_TEXT, "frag-one "),
        fs(true, WSG_WS_OP_PING, ""),
        fs(false, WSG_WS_OP_CONT, ""),
        fs(true, WSG_WS_OP_PONG, "abc"),
        fs(true, WSG_WS_OP_CONT, "frag-end"),
        fsb(true, WSG_WS_OP_BINARY, blob, 0),
        fs(false, WSG_WS_OP_TEXT, "\xce\xba\xe1"),
        fs(false, WSG_WS_OP_CONT, "\xbd\xb9\xcf"),
        fs(true, WSG_WS_OP_CONT, "\x83\xce\xbc\xce\xb5"),
        fsb(true, WSG_WS_OP_BINARY, blob + 1, 125),
        fsb(false, WSG_WS_OP_BINARY, blob + 2, 126),
        fsb(true, WSG_WS_OP_PING, blob + 3, 125),
        fsb(true, WSG_WS_OP_CONT, blob + 4, 1000),
        fs(true, WSG_WS_OP_TEXT, ascii),
        fsb(true, WSG_WS_OP_CLOSE, bye, sizeof(bye)),
    };
    static const wsg_ws_policy pols[] = {
        {.from_client = true, .remask = true, .validate_utf8 = true, .max_message = 1200},
        {.from_client = false, .validate_utf8 = true, .max_message = 1200},
        {.from_client = true},
        {.from_client = false},
    };
    for (size_t d = 0; d < COUNT(pols); d++)
        expect_ok(&pols[d], 0, fr, COUNT(fr));
}

static void test_large_frames(void **state)
{
    (void)state;
    frame_spec fr[] = {
        fsb(true, WSG_WS_OP_BINARY, blob, 70000),
        fs(true, WSG_WS_OP_PING, "p"),
        fsb(false, WSG_WS_OP_BINARY, blob + 1, 65535),
        fsb(true, WSG_WS_OP_CONT, blob + 2, 65536),
        fs(true, WSG_WS_OP_TEXT, "after"),
    };
    static const wsg_ws_policy pols[] = {
        {.from_client = true, .remask = true, .validate_utf8 = true},
        {.from_client = false, .validate_utf8 = true},
    };
    for (size_t d = 0; d < COUNT(pols); d++)
        expect_ok(&pols[d], 0, fr, COUNT(fr));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_remask_rewrites_key),
        cmocka_unit_test(test_remask_across_reads),
        cmocka_unit_test(test_server_direction_unchanged),
        cmocka_unit_test(test_client_without_remask_unchanged),
        cmocka_unit_test(test_data_span_covers_frames),
        cmocka_unit_test(test_control_span),
        cmocka_unit_test(test_control_remask),
        cmocka_unit_test(test_partial_span),
        cmocka_unit_test(test_messages_counter),
        cmocka_unit_test(test_boundaries),
        cmocka_unit_test(test_error_masking_direction),
        cmocka_unit_test(test_error_rsv),
        cmocka_unit_test(test_rsv1_with_deflate),
        cmocka_unit_test(test_error_opcodes),
        cmocka_unit_test(test_error_control_frames),
        cmocka_unit_test(test_error_fragmentation),
        cmocka_unit_test(test_error_close_payload),
        cmocka_unit_test(test_error_too_big),
        cmocka_unit_test(test_error_length_top_bit),
        cmocka_unit_test(test_error_text_not_utf8),
        cmocka_unit_test(test_text_utf8_across_frames),
        cmocka_unit_test(test_utf8_checked_without_remask_accepts_text),
        cmocka_unit_test(test_utf8_checked_without_remask_rejects_text),
        cmocka_unit_test(test_good_frames_then_bad),
        cmocka_unit_test(test_mixed_sequence),
        cmocka_unit_test(test_large_frames),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
