/* Unit tests for src/http: the head reader, body walking, header helpers,
 * query parameters, error answers, and the service routes.
 *
 * Heads are fed whole, split at every offset, one byte at a time, and from
 * buffers that end right before an unreadable page (STYLE.md, habit 2).
 * The reader's contract lets the caller move its buffer between calls, so
 * the split tests place every call's bytes at a new address and scribble
 * over the old copy.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "guard_page.h"
#include "http/http.h"

#define MAX_HEAD 16384

/* A typical browser upgrade request; every header is checked below. */
static const char upgrade_head[] = "GET /chat/room?clientId=abc&x=1 HTTP/1.1\r\n"
                                   "Host: gw.example:9000\r\n"
                                   "Upgrade: websocket\r\n"
                                   "Connection: Upgrade\r\n"
                                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                   "Sec-WebSocket-Version: 13\r\n"
                                   "Origin: \t  http://example.com \t \r\n"
                                   "X-Empty:\r\n"
                                   "\r\n";

/* A masked text frame "Hello" sent before the answer arrived: it belongs to
 * the WebSocket layer and must be left unconsumed. */
static const char early_frame[] = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";

static const char upgrade_response[] = "HTTP/1.1 101 Switching Protocols\r\n"
                                       "Upgrade: websocket\r\n"
                                       "Connection: Upgrade\r\n"
                                       "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                                       "\r\n";

/* ---- helpers ---------------------------------------------------------- */

/* Memory whose usable part ends where an unreadable page begins, so that a
 * read past the given length faults at once. */
typedef struct guarded {
    char *map;
    size_t size; /* usable bytes before the guard page */
} guarded;

static void guarded_init(guarded *g, size_t min_size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t size = (min_size + page - 1) / page * page;
    char *map = mmap(NULL, size + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                     0);
    assert_true(map != MAP_FAILED);
    assert_int_equal(mprotect(map + size, page, PROT_NONE), 0);
    g->map = map;
    g->size = size;
}

static void guarded_deinit(guarded *g)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    munmap(g->map, g->size + page);
}

/* Copies len bytes so that they end right before the guard page. */
static char *guarded_place(guarded *g, const void *src, size_t len)
{
    assert_true(len <= g->size);
    char *dst = g->map + g->size - len;
    memmove(dst, src, len);
    return dst;
}

/* Overwrites the usable part, so a reader that kept pointers into an old
 * buffer sees garbage instead of the right bytes. */
static void guarded_scribble(guarded *g)
{
    memset(g->map, 'Z', g->size);
}

static void expect_str(wsg_str got, const char *want)
{
    size_t n = strlen(want);
    if (got.len != n || (n > 0 && memcmp(got.p, want, n) != 0))
        fail_msg("got \"%.*s\" (%zu bytes), want \"%s\" (%zu bytes)", (int)got.len,
                 got.p ? got.p : "", got.len, want, n);
}

static void expect_inside(wsg_str s, const char *buf, size_t len)
{
    if (s.len == 0)
        return;
    if (s.p < buf || s.p + s.len > buf + len)
        fail_msg("string \"%.*s\" does not point into the last buffer", (int)s.len, s.p);
}

static void expect_header(const wsg_http_head *h, uint32_t i, const char *name, const char *value)
{
    assert_true(i < h->header_count);
    expect_str(h->headers[i].name, name);
    expect_str(h->headers[i].value, value);
}

/* Checks the head of upgrade_head as read from buf. */
static void check_upgrade_head(const wsg_http_head *h, const char *buf, size_t buflen)
{
    assert_int_equal(h->method, HTTP_GET);
    assert_int_equal(h->major, 1);
    assert_int_equal(h->minor, 1);
    assert_int_equal(h->head_len, sizeof(upgrade_head) - 1);
    expect_str(h->target, "/chat/room?clientId=abc&x=1");
    expect_str(h->path, "/chat/room");
    expect_str(h->query, "clientId=abc&x=1");
    assert_int_equal(h->header_count, 7);
    expect_header(h, 0, "Host", "gw.example:9000");
    expect_header(h, 1, "Upgrade", "websocket");
    expect_header(h, 2, "Connection", "Upgrade");
    expect_header(h, 3, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    expect_header(h, 4, "Sec-WebSocket-Version", "13");
    expect_header(h, 5, "Origin", "http://example.com");
    expect_header(h, 6, "X-Empty", "");
    assert_false(h->chunked);
    assert_true(h->content_length == WSG_HTTP_NO_LENGTH);
    expect_inside(h->target, buf, buflen);
    expect_inside(h->path, buf, buflen);
    expect_inside(h->query, buf, buflen);
    for (uint32_t i = 0; i < h->header_count; i++) {
        expect_inside(h->headers[i].name, buf, buflen);
        expect_inside(h->headers[i].value, buf, buflen);
    }
}

/* upgrade_head followed by early_frame. */
static size_t upgrade_with_frame(char *out)
{
    size_t hl = sizeof(upgrade_head) - 1;
    size_t fl = sizeof(early_frame) - 1;
    memcpy(out, upgrade_head, hl);
    memcpy(out + hl, early_frame, fl);
    return hl + fl;
}

static int read_whole(enum http_parser_type type, const char *buf, size_t len, size_t max_head,
                      wsg_http_head *h)
{
    wsg_http_reader r;
    wsg_http_reader_init(&r, type, max_head);
    return wsg_http_reader_head(&r, buf, len, h);
}

/* Feeds the input one byte at a time, each call from a buffer that ends at
 * the guard page; returns the first nonzero result, or 0. The buffer is
 * gone on return: only the head's numbers may be looked at. */
static int read_bytewise_guarded(enum http_parser_type type, const char *input, size_t len,
                                 size_t max_head, wsg_http_head *h, size_t *calls)
{
    guarded g;
    wsg_http_reader r;
    int rc = 0;
    guarded_init(&g, len + 1);
    wsg_http_reader_init(&r, type, max_head);
    for (size_t k = 1; k <= len; k++) {
        guarded_scribble(&g);
        const char *buf = guarded_place(&g, input, k);
        rc = wsg_http_reader_head(&r, buf, k, h);
        if (rc != 0) {
            if (calls)
                *calls = k;
            break;
        }
    }
    guarded_deinit(&g);
    return rc;
}

typedef struct collected {
    char data[4096];
    size_t len;
    unsigned calls;
} collected;

static void collect(void *ctx, const char *at, size_t len)
{
    collected *c = ctx;
    assert_true(c->len + len <= sizeof(c->data));
    memcpy(c->data + c->len, at, len);
    c->len += len;
    c->calls++;
}

/* Runs fn in a child process, for calls that may abort the whole test
 * program. Returns false, with a line added to report, when it failed. */
static bool child_succeeds(void (*fn)(void), const char *what, char *report, size_t cap)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        fn();
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    size_t used = strlen(report);
    if (WIFSIGNALED(status)) {
        snprintf(report + used, cap - used, "\n  %s: killed by signal %d", what,
                 WTERMSIG(status));
        return false;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        snprintf(report + used, cap - used, "\n  %s: child exited with %d", what,
                 WEXITSTATUS(status));
        return false;
    }
    return true;
}

/* ---- request heads ---------------------------------------------------- */

static void test_upgrade_whole(void **state)
{
    (void)state;
    char buf[512];
    size_t len = upgrade_with_frame(buf);
    wsg_http_head h;
    int rc = read_whole(HTTP_REQUEST, buf, len, MAX_HEAD, &h);
    assert_int_equal(rc, (int)sizeof(upgrade_head) - 1);
    check_upgrade_head(&h, buf, len);
    assert_memory_equal(buf + rc, early_frame, sizeof(early_frame) - 1);
}

static void test_upgrade_head_exactly(void **state)
{
    (void)state;
    size_t len = sizeof(upgrade_head) - 1;
    wsg_http_head h;
    int rc = read_whole(HTTP_REQUEST, upgrade_head, len, MAX_HEAD, &h);
    assert_int_equal(rc, (int)len);
    check_upgrade_head(&h, upgrade_head, len);
}

static void test_upgrade_split_every_offset_same_buffer(void **state)
{
    (void)state;
    char buf[512];
    size_t len = upgrade_with_frame(buf);
    size_t hl = sizeof(upgrade_head) - 1;
    for (size_t i = 0; i <= len; i++) {
        wsg_http_reader r;
        wsg_http_head h;
        wsg_http_reader_init(&r, HTTP_REQUEST, MAX_HEAD);
        int rc = wsg_http_reader_head(&r, buf, i, &h);
        int want = i < hl ? 0 : (int)hl;
        if (rc != want)
            fail_msg("first part of %zu bytes: got %d, want %d", i, rc, want);
        rc = wsg_http_reader_head(&r, buf, len, &h);
        if (rc != (int)hl)
            fail_msg("split at %zu: got %d, want %zu", i, rc, hl);
        check_upgrade_head(&h, buf, len);
    }
}

