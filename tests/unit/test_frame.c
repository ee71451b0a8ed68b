/* Frame header codec, masking, control frames and close payloads
 * (src/ws/frame.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "guard_page.h"
#include "ws/ws.h"

static const uint8_t rfc_key[4] = {0x37, 0xfa, 0x21, 0x3d};

static const uint64_t lengths[] = {
    0, 1, 125, 126, 127, 65535, 65536, UINT64_C(1) << 32, (UINT64_C(1) << 32) + 1, INT64_MAX,
};

static size_t expected_header_size(uint64_t len, bool masked)
{
    size_t size = len < 126 ? 2 : len <= 0xffff ? 4 : 10;
    return size + (masked ? 4 : 0);
}

/* Parses p[0..n) placed right before the guard page. */
static int parse_guarded(guard_page *g, const uint8_t *p, size_t n, wsg_ws_header *h)
{
    return wsg_ws_header_parse(guard_page_put(g, p, n), n, h);
}

static void check_encoding(const uint8_t *buf, bool fin, uint8_t rsv, uint8_t opcode, uint64_t len,
                           const uint8_t *mask)
{
    assert_int_equal(buf[0], (fin ? 0x80 : 0) | rsv << 4 | opcode);
    assert_int_equal(buf[1] & 0x80, mask ? 0x80 : 0);
    size_t at = 2;
    if (len < 126) {
        assert_int_equal(buf[1] & 0x7f, len);
    } else if (len <= 0xffff) {
        assert_int_equal(buf[1] & 0x7f, 126);
        assert_int_equal(buf[2] << 8 | buf[3], len);
        at = 4;
    } else {
        assert_int_equal(buf[1] & 0x7f, 127);
        uint64_t got = 0;
        for (int i = 2; i < 10; i++)
            got = got << 8 | buf[i];
        assert_true(got == len);
        at = 10;
    }
    if (mask)
        assert_memory_equal(buf + at, mask, 4);
}

static void test_header_round_trip(void **state)
{
    (void)state;
    guard_page g;
    guard_page_init(&g, 64);
    for (size_t li = 0; li < sizeof(lengths) / sizeof(lengths[0]); li++) {
        for (int masked = 0; masked <= 1; masked++) {
            for (int fin = 0; fin <= 1; fin++) {
                for (uint8_t rsv = 0; rsv < 8; rsv++) {
                    for (uint8_t op = 0; op < 16; op++) {
                        uint64_t len = lengths[li];
                        const uint8_t *mask = masked ? rfc_key : NULL;
                        uint8_t buf[WSG_WS_MAX_HEADER + 1];
                        memset(buf, 0xa5, sizeof(buf));
                        size_t size = wsg_ws_header_write(buf, fin, rsv, op, len, mask);
                        assert_int_equal(size, expected_header_size(len, masked));
                        assert_int_equal(buf[size], 0xa5);
                        check_encoding(buf, fin, rsv, op, len, mask);

                        wsg_ws_header h;
                        memset(&h, 0x5a, sizeof(h));
                        assert_int_equal(parse_guarded(&g, buf, size, &h), (int)size);
                        assert_true(h.len == len);
                        assert_int_equal(h.fin, fin);
                        assert_int_equal(h.rsv, rsv);
                        assert_int_equal(h.opcode, op);
                        assert_int_equal(h.masked, masked);
                        assert_int_equal(h.size, size);
                        static const uint8_t zero[4] = {0};
                        assert_memory_equal(h.mask, masked ? rfc_key : zero, 4);

                        /* Writing the parsed header gives the same bytes. */
                        uint8_t again[WSG_WS_MAX_HEADER];
                        size_t size2 = wsg_ws_header_write(again, h.fin, h.rsv, h.opcode, h.len,
                                                           h.masked ? h.mask : NULL);
                        assert_int_equal(size2, size);
                        assert_memory_equal(again, buf, size);

                        /* Bytes after the header are not part of it. */
                        assert_int_equal(wsg_ws_header_parse(buf, size + 1, &h), (int)size);

                        for (size_t k = 0; k < size; k++)
                            assert_int_equal(parse_guarded(&g, buf, k, &h), WSG_WS_AGAIN);
                    }
                }
            }
        }
    }
    guard_page_deinit(&g);
}

