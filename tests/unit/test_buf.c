/* Unit tests for src/core/buf: creation on first append, growth, reclaiming
 * the consumed front, and freeing when empty. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"

/* Deterministic bytes, so that any lost or shifted byte shows. */
static uint8_t pattern(size_t i)
{
    return (uint8_t)((i * 131u + (i >> 8) * 7u + 17u) & 0xff);
}

static void fill(uint8_t *p, size_t start, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = pattern(start + i);
}

/* Checks that the readable bytes are the pattern from `start`. */
static void expect_pattern(wsg_buf *b, size_t start, size_t n)
{
    assert_int_equal(wsg_buf_len(b), n);
    const uint8_t *p = wsg_buf_begin(b);
    for (size_t i = 0; i < n; i++) {
        if (p[i] != pattern(start + i))
            fail_msg("byte %zu of %zu is %u, want %u", i, n, p[i], pattern(start + i));
    }
}

static void expect_invariants(const wsg_buf *b)
{
    if (b == NULL)
        return;
    assert_true(b->head <= b->tail);
    assert_true(b->tail <= b->cap);
    assert_true(b->head < b->tail); /* an empty buffer does not exist */
}

static void test_null_buffer(void **state)
{
    (void)state;
    wsg_buf *b = NULL;
    assert_int_equal(wsg_buf_len(b), 0);
    assert_int_equal(wsg_buf_append(&b, "x", 0), 0);
    assert_null(b);
    assert_int_equal(wsg_buf_append(&b, NULL, 0), 0);
    assert_null(b);
    wsg_buf_consume(&b, 0);
    assert_null(b);
    wsg_buf_free(&b);
    assert_null(b);
}

static void test_append_creates(void **state)
{
    (void)state;
    wsg_buf *b = NULL;
    assert_int_equal(wsg_buf_append(&b, "hello", 5), 0);
    assert_non_null(b);
    expect_invariants(b);
    assert_int_equal(wsg_buf_len(b), 5);
    assert_memory_equal(wsg_buf_begin(b), "hello", 5);
    assert_true(b->cap >= 5);
    assert_int_equal(wsg_buf_append(&b, " world", 6), 0);
    assert_int_equal(wsg_buf_len(b), 11);
    assert_memory_equal(wsg_buf_begin(b), "hello world", 11);
    wsg_buf_free(&b);
    assert_null(b);
}

static void test_consume_partial_and_to_empty(void **state)
{
    (void)state;
    wsg_buf *b = NULL;
    assert_int_equal(wsg_buf_append(&b, "abcdefgh", 8), 0);
    wsg_buf_consume(&b, 0);
    assert_int_equal(wsg_buf_len(b), 8);
    wsg_buf_consume(&b, 3);
    assert_non_null(b);
    expect_invariants(b);
    assert_int_equal(wsg_buf_len(b), 5);
    assert_memory_equal(wsg_buf_begin(b), "defgh", 5);
    wsg_buf_consume(&b, 4);
    assert_non_null(b);
    assert_memory_equal(wsg_buf_begin(b), "h", 1);
    wsg_buf_consume(&b, 1);
    assert_null(b);
    assert_int_equal(wsg_buf_len(b), 0);

    assert_int_equal(wsg_buf_append(&b, "xyz", 3), 0);
    wsg_buf_consume(&b, 3);
    assert_null(b);
}

static void test_growth_preserves_content(void **state)
{
    (void)state;
    wsg_buf *b = NULL;
    uint8_t chunk[1000];
    size_t total = 0;
    uint32_t last_cap = 0;
    unsigned grew = 0;
    for (size_t n = 1; total < 300000; n = n * 3 % 997 + 1) {
        fill(chunk, total, n);
        assert_int_equal(wsg_buf_append(&b, chunk, n), 0);
        total += n;
        expect_invariants(b);
        assert_true(b->cap >= total);
        if (b->cap != last_cap) {
            grew++;
            last_cap = b->cap;
            expect_pattern(b, 0, total);
        }
    }
    expect_pattern(b, 0, total);
    assert_true(grew > 3);
    wsg_buf_free(&b);
}

/* Room freed at the front is used again before the block grows. */
static void test_reclaims_consumed_front(void **state)
{
    (void)state;
    wsg_buf *b = NULL;
    uint8_t data[4096];
    fill(data, 0, sizeof(data));

    assert_int_equal(wsg_buf_append(&b, data, 200), 0);
    uint32_t cap = b->cap;
    wsg_buf *before = b;
    wsg_buf_consume(&b, 190);
    assert_ptr_equal(b, before);
    assert_int_equal(b->head, 190);

    /* 10 readable + 20 more fit without growing once the front is reused. */
    size_t room = cap - b->tail;
    assert_int_equal(wsg_buf_append(&b, data + 200, room + 20), 0);
    expect_invariants(b);
    assert_int_equal(b->cap, cap);
    assert_ptr_equal(b, before);
    assert_int_equal(b->head, 0);
    expect_pattern(b, 190, 10 + room + 20);
    wsg_buf_free(&b);
}