/* The caller may copy its buffer elsewhere between calls (realloc): the
 * head must point into the buffer of the last call, and nothing may be
 * read from the old one. */
static void test_upgrade_split_every_offset_moved_buffer(void **state)
{
    (void)state;
    char input[512];
    size_t len = upgrade_with_frame(input);
    size_t hl = sizeof(upgrade_head) - 1;
    guarded a;
    guarded b;
    guarded_init(&a, len);
    guarded_init(&b, len);
    for (size_t i = 0; i <= len; i++) {
        wsg_http_reader r;
        wsg_http_head h;
        wsg_http_reader_init(&r, HTTP_REQUEST, MAX_HEAD);
        guarded_scribble(&a);
        char *first = guarded_place(&a, input, i);
        int rc = wsg_http_reader_head(&r, first, i, &h);
        int want = i < hl ? 0 : (int)hl;
        if (rc != want)
            fail_msg("first part of %zu bytes: got %d, want %d", i, rc, want);
        /* A head finished by the first call points into the first buffer. */
        if (rc > 0) {
            check_upgrade_head(&h, first, i);
            continue;
        }
        guarded_scribble(&b);
        char *second = guarded_place(&b, input, len);
        guarded_scribble(&a);
        rc = wsg_http_reader_head(&r, second, len, &h);
        if (rc != (int)hl)
            fail_msg("split at %zu: got %d, want %zu", i, rc, hl);
        check_upgrade_head(&h, second, len);
    }
    guarded_deinit(&a);
    guarded_deinit(&b);
}

/* Three parts at every pair of offsets, each part from a new address. */
static void test_upgrade_split_twice_moved_buffer(void **state)
{
    (void)state;
    const char *input = upgrade_head;
    size_t len = sizeof(upgrade_head) - 1;
    guarded g[2];
    guarded_init(&g[0], len);
    guarded_init(&g[1], len);
    for (size_t i = 1; i < len; i++) {
        for (size_t j = i + 1; j < len; j++) {
            wsg_http_reader r;
            wsg_http_head h;
            size_t cuts[3] = {i, j, len};
            int rc = 0;
            wsg_http_reader_init(&r, HTTP_REQUEST, MAX_HEAD);
            for (int k = 0; k < 3; k++) {
                guarded *dst = &g[k % 2];
                guarded_scribble(dst);
                char *buf = guarded_place(dst, input, cuts[k]);
                guarded_scribble(&g[(k + 1) % 2]);
                rc = wsg_http_reader_head(&r, buf, cuts[k], &h);
                if (k < 2 && rc != 0)
                    fail_msg("split at %zu and %zu: part %d returned %d", i, j, k, rc);
                if (k == 2) {
                    if (rc != (int)len)
                        fail_msg("split at %zu and %zu: got %d, want %zu", i, j, rc, len);
                    check_upgrade_head(&h, buf, len);
                }
            }
        }
    }
    guarded_deinit(&g[0]);
    guarded_deinit(&g[1]);
}

static void test_upgrade_byte_at_a_time(void **state)
{
    (void)state;
    char input[512];
    size_t len = upgrade_with_frame(input);
    size_t hl = sizeof(upgrade_head) - 1;
    guarded g[2];
    guarded_init(&g[0], len);
    guarded_init(&g[1], len);
    wsg_http_reader r;
    wsg_http_head h;
    wsg_http_reader_init(&r, HTTP_REQUEST, MAX_HEAD);
    const char *last = NULL;
    for (size_t k = 1; k <= len; k++) {
        guarded *dst = &g[k % 2];
        guarded_scribble(dst);
        char *buf = guarded_place(dst, input, k);
        int rc = wsg_http_reader_head(&r, buf, k, &h);
        int want = k < hl ? 0 : (int)hl;
        if (rc != want)
            fail_msg("after %zu bytes: got %d, want %d", k, rc, want);
        if (rc > 0 && last == NULL) {
            last = buf;
            guarded_scribble(&g[(k + 1) % 2]);
            check_upgrade_head(&h, buf, k);
        }
    }
    assert_non_null(last);
    guarded_deinit(&g[0]);
    guarded_deinit(&g[1]);
}

/* Every prefix of the head, from a buffer that ends at the guard page: an
 * incomplete head asks for more and never reads past the end. */
static void test_upgrade_guard_page_prefixes(void **state)
{
    (void)state;
    size_t len = sizeof(upgrade_head) - 1;
    guarded g;
    guarded_init(&g, len);
    for (size_t k = 0; k <= len; k++) {
        wsg_http_head h;
        char *buf = guarded_place(&g, upgrade_head, k);
        int rc = read_whole(HTTP_REQUEST, buf, k, MAX_HEAD, &h);
        int want = k < len ? 0 : (int)len;
        if (rc != want)
            fail_msg("prefix of %zu bytes at the guard page: got %d, want %d", k, rc, want);
        if (rc > 0)
            check_upgrade_head(&h, buf, k);
    }
    guarded_deinit(&g);
}

static void test_done_head_is_returned_again(void **state)
{
    (void)state;
    char buf[512];
    size_t len = upgrade_with_frame(buf);
    size_t hl = sizeof(upgrade_head) - 1;
    wsg_http_reader r;
    wsg_http_head h;
    wsg_http_reader_init(&r, HTTP_REQUEST, MAX_HEAD);
    assert_int_equal(wsg_http_reader_head(&r, buf, hl, &h), (int)hl);
    assert_int_equal(wsg_http_reader_head(&r, buf, len, &h), (int)hl);
    assert_int_equal(wsg_http_reader_head(&r, buf, len, &h), (int)hl);
}

