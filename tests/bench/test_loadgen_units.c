/* loadgen's sans-I/O parts: the histogram (bench/loadgen_hist.c) and the
 * request, response and message bytes (bench/loadgen_wire.c). Built by
 * bench/meson.build; run with `meson test -C build --suite bench`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "loadgen_hist.h"
#include "loadgen_wire.h"

/* RFC 6455 section 1.3's example key and its accept value. */
static const char rfc_key[] = "dGhlIHNhbXBsZSBub25jZQ==";
static const char rfc_accept[] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

static const char good_response[] = "HTTP/1.1 101 Switching Protocols\r\n"
                                    "Upgrade: websocket\r\n"
                                    "Connection: Upgrade\r\n"
                                    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                                    "\r\n";

/* Puts n bytes right before an unreadable page, so that a parser reading
 * past its input crashes instead of passing. */
static char *guarded(const void *p, size_t n)
{
    static uint8_t *base;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (base == NULL) {
        base = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        assert_true(base != MAP_FAILED);
        assert_int_equal(mprotect(base + page, page, PROT_NONE), 0);
    }
    assert_true(n <= page);
    memcpy(base + page - n, p, n);
    return (char *)base + page - n;
}

/* ---- histogram -------------------------------------------------------------- */

static void check_bucket(uint64_t v)
{
    uint32_t i = lg_hist_index(v);
    uint64_t high = lg_hist_highest(i);
    assert_true(i < LG_HIST_BUCKETS);
    assert_true(high >= v);
    if (i > 0)
        assert_true(lg_hist_highest(i - 1) < v);
    /* Within 1/128 of the value: 0.8%. */
    assert_true((high - v) * 128 <= v || v < 256);
}

static void test_hist_buckets(void **state)
{
    (void)state;
    for (uint64_t v = 0; v < 5000; v++)
        check_bucket(v);
    for (unsigned b = 8; b < LG_HIST_TOP_BITS; b++) {
        uint64_t p = UINT64_C(1) << b;
        check_bucket(p - 1);
        check_bucket(p);
        check_bucket(p + 1);
        check_bucket(p + p / 3);
    }
    assert_int_equal(lg_hist_index(UINT64_MAX), LG_HIST_BUCKETS - 1);
    assert_int_equal(lg_hist_index((UINT64_C(1) << LG_HIST_TOP_BITS) - 1), LG_HIST_BUCKETS - 1);
}

static void test_hist_percentiles(void **state)
{
    (void)state;
    lg_hist h;
    lg_hist_init(&h);
    assert_int_equal(lg_hist_percentile(&h, 50), 0);
    for (uint64_t v = 1; v <= 100000; v++)
        lg_hist_record(&h, v);
    assert_int_equal(h.count, 100000);
    assert_int_equal(h.min, 1);
    assert_int_equal(h.max, 100000);
    uint64_t p50 = lg_hist_percentile(&h, 50);
    uint64_t p999 = lg_hist_percentile(&h, 99.9);
    assert_true(p50 >= 50000 && p50 <= 50000 + 50000 / 128);
    assert_true(p999 >= 99900 && p999 <= 100000);
    assert_int_equal(lg_hist_percentile(&h, 100), 100000);
}

/* One slow value in a thousand must show at p99.9 but not at p99: the
 * point of measuring a stall. */
static void test_hist_tail(void **state)
{
    (void)state;
    lg_hist h;
    lg_hist_init(&h);
    for (int i = 0; i < 998; i++)
        lg_hist_record(&h, 100);
    lg_hist_record(&h, 300000);
    lg_hist_record(&h, 300000);
    assert_true(lg_hist_percentile(&h, 99) <= 101);
    assert_true(lg_hist_percentile(&h, 99.9) >= 300000);
    assert_int_equal(lg_hist_percentile(&h, 99.9), 300000); /* capped at the exact max */
}

static void test_hist_merge(void **state)
{
    (void)state;
    lg_hist a, b, whole;
    lg_hist_init(&a);
    lg_hist_init(&b);
    lg_hist_init(&whole);
    for (uint64_t v = 0; v < 20000; v += 7) {
        lg_hist_record(v % 2 ? &a : &b, v * 13);
        lg_hist_record(&whole, v * 13);
    }
    lg_hist_merge(&a, &b);
    assert_memory_equal(&a, &whole, sizeof(whole));
}

/* ---- request and response ------------------------------------------------------ */