/* Reading and writing in step never grows the block: a connection that
 * keeps up costs one block however much passes through it. */
static void test_steady_stream_keeps_capacity(void **state)
{
    (void)state;
    wsg_buf *b = NULL;
    uint8_t chunk[100];
    size_t written = 0;
    size_t read = 0;
    fill(chunk, 0, sizeof(chunk));
    assert_int_equal(wsg_buf_append(&b, chunk, 50), 0);
    written = 50;
    uint32_t cap = b->cap;
    for (int i = 0; i < 10000; i++) {
        fill(chunk, written, 60);
        assert_int_equal(wsg_buf_append(&b, chunk, 60), 0);
        written += 60;
        expect_invariants(b);
        assert_int_equal(b->cap, cap);
        expect_pattern(b, read, written - read);
        wsg_buf_consume(&b, 60);
        read += 60;
    }
    expect_pattern(b, read, written - read);
    wsg_buf_consume(&b, written - read);
    assert_null(b);
}

static void test_growth_after_consume_keeps_unread_bytes(void **state)
{
    (void)state;
    wsg_buf *b = NULL;
    uint8_t data[8192];
    fill(data, 0, sizeof(data));
    assert_int_equal(wsg_buf_append(&b, data, 250), 0);
    wsg_buf_consume(&b, 100);
    /* 150 readable + 300 new do not fit in half of the block: it grows. */
    assert_int_equal(wsg_buf_append(&b, data + 250, 300), 0);
    expect_invariants(b);
    assert_int_equal(b->head, 0);
    expect_pattern(b, 100, 450);
    assert_int_equal(wsg_buf_append(&b, data + 550, 5000), 0);
    expect_pattern(b, 100, 5450);
    wsg_buf_consume(&b, 5000);
    expect_pattern(b, 5100, 450);
    wsg_buf_free(&b);
}

static void test_large_appends(void **state)
{
    (void)state;
    size_t big = 8u << 20;
    uint8_t *data = malloc(big);
    assert_non_null(data);
    fill(data, 0, big);
    wsg_buf *b = NULL;
    assert_int_equal(wsg_buf_append(&b, data, big / 2), 0);
    assert_int_equal(wsg_buf_append(&b, data + big / 2, big / 2), 0);
    expect_invariants(b);
    assert_int_equal(wsg_buf_len(b), big);
    assert_memory_equal(wsg_buf_begin(b), data, big);
    wsg_buf_consume(&b, big - 1);
    assert_int_equal(wsg_buf_len(b), 1);
    assert_int_equal(*wsg_buf_begin(b), data[big - 1]);
    wsg_buf_free(&b);

    assert_int_equal(wsg_buf_append(&b, data, 1), 0);
    assert_int_equal(wsg_buf_append(&b, data + 1, big - 1), 0);
    assert_int_equal(wsg_buf_len(b), big);
    assert_memory_equal(wsg_buf_begin(b), data, big);
    wsg_buf_free(&b);
    free(data);
}

/* Sizes past WSG_BUF_MAX fail before anything is read from src or
 * allocated, and leave the buffer as it was. */
static void test_too_large_is_refused(void **state)
{
    (void)state;
    static const char src[16] = "0123456789abcdef";
    wsg_buf *b = NULL;
    assert_int_equal(wsg_buf_append(&b, src, WSG_BUF_MAX + 1), -1);
    assert_null(b);
    assert_int_equal(wsg_buf_append(&b, src, SIZE_MAX), -1);
    assert_null(b);

    assert_int_equal(wsg_buf_append(&b, src, 16), 0);
    wsg_buf *before = b;
    assert_int_equal(wsg_buf_append(&b, src, WSG_BUF_MAX - 15), -1);
    assert_ptr_equal(b, before);
    assert_int_equal(wsg_buf_len(b), 16);
    assert_memory_equal(wsg_buf_begin(b), src, 16);
    wsg_buf_consume(&b, 10);
    assert_int_equal(wsg_buf_append(&b, src, WSG_BUF_MAX - 5), -1);
    assert_int_equal(wsg_buf_len(b), 6);
    assert_memory_equal(wsg_buf_begin(b), src + 10, 6);
    wsg_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_null_buffer),
        cmocka_unit_test(test_append_creates),
        cmocka_unit_test(test_consume_partial_and_to_empty),
        cmocka_unit_test(test_growth_preserves_content),
        cmocka_unit_test(test_reclaims_consumed_front),
        cmocka_unit_test(test_steady_stream_keeps_capacity),
        cmocka_unit_test(test_growth_after_consume_keeps_unread_bytes),
        cmocka_unit_test(test_large_appends),
        cmocka_unit_test(test_too_large_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