static void test_header_length_top_bit(void **state)
{
    (void)state;
    guard_page g;
    guard_page_init(&g, 64);
    wsg_ws_header h;
    uint8_t top[14] = {0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(parse_guarded(&g, top, 10, &h), -1);
    for (size_t k = 0; k < 10; k++)
        assert_int_equal(parse_guarded(&g, top, k, &h), WSG_WS_AGAIN);

    uint8_t all[10] = {0x82, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(parse_guarded(&g, all, 10, &h), -1);

    uint8_t masked[14] = {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 0x37, 0xfa, 0x21, 0x3d};
    assert_int_equal(parse_guarded(&g, masked, 14, &h), -1);

    /* The largest legal length. */
    uint8_t max[10] = {0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(parse_guarded(&g, max, 10, &h), 10);
    assert_true(h.len == INT64_MAX);
    guard_page_deinit(&g);
}

/* Checks that `frame` parses to the given header fields and (unmasked)
 * payload, and that writing the same frame gives the same bytes. */
static void check_rfc_frame(const uint8_t *frame, size_t n, bool fin, uint8_t opcode,
                            const uint8_t *mask, const void *payload, size_t len)
{
    guard_page g;
    guard_page_init(&g, n);
    wsg_ws_header h;
    uint8_t *p = guard_page_put(&g, frame, n);
    int size = wsg_ws_header_parse(p, n, &h);
    assert_true(size > 0);
    assert_int_equal(h.fin, fin);
    assert_int_equal(h.rsv, 0);
    assert_int_equal(h.opcode, opcode);
    assert_int_equal(h.masked, mask != NULL);
    assert_true(h.len == len);
    assert_int_equal((size_t)size + len, n);
    if (mask)
        assert_memory_equal(h.mask, mask, 4);
    wsg_ws_mask(p + size, len, h.mask, 0);
    if (len > 0)
        assert_memory_equal(p + size, payload, len);

    uint8_t hdr[WSG_WS_MAX_HEADER];
    size_t hsize = wsg_ws_header_write(hdr, fin, 0, opcode, len, mask);
    assert_int_equal(hsize, size);
    assert_memory_equal(hdr, frame, hsize);
    guard_page_deinit(&g);
}

/* RFC 6455 section 5.7. */
static void test_rfc_examples(void **state)
{
    (void)state;
    static const uint8_t hello[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    check_rfc_frame(hello, sizeof(hello), true, WSG_WS_OP_TEXT, NULL, "Hello", 5);

    static const uint8_t hello_masked[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                           0x7f, 0x9f, 0x4d, 0x51, 0x58};
    check_rfc_frame(hello_masked, sizeof(hello_masked), true, WSG_WS_OP_TEXT, rfc_key, "Hello", 5);
    uint8_t masked[5];
    memcpy(masked, "Hello", 5);
    wsg_ws_mask(masked, 5, rfc_key, 0);
    assert_memory_equal(masked, hello_masked + 6, 5);

    static const uint8_t hel[] = {0x01, 0x03, 0x48, 0x65, 0x6c};
    static const uint8_t lo[] = {0x80, 0x02, 0x6c, 0x6f};
    check_rfc_frame(hel, sizeof(hel), false, WSG_WS_OP_TEXT, NULL, "Hel", 3);
    check_rfc_frame(lo, sizeof(lo), true, WSG_WS_OP_CONT, NULL, "lo", 2);

    static const uint8_t ping[] = {0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    check_rfc_frame(ping, sizeof(ping), true, WSG_WS_OP_PING, NULL, "Hello", 5);
    static const uint8_t pong[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                   0x7f, 0x9f, 0x4d, 0x51, 0x58};
    check_rfc_frame(pong, sizeof(pong), true, WSG_WS_OP_PONG, rfc_key, "Hello", 5);

    static uint8_t payload[65536];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i * 31 + 7);
    static uint8_t frame[10 + 65536];
    static const uint8_t bin256[] = {0x82, 0x7e, 0x01, 0x00};
    memcpy(frame, bin256, sizeof(bin256));
    memcpy(frame + 4, payload, 256);
    check_rfc_frame(frame, 4 + 256, true, WSG_WS_OP_BINARY, NULL, payload, 256);

    static const uint8_t bin64k[] = {0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00};
    memcpy(frame, bin64k, sizeof(bin64k));
    memcpy(frame + 10, payload, 65536);
    check_rfc_frame(frame, 10 + 65536, true, WSG_WS_OP_BINARY, NULL, payload, 65536);
}

static unsigned mask_reference(uint8_t *p, size_t n, const uint8_t key[4], unsigned phase)
{
    for (size_t i = 0; i < n; i++) {
        p[i] ^= key[phase];
        phase = (phase + 1) % 4;
    }
    return phase;
}

static void test_mask(void **state)
{
    (void)state;
    static const uint8_t key[4] = {0x01, 0x5c, 0xa7, 0xfe};
    enum { PAD = 16, MAXLEN = 70 };
    /* uint64_t storage so that `align` is the address mod 8. */
    uint64_t store[(PAD + 8 + MAXLEN + PAD) / 8 + 1] = {0};
    uint64_t want_store[sizeof(store) / 8];
    uint8_t *base = (uint8_t *)store;
    uint8_t *want = (uint8_t *)want_store;
    for (size_t align = 0; align < 8; align++) {
        for (size_t len = 0; len <= MAXLEN; len++) {
            for (unsigned phase = 0; phase < 4; phase++) {
                for (size_t i = 0; i < sizeof(store); i++)
                    base[i] = (uint8_t)(i * 13 + len + align);
                memcpy(want, base, sizeof(store));
                uint8_t *p = base + PAD + align;
                unsigned want_phase = mask_reference(want + PAD + align, len, key, phase);

                unsigned got = wsg_ws_mask(p, len, key, phase);
                assert_int_equal(got, want_phase);
                assert_int_equal(got, (phase + len) % 4);
                /* Compare the whole buffer: bytes around p stay untouched. */
                assert_memory_equal(base, want, sizeof(store));

                assert_int_equal(wsg_ws_mask(p, len, key, phase), want_phase);
                for (size_t i = 0; i < sizeof(store); i++)
                    assert_int_equal(base[i], (uint8_t)(i * 13 + len + align));

                /* Masking in two calls, resuming at the returned phase, is
                 * the same as one call. */
                for (size_t cut = 0; cut <= len; cut++) {
                    unsigned mid = wsg_ws_mask(p, cut, key, phase);
                    wsg_ws_mask(p + cut, len - cut, key, mid);
                    assert_memory_equal(base, want, sizeof(store));
                    wsg_ws_mask(p, len, key, phase);
                }
            }
        }
    }
}

static void test_mask_at_guard_page(void **state)
{
    (void)state;
    guard_page g;
    guard_page_init(&g, 4096);
    uint8_t src[100];
    uint8_t want[100];
    for (size_t i = 0; i < sizeof(src); i++)
        src[i] = (uint8_t)i;
    for (size_t len = 0; len <= sizeof(src); len++) {
        memcpy(want, src, len);
        mask_reference(want, len, rfc_key, 1);
        uint8_t *p = guard_page_put(&g, src, len);
        wsg_ws_mask(p, len, rfc_key, 1);
        assert_memory_equal(p, want, len);
    }
    guard_page_deinit(&g);
}

/* Parses a built control frame and returns its unmasked payload length. */
static size_t parse_control(const uint8_t *frame, size_t n, uint8_t opcode, bool masked,
                            uint8_t *payload)
{
    wsg_ws_header h;
    int size = wsg_ws_header_parse(frame, n, &h);
    assert_true(size > 0);
    assert_int_equal(h.fin, 1);
    assert_int_equal(h.rsv, 0);
    assert_int_equal(h.opcode, opcode);
    assert_int_equal(h.masked, masked);
    assert_true(h.len <= WSG_WS_MAX_CONTROL_PAYLOAD);
    assert_int_equal((size_t)size + h.len, n);
    memcpy(payload, frame + size, (size_t)h.len);
    wsg_ws_mask(payload, (size_t)h.len, h.mask, 0);
    return (size_t)h.len;
}

static void test_control_frame(void **state)
{
    (void)state;
    wsg_rand rng;
    wsg_rand_init(&rng);
    guard_page g;
    guard_page_init(&g, WSG_WS_MAX_CONTROL_FRAME);
    uint8_t *out = guard_page_end(&g, WSG_WS_MAX_CONTROL_FRAME);
    uint8_t src[200];
    for (size_t i = 0; i < sizeof(src); i++)
        src[i] = (uint8_t)(i ^ 0x5a);
    static const uint8_t ops[] = {WSG_WS_OP_PING, WSG_WS_OP_PONG, WSG_WS_OP_CLOSE};
    static const size_t lens[] = {0, 1, 2, 124, 125, 126, 200};
    for (size_t oi = 0; oi < sizeof(ops); oi++) {
        for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
            size_t want = lens[li] < 125 ? lens[li] : 125;
            for (int masked = 0; masked <= 1; masked++) {
                uint8_t payload[WSG_WS_MAX_CONTROL_PAYLOAD];
                size_t n = wsg_ws_control_frame(out, ops[oi], src, lens[li], masked ? &rng : NULL);
                assert_true(n <= WSG_WS_MAX_CONTROL_FRAME);
                assert_int_equal(parse_control(out, n, ops[oi], masked, payload), want);
                assert_memory_equal(payload, src, want);
            }
        }
    }

    /* Fresh keys: eight frames in a row do not all share one. */
    uint8_t keys[8][4];
    for (int i = 0; i < 8; i++) {
        wsg_ws_header h;
        size_t n = wsg_ws_control_frame(out, WSG_WS_OP_PING, "x", 1, &rng);
        assert_true(wsg_ws_header_parse(out, n, &h) > 0);
        memcpy(keys[i], h.mask, 4);
    }
    bool differ = false;
    for (int i = 1; i < 8; i++)
        differ |= memcmp(keys[0], keys[i], 4) != 0;
    assert_true(differ);
    guard_page_deinit(&g);
}

static void check_close(const char *reason, uint16_t code, wsg_rand *rng, const char *want_reason)
{
    uint8_t out[WSG_WS_MAX_CONTROL_FRAME];
    uint8_t payload[WSG_WS_MAX_CONTROL_PAYLOAD];
    size_t n = wsg_ws_close_frame(out, code, reason, rng);
    size_t len = parse_control(out, n, WSG_WS_OP_CLOSE, rng != NULL, payload);
    size_t want_len = strlen(want_reason);
    assert_int_equal(len, 2 + want_len);
    assert_int_equal(payload[0] << 8 | payload[1], code);
    assert_memory_equal(payload + 2, want_reason, want_len);
    uint16_t got = 0;
    assert_int_equal(wsg_ws_close_payload_check(payload, len, &got), 0);
    assert_int_equal(got, code);
}

static void test_close_frame(void **state)
{
    (void)state;
    wsg_rand rng;
    wsg_rand_init(&rng);
    char long_reason[201];
    memset(long_reason, 'r', 200);
    long_reason[200] = '\0';
    char cut[124];
    memset(cut, 'r', 123);
    cut[123] = '\0';
    for (int masked = 0; masked <= 1; masked++) {
        wsg_rand *r = masked ? &rng : NULL;
        check_close("bye", 1000, r, "bye");
        check_close(NULL, 1001, r, "");
        check_close("", 4999, r, "");
        check_close("h\xc3\xa9llo", 3000, r, "h\xc3\xa9llo");
        check_close(long_reason, 1011, r, cut);
        check_close(cut, 1008, r, cut);
    }
}

/* A reason cut to fit must still be UTF-8, or the peer fails the
 * connection with 1007 (RFC 6455 sections 5.5.1 and 8.1): the cut belongs
 * between characters. */
static void check_cut_reason(const char *reason)
{
    uint8_t out[WSG_WS_MAX_CONTROL_FRAME];
    uint8_t payload[WSG_WS_MAX_CONTROL_PAYLOAD];
    size_t n = wsg_ws_close_frame(out, 1000, reason, NULL);
    size_t len = parse_control(out, n, WSG_WS_OP_CLOSE, false, payload);
    assert_true(len >= 2);
    assert_memory_equal(payload + 2, reason, len - 2);
    uint16_t code = 0;
    assert_int_equal(wsg_ws_close_payload_check(payload, len, &code), 0);
    assert_int_equal(code, 1000);
}

static void test_close_frame_cuts_reason_between_characters(void **state)
{
    (void)state;
    char reason[130];
    memset(reason, 'a', 122);
    memcpy(reason + 122, "\xc3\xa9", 3); /* U+00E9 at bytes 122..123, then NUL */
    check_cut_reason(reason);

    memset(reason, 'a', 121);
    memcpy(reason + 121, "\xf0\x9f\x98\x80", 5); /* U+1F600 at bytes 121..124 */
    check_cut_reason(reason);

    memset(reason, 'a', 120);
    memcpy(reason + 120, "\xe2\x82\xac\xe2\x82\xac", 7); /* two U+20AC, 120..125 */
    check_cut_reason(reason);
}

/* RFC 6455 section 7.4, with 1012-1014 from the IANA registry. */
static bool rfc_close_code_ok(unsigned code)
{
    if (code >= 3000 && code <= 4999)
        return true;
    switch (code) {
    case 1000: /* normal */
    case 1001: /* going away */
    case 1002: /* protocol error */
    case 1003: /* unsupported data */
    case 1007: /* invalid payload data */
    case 1008: /* policy violation */
    case 1009: /* message too big */
    case 1010: /* mandatory extension */
    case 1011: /* internal error */
    case 1012: /* service restart */
    case 1013: /* try again later */
    case 1014: /* bad gateway */
        return true;
    default:
        return false;
    }
}

static void test_close_code_valid(void **state)
{
    (void)state;
    for (unsigned code = 0; code <= 5000; code++) {
        if (wsg_ws_close_code_valid(code) != rfc_close_code_ok(code))
            fail_msg("close code %u: got %d", code, wsg_ws_close_code_valid(code));
    }
    assert_false(wsg_ws_close_code_valid(1004));
    assert_false(wsg_ws_close_code_valid(1005));
    assert_false(wsg_ws_close_code_valid(1006));
    assert_false(wsg_ws_close_code_valid(1015));
    assert_false(wsg_ws_close_code_valid(2999));
    assert_false(wsg_ws_close_code_valid(65535));
    assert_true(wsg_ws_close_code_valid(3000));
    assert_true(wsg_ws_close_code_valid(4999));
}

static int payload_check_guarded(guard_page *g, const void *p, size_t n, uint16_t *code)
{
    return wsg_ws_close_payload_check(guard_page_put(g, p, n), n, code);
}

static void test_close_payload_check(void **state)
{
    (void)state;
    guard_page g;
    guard_page_init(&g, 256);
    uint16_t code = 0;

    assert_int_equal(payload_check_guarded(&g, "", 0, &code), 0);
    assert_int_equal(code, WSG_WS_CLOSE_NO_STATUS);
    assert_int_equal(payload_check_guarded(&g, "\x03", 1, &code), WSG_WS_CLOSE_PROTOCOL);

    for (unsigned c = 0; c <= 0xffff; c++) {
        uint8_t p[2] = {(uint8_t)(c >> 8), (uint8_t)c};
        code = 0;
        int rc = payload_check_guarded(&g, p, 2, &code);
        if (rfc_close_code_ok(c)) {
            assert_int_equal(rc, 0);
            assert_int_equal(code, c);
        } else {
            assert_int_equal(rc, WSG_WS_CLOSE_PROTOCOL);
        }
    }

    static const struct {
        const char *p;
        size_t n;
        int rc;
    } cases[] = {
        {"\x03\xe8"
         "bye",
         5, 0},
        {"\x03\xe8h\xc3\xa9llo", 8, 0},
        {"\x0b\xb8\xf0\x9f\x98\x80", 6, 0},
        {"\x03\xe8\xff", 3, WSG_WS_CLOSE_BAD_DATA},
        {"\x03\xe8"
         "ok\x80",
         5, WSG_WS_CLOSE_BAD_DATA},
        {"\x03\xe8\xc0\x80", 4, WSG_WS_CLOSE_BAD_DATA},
        {"\x03\xe8\xed\xa0\x80", 5, WSG_WS_CLOSE_BAD_DATA},
        {"\x03\xe8\xe2\x82", 4, WSG_WS_CLOSE_BAD_DATA}, /* ends inside a character */
        {"\x03\xed"
         "bye",
         5, WSG_WS_CLOSE_PROTOCOL}, /* 1005 */
        {"\x00\x00", 2, WSG_WS_CLOSE_PROTOCOL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        code = 0;
        int rc = payload_check_guarded(&g, cases[i].p, cases[i].n, &code);
        if (rc != cases[i].rc)
            fail_msg("case %zu: got %d, want %d", i, rc, cases[i].rc);
        if (rc == 0)
            assert_int_equal(code, (uint8_t)cases[i].p[0] << 8 | (uint8_t)cases[i].p[1]);
    }

    uint8_t longest[125];
    longest[0] = 0x03;
    longest[1] = 0xe8;
    memset(longest + 2, 'z', sizeof(longest) - 2);
    assert_int_equal(payload_check_guarded(&g, longest, sizeof(longest), &code), 0);
    assert_int_equal(code, 1000);
    guard_page_deinit(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_round_trip),
        cmocka_unit_test(test_header_length_top_bit),
        cmocka_unit_test(test_rfc_examples),
        cmocka_unit_test(test_mask),
        cmocka_unit_test(test_mask_at_guard_page),
        cmocka_unit_test(test_control_frame),
        cmocka_unit_test(test_close_frame),
        cmocka_unit_test(test_close_frame_cuts_reason_between_characters),
        cmocka_unit_test(test_close_code_valid),
        cmocka_unit_test(test_close_payload_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