static void test_query_forms(void **state)
{
    (void)state;
    static const struct {
        const char *head;
        const char *target;
        const char *path;
        const char *query;
    } cases[] = {
        {"GET /plain HTTP/1.1\r\nHost: a\r\n\r\n", "/plain", "/plain", ""},
        {"GET /p? HTTP/1.1\r\nHost: a\r\n\r\n", "/p?", "/p", ""},
        {"GET /p?a=1?b=2 HTTP/1.1\r\nHost: a\r\n\r\n", "/p?a=1?b=2", "/p", "a=1?b=2"},
        {"GET /?clientId=c1 HTTP/1.1\r\nHost: a\r\n\r\n", "/?clientId=c1", "/", "clientId=c1"},
        {"GET * HTTP/1.1\r\nHost: a\r\n\r\n", "*", "*", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        wsg_http_head h;
        size_t len = strlen(cases[i].head);
        int rc = read_bytewise_guarded(HTTP_REQUEST, cases[i].head, len, MAX_HEAD, &h, NULL);
        if (rc != (int)len)
            fail_msg("%s, byte at a time: got %d, want %zu", cases[i].head, rc, len);
        rc = read_whole(HTTP_REQUEST, cases[i].head, len, MAX_HEAD, &h);
        if (rc != (int)len)
            fail_msg("%s: got %d, want %zu", cases[i].head, rc, len);
        expect_str(h.target, cases[i].target);
        expect_str(h.path, cases[i].path);
        expect_str(h.query, cases[i].query);
        assert_non_null(h.query.p);
    }
}

static void test_methods_and_versions(void **state)
{
    (void)state;
    static const struct {
        const char *head;
        int method;
        int minor;
        bool keep_alive;
    } cases[] = {
        {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_GET, 1, true},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", HTTP_GET, 1, false},
        {"GET / HTTP/1.0\r\n\r\n", HTTP_GET, 0, false},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", HTTP_GET, 0, true},
        {"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_HEAD, 1, true},
        {"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_OPTIONS, 1, true},
        {"DELETE /r/1 HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_DELETE, 1, true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        wsg_http_head h;
        size_t len = strlen(cases[i].head);
        int rc = read_whole(HTTP_REQUEST, cases[i].head, len, MAX_HEAD, &h);
        if (rc != (int)len)
            fail_msg("%s: got %d, want %zu", cases[i].head, rc, len);
        assert_int_equal(h.method, cases[i].method);
        assert_int_equal(h.major, 1);
        assert_int_equal(h.minor, cases[i].minor);
        assert_int_equal(h.keep_alive, cases[i].keep_alive);
    }
}

static void test_request_content_length_and_body(void **state)
{
    (void)state;
    static const char head[] = "POST /api/register HTTP/1.1\r\n"
                               "Host: a\r\n"
                               "Content-Type: application/json\r\n"
                               "Content-Length: 11\r\n"
                               "\r\n";
    char buf[256];
    size_t hl = sizeof(head) - 1;
    memcpy(buf, head, hl);
    memcpy(buf + hl, "{\"a\":12345}GET / HTTP/1.1\r\n", 27);
    size_t len = hl + 27;
    wsg_http_reader r;
    wsg_http_head h;
    wsg_http_reader_init(&r, HTTP_REQUEST, MAX_HEAD);
    int rc = wsg_http_reader_head(&r, buf, len, &h);
    assert_true(rc > 0);
    assert_int_equal(h.method, HTTP_POST);
    assert_true(h.content_length == 11);
    assert_true(wsg_http_head_has_body(&h, HTTP_REQUEST));
    collected c = {0};
    long n = wsg_http_reader_body(&r, buf + hl, len - hl, collect, &c);
    assert_int_equal(n, 11);
    assert_true(r.body_done);
    assert_int_equal(c.len, 11);
    assert_memory_equal(c.data, "{\"a\":12345}", 11);
    assert_int_equal(wsg_http_reader_eof(&r), 0);
}

/* ---- malformed and oversized heads ------------------------------------ */

typedef struct bad_input {
    const char *name;
    const char *data;
    size_t len;
} bad_input;

#define BAD(name, lit) {name, lit, sizeof(lit) - 1}

/* Fed whole, one byte at a time, and at the guard page, each must give
 * `want`; once failed, the reader keeps failing. */
static void expect_rejected(const bad_input *in, size_t max_head, int want)
{
    wsg_http_head h;
    guarded g;
    guarded_init(&g, in->len);
    char *buf = guarded_place(&g, in->data, in->len);
    wsg_http_reader r;
    wsg_http_reader_init(&r, HTTP_REQUEST, max_head);
    int rc = wsg_http_reader_head(&r, buf, in->len, &h);
    if (rc != want)
        fail_msg("%s, whole: got %d, want %d", in->name, rc, want);
    rc = wsg_http_reader_head(&r, buf, in->len, &h);
    if (rc != want)
        fail_msg("%s, called again: got %d, want %d", in->name, rc, want);
    guarded_deinit(&g);
    rc = read_bytewise_guarded(HTTP_REQUEST, in->data, in->len, max_head, &h, NULL);
    if (rc != want)
        fail_msg("%s, byte at a time: got %d, want %d", in->name, rc, want);
}

static void test_garbage_is_400(void **state)
{
    (void)state;
    static const bad_input cases[] = {
        BAD("TLS client hello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x5e\x1f"),
        BAD("HELLO", "HELLO\r\n\r\n"),
        BAD("unknown method", "GOT / HTTP/1.1\r\nHost: a\r\n\r\n"),
        BAD("lower-case method", "get / HTTP/1.1\r\nHost: a\r\n\r\n"),
        BAD("bad version", "GET / HTTP/x.1\r\nHost: a\r\n\r\n"),
        BAD("control byte in value", "GET / HTTP/1.1\r\nX: a\x01q\r\n\r\n"),
        BAD("empty header name", "GET / HTTP/1.1\r\n: v\r\n\r\n"),
        BAD("CR without LF", "GET / HTTP/1.1\rHost: a\r\n\r\n"),
        BAD("CR without LF after header", "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"),
        BAD("NUL in URL", "GET /\0 HTTP/1.1\r\n\r\n"),
        BAD("two Content-Length", "POST / HTTP/1.1\r\nContent-Length: 1\r\n"
                                  "Content-Length: 2\r\n\r\n"),
        BAD("Content-Length with chunked", "POST / HTTP/1.1\r\nContent-Length: 1\r\n"
                                           "Transfer-Encoding: chunked\r\n\r\n"),
        BAD("bad Content-Length", "POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n"),
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_rejected(&cases[i], MAX_HEAD, -400);
}

/* RFC 9112 section 5.1: whitespace between a field name and the colon must
 * be answered with 400 (request smuggling); a name never holds a space. */
static void test_space_in_header_name_is_400(void **state)
{
    (void)state;
    static const bad_input cases[] = {
        BAD("space inside a name", "GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n"),
        BAD("space before the colon", "GET / HTTP/1.1\r\nHost: a\r\nX-Id : x\r\n\r\n"),
        BAD("tab before the colon",
            "GET / HTTP/1.1\r\nHost: a\r\nContent-Length\t: 0\r\n\r\n"),
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_rejected(&cases[i], MAX_HEAD, -400);
}

/* RFC 9112 section 5.2: obsolete line folding is rejected or each fold is
 * replaced by a space; either way no header value may carry CR or LF,
 * which a proxy would otherwise forward as a header of its own. */
static void test_obs_fold_never_yields_crlf_in_value(void **state)
{
    (void)state;
    static const char head[] = "GET / HTTP/1.1\r\nHost: a\r\nX-Fold: first\r\n second\r\n\r\n";
    wsg_http_head h;
    int rc = read_whole(HTTP_REQUEST, head, sizeof(head) - 1, MAX_HEAD, &h);
    if (rc == -400)
        return;
    assert_true(rc > 0);
    wsg_str v = wsg_http_header_get(&h, WSG_STR("X-Fold"));
    for (size_t i = 0; i < v.len; i++) {
        if (v.p[i] == '\r' || v.p[i] == '\n')
            fail_msg("folded value \"%.*s\" holds CR or LF", (int)v.len, v.p);
    }
    expect_str(v, "first second");
}

/* http-parser accepts a bare LF as a line end (RFC 9112 section 2.2 allows
 * it); a bare CR is an error (checked in test_garbage_is_400). */
static void test_bare_lf_line_ends(void **state)
{
    (void)state;
    static const char *const heads[] = {
        "GET /a?b=1 HTTP/1.1\nHost: x\nUpgrade: websocket\n\n",
        "GET /a?b=1 HTTP/1.1\r\nHost: x\nUpgrade: websocket\r\n\n",
        "GET /a?b=1 HTTP/1.1\nHost: x\r\nUpgrade: websocket\n\r\n",
    };
    for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
        size_t len = strlen(heads[i]);
        char buf[128];
        memcpy(buf, heads[i], len);
        memcpy(buf + len, "\x81\x80", 2);
        wsg_http_head h;
        int rc = read_whole(HTTP_REQUEST, buf, len + 2, MAX_HEAD, &h);
        if (rc != (int)len)
            fail_msg("head %zu: got %d, want %zu", i, rc, len);
        expect_str(h.path, "/a");
        expect_str(h.query, "b=1");
        assert_int_equal(h.header_count, 2);
        expect_header(&h, 0, "Host", "x");
        expect_header(&h, 1, "Upgrade", "websocket");
        rc = read_bytewise_guarded(HTTP_REQUEST, heads[i], len, MAX_HEAD, &h, NULL);
        if (rc != (int)len)
            fail_msg("head %zu, byte at a time: got %d, want %zu", i, rc, len);
    }
}

static void test_max_head_limit(void **state)
{
    (void)state;
    size_t len = sizeof(upgrade_head) - 1;
    char buf[512];
    size_t total = upgrade_with_frame(buf);
    wsg_http_head h;

    assert_int_equal(read_whole(HTTP_REQUEST, buf, total, len, &h), (int)len);
    assert_int_equal(read_bytewise_guarded(HTTP_REQUEST, buf, total, len, &h, NULL), (int)len);

    bad_input over = {"head one byte over max_head", upgrade_head, len};
    expect_rejected(&over, len - 1, -431);
    assert_int_equal(read_whole(HTTP_REQUEST, buf, total, len - 1, &h), -431);
}

/* A head that never ends fails as soon as it passes max_head, not when it
 * finally ends. */
static void test_unterminated_head_over_limit(void **state)
{
    (void)state;
    char buf[300];
    memcpy(buf, "GET / HTTP/1.1\r\nX-Long: ", 24);
    memset(buf + 24, 'a', sizeof(buf) - 24);
    wsg_http_head h;
    assert_int_equal(read_whole(HTTP_REQUEST, buf, 200, 200, &h), 0);
    assert_int_equal(read_whole(HTTP_REQUEST, buf, 201, 200, &h), -431);
    size_t calls = 0;
    assert_int_equal(read_bytewise_guarded(HTTP_REQUEST, buf, sizeof(buf), 200, &h, &calls),
                     -431);
    assert_int_equal(calls, 201);
}

static size_t make_many_headers(char *buf, unsigned n)
{
    size_t len = (size_t)sprintf(buf, "GET /many HTTP/1.1\r\n");
    for (unsigned i = 0; i < n; i++)
        len += (size_t)sprintf(buf + len, "X-H%u: v%u\r\n", i, i);
    len += (size_t)sprintf(buf + len, "\r\n");
    return len;
}

static void test_header_count_limit(void **state)
{
    (void)state;
    static char buf[8192];
    wsg_http_head h;
    size_t len = make_many_headers(buf, WSG_HTTP_MAX_HEADERS);
    assert_int_equal(read_whole(HTTP_REQUEST, buf, len, MAX_HEAD, &h), (int)len);
    assert_int_equal(h.header_count, WSG_HTTP_MAX_HEADERS);
    expect_header(&h, 0, "X-H0", "v0");
    expect_header(&h, WSG_HTTP_MAX_HEADERS - 1, "X-H63", "v63");
    assert_int_equal(read_bytewise_guarded(HTTP_REQUEST, buf, len, MAX_HEAD, &h, NULL), (int)len);
    assert_int_equal(h.header_count, WSG_HTTP_MAX_HEADERS);

    len = make_many_headers(buf, WSG_HTTP_MAX_HEADERS + 1);
    bad_input many = {"65 headers", buf, len};
    expect_rejected(&many, MAX_HEAD, -431);
}

/* http-parser has its own ceiling (HTTP_MAX_HEADER_SIZE, 80 KiB): passing it
 * is also 431, even when max_head would allow more. */
static void test_parser_header_overflow_is_431(void **state)
{
    (void)state;
    size_t len = 100 * 1024;
    char *buf = malloc(len);
    assert_non_null(buf);
    memcpy(buf, "GET / HTTP/1.1\r\nX-Big: ", 23);
    memset(buf + 23, 'b', len - 23);
    wsg_http_head h;
    assert_int_equal(read_whole(HTTP_REQUEST, buf, len, 1 << 20, &h), -431);
    free(buf);
}

/* ---- responses and bodies --------------------------------------------- */

static void test_response_101(void **state)
{
    (void)state;
    char buf[512];
    size_t hl = sizeof(upgrade_response) - 1;
    size_t fl = sizeof(early_frame) - 1;
    memcpy(buf, upgrade_response, hl);
    memcpy(buf + hl, early_frame, fl);
    size_t len = hl + fl;
    for (size_t i = 0; i <= len; i++) {
        wsg_http_reader r;
        wsg_http_head h;
        wsg_http_reader_init(&r, HTTP_RESPONSE, MAX_HEAD);
        int rc = wsg_http_reader_head(&r, buf, i, &h);
        if (rc != (i < hl ? 0 : (int)hl))
            fail_msg("first part of %zu bytes: got %d", i, rc);
        rc = wsg_http_reader_head(&r, buf, len, &h);
        if (rc != (int)hl)
            fail_msg("split at %zu: got %d, want %zu", i, rc, hl);
        assert_int_equal(h.status, 101);
        assert_int_equal(h.major, 1);
        assert_int_equal(h.minor, 1);
        assert_int_equal(h.head_len, hl);
        assert_int_equal(h.header_count, 3);
        expect_header(&h, 0, "Upgrade", "websocket");
        expect_header(&h, 1, "Connection", "Upgrade");
        expect_header(&h, 2, "Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_false(wsg_http_head_has_body(&h, HTTP_RESPONSE));
        assert_memory_equal(buf + rc, early_frame, fl);
    }
    wsg_http_head h;
    assert_int_equal(read_bytewise_guarded(HTTP_RESPONSE, buf, len, MAX_HEAD, &h, NULL),
                     (int)hl);
}

static const char forbidden_head[] = "HTTP/1.1 403 Forbidden\r\n"
                                     "Content-Type: application/json\r\n"
                                     "Content-Length: 26\r\n"
                                     "\r\n";
static const char forbidden_body[] = "{\"error\":\"origin refused\"}";
static const char next_message[] = "HTTP/1.1 200 OK\r\n";

static size_t forbidden_message(char *buf)
{
    size_t len = 0;
    memcpy(buf + len, forbidden_head, sizeof(forbidden_head) - 1);
    len += sizeof(forbidden_head) - 1;
    memcpy(buf + len, forbidden_body, sizeof(forbidden_body) - 1);
    len += sizeof(forbidden_body) - 1;
    memcpy(buf + len, next_message, sizeof(next_message) - 1);
    len += sizeof(next_message) - 1;
    return len;
}

static void test_response_content_length_body(void **state)
{
    (void)state;
    char buf[256];
    size_t len = forbidden_message(buf);
    size_t hl = sizeof(forbidden_head) - 1;
    size_t bl = sizeof(forbidden_body) - 1;
    wsg_http_reader r;
    wsg_http_head h;
    wsg_http_reader_init(&r, HTTP_RESPONSE, MAX_HEAD);
    assert_true(wsg_http_reader_head(&r, buf, len, &h) > 0);
    assert_int_equal(h.status, 403);
    assert_true(h.content_length == bl);
    assert_false(h.chunked);
    assert_true(wsg_http_head_has_body(&h, HTTP_RESPONSE));

    collected c = {0};
    long n = wsg_http_reader_body(&r, buf + hl, len - hl, collect, &c);
    assert_int_equal(n, (long)bl);
    assert_true(n < (long)(len - hl));
    assert_true(r.body_done);
    assert_int_equal(c.len, bl);
    assert_memory_equal(c.data, forbidden_body, bl);
    assert_int_equal(wsg_http_reader_body(&r, buf + hl + n, len - hl - (size_t)n, collect, &c),
                     0);
    assert_int_equal(wsg_http_reader_eof(&r), 0);
}

static void test_response_body_split_every_offset(void **state)
{
    (void)state;
    char buf[256];
    size_t len = forbidden_message(buf);
    size_t hl = sizeof(forbidden_head) - 1;
    size_t bl = sizeof(forbidden_body) - 1;
    guarded g;
    guarded_init(&g, len);
    for (size_t i = hl; i <= len; i++) {
        wsg_http_reader r;
        wsg_http_head h;
        collected c = {0};
        wsg_http_reader_init(&r, HTTP_RESPONSE, MAX_HEAD);
        assert_true(wsg_http_reader_head(&r, buf, hl, &h) > 0);
        char *part = guarded_place(&g, buf + hl, i - hl);
        long n1 = wsg_http_reader_body(&r, part, i - hl, collect, &c);
        size_t want1 = i - hl < bl ? i - hl : bl;
        if (n1 != (long)want1)
            fail_msg("split at %zu: first part used %ld, want %zu", i, n1, want1);
        guarded_scribble(&g);
        part = guarded_place(&g, buf + hl + n1, len - hl - (size_t)n1);
        long n2 = wsg_http_reader_body(&r, part, len - hl - (size_t)n1, collect, &c);
        if (n1 + n2 != (long)bl)
            fail_msg("split at %zu: used %ld + %ld, want %zu", i, n1, n2, bl);
        assert_true(r.body_done);
        assert_int_equal(c.len, bl);
        assert_memory_equal(c.data, forbidden_body, bl);
    }
    guarded_deinit(&g);
}

static const char chunked_head[] = "HTTP/1.1 200 OK\r\n"
                                   "Transfer-Encoding: chunked\r\n"
                                   "\r\n";
static const char chunked_body[] = "5\r\nhello\r\n"
                                   "6;ext=1\r\n world\r\n"
                                   "a\r\n, chunked!\r\n"
                                   "0\r\n"
                                   "X-Trailer: t\r\n"
                                   "\r\n";

static void test_response_chunked_body(void **state)
{
    (void)state;
    char buf[256];
    size_t hl = sizeof(chunked_head) - 1;
    size_t bl = sizeof(chunked_body) - 1;
    memcpy(buf, chunked_head, hl);
    memcpy(buf + hl, chunked_body, bl);
    memcpy(buf + hl + bl, "EXTRA", 5);
    size_t len = hl + bl + 5;

    wsg_http_reader r;
    wsg_http_head h;
    wsg_http_reader_init(&r, HTTP_RESPONSE, MAX_HEAD);
    assert_true(wsg_http_reader_head(&r, buf, len, &h) > 0);
    assert_true(h.chunked);
    assert_true(h.content_length == WSG_HTTP_NO_LENGTH);
    assert_true(wsg_http_head_has_body(&h, HTTP_RESPONSE));
    collected c = {0};
    long n = wsg_http_reader_body(&r, buf + hl, len - hl, collect, &c);
    assert_int_equal(n, (long)bl);
    assert_true(r.body_done);
    assert_int_equal(c.len, 21);
    assert_memory_equal(c.data, "hello world, chunked!", 21);
}

static void test_response_chunked_body_byte_at_a_time(void **state)
{
    (void)state;
    size_t hl = sizeof(chunked_head) - 1;
    size_t bl = sizeof(chunked_body) - 1;
    guarded g;
    guarded_init(&g, 16);
    wsg_http_reader r;
    wsg_http_head h;
    collected c = {0};
    wsg_http_reader_init(&r, HTTP_RESPONSE, MAX_HEAD);
    assert_true(wsg_http_reader_head(&r, chunked_head, hl, &h) > 0);
    for (size_t i = 0; i < bl; i++) {
        guarded_scribble(&g);
        char *byte = guarded_place(&g, chunked_body + i, 1);
        long n = wsg_http_reader_body(&r, byte, 1, collect, &c);
        if (n != 1)
            fail_msg("byte %zu ('%c'): used %ld", i, chunked_body[i], n);
        if (r.body_done != (i == bl - 1))
            fail_msg("byte %zu: body_done is %d", i, r.body_done);
    }
    assert_int_equal(c.len, 21);
    assert_memory_equal(c.data, "hello world, chunked!", 21);
    guarded_deinit(&g);
}

/* Trailers arrive while the body is walked; they are not head headers and
 * do not count against WSG_HTTP_MAX_HEADERS. */
static void test_chunked_trailers_after_full_head(void **state)
{
    (void)state;
    static char head[8192];
    size_t hl = (size_t)sprintf(head, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n");
    for (unsigned i = 1; i < WSG_HTTP_MAX_HEADERS; i++)
        hl += (size_t)sprintf(head + hl, "X-H%u: v\r\n", i);
    hl += (size_t)sprintf(head + hl, "\r\n");
    static const char body[] = "3\r\nabc\r\n0\r\nX-Checksum: 1\r\nX-Other: 2\r\n\r\n";
    wsg_http_reader r;
    wsg_http_head h;
    collected c = {0};
    wsg_http_reader_init(&r, HTTP_RESPONSE, MAX_HEAD);
    assert_int_equal(wsg_http_reader_head(&r, head, hl, &h), (int)hl);
    assert_int_equal(h.header_count, WSG_HTTP_MAX_HEADERS);
    assert_int_equal(wsg_http_reader_body(&r, body, sizeof(body) - 1, collect, &c),
                     (long)sizeof(body) - 1);
    assert_true(r.body_done);
    assert_int_equal(c.len, 3);
    assert_memory_equal(c.data, "abc", 3);
}

static void test_response_bad_chunk_is_400(void **state)
{
    (void)state;
    size_t hl = sizeof(chunked_head) - 1;
    wsg_http_reader r;
    wsg_http_head h;
    collected c = {0};
    wsg_http_reader_init(&r, HTTP_RESPONSE, MAX_HEAD);
    assert_true(wsg_http_reader_head(&r, chunked_head, hl, &h) > 0);
    assert_int_equal(wsg_http_reader_body(&r, "zz\r\nhello\r\n", 11, collect, &c), -400);
    assert_int_equal(wsg_http_reader_body(&r, "5\r\nhello\r\n", 10, collect, &c), -400);
}

static const char close_delimited_head[] = "HTTP/1.1 200 OK\r\n"
                                           "Content-Type: text/plain\r\n"
                                           "\r\n";

static void test_response_close_delimited_body(void **state)
{
    (void)state;
    size_t hl = sizeof(close_delimited_head) - 1;
    wsg_http_reader r;
    wsg_http_head h;
    collected c = {0};
    wsg_http_reader_init(&r, HTTP_RESPONSE, MAX_HEAD);
    assert_true(wsg_http_reader_head(&r, close_delimited_head, hl, &h) > 0);
    assert_true(h.content_length == WSG_HTTP_NO_LENGTH);
    assert_false(h.chunked);
    assert_true(wsg_http_head_has_body(&h, HTTP_RESPONSE));
    assert_int_equal(wsg_http_reader_body(&r, "abc", 3, collect, &c), 3);
    assert_int_equal(wsg_http_reader_body(&r, "defg", 4, collect, &c), 4);
    assert_false(r.body_done);
    assert_int_equal(wsg_http_reader_eof(&r), 0);
    assert_true(r.body_done);
    assert_int_equal(c.len, 7);
    assert_memory_equal(c.data, "abcdefg", 7);
}

static void test_response_close_delimited_empty_body(void **state)
{
    (void)state;
    size_t hl = sizeof(close_delimited_head) - 1;
    wsg_http_reader r;
    wsg_http_head h;
    wsg_http_reader_init(&r, HTTP_RESPONSE, MAX_HEAD);
    assert_true(wsg_http_reader_head(&r, close_delimited_head, hl, &h) > 0);
    assert_int_equal(wsg_http_reader_eof(&r), 0);
    assert_true(r.body_done);
}

static void test_eof_inside_length_body_is_400(void **state)
{
    (void)state;
    size_t hl = sizeof(forbidden_head) - 1;
    wsg_http_reader r;
    wsg_http_head h;
    collected c = {0};
    wsg_http_reader_init(&r, HTTP_RESPONSE, MAX_HEAD);
    assert_true(wsg_http_reader_head(&r, forbidden_head, hl, &h) > 0);
    assert_int_equal(wsg_http_reader_body(&r, forbidden_body, 5, collect, &c), 5);
    assert_int_equal(wsg_http_reader_eof(&r), -400);
}

static void eof_after_head_error(void)
{
    wsg_http_reader r;
    wsg_http_head h;
    wsg_http_reader_init(&r, HTTP_REQUEST, MAX_HEAD);
    if (wsg_http_reader_head(&r, "HELLO\r\n\r\n", 9, &h) != -400)
        _exit(3);
    if (wsg_http_reader_eof(&r) != -400)
        _exit(4);
}

static void eof_twice_inside_head(void)
{
    wsg_http_reader r;
    wsg_http_head h;
    wsg_http_reader_init(&r, HTTP_REQUEST, MAX_HEAD);
    if (wsg_http_reader_head(&r, "GET / HT", 8, &h) != 0)
        _exit(3);
    if (wsg_http_reader_eof(&r) != -400)
        _exit(4);
    if (wsg_http_reader_eof(&r) != -400)
        _exit(5);
}

static void eof_after_body_error(void)
{
    wsg_http_reader r;
    wsg_http_head h;
    wsg_http_reader_init(&r, HTTP_RESPONSE, MAX_HEAD);
    if (wsg_http_reader_head(&r, chunked_head, sizeof(chunked_head) - 1, &h) <= 0)
        _exit(3);
    if (wsg_http_reader_body(&r, "zz\r\n", 4, NULL, NULL) != -400)
        _exit(4);
    if (wsg_http_reader_eof(&r) != -400)
        _exit(5);
}

static void body_after_failed_eof(void)
{
    wsg_http_reader r;
    wsg_http_head h;
    wsg_http_reader_init(&r, HTTP_RESPONSE, MAX_HEAD);
    if (wsg_http_reader_head(&r, forbidden_head, sizeof(forbidden_head) - 1, &h) <= 0)
        _exit(3);
    if (wsg_http_reader_eof(&r) != -400)
        _exit(4);
    if (wsg_http_reader_body(&r, "x", 1, NULL, NULL) >= 0)
        _exit(5);
}

/* A peer that sent garbage and then hung up: the caller reports the EOF to
 * a reader that has already failed. That must answer -400, not abort. */
static void test_eof_after_error_does_not_abort(void **state)
{
    (void)state;
    char report[512] = "";
    bool ok = true;
    ok &= child_succeeds(eof_after_head_error, "eof after a -400 head", report, sizeof(report));
    ok &= child_succeeds(eof_twice_inside_head, "eof twice inside a head", report,
                         sizeof(report));
    ok &= child_succeeds(eof_after_body_error, "eof after a -400 body", report, sizeof(report));
    ok &= child_succeeds(body_after_failed_eof, "body after a failed eof", report,
                         sizeof(report));
    if (!ok)
        fail_msg("the reader must answer -400 after an error, not abort:%s", report);
}

static wsg_http_head make_head(int status, uint64_t content_length, bool chunked)
{
    wsg_http_head h;
    memset(&h, 0, sizeof(h));
    h.status = status;
    h.content_length = content_length;
    h.chunked = chunked;
    return h;
}

static void test_head_has_body(void **state)
{
    (void)state;
    const uint64_t none = WSG_HTTP_NO_LENGTH;
    wsg_http_head h;

    h = make_head(0, none, false);
    assert_false(wsg_http_head_has_body(&h, HTTP_REQUEST));
    h = make_head(0, 0, false);
    assert_false(wsg_http_head_has_body(&h, HTTP_REQUEST));
    h = make_head(0, 5, false);
    assert_true(wsg_http_head_has_body(&h, HTTP_REQUEST));
    h = make_head(0, none, true);
    assert_true(wsg_http_head_has_body(&h, HTTP_REQUEST));

    h = make_head(200, none, false);
    assert_true(wsg_http_head_has_body(&h, HTTP_RESPONSE));
    h = make_head(200, 0, false);
    assert_false(wsg_http_head_has_body(&h, HTTP_RESPONSE));
    h = make_head(403, 26, false);
    assert_true(wsg_http_head_has_body(&h, HTTP_RESPONSE));
    h = make_head(200, none, true);
    assert_true(wsg_http_head_has_body(&h, HTTP_RESPONSE));
    static const int bodiless[] = {100, 101, 199, 204, 304};
    for (size_t i = 0; i < sizeof(bodiless) / sizeof(bodiless[0]); i++) {
        h = make_head(bodiless[i], none, false);
        if (wsg_http_head_has_body(&h, HTTP_RESPONSE))
            fail_msg("status %d without a length has no body", bodiless[i]);
    }
}

/* ---- header helpers ---------------------------------------------------- */

static void test_header_get_and_count(void **state)
{
    (void)state;
    static const char head[] = "GET / HTTP/1.1\r\n"
                               "Host: a\r\n"
                               "X-Dup: first\r\n"
                               "x-dup: second\r\n"
                               "X-DUP:  third \r\n"
                               "X-Empty:\r\n"
                               "\r\n";
    wsg_http_head h;
    assert_true(read_whole(HTTP_REQUEST, head, sizeof(head) - 1, MAX_HEAD, &h) > 0);

    expect_str(wsg_http_header_get(&h, WSG_STR("host")), "a");
    expect_str(wsg_http_header_get(&h, WSG_STR("HOST")), "a");
    expect_str(wsg_http_header_get(&h, WSG_STR("x-DuP")), "first");
    wsg_str empty = wsg_http_header_get(&h, WSG_STR("x-empty"));
    assert_non_null(empty.p);
    assert_int_equal(empty.len, 0);
    wsg_str absent = wsg_http_header_get(&h, WSG_STR("X-Missing"));
    assert_null(absent.p);
    assert_int_equal(absent.len, 0);
    assert_null(wsg_http_header_get(&h, WSG_STR("X-Du")).p);
    assert_null(wsg_http_header_get(&h, WSG_STR("X-Dupe")).p);

    assert_int_equal(wsg_http_header_count(&h, WSG_STR("X-Dup")), 3);
    assert_int_equal(wsg_http_header_count(&h, WSG_STR("host")), 1);
    assert_int_equal(wsg_http_header_count(&h, WSG_STR("X-Empty")), 1);
    assert_int_equal(wsg_http_header_count(&h, WSG_STR("X-Missing")), 0);
}

static void test_hop_by_hop(void **state)
{
    (void)state;
    static const char *const hop[] = {
        "Connection",         "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
        "Proxy-Authorization", "TE",         "Trailer",          "Transfer-Encoding",
        "Upgrade",            "connection", "KEEP-ALIVE",       "te",
        "transfer-encoding",  "upgrade",
    };
    static const char *const end_to_end[] = {
        "Host",       "Sec-WebSocket-Key", "Sec-WebSocket-Protocol", "Content-Length",
        "Cookie",     "X-Forwarded-For",   "Authorization",          "T",
        "Connections", "Upgrade-Insecure-Requests",
    };
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++) {
        if (!wsg_http_is_hop_by_hop(wsg_str_cstr(hop[i]), WSG_STR("")))
            fail_msg("%s is hop-by-hop", hop[i]);
    }
    for (size_t i = 0; i < sizeof(end_to_end) / sizeof(end_to_end[0]); i++) {
        if (wsg_http_is_hop_by_hop(wsg_str_cstr(end_to_end[i]), WSG_STR("")))
            fail_msg("%s is end-to-end", end_to_end[i]);
        if (wsg_http_is_hop_by_hop(wsg_str_cstr(end_to_end[i]), WSG_STR("keep-alive, Upgrade")))
            fail_msg("%s is end-to-end when Connection does not name it", end_to_end[i]);
    }
    wsg_str conn = WSG_STR("keep-alive, X-Session-Hint ,\tx-trace");
    assert_true(wsg_http_is_hop_by_hop(WSG_STR("X-Session-Hint"), conn));
    assert_true(wsg_http_is_hop_by_hop(WSG_STR("x-session-hint"), conn));
    assert_true(wsg_http_is_hop_by_hop(WSG_STR("X-Trace"), conn));
    assert_false(wsg_http_is_hop_by_hop(WSG_STR("X-Session"), conn));
    assert_false(wsg_http_is_hop_by_hop(WSG_STR("X-Other"), conn));
    assert_false(wsg_http_is_hop_by_hop(WSG_STR("Host"), wsg_str_make(NULL, 0)));
}

static void test_query_param(void **state)
{
    (void)state;
    wsg_str q = WSG_STR("clientId=abc&x=1");
    wsg_str v = wsg_http_query_param(q, WSG_STR("clientId"));
    expect_str(v, "abc");
    expect_str(wsg_http_query_param(q, WSG_STR("x")), "1");
    assert_null(wsg_http_query_param(q, WSG_STR("y")).p);
    assert_null(wsg_http_query_param(q, WSG_STR("clientid")).p);
    assert_null(wsg_http_query_param(q, WSG_STR("client")).p);
    assert_null(wsg_http_query_param(q, WSG_STR("abc")).p);
    assert_null(wsg_http_query_param(WSG_STR(""), WSG_STR("x")).p);
    assert_null(wsg_http_query_param(wsg_str_make(NULL, 0), WSG_STR("x")).p);

    /* The value points into the query, not at a copy. */
    assert_ptr_equal(v.p, q.p + 9);

    wsg_str empty = wsg_http_query_param(WSG_STR("a=&b=2"), WSG_STR("a"));
    assert_non_null(empty.p);
    assert_int_equal(empty.len, 0);
    expect_str(wsg_http_query_param(WSG_STR("a=&b=2"), WSG_STR("b")), "2");

    wsg_str flag = wsg_http_query_param(WSG_STR("debug&x=1"), WSG_STR("debug"));
    assert_non_null(flag.p);
    assert_int_equal(flag.len, 0);
    flag = wsg_http_query_param(WSG_STR("x=1&debug"), WSG_STR("debug"));
    assert_non_null(flag.p);
    assert_int_equal(flag.len, 0);

    q = WSG_STR("clientIdentity=zzz&clientId2=y&xclientId=w&clientId=c7");
    expect_str(wsg_http_query_param(q, WSG_STR("clientId")), "c7");
    assert_null(wsg_http_query_param(WSG_STR("clientIdentity=zzz"), WSG_STR("clientId")).p);

    expect_str(wsg_http_query_param(WSG_STR("a=1&a=2"), WSG_STR("a")), "1");
    expect_str(wsg_http_query_param(WSG_STR("&&a=1&"), WSG_STR("a")), "1");
    expect_str(wsg_http_query_param(WSG_STR("t=a=b"), WSG_STR("t")), "a=b");
    expect_str(wsg_http_query_param(WSG_STR("n=%41%20b"), WSG_STR("n")), "%41%20b");
    wsg_str emptykey = wsg_http_query_param(WSG_STR("=v&a=1"), WSG_STR(""));
    expect_str(emptykey, "v");
}

/* ---- answers ----------------------------------------------------------- */

typedef struct parsed_answer {
    wsg_http_head head;
    const char *body;
    size_t body_len;
} parsed_answer;

/* Reads an answer back with the response reader. The body is located by
 * the blank line, independently of head_len. */
static void parse_answer(const char *out, size_t len, parsed_answer *a)
{
    wsg_http_reader r;
    wsg_http_reader_init(&r, HTTP_RESPONSE, MAX_HEAD);
    int rc = wsg_http_reader_head(&r, out, len, &a->head);
    if (rc <= 0)
        fail_msg("answer does not parse (%d):\n%.*s", rc, (int)len, out);
    const char *blank = memmem(out, len, "\r\n\r\n", 4);
    assert_non_null(blank);
    a->body = blank + 4;
    a->body_len = len - (size_t)(a->body - out);
}

static void test_error_response_roundtrip(void **state)
{
    (void)state;
    char out[2048];
    const char *message = "bad \"origin\" \\ here\nnext\tline\x01\x7f end";
    size_t n = wsg_http_error_response(out, sizeof(out), 403, "Retry-After: 5\r\nX-A: b\r\n",
                                       message);
    assert_true(n > 0);
    assert_int_equal(n, strlen(out));
    parsed_answer a;
    parse_answer(out, n, &a);
    assert_int_equal(a.head.status, 403);
    assert_int_equal(a.head.major, 1);
    assert_int_equal(a.head.minor, 1);
    assert_true(a.head.content_length == a.body_len);
    expect_str(wsg_http_header_get(&a.head, WSG_STR("Content-Type")), "application/json");
    expect_str(wsg_http_header_get(&a.head, WSG_STR("Connection")), "close");
    expect_str(wsg_http_header_get(&a.head, WSG_STR("Retry-After")), "5");
    expect_str(wsg_http_header_get(&a.head, WSG_STR("X-A")), "b");
    assert_false(a.head.keep_alive);
    assert_memory_equal(out, "HTTP/1.1 403 Forbidden\r\n", 24);

    static const char want[] =
        "\"bad \\\"origin\\\" \\\\ here\\u000anext\\u0009line\\u0001\\u007f end\"";
    char body_want[256];
    int bl = snprintf(body_want, sizeof(body_want), "{\"error\":%s}", want);
    /* The body is the JSON object, possibly followed by one newline. */
    assert_true(a.body_len == (size_t)bl || a.body_len == (size_t)bl + 1);
    assert_memory_equal(a.body, body_want, (size_t)bl);
    if (a.body_len == (size_t)bl + 1)
        assert_int_equal(a.body[bl], '\n');
    for (size_t i = 0; i < (size_t)bl; i++)
        assert_true((unsigned char)a.body[i] >= 0x20 && a.body[i] != 0x7f);
}

static void test_error_response_without_extra_headers(void **state)
{
    (void)state;
    static const int statuses[] = {400, 401, 404, 426, 429, 431, 502, 503, 504, 599};
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        char out[1024];
        size_t n = wsg_http_error_response(out, sizeof(out), statuses[i], "", "no");
        assert_true(n > 0);
        parsed_answer a;
        parse_answer(out, n, &a);
        assert_int_equal(a.head.status, statuses[i]);
        assert_true(a.head.content_length == a.body_len);
        assert_int_equal(a.head.header_count, 5);
        assert_memory_equal(a.body, "{\"error\":\"no\"}", 14);
        char line[64];
        int ll = snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", statuses[i],
                          wsg_http_reason(statuses[i]));
        assert_memory_equal(out, line, (size_t)ll);
    }
}

/* A message too long to quote still gives a well-formed answer. */
static void test_error_response_long_message(void **state)
{
    (void)state;
    char message[2000];
    memset(message, 'm', sizeof(message) - 1);
    message[sizeof(message) - 1] = '\0';
    char out[4096];
    size_t n = wsg_http_error_response(out, sizeof(out), 502, "", message);
    assert_true(n > 0);
    parsed_answer a;
    parse_answer(out, n, &a);
    assert_int_equal(a.head.status, 502);
    assert_true(a.head.content_length == a.body_len);
    assert_memory_equal(a.body, "{\"error\":\"", 10);
    assert_true(a.body_len < 600);
}

static void test_error_response_too_small(void **state)
{
    (void)state;
    char out[1024];
    size_t full = wsg_http_error_response(out, sizeof(out), 404, "", "missing");
    assert_true(full > 0);
    for (size_t cap = 0; cap <= full; cap++) {
        char small[1024];
        memset(small, 'Q', sizeof(small));
        size_t n = wsg_http_error_response(small, cap, 404, "", "missing");
        if (n != 0)
            fail_msg("cap %zu of %zu needed: returned %zu", cap, full, n);
        for (size_t i = cap; i < sizeof(small); i++)
            assert_int_equal(small[i], 'Q');
    }
    assert_int_equal(wsg_http_error_response(out, full + 1, 404, "", "missing"), full);
}

static void test_reason_phrases(void **state)
{
    (void)state;
    assert_string_equal(wsg_http_reason(101), "Switching Protocols");
    assert_string_equal(wsg_http_reason(400), "Bad Request");
    assert_string_equal(wsg_http_reason(403), "Forbidden");
    assert_string_equal(wsg_http_reason(404), "Not Found");
    assert_string_equal(wsg_http_reason(431), "Request Header Fields Too Large");
    assert_string_equal(wsg_http_reason(502), "Bad Gateway");
    assert_string_equal(wsg_http_reason(504), "Gateway Timeout");
    assert_non_null(wsg_http_reason(799));
}

static void expect_quote(const char *s, size_t n, const char *want)
{
    char out[512];
    size_t len = wsg_json_quote(out, sizeof(out), s, n);
    if (len != strlen(want) || memcmp(out, want, len) != 0)
        fail_msg("quoted \"%.*s\" as %.*s, want %s", (int)n, s, (int)len, out, want);
}

static void test_json_quote(void **state)
{
    (void)state;
    expect_quote("", 0, "\"\"");
    expect_quote("plain text", 10, "\"plain text\"");
    expect_quote("a\"b", 3, "\"a\\\"b\"");
    expect_quote("a\\b", 3, "\"a\\\\b\"");
    expect_quote("\n\r\t\b\f", 5, "\"\\u000a\\u000d\\u0009\\u0008\\u000c\"");
    expect_quote("\x01\x1f\x7f", 3, "\"\\u0001\\u001f\\u007f\"");
    expect_quote("nul\0x", 5, "\"nul\\u0000x\"");
    expect_quote("caf\xc3\xa9 \xe2\x82\xac", 9, "\"caf\xc3\xa9 \xe2\x82\xac\"");
    expect_quote("</script>", 9, "\"</script>\"");
}

/* Every capacity from 0 up: either 0 or the whole literal, and never a
 * byte written at or past cap (the buffer ends at the guard page). */
static void test_json_quote_overflow(void **state)
{
    (void)state;
    static const char s[] = "say \"hi\"\n\\";
    static const char want[] = "\"say \\\"hi\\\"\\u000a\\\\\"";
    size_t wl = sizeof(want) - 1;
    guarded g;
    guarded_init(&g, 256);
    bool fitted = false;
    for (size_t cap = 0; cap <= 64; cap++) {
        char *out = g.map + g.size - cap;
        size_t n = wsg_json_quote(out, cap, s, sizeof(s) - 1);
        if (n == 0) {
            if (fitted)
                fail_msg("cap %zu fails after a smaller cap fitted", cap);
            continue;
        }
        fitted = true;
        assert_int_equal(n, wl);
        assert_memory_equal(out, want, wl);
    }
    assert_true(fitted);
    /* The longest escape last: its NUL must fit too (found by fuzzing). */
    static const char ctl[] = "ab\x01";
    static const char ctl_want[] = "\"ab\\u0001\"";
    for (size_t cap = 0; cap <= 16; cap++) {
        char *out = g.map + g.size - cap;
        size_t n = wsg_json_quote(out, cap, ctl, sizeof(ctl) - 1);
        if (n)
            assert_memory_equal(out, ctl_want, sizeof(ctl_want));
    }
    assert_int_equal(wsg_json_quote(g.map, 2, "", 0), 0);
    assert_int_equal(wsg_json_quote(g.map, 1, "x", 1), 0);
    guarded_deinit(&g);
}

/* ---- routing by service (route.c) ------------------------------------ */

static wsg_route_kind route_of(const char *path, char *service, size_t *prefix)
{
    wsg_str name = wsg_str_make(NULL, 0);
    wsg_route_kind k = wsg_http_route(wsg_str_cstr(path), &name, prefix);
    snprintf(service, 64, "%.*s", (int)name.len, name.p ? name.p : "");
    return k;
}

static void test_route_kinds(void **state)
{
    (void)state;
    char svc[64];
    size_t prefix = 0;
    assert_int_equal(route_of("/ws/chat", svc, &prefix), WSG_ROUTE_WS);
    assert_string_equal(svc, "chat");
    assert_int_equal(prefix, 8);
    assert_int_equal(route_of("/api/users/v1/x", svc, &prefix), WSG_ROUTE_API);
    assert_string_equal(svc, "users");
    assert_int_equal(prefix, 10);
    assert_int_equal(route_of("/api/users", svc, &prefix), WSG_ROUTE_API);
    assert_int_equal(route_of("/sse/feed/live", svc, &prefix), WSG_ROUTE_SSE);
    assert_string_equal(svc, "feed");
    /* Nothing to route: no name, another prefix, or a path after /ws. */
    assert_int_equal(route_of("/api/", svc, &prefix), WSG_ROUTE_NONE);
    assert_int_equal(route_of("/api//x", svc, &prefix), WSG_ROUTE_NONE);
    assert_int_equal(route_of("/api", svc, &prefix), WSG_ROUTE_NONE);
    assert_int_equal(route_of("/apis/x", svc, &prefix), WSG_ROUTE_NONE);
    assert_int_equal(route_of("/ws/chat/x", svc, &prefix), WSG_ROUTE_NONE);
    assert_int_equal(route_of("/", svc, &prefix), WSG_ROUTE_NONE);
    assert_int_equal(route_of("", svc, &prefix), WSG_ROUTE_NONE);
}

static void check_strip(const char *target, size_t prefix, const char *want)
{
    char out[64];
    int n = wsg_http_route_strip(wsg_str_cstr(target), prefix, out, sizeof(out));
    if (want == NULL) {
        assert_int_equal(n, -1);
        return;
    }
    assert_int_equal(n, (int)strlen(want));
    assert_string_equal(out, want);
}

static void test_route_strip(void **state)
{
    (void)state;
    check_strip("/api/users/v1/x?q=1", 10, "/v1/x?q=1");
    check_strip("/api/users?q=1", 10, "/?q=1");
    check_strip("/api/users", 10, "/");
    check_strip("/api/users/", 10, "/");
    check_strip("/sse/feed/a/b", 9, "/a/b");
    check_strip("http://h/api/users", 10, NULL);
    check_strip("/api", 10, NULL);
    /* exactly the room for the bytes and the NUL, and one less */
    char long_target[80];
    snprintf(long_target, sizeof(long_target), "/api/u/%s%s", "abcdefghijklmnopqrstuvwxyz",
             "abcdefghijklmnopqrstuvwxyzabcdefghij");
    char out[64];
    assert_int_equal(wsg_http_route_strip(wsg_str_cstr(long_target), 6, out, 64), 63);
    assert_int_equal(wsg_http_route_strip(wsg_str_cstr(long_target), 6, out, 63), -1);
}

static void check_ws_target(const char *query, const char *want)
{
    char out[64];
    int n = wsg_http_route_ws_target(wsg_str_cstr(query), out, sizeof(out));
    if (want == NULL) {
        assert_int_equal(n, -1);
        return;
    }
    assert_int_equal(n, (int)strlen(want));
    assert_string_equal(out, want);
}

static void test_route_ws_target(void **state)
{
    (void)state;
    check_ws_target("", "/");
    check_ws_target("path=/chat", "/chat");
    check_ws_target("path=/chat&clientId=a&x=1", "/chat?clientId=a&x=1");
    check_ws_target("clientId=a&path=/chat", "/chat?clientId=a");
    check_ws_target("clientId=a", "/?clientId=a");
    check_ws_target("path=%2Froom%3Fv%3D2&clientId=a", "/room?v=2&clientId=a");
    check_ws_target("path=%2fa%2Fb", "/a/b");
    check_ws_target("path=&a=1", "/?a=1");
    check_ws_target("a&&b=2", "/?a&b=2");
    /* Not an absolute path, bytes a request line cannot carry, bad escapes. */
    check_ws_target("path=chat", NULL);
    check_ws_target("path=/a%0D%0Ab", NULL);
    check_ws_target("path=/a+b", NULL);
    check_ws_target("path=/a%00", NULL);
    check_ws_target("x=a\x10" "b", NULL);
    check_ws_target("path=/a%2", NULL);
    check_ws_target("path=/a%zz", NULL);
    check_ws_target("path=%", NULL);
    /* 64 bytes of room: a 64-byte path, or a query making the target 64. */
    check_ws_target("path=/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", NULL);
    check_ws_target("path=/a&x=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", NULL);
}

/* The escape decoder must not read past the value: each query ends right
 * before an unreadable page. */
static void test_route_ws_target_guard_page(void **state)
{
    (void)state;
    static const char *queries[] = {"path=%", "path=%2", "path=/a%2", "path=/x&c", "path="};
    guard_page g;
    guard_page_init(&g, 4096);
    for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++) {
        size_t n = strlen(queries[i]);
        const char *q = (const char *)guard_page_put(&g, queries[i], n);
        char out[64];
        (void)wsg_http_route_ws_target(wsg_str_make(q, n), out, sizeof(out));
    }
    guard_page_deinit(&g);
}

static void test_forwardable(void **state)
{
    (void)state;
    wsg_str none = wsg_str_make(NULL, 0);
    assert_true(wsg_http_forwardable(WSG_STR("Accept"), none));
    assert_true(wsg_http_forwardable(WSG_STR("Cookie"), none));
    assert_true(wsg_http_forwardable(WSG_STR("X-Custom"), none));
    static const char *const dropped[] = {"Connection", "keep-alive", "TE", "Trailer",
                                          "Transfer-Encoding", "Upgrade", "Proxy-Authorization",
                                          "Proxy-Authenticate", "Proxy-Connection", "Host",
                                          "content-length", "X-Forwarded-For",
                                          "X-Forwarded-Proto", "X-Real-IP"};
    for (size_t i = 0; i < sizeof(dropped) / sizeof(dropped[0]); i++)
        assert_false(wsg_http_forwardable(wsg_str_cstr(dropped[i]), none));
    /* and whatever Connection names */
    assert_false(wsg_http_forwardable(WSG_STR("X-Secret"), WSG_STR("close, X-Secret")));
    assert_true(wsg_http_forwardable(WSG_STR("X-Other"), WSG_STR("close, X-Secret")));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upgrade_whole),
        cmocka_unit_test(test_upgrade_head_exactly),
        cmocka_unit_test(test_upgrade_split_every_offset_same_buffer),
        cmocka_unit_test(test_upgrade_split_every_offset_moved_buffer),
        cmocka_unit_test(test_upgrade_split_twice_moved_buffer),
        cmocka_unit_test(test_upgrade_byte_at_a_time),
        cmocka_unit_test(test_upgrade_guard_page_prefixes),
        cmocka_unit_test(test_done_head_is_returned_again),
        cmocka_unit_test(test_query_forms),
        cmocka_unit_test(test_methods_and_versions),
        cmocka_unit_test(test_request_content_length_and_body),
        cmocka_unit_test(test_garbage_is_400),
        cmocka_unit_test(test_space_in_header_name_is_400),
        cmocka_unit_test(test_obs_fold_never_yields_crlf_in_value),
        cmocka_unit_test(test_bare_lf_line_ends),
        cmocka_unit_test(test_max_head_limit),
        cmocka_unit_test(test_unterminated_head_over_limit),
        cmocka_unit_test(test_header_count_limit),
        cmocka_unit_test(test_parser_header_overflow_is_431),
        cmocka_unit_test(test_response_101),
        cmocka_unit_test(test_response_content_length_body),
        cmocka_unit_test(test_response_body_split_every_offset),
        cmocka_unit_test(test_response_chunked_body),
        cmocka_unit_test(test_response_chunked_body_byte_at_a_time),
        cmocka_unit_test(test_chunked_trailers_after_full_head),
        cmocka_unit_test(test_response_bad_chunk_is_400),
        cmocka_unit_test(test_response_close_delimited_body),
        cmocka_unit_test(test_response_close_delimited_empty_body),
        cmocka_unit_test(test_eof_inside_length_body_is_400),
        cmocka_unit_test(test_eof_after_error_does_not_abort),
        cmocka_unit_test(test_head_has_body),
        cmocka_unit_test(test_header_get_and_count),
        cmocka_unit_test(test_hop_by_hop),
        cmocka_unit_test(test_query_param),
        cmocka_unit_test(test_error_response_roundtrip),
        cmocka_unit_test(test_error_response_without_extra_headers),
        cmocka_unit_test(test_error_response_long_message),
        cmocka_unit_test(test_error_response_too_small),
        cmocka_unit_test(test_reason_phrases),
        cmocka_unit_test(test_json_quote),
        cmocka_unit_test(test_json_quote_overflow),
        cmocka_unit_test(test_route_kinds),
        cmocka_unit_test(test_route_strip),
        cmocka_unit_test(test_route_ws_target),
        cmocka_unit_test(test_route_ws_target_guard_page),
        cmocka_unit_test(test_forwardable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
