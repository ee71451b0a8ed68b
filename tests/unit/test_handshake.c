/* Handshake helpers: keys, Sec-WebSocket-Accept and the permessage-deflate
 * rewrite (src/ws/handshake.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <string.h>

#include "guard_page.h"
#include "ws/ws.h"

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

/* A wsg_str whose bytes end right before the guard page. */
static wsg_str guarded(const char *s)
{
    size_t n = strlen(s);
    return wsg_str_make((const char *)guard_page_put(&guard, s, n), n);
}

static void check_accept(const char *key, const char *want)
{
    char out[WSG_WS_ACCEPT_LEN + 1];
    memset(out, 'X', sizeof(out));
    wsg_ws_accept(guarded(key), out);
    assert_int_equal(out[WSG_WS_ACCEPT_LEN], '\0');
    assert_string_equal(out, want);
}

static void test_accept(void **state)
{
    (void)state;
    /* RFC 6455 section 1.3. */
    check_accept("dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    /* The example of RFC 6455's drafts, also quoted by most references. */
    check_accept("x3JJHMbDL1EzLkh9GBhXDw==", "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
}

static void test_key_valid(void **state)
{
    (void)state;
    assert_true(wsg_ws_key_valid(guarded("dGhlIHNhbXBsZSBub25jZQ==")));
    assert_true(wsg_ws_key_valid(guarded("x3JJHMbDL1EzLkh9GBhXDw==")));
    assert_true(wsg_ws_key_valid(guarded("AAAAAAAAAAAAAAAAAAAAAA==")));
    assert_true(wsg_ws_key_valid(guarded("/+/+/+/+/+/+/+/+/+/+/w==")));

    /* Wrong lengths. */
    assert_false(wsg_ws_key_valid(guarded("")));
    assert_false(wsg_ws_key_valid(guarded("dGhlIHNhbXBsZSBub25jZQ=")));
    assert_false(wsg_ws_key_valid(guarded("dGhlIHNhbXBsZSBub25jZQ===")));
    assert_false(wsg_ws_key_valid(guarded("dGhlIHNhbXBsZSBub25jZQ==dGhl")));
    assert_false(wsg_ws_key_valid(guarded("c2FtcGxl")));
    /* 12 and 20 bytes, correctly encoded. */
    assert_false(wsg_ws_key_valid(guarded("AAAAAAAAAAAAAAAA")));
    assert_false(wsg_ws_key_valid(guarded("AAAAAAAAAAAAAAAAAAAAAAAAAAA=")));

    /* 24 characters, but not 16 bytes: 17 bytes, 18 bytes. */
    assert_false(wsg_ws_key_valid(guarded("AAAAAAAAAAAAAAAAAAAAAAA=")));
    assert_false(wsg_ws_key_valid(guarded("AAAAAAAAAAAAAAAAAAAAAAAA")));

    /* Missing or misplaced padding. */
    assert_false(wsg_ws_key_valid(guarded("dGhlIHNhbXBsZSBub25jZQ")));
    assert_false(wsg_ws_key_valid(guarded("dGhlIHNhbXBsZSBub25jZQAA")));
    assert_false(wsg_ws_key_valid(guarded("dGhlIHNhbXBsZSBub25jZQ=A")));
    assert_false(wsg_ws_key_valid(guarded("=dGhlIHNhbXBsZSBub25jZQ=")));

    /* A bad character at every position. */
    static const char bad_chars[] = {'-', '_', '.', ' ', '=', '*', '\0', '\x80', '\n'};
    char key[WSG_WS_KEY_LEN + 1];
    for (size_t at = 0; at < 22; at++) {
        for (size_t b = 0; b < sizeof(bad_chars); b++) {
            memcpy(key, "dGhlIHNhbXBsZSBub25jZQ==", sizeof(key));
            key[at] = bad_chars[b];
            wsg_str s = wsg_str_make((const char *)guard_page_put(&guard, key, 24), 24);
            if (wsg_ws_key_valid(s))
                fail_msg("char %02x at %zu accepted", (uint8_t)bad_chars[b], at);
        }
    }
}

static void test_make_key(void **state)
{
    (void)state;
    wsg_rand rng;
    wsg_rand_init(&rng);
    enum { N = 64 };
    char keys[N][WSG_WS_KEY_LEN + 1];
    for (int i = 0; i < N; i++) {
        memset(keys[i], 'X', sizeof(keys[i]));
        wsg_ws_make_key(&rng, keys[i]);
        assert_int_equal(keys[i][WSG_WS_KEY_LEN], '\0');
        assert_int_equal(strlen(keys[i]), WSG_WS_KEY_LEN);
        assert_true(wsg_ws_key_valid(wsg_str_cstr(keys[i])));

        unsigned char raw[18];
        /* EVP_DecodeBlock counts the padding as zero bytes. */
        assert_int_equal(EVP_DecodeBlock(raw, (const unsigned char *)keys[i], WSG_WS_KEY_LEN), 18);

        for (int j = 0; j < i; j++)
            assert_string_not_equal(keys[i], keys[j]);
    }
}

/* Runs wsg_ws_offer_for_backend with the output ending at the guard page,
 * so a write past outlen faults. */
static int offer(const char *in, char *copy, size_t outlen)
{
    wsg_str s = wsg_str_cstr(in);
    char *out = (char *)guard_page_end(&guard, outlen);
    memset(out, 'X', outlen);
    int rc = wsg_ws_offer_for_backend(s, out, outlen);
    if (rc >= 0) {
        assert_true((size_t)rc < outlen);
        assert_int_equal(out[rc], '\0');
        assert_int_equal(strlen(out), rc);
    }
    if (copy && outlen)
        memcpy(copy, out, outlen);
    return rc;
}

static void check_offer(const char *in, const char *want, int line)
{
    char out[512];
    int rc = offer(in, out, sizeof(out));
    if (rc != (int)strlen(want) || strcmp(out, want) != 0)
        fail_msg("line %d: offer \"%s\": got %d \"%s\", want \"%s\"", line, in, rc,
                 rc >= 0 ? out : "", want);
}

#define OFFER(in, want) check_offer(in, want, __LINE__)

static size_t count(const char *haystack, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(haystack, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void test_offer_adds_server_no_context_takeover(void **state)
{
    (void)state;
    OFFER("permessage-deflate; client_max_window_bits",
          "permessage-deflate; client_max_window_bits; server_no_context_takeover");
    OFFER("permessage-deflate", "permessage-deflate; server_no_context_takeover");
    OFFER("permessage-deflate; client_max_window_bits=10; server_max_window_bits=12",
          "permessage-deflate; client_max_window_bits=10; server_max_window_bits=12; "
          "server_no_context_takeover");
    OFFER("permessage-deflate; client_no_context_takeover",
          "permessage-deflate; client_no_context_takeover; server_no_context_takeover");
    OFFER("permessage-deflate; client_max_window_bits=\"15\"",
          "permessage-deflate; client_max_window_bits=\"15\"; server_no_context_takeover");
}

static void test_offer_keeps_server_no_context_takeover_once(void **state)
{
    (void)state;
    OFFER("permessage-deflate; server_no_context_takeover",
          "permessage-deflate; server_no_context_takeover");
    OFFER("permessage-deflate; server_no_context_takeover; client_max_window_bits",
          "permessage-deflate; server_no_context_takeover; client_max_window_bits");
    OFFER("permessage-deflate; client_max_window_bits; server_no_context_takeover",
          "permessage-deflate; client_max_window_bits; server_no_context_takeover");

    char out[256];
    assert_true(offer("permessage-deflate;server_no_context_takeover", out, sizeof(out)) > 0);
    assert_int_equal(count(out, "server_no_context_takeover"), 1);
}

static void test_offer_drops_other_extensions(void **state)
{
    (void)state;
    OFFER("x-webkit-deflate-frame", "");
    OFFER("foo", "");
    OFFER("foo; bar=1, x-webkit-deflate-frame", "");
    OFFER("foo, permessage-deflate", "permessage-deflate; server_no_context_takeover");
    OFFER("x-webkit-deflate-frame, permessage-deflate; client_max_window_bits, foo",
          "permessage-deflate; client_max_window_bits; server_no_context_takeover");
    OFFER("permessage-deflate-x", "");
}

static void test_offer_drops_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "permessage-deflate; foo",
        "permessage-deflate; client_max_window_bits; client_max_window_bits",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=abc",
        "permessage-deflate; server_max_window_bits=-9",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=1x",
        "permessage-deflate; client_max_window_bits=",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=yes",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char out[256];
        if (offer(bad[i], out, sizeof(out)) != 0)
            fail_msg("\"%s\" was kept as \"%s\"", bad[i], out);
        assert_string_equal(out, "");
    }
    /* A malformed offer is dropped, a good one beside it kept. */
    OFFER("permessage-deflate; foo, permessage-deflate",
          "permessage-deflate; server_no_context_takeover");
    /* Window bits at the edges of 8..15 are fine. */
    OFFER("permessage-deflate; server_max_window_bits=8",
          "permessage-deflate; server_max_window_bits=8; server_no_context_takeover");
    OFFER("permessage-deflate; client_max_window_bits=15",
          "permessage-deflate; client_max_window_bits=15; server_no_context_takeover");
}

static void test_offer_rewrites_each(void **state)
{
    (void)state;
    OFFER("permessage-deflate; client_max_window_bits, permessage-deflate",
          "permessage-deflate; client_max_window_bits; server_no_context_takeover, "
          "permessage-deflate; server_no_context_takeover");
    OFFER("permessage-deflate; server_max_window_bits=10, foo, "
          "permessage-deflate; server_no_context_takeover, permessage-deflate",
          "permessage-deflate; server_max_window_bits=10; server_no_context_takeover, "
          "permessage-deflate; server_no_context_takeover, "
          "permessage-deflate; server_no_context_takeover");
}

static void test_offer_empty_and_overflow(void **state)
{
    (void)state;
    char out[256];
    assert_int_equal(offer("", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(offer("foo", out, 1), 0);
    assert_int_equal(out[0], '\0');

    const char *in = "permessage-deflate; client_max_window_bits";
    const char *want = "permessage-deflate; client_max_window_bits; server_no_context_takeover";
    size_t len = strlen(want);
    assert_int_equal(offer(in, out, len + 1), (int)len);
    assert_string_equal(out, want);
    for (size_t outlen = 0; outlen <= len; outlen++)
        assert_int_equal(offer(in, NULL, outlen), -1);

    const char *two = "permessage-deflate, permessage-deflate";
    len = strlen("permessage-deflate; server_no_context_takeover, "
                 "permessage-deflate; server_no_context_takeover");
    assert_int_equal(offer(two, NULL, len + 1), (int)len);
    for (size_t outlen = 0; outlen <= len; outlen++)
        assert_int_equal(offer(two, NULL, outlen), -1);
}

static int answer(const char *in, char *copy, size_t outlen)
{
    char *out = (char *)guard_page_end(&guard, outlen);
    memset(out, 'X', outlen);
    int rc = wsg_ws_answer_for_client(wsg_str_cstr(in), out, outlen);
    if (rc >= 0) {
        assert_true((size_t)rc < outlen);
        assert_int_equal(out[rc], '\0');
        assert_int_equal(strlen(out), rc);
        if (copy)
            memcpy(copy, out, (size_t)rc + 1);
    }
    return rc;
}

static void check_answer(const char *in, const char *want, int line)
{
    char out[512];
    int rc = answer(in, out, sizeof(out));
    if (want == NULL) {
        if (rc != -1)
            fail_msg("line %d: answer \"%s\" accepted as \"%s\"", line, in, out);
        return;
    }
    if (rc != (int)strlen(want) || strcmp(out, want) != 0)
        fail_msg("line %d: answer \"%s\": got %d \"%s\", want \"%s\"", line, in, rc,
                 rc >= 0 ? out : "", want);
}

#define ANSWER(in, want) check_answer(in, want, __LINE__)

static void test_answer_for_client(void **state)
{
    (void)state;
    ANSWER("permessage-deflate", "permessage-deflate; client_no_context_takeover");
    ANSWER("permessage-deflate; server_no_context_takeover",
           "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    ANSWER("permessage-deflate; client_no_context_takeover",
           "permessage-deflate; client_no_context_takeover");
    ANSWER("permessage-deflate; server_no_context_takeover; client_no_context_takeover",
           "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    ANSWER("permessage-deflate; server_no_context_takeover; client_max_window_bits=10",
           "permessage-deflate; server_no_context_takeover; client_max_window_bits=10; "
           "client_no_context_takeover");
    ANSWER("permessage-deflate; server_max_window_bits=12",
           "permessage-deflate; server_max_window_bits=12; client_no_context_takeover");

    char out[256];
    assert_true(answer("permessage-deflate;client_no_context_takeover", out, sizeof(out)) > 0);
    assert_int_equal(count(out, "client_no_context_takeover"), 1);
}

static void test_answer_rejects(void **state)
{
    (void)state;
    ANSWER("x-webkit-deflate-frame", NULL);
    ANSWER("foo", NULL);
    ANSWER("permessage-deflate, permessage-deflate", NULL);
    ANSWER("permessage-deflate, foo", NULL);
    ANSWER("foo, permessage-deflate", NULL);
    ANSWER("permessage-deflate; foo", NULL);
    ANSWER("permessage-deflate; client_max_window_bits", NULL);
    ANSWER("permessage-deflate; client_max_window_bits=", NULL);
    ANSWER("permessage-deflate; client_max_window_bits=16", NULL);
    ANSWER("permessage-deflate; server_max_window_bits", NULL);
    ANSWER("permessage-deflate; server_max_window_bits=7", NULL);
    ANSWER("permessage-deflate; server_no_context_takeover; server_no_context_takeover", NULL);
    ANSWER("permessage-deflate; client_no_context_takeover=1", NULL);
}

static void test_answer_overflow(void **state)
{
    (void)state;
    const char *in = "permessage-deflate; server_no_context_takeover";
    size_t len = strlen("permessage-deflate; server_no_context_takeover; "
                        "client_no_context_takeover");
    assert_int_equal(answer(in, NULL, len + 1), (int)len);
    for (size_t outlen = 0; outlen <= len; outlen++)
        assert_int_equal(answer(in, NULL, outlen), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept),
        cmocka_unit_test(test_key_valid),
        cmocka_unit_test(test_make_key),
        cmocka_unit_test(test_offer_adds_server_no_context_takeover),
        cmocka_unit_test(test_offer_keeps_server_no_context_takeover_once),
        cmocka_unit_test(test_offer_drops_other_extensions),
        cmocka_unit_test(test_offer_drops_malformed),
        cmocka_unit_test(test_offer_rewrites_each),
        cmocka_unit_test(test_offer_empty_and_overflow),
        cmocka_unit_test(test_answer_for_client),
        cmocka_unit_test(test_answer_rejects),
        cmocka_unit_test(test_answer_overflow),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
