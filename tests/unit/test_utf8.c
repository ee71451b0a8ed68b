/* Incremental UTF-8 validation (src/ws/utf8.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "guard_page.h"
#include "ws/ws.h"

enum verdict { V_OK, V_BAD, V_MORE };

static const char *verdict_name[] = {"OK", "BAD", "inside a character"};

static enum verdict verdict_of(uint32_t state)
{
    if (state == WSG_UTF8_OK)
        return V_OK;
    if (state == WSG_UTF8_BAD)
        return V_BAD;
    return V_MORE;
}

/* A decoder written from RFC 3629 section 4 as plainly as possible. */
static bool ref_valid(const uint8_t *p, size_t n)
{
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    size_t i = 0;
    while (i < n) {
        uint8_t b = p[i];
        size_t len;
        uint32_t cp;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xe0) == 0xc0) {
            len = 2;
            cp = b & 0x1f;
        } else if ((b & 0xf0) == 0xe0) {
            len = 3;
            cp = b & 0x0f;
        } else if ((b & 0xf8) == 0xf0) {
            len = 4;
            cp = b & 0x07;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

/* OK when valid, MORE when some continuation makes it valid, else BAD.
 * Only the first continuation byte of a character is ever narrowed, and
 * each narrowed range holds 0x80, 0x90 or 0xa0, so trying those three as
 * the first added byte (then 0x80s) covers every completion. */
static enum verdict ref_verdict(const uint8_t *p, size_t n)
{
    if (ref_valid(p, n))
        return V_OK;
    uint8_t buf[64];
    if (n + 3 > sizeof(buf))
        return V_BAD;
    static const uint8_t first[] = {0x80, 0x90, 0xa0};
    memcpy(buf, p, n);
    for (size_t k = 1; k <= 3; k++) {
        for (size_t f = 0; f < sizeof(first); f++) {
            buf[n] = first[f];
            memset(buf + n + 1, 0x80, k - 1);
            if (ref_valid(buf, n + k))
                return V_MORE;
        }
    }
    return V_BAD;
}

static guard_page guard;

static int setup(void **state)
{
    (void)state;
    guard_page_init(&guard, 4096);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    guard_page_deinit(&guard);
    return 0;
}

/* Feeds p whole, split at every offset, one byte at a time, after an ASCII
 * run that takes the word-at-a-time path, and right before the guard page;
 * every way must end in the same state. Returns the verdict. */
static enum verdict feed_all_ways(const void *bytes, size_t n)
{
    const uint8_t *p = bytes;
    uint32_t whole = wsg_utf8_feed(WSG_UTF8_OK, p, n);

    for (size_t cut = 0; cut <= n; cut++) {
        uint32_t s = wsg_utf8_feed(WSG_UTF8_OK, p, cut);
        s = wsg_utf8_feed(s, p + cut, n - cut);
        if (s != whole)
            fail_msg("split at %zu of %zu: state %#x, whole %#x", cut, n, s, whole);
    }

    uint32_t s = WSG_UTF8_OK;
    for (size_t i = 0; i < n; i++)
        s = wsg_utf8_feed(s, p + i, 1);
    assert_int_equal(s, whole);

    assert_int_equal(wsg_utf8_feed(WSG_UTF8_OK, guard_page_put(&guard, p, n), n), whole);

    uint8_t with_ascii[256];
    if (n + 19 <= sizeof(with_ascii)) {
        memset(with_ascii, 'a', 19);
        memcpy(with_ascii + 19, p, n);
        assert_int_equal(wsg_utf8_feed(WSG_UTF8_OK, with_ascii, n + 19), whole);
    }

    /* Empty input changes nothing, inside a character or not. */
    assert_int_equal(wsg_utf8_feed(whole, p, 0), whole);
    assert_int_equal(wsg_utf8_valid(p, n), whole == WSG_UTF8_OK);
    return verdict_of(whole);
}

#define EXPECT(lit, want) expect_verdict(lit, sizeof(lit) - 1, want, __LINE__)

static void expect_verdict(const char *p, size_t n, enum verdict want, int line)
{
    enum verdict got = feed_all_ways(p, n);
    if (got != want)
        fail_msg("line %d: %s, want %s", line, verdict_name[got], verdict_name[want]);
    if (ref_verdict((const uint8_t *)p, n) != want)
        fail_msg("line %d: the reference disagrees with the test", line);
}

static void test_valid_text(void **state)
{
    (void)state;
    EXPECT("", V_OK);
    EXPECT("Hello, world", V_OK);
    EXPECT("h\xc3\xa9llo w\xc3\xb6rld", V_OK);
    EXPECT("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", V_OK); /* kosme */
    EXPECT("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", V_OK);         /* CJK */
    EXPECT("smile \xf0\x9f\x98\x80!", V_OK);
    EXPECT("\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbd", V_OK); /* U+D7FF, U+E000, U+FFFD */
    EXPECT("\x00\x01\x7f", V_OK);
}

static void test_boundaries(void **state)
{
    (void)state;
    EXPECT("\x7f", V_OK);              /* U+007F */
    EXPECT("\xc2\x80", V_OK);          /* U+0080 */
    EXPECT("\xdf\xbf", V_OK);          /* U+07FF */
    EXPECT("\xe0\xa0\x80", V_OK);      /* U+0800 */
    EXPECT("\xef\xbf\xbf", V_OK);      /* U+FFFF */
    EXPECT("\xf0\x90\x80\x80", V_OK);  /* U+10000 */
    EXPECT("\xf4\x8f\xbf\xbf", V_OK);  /* U+10FFFF */
    EXPECT("\xf3\xbf\xbf\xbf", V_OK);  /* U+FFFFF */
    EXPECT("\x80", V_BAD);             /* just past U+007F as one byte */
    EXPECT("\xf4\x90\x80\x80", V_BAD); /* U+110000 */
}

static void test_overlong(void **state)
{
    (void)state;
    EXPECT("\xc0\x80", V_BAD);
    EXPECT("\xc1\xbf", V_BAD);
    EXPECT("\xe0\x80\x80", V_BAD);
    EXPECT("\xe0\x9f\xbf", V_BAD);
    EXPECT("\xf0\x80\x80\x80", V_BAD);
    EXPECT("\xf0\x8f\xbf\xbf", V_BAD);
    EXPECT("\xc0\xaf", V_BAD); /* '/' */
    EXPECT("\xe0\x80\xaf", V_BAD);
    EXPECT("\xf0\x80\x80\xaf", V_BAD);
    EXPECT("a\xc0", V_BAD); /* no continuation can save C0 */
    EXPECT("\xe0\x80", V_BAD);
    EXPECT("\xf0\x80", V_BAD);
}

static void test_surrogates(void **state)
{
    (void)state;
    EXPECT("\xed\xa0\x80", V_BAD); /* U+D800 */
    EXPECT("\xed\xad\xbf", V_BAD); /* U+DB7F */
    EXPECT("\xed\xb0\x80", V_BAD); /* U+DC00 */
    EXPECT("\xed\xbf\xbf", V_BAD); /* U+DFFF */
    EXPECT("\xed\xa0\x80\xed\xb0\x80", V_BAD);
    EXPECT("\xed\xa0", V_BAD);
}

static void test_above_max(void **state)
{
    (void)state;
    EXPECT("\xf4\x90\x80\x80", V_BAD);
    EXPECT("\xf4\xbf\xbf\xbf", V_BAD);
    EXPECT("\xf5\x80\x80\x80", V_BAD);
    EXPECT("\xf7\xbf\xbf\xbf", V_BAD);
    EXPECT("\xf8\x88\x80\x80\x80", V_BAD);
    EXPECT("\xfc\x84\x80\x80\x80\x80", V_BAD);
    EXPECT("\xfe", V_BAD);
    EXPECT("\xff", V_BAD);
    EXPECT("\xf4\x90", V_BAD);
}

static void test_stray_continuation(void **state)
{
    (void)state;
    EXPECT("\x80", V_BAD);
    EXPECT("\xbf", V_BAD);
    EXPECT("a\x80z", V_BAD);
    EXPECT("\xc3\xa9\xa9", V_BAD);
    EXPECT("\xe2\x82\xac\x80", V_BAD);
    EXPECT("\xf0\x9f\x98\x80\x80", V_BAD);
    EXPECT("\xc3\xa9\x80\x80", V_BAD);
}

static void test_truncated(void **state)
{
    (void)state;
    EXPECT("\xc2", V_MORE);
    EXPECT("\xdf", V_MORE);
    EXPECT("\xe0\xa0", V_MORE);
    EXPECT("\xe2\x82", V_MORE);
    EXPECT("\xed\x9f", V_MORE);
    EXPECT("\xf0\x9f\x98", V_MORE);
    EXPECT("\xf0\x90", V_MORE);
    EXPECT("\xf4\x8f\xbf", V_MORE);
    EXPECT("abc\xe2", V_MORE);
    /* A cut character followed by anything but its continuation. */
    EXPECT("\xc2"
           "A",
           V_BAD);
    EXPECT("\xe2\x82"
           "A",
           V_BAD);
    EXPECT("\xf0\x9f\x98\xc2\x80", V_BAD);

    /* Finishing a cut character makes it whole. */
    uint32_t s = wsg_utf8_feed(WSG_UTF8_OK, (const uint8_t *)"\xf0\x9f", 2);
    assert_int_not_equal(s, WSG_UTF8_OK);
    assert_int_not_equal(s, WSG_UTF8_BAD);
    s = wsg_utf8_feed(s, (const uint8_t *)"\x98", 1);
    assert_int_not_equal(s, WSG_UTF8_OK);
    assert_int_not_equal(s, WSG_UTF8_BAD);
    assert_int_equal(wsg_utf8_feed(s, (const uint8_t *)"\x80", 1), WSG_UTF8_OK);
}

/* Every sequence of one and two bytes, and three- and four-byte sequences
 * over every lead byte at and above 0xC0, against the reference decoder. */
static void test_against_reference(void **state)
{
    (void)state;
    static const uint8_t tails[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90,
                                    0x9f, 0xa0, 0xbf, 0xc0, 0xe0, 0xff};
    uint8_t p[4];
    for (unsigned a = 0; a < 256; a++) {
        p[0] = (uint8_t)a;
        assert_int_equal(verdict_of(wsg_utf8_feed(WSG_UTF8_OK, p, 1)), ref_verdict(p, 1));
        for (unsigned b = 0; b < 256; b++) {
            p[1] = (uint8_t)b;
            if (verdict_of(wsg_utf8_feed(WSG_UTF8_OK, p, 2)) != ref_verdict(p, 2))
                fail_msg("%02x %02x", a, b);
            if (a < 0xc0)
                continue;
            for (size_t c = 0; c < sizeof(tails); c++) {
                p[2] = tails[c];
                if (verdict_of(wsg_utf8_feed(WSG_UTF8_OK, p, 3)) != ref_verdict(p, 3))
                    fail_msg("%02x %02x %02x", a, b, p[2]);
                if (a < 0xf0)
                    continue;
                for (size_t d = 0; d < sizeof(tails); d++) {
                    p[3] = tails[d];
                    if (verdict_of(wsg_utf8_feed(WSG_UTF8_OK, p, 4)) != ref_verdict(p, 4))
                        fail_msg("%02x %02x %02x %02x", a, b, p[2], p[3]);
                }
            }
        }
    }
}

static void test_split_mixed_text(void **state)
{
    (void)state;
    static const char text[] = "ASCII then \xc3\xa9\xc3\xa8, then \xe2\x82\xac\xe2\x82\xac"
                               " and \xf0\x9f\x98\x80\xf4\x8f\xbf\xbf; more ASCII to end.";
    assert_int_equal(feed_all_ways(text, sizeof(text) - 1), V_OK);

    /* Any prefix is OK or inside a character, never BAD. */
    for (size_t n = 0; n < sizeof(text) - 1; n++)
        assert_int_not_equal(feed_all_ways(text, n), V_BAD);

    /* Each wrong byte in place of one of the text's is caught wherever the
     * input is split. */
    char bad[sizeof(text)];
    for (size_t i = 0; i < sizeof(text) - 1; i++) {
        memcpy(bad, text, sizeof(text));
        bad[i] = (char)0xff;
        assert_int_equal(feed_all_ways(bad, sizeof(text) - 1), V_BAD);
    }
}

static void test_sticky_bad(void **state)
{
    (void)state;
    const uint8_t *good = (const uint8_t *)"fine text \xc3\xa9";
    assert_int_equal(wsg_utf8_feed(WSG_UTF8_BAD, good, 12), WSG_UTF8_BAD);
    assert_int_equal(wsg_utf8_feed(WSG_UTF8_BAD, good, 0), WSG_UTF8_BAD);
    uint32_t s = wsg_utf8_feed(WSG_UTF8_OK, (const uint8_t *)"\xff", 1);
    assert_int_equal(s, WSG_UTF8_BAD);
    for (int i = 0; i < 4; i++) {
        s = wsg_utf8_feed(s, good, 12);
        assert_int_equal(s, WSG_UTF8_BAD);
    }
    /* The bad byte is not the last one fed. */
    assert_int_equal(wsg_utf8_feed(WSG_UTF8_OK, (const uint8_t *)"a\x80xxxxxxxxxxxxxxxx", 18),
                     WSG_UTF8_BAD);
}

/* The validator reads ASCII eight bytes at a time: a bad byte must be found
 * at every position in and around those words, at every start alignment,
 * and the last word must not read past the end. */
static void test_ascii_fast_path(void **state)
{
    (void)state;
    enum { MAXLEN = 80 };
    static const uint8_t bad_bytes[] = {0x80, 0xbf, 0xc0, 0xc1, 0xf5, 0xff};
    uint64_t store[(MAXLEN + 8 + 8) / 8];
    uint8_t *base = (uint8_t *)store;
    for (size_t align = 0; align < 8; align++) {
        uint8_t *p = base + align;
        for (size_t len = 1; len <= MAXLEN; len++) {
            memset(p, 'x', len);
            assert_int_equal(wsg_utf8_feed(WSG_UTF8_OK, p, len), WSG_UTF8_OK);
            for (size_t at = 0; at < len; at++) {
                for (size_t b = 0; b < sizeof(bad_bytes); b++) {
                    memset(p, 'x', len);
                    p[at] = bad_bytes[b];
                    if (wsg_utf8_feed(WSG_UTF8_OK, p, len) != WSG_UTF8_BAD)
                        fail_msg("align %zu len %zu byte %02x at %zu", align, len, bad_bytes[b],
                                 at);
                }
                /* A lead byte: BAD before ASCII, inside a character at the end. */
                memset(p, 'x', len);
                p[at] = 0xe2;
                uint32_t want =
                    at + 1 == len ? wsg_utf8_feed(WSG_UTF8_OK, p + at, 1) : WSG_UTF8_BAD;
                assert_int_equal(wsg_utf8_feed(WSG_UTF8_OK, p, len), want);
            }
            /* A whole character at every position is fine. */
            for (size_t at = 0; at + 4 <= len; at++) {
                memset(p, 'x', len);
                memcpy(p + at, "\xf0\x9f\x98\x80", 4);
                assert_int_equal(wsg_utf8_feed(WSG_UTF8_OK, p, len), WSG_UTF8_OK);
            }
        }
    }

    /* Against the guard page: n bytes end at it, so a whole-word read past
     * the end faults. */
    uint8_t src[MAXLEN];
    for (size_t len = 0; len <= MAXLEN; len++) {
        memset(src, 'y', len);
        uint8_t *q = guard_page_put(&guard, src, len);
        assert_int_equal(wsg_utf8_feed(WSG_UTF8_OK, q, len), WSG_UTF8_OK);
        if (len > 0) {
            q[len - 1] = 0x80;
            assert_int_equal(wsg_utf8_feed(WSG_UTF8_OK, q, len), WSG_UTF8_BAD);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_text),       cmocka_unit_test(test_boundaries),
        cmocka_unit_test(test_overlong),         cmocka_unit_test(test_surrogates),
        cmocka_unit_test(test_above_max),        cmocka_unit_test(test_stray_continuation),
        cmocka_unit_test(test_truncated),        cmocka_unit_test(test_against_reference),
        cmocka_unit_test(test_split_mixed_text), cmocka_unit_test(test_sticky_bad),
        cmocka_unit_test(test_ascii_fast_path),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