static void test_request_template(void **state)
{
    (void)state;
    char out[512];
    int n = lg_wire_request(out, sizeof(out), "127.0.0.1:9000", "/?clientId=c{i}&again={i}", 42,
                            rfc_key);
    assert_true(n > 0);
    assert_int_equal((size_t)n, strlen(out));
    assert_non_null(strstr(out, "GET /?clientId=c42&again=42 HTTP/1.1\r\n"));
    assert_non_null(strstr(out, "\r\nHost: 127.0.0.1:9000\r\n"));
    assert_non_null(strstr(out, "\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
    assert_non_null(strstr(out, "\r\nSec-WebSocket-Version: 13\r\n"));
    assert_string_equal(out + n - 4, "\r\n\r\n");
    assert_int_equal(lg_wire_request(out, 64, "h", "/{i}", 1, rfc_key), -1);
}

/* Every prefix needs more; the whole head is accepted, also with a frame
 * behind it, and the parser reads nothing past its input. */
static void test_response_in_pieces(void **state)
{
    (void)state;
    size_t len = sizeof(good_response) - 1;
    int status;
    for (size_t n = 0; n < len; n++)
        assert_int_equal(lg_wire_response(guarded(good_response, n), n, rfc_accept, &status), 0);
    assert_int_equal(lg_wire_response(guarded(good_response, len), len, rfc_accept, &status),
                     (int)len);
    assert_int_equal(status, 101);
    char more[256];
    memcpy(more, good_response, len);
    memcpy(more + len, "\x82\x01x", 3);
    assert_int_equal(lg_wire_response(guarded(more, len + 3), len + 3, rfc_accept, &status),
                     (int)len);
}

static void test_response_refusals(void **state)
{
    (void)state;
    static const char forbidden[] = "HTTP/1.1 403 Forbidden\r\nContent-Le";
    static const char no_upgrade[] = "HTTP/1.1 101 OK\r\n"
                                     "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    static const char bad_accept[] = "HTTP/1.1 101 OK\r\nUpgrade: WebSocket\r\n"
                                     "Sec-WebSocket-Accept: AAAALMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    static const char garbage[] = "SSH-2.0-OpenSSH\r\n";
    char big[LG_HEAD_MAX];
    int status;
    assert_int_equal(lg_wire_response(forbidden, strlen(forbidden), rfc_accept, &status),
                     LG_HS_BAD_STATUS);
    assert_int_equal(status, 403);
    assert_int_equal(lg_wire_response(no_upgrade, strlen(no_upgrade), rfc_accept, &status),
                     LG_HS_BAD_UPGRADE);
    assert_int_equal(lg_wire_response(bad_accept, strlen(bad_accept), rfc_accept, &status),
                     LG_HS_BAD_ACCEPT);
    assert_int_equal(lg_wire_response(garbage, strlen(garbage), rfc_accept, &status),
                     LG_HS_BAD_STATUS);
    memset(big, 'a', sizeof(big));
    memcpy(big, "HTTP/1.1 101 OK\r\n", 17);
    assert_int_equal(lg_wire_response(big, sizeof(big), rfc_accept, &status), LG_HS_TOO_LONG);
}

/* ---- messages ------------------------------------------------------------------- */

/* Builds a message, unmasks it as a server would, and checks it. */
static void roundtrip(uint32_t size)
{
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    uint8_t *frame = malloc(LG_FRAME_SIZE(size));
    lg_echo e;
    wsg_ws_header h;
    assert_non_null(frame);
    size_t n = lg_wire_message(frame, size, 7, 1234, 987654321, key);
    assert_int_equal(wsg_ws_header_parse(frame, n, &h), (int)(n - size));
    assert_true(h.masked && h.fin && h.opcode == WSG_WS_OP_BINARY && h.len == size);
    uint8_t *p = frame + h.size;
    wsg_ws_mask(p, size, h.mask, 0);
    assert_int_equal(lg_wire_check(p, size, size, 7, &e), 0);
    assert_int_equal(e.seq, 1234);
    assert_int_equal(e.sent_ns, 987654321);
    assert_int_equal(lg_wire_check(p, size - 1, size, 7, &e), -1);
    /* 16 bytes carry no pattern: only the size and the order are checked. */
    if (size >= LG_MSG_MIN + 8)
        assert_int_equal(lg_wire_check(p, size, size, 8, &e), -1);
    for (uint32_t i = LG_MSG_MIN; i < size; i++) {
        p[i] ^= 0x40;
        assert_int_equal(lg_wire_check(p, size, size, 7, &e), -1);
        p[i] ^= 0x40;
    }
    /* A different sequence number needs a different pattern: certain from
     * one whole pattern word on, while 1 to 7 bytes of it may agree. */
    p[0] ^= 1;
    if (size >= LG_MSG_MIN + 8)
        assert_int_equal(lg_wire_check(p, size, size, 7, &e), -1);
    free(frame);
}

static void test_message_roundtrip(void **state)
{
    (void)state;
    static const uint32_t sizes[] = {16, 17, 23, 24, 31, 125, 126, 1000, 65535, 65536, 70001};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        roundtrip(sizes[i]);
}

/* ---- permessage-deflate ------------------------------------------------------ */

/* A compressed message: RSV1, stored blocks of at most 65,535 bytes with
 * BFINAL on the last, and the plain message back after lg_wire_unstore. */
static void deflated_roundtrip(uint32_t size)
{
    static const uint8_t key[4] = {0x11, 0x22, 0x33, 0x44};
    uint8_t *frame = malloc(LG_FRAME_SIZE(size));
    lg_echo e;
    wsg_ws_header h;
    assert_non_null(frame);
    size_t n = lg_wire_message_deflated(frame, size, 3, 99, 5555, key);
    size_t len = size + LG_STORED_OVERHEAD(size);
    assert_int_equal(wsg_ws_header_parse(frame, n, &h), (int)(n - len));
    assert_true(h.masked && h.fin && h.rsv == 4 && h.opcode == WSG_WS_OP_BINARY && h.len == len);
    uint8_t *p = frame + h.size;
    wsg_ws_mask(p, len, h.mask, 0);
    size_t blocks = (size + LG_STORED_MAX - 1) / LG_STORED_MAX;
    size_t at = 0;
    for (size_t b = 0; b < blocks; b++) {
        size_t chunk = b + 1 < blocks ? LG_STORED_MAX : size - b * LG_STORED_MAX;
        assert_int_equal(p[at], b + 1 == blocks ? 1 : 0);
        assert_int_equal(p[at + 1] | p[at + 2] << 8, chunk);
        assert_int_equal((p[at + 3] | p[at + 4] << 8) ^ 0xffff, chunk);
        at += 5 + chunk;
    }
    assert_int_equal(at, len);
    assert_int_equal(lg_wire_unstore(p, len), size);
    assert_int_equal(lg_wire_check(p, size, size, 3, &e), 0);
    assert_int_equal(e.seq, 99);
    assert_int_equal(e.sent_ns, 5555);
    free(frame);
}

static void test_deflated_roundtrip(void **state)
{
    (void)state;
    static const uint32_t sizes[] = {16, 32, 1000, 65534, 65535, 65536, 131070, 131071, 200000};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        deflated_roundtrip(sizes[i]);
}

static void test_unstore_refusals(void **state)
{
    (void)state;
    /* "abc" in one final stored block, then as RFC 7692 sends a sync-flushed
     * stream: a non-final block and the first byte of the empty one. */
    uint8_t last[] = {0x01, 3, 0, 0xfc, 0xff, 'a', 'b', 'c'};
    uint8_t flushed[] = {0x00, 3, 0, 0xfc, 0xff, 'a', 'b', 'c', 0x00};
    uint8_t buf[16];
    memcpy(buf, last, sizeof(last));
    assert_int_equal(lg_wire_unstore(buf, sizeof(last)), 3);
    assert_memory_equal(buf, "abc", 3);
    memcpy(buf, flushed, sizeof(flushed));
    assert_int_equal(lg_wire_unstore(buf, sizeof(flushed)), 3);
    /* Every cut of the final-block form is refused, read within bounds. */
    for (size_t n = 0; n < sizeof(last); n++)
        assert_int_equal(lg_wire_unstore((uint8_t *)guarded(last, n), n), -1);
    /* A bad ~LEN, a compressed block type, bytes after the final block. */
    memcpy(buf, last, sizeof(last));
    buf[3] = 0;
    assert_int_equal(lg_wire_unstore(buf, sizeof(last)), -1);
    memcpy(buf, last, sizeof(last));
    buf[0] = 0x03; /* BTYPE 01: fixed Huffman codes */
    assert_int_equal(lg_wire_unstore(buf, sizeof(last)), -1);
    memcpy(buf, last, sizeof(last));
    buf[sizeof(last)] = 0;
    assert_int_equal(lg_wire_unstore(buf, sizeof(last) + 1), -1);
}

static void test_deflate_offer_and_answer(void **state)
{
    (void)state;
    char out[1024];
    int n = lg_wire_request_ext(out, sizeof(out), "h", "/", 0, rfc_key, true);
    assert_true(n > 0);
    assert_non_null(strstr(out, "\r\nSec-WebSocket-Extensions: permessage-deflate; "
                                "client_no_context_takeover; server_no_context_takeover\r\n\r\n"));
    n = lg_wire_request_ext(out, sizeof(out), "h", "/", 0, rfc_key, false);
    assert_null(strstr(out, "Extensions"));
    static const char yes[] = "HTTP/1.1 101 Switching Protocols\r\n"
                              "sec-websocket-extensions: x-other, permessage-deflate; "
                              "client_no_context_takeover\r\n\r\n";
    static const char no[] = "HTTP/1.1 101 Switching Protocols\r\n"
                             "Sec-WebSocket-Extensions: permessage-deflatex\r\n"
                             "X-Note: permessage-deflate\r\n\r\n";
    assert_true(lg_wire_accepts_deflate(guarded(yes, strlen(yes)), strlen(yes)));
    assert_false(lg_wire_accepts_deflate(guarded(no, strlen(no)), strlen(no)));
    assert_false(lg_wire_accepts_deflate(guarded(good_response, strlen(good_response)),
                                         strlen(good_response)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hist_buckets),      cmocka_unit_test(test_hist_percentiles),
        cmocka_unit_test(test_hist_tail),         cmocka_unit_test(test_hist_merge),
        cmocka_unit_test(test_request_template),  cmocka_unit_test(test_response_in_pieces),
        cmocka_unit_test(test_response_refusals), cmocka_unit_test(test_message_roundtrip),
        cmocka_unit_test(test_deflated_roundtrip), cmocka_unit_test(test_unstore_refusals),
        cmocka_unit_test(test_deflate_offer_and_answer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
