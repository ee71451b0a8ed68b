/* The driver shared by fuzz_http_request.c and fuzz_http_response.c.
 *
 * An input is a byte stream from a peer: one or more messages (keep-alive),
 * each a head and maybe a body. It is read three ways, and the three
 * readings must agree (STYLE.md, habit 2):
 *
 *   whole   every byte in one call;
 *   split   the head in two calls, at a point taken from the first byte,
 *           each call on a fresh heap copy with the first copy freed before
 *           the second call (the caller may move its buffer, so a reader
 *           that kept a pointer into the old one reads freed memory and
 *           AddressSanitizer says so); the body in pieces of sizes drawn
 *           from the first byte, each piece a copy freed after its call;
 *   bytes   one byte more per call (inputs up to FUZZ_BYTEWISE_MAX).
 *
 * Every buffer handed to the reader is exactly as long as the bytes in it,
 * so an over-read lands in a redzone. On each finished head the driver
 * checks what http.h promises (head_len within the input, every string
 * inside the buffer, values trimmed) and calls the lookups the proxy and
 * the admin port call on it.
 */
#ifndef WSG_FUZZ_HTTP_H
#define WSG_FUZZ_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "ws/ws.h"

#define FUZZ_MAX_MESSAGES 4
#define FUZZ_MAX_HEAD 16384 /* MAX_HEADER_SIZE's default */
#define FUZZ_BYTEWISE_MAX 2048

#include "fuzz_check.h"

enum feed { FEED_WHOLE, FEED_SPLIT, FEED_BYTES };

/* What one message did; compared between the three readings. */
typedef struct msg_result {
    int head; /* head length, 0 for "need more", -1 for any error */
    bool has_body;
    bool body_error;
    bool body_done;
    int eof;        /* wsg_http_reader_eof's answer; 1 when not called */
    size_t used;    /* body bytes taken, framing included */
    size_t decoded; /* body bytes handed to on_body */
    uint64_t hash;  /* FNV-1a of those */
} msg_result;

typedef struct transcript {
    size_t count;
    msg_result m[FUZZ_MAX_MESSAGES];
} transcript;

static char *fuzz_copy(const void *p, size_t n)
{
    char *c = malloc(n ? n : 1);
    CHECK(c != NULL);
    if (n)
        memcpy(c, p, n);
    return c;
}

static bool span_inside(const char *p, size_t len, const char *base, size_t cap)
{
    uintptr_t s = (uintptr_t)p;
    uintptr_t b = (uintptr_t)base;
    return s >= b && s - b <= cap && len <= cap - (s - b);
}

static bool str_inside(wsg_str s, const char *base, size_t cap)
{
    if (s.len == 0 && s.p == NULL)
        return true;
    return s.p != NULL && span_inside(s.p, s.len, base, cap);
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static bool has_line_break(wsg_str s)
{
    return s.len > 0 && (memchr(s.p, '\r', s.len) || memchr(s.p, '\n', s.len));
}

static bool is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Quotes s as a JSON string and reads it back with jansson: wsg_json_quote
 * builds the error bodies the gateway sends. */
static void check_json_quote(wsg_str s)
{
    size_t cap = 64 + s.len % 512; /* a heap buffer of exactly cap bytes */
    char *out = malloc(cap);
    CHECK(out != NULL);
    size_t n = wsg_json_quote(out, cap, s.p, s.len);
    if (n == 0) {
        /* Refusing is fine only when the worst case would not fit. */
        CHECK(6 * s.len + 3 > cap);
        free(out);
        return;
    }
    CHECK(n < cap && out[n] == '\0');
    if (!wsg_utf8_valid((const uint8_t *)s.p, s.len)) {
        free(out);
        return; /* bytes above 0x7f go through as they are */
    }
    json_error_t err;
    json_t *j = json_loadb(out, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    CHECK(j != NULL && json_is_string(j));
    CHECK(json_string_length(j) == s.len);
    CHECK(s.len == 0 || memcmp(json_string_value(j), s.p, s.len) == 0);
    json_decref(j);
    free(out);
}

static void check_query(wsg_str query)
{
    static const wsg_str fixed[] = {WSG_STR("clientId"), WSG_STR("token"), WSG_STR("")};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        wsg_str v = wsg_http_query_param(query, fixed[i]);
        CHECK(str_inside(v, query.p, query.len));
    }
    /* Every key present must be found, with a value inside the query. */
    wsg_str rest = query;
    for (int n = 0; rest.len > 0 && n < 64; n++) {
        const char *amp = memchr(rest.p, '&', rest.len);
        size_t len = amp ? (size_t)(amp - rest.p) : rest.len;
        const char *eq = memchr(rest.p, '=', len);
        wsg_str key = wsg_str_make(rest.p, eq ? (size_t)(eq - rest.p) : len);
        wsg_str v = wsg_http_query_param(query, key);
        CHECK(v.p != NULL);
        CHECK(str_inside(v, query.p, query.len));
        if (!amp)
            break;
        rest = wsg_str_make(amp + 1, rest.len - len - 1);
    }
}

/* An error answer quoting peer bytes must stay one well-formed answer. */
static void check_error_response(wsg_str s)
{
    char msg[300];
    char out[2048];
    size_t n = s.len < sizeof(msg) - 1 ? s.len : sizeof(msg) - 1;
    if (n && memchr(s.p, '\0', n))
        return;
    memcpy(msg, s.p, n);
    msg[n] = '\0';
    size_t len = wsg_http_error_response(out, sizeof(out), 400, "", msg);
    CHECK(len > 0 && len < sizeof(out));
    CHECK(strncmp(out, "HTTP/1.1 400 Bad Request\r\n", 26) == 0);
    const char *body = strstr(out, "\r\n\r\n");
    const char *cl = strstr(out, "\r\nContent-Length: ");
    CHECK(body != NULL && cl != NULL && cl < body);
    body += 4;
    CHECK(strtoul(cl + 18, NULL, 10) == strlen(body));
    json_error_t err;
    json_t *j = json_loads(body, 0, &err);
    if (!wsg_utf8_valid((const uint8_t *)msg, n)) {
        json_decref(j);
        return;
    }
    CHECK(j != NULL && json_is_string(json_object_get(j, "error")));
    json_decref(j);
}

/* Checks a finished head whose strings point into base[0..passed). */
static void check_head(enum http_parser_type type, const wsg_http_head *h, const char *base,
                       size_t passed)
{
    static const wsg_str names[] = {
        WSG_STR("Host"),
        WSG_STR("Upgrade"),
        WSG_STR("Connection"),
        WSG_STR("Content-Length"),
        WSG_STR("Transfer-Encoding"),
        WSG_STR("Sec-WebSocket-Key"),
        WSG_STR("Sec-WebSocket-Extensions"),
        WSG_STR("Authorization"),
        WSG_STR("Cookie"),
    };
    CHECK(h->head_len > 0 && h->head_len <= passed);
    CHECK(h->header_count <= WSG_HTTP_MAX_HEADERS);
    if (type == HTTP_REQUEST) {
        CHECK(str_inside(h->target, base, h->head_len));
        CHECK(str_inside(h->path, base, h->head_len));
        CHECK(str_inside(h->query, base, h->head_len));
        CHECK(h->path.p == h->target.p && h->path.len <= h->target.len);
        if (h->path.len < h->target.len) {
            CHECK(h->path.p[h->path.len] == '?');
            CHECK(h->query.p == h->path.p + h->path.len + 1);
            CHECK(h->path.len + 1 + h->query.len == h->target.len);
        } else {
            CHECK(h->query.len == 0);
        }
        check_query(h->query);
        check_json_quote(h->target);
        check_error_response(h->target);
    } else {
        /* http-parser takes one to three digits ("HTTP/1.1 0 x"); the
         * gateway treats anything under 200 as interim. */
        CHECK(h->status >= 0 && h->status <= 999);
    }
    for (uint32_t i = 0; i < h->header_count; i++) {
        const wsg_http_header *hd = &h->headers[i];
        CHECK(str_inside(hd->name, base, h->head_len));
        CHECK(str_inside(hd->value, base, h->head_len));
        for (size_t k = 0; k < hd->name.len; k++)
            CHECK(is_tchar(hd->name.p[k]));
        /* Names and values are copied into answers the gateway writes:
         * a line break in one would smuggle a header in. */
        CHECK(!has_line_break(hd->name) && !has_line_break(hd->value));
        if (hd->value.len > 0)
            CHECK(!is_ows(hd->value.p[0]) && !is_ows(hd->value.p[hd->value.len - 1]));
    }
    wsg_str connection = wsg_http_header_get(h, WSG_STR("Connection"));
    for (uint32_t i = 0; i < h->header_count; i++) {
        wsg_str name = h->headers[i].name;
        uint32_t first = 0;
        while (!wsg_str_eq_nocase(h->headers[first].name, name))
            first++;
        wsg_str v = wsg_http_header_get(h, name);
        CHECK(v.p == h->headers[first].value.p && v.len == h->headers[first].value.len);
        CHECK(wsg_http_header_count(h, name) >= 1);
        bool hop = wsg_http_is_hop_by_hop(name, connection);
        if (connection.len && wsg_str_list_has_token(connection, name))
            CHECK(hop);
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        wsg_str v = wsg_http_header_get(h, names[i]);
        unsigned count = wsg_http_header_count(h, names[i]);
        CHECK((v.p == NULL) == (count == 0));
        CHECK(str_inside(v, base, h->head_len));
        (void)wsg_http_is_hop_by_hop(names[i], connection);
    }
    (void)wsg_http_reason(h->status);
}

typedef struct body_sink {
    const char *piece;
    size_t piece_len;
    size_t decoded;
    uint64_t hash;
} body_sink;

static void on_body(void *ctx, const char *at, size_t len)
{
    body_sink *s = ctx;
    CHECK(span_inside(at, len, s->piece, s->piece_len));
    for (size_t i = 0; i < len; i++)
        s->hash = (s->hash ^ (uint8_t)at[i]) * 0x100000001b3ULL;
    s->decoded += len;
}

/* A small generator for piece sizes: deterministic per input. */
static uint32_t lcg_next(uint32_t *state)
{
    *state = *state * 1103515245u + 12345u;
    return *state >> 16;
}

static size_t piece_size(enum feed mode, uint32_t *rng, size_t left)
{
    size_t n;
    switch (mode) {
    case FEED_WHOLE:
        return left;
    case FEED_BYTES:
        return 1;
    default:
        n = 1 + lcg_next(rng) % 97;
        return n < left ? n : left;
    }
}

/* Reads a head the given way. Returns wsg_http_reader_head's last answer;
 * *base and *passed say which buffer the head's strings point into, and
 * *owned is a copy for the caller to free (or NULL). */
static int read_head(wsg_http_reader *r, enum feed mode, const uint8_t *data, size_t len,
                     size_t split, wsg_http_head *head, char **owned, const char **base,
                     size_t *passed)
{
    *owned = NULL;
    *base = (const char *)data;
    *passed = len;
    if (mode == FEED_WHOLE)
        return wsg_http_reader_head(r, (const char *)data, len, head);
    if (mode == FEED_BYTES) {
        for (size_t i = 1; i <= len; i++) {
            int rc = wsg_http_reader_head(r, (const char *)data, i, head);
            if (rc != 0) {
                *passed = i;
                return rc;
            }
        }
        return 0;
    }
    if (split > 0 && split < len) {
        char *first = fuzz_copy(data, split);
        int rc = wsg_http_reader_head(r, first, split, head);
        if (rc != 0) {
            *owned = first;
            *base = first;
            *passed = split;
            return rc;
        }
        free(first);
    }
    char *all = fuzz_copy(data, len);
    *owned = all;
    *base = all;
    return wsg_http_reader_head(r, all, len, head);
}

/* Walks the body in data[0..len), as the caller hands over new bytes. */
static void walk_body(wsg_http_reader *r, enum feed mode, const uint8_t *data, size_t len,
                      uint32_t seed, msg_result *m)
{
    body_sink sink = {.hash = 0xcbf29ce484222325ULL};
    uint32_t rng = seed;
    size_t off = 0;
    m->eof = 1;
    while (off < len) {
        size_t n = piece_size(mode, &rng, len - off);
        char *piece = fuzz_copy(data + off, n);
        sink.piece = piece;
        sink.piece_len = n;
        long used = wsg_http_reader_body(r, piece, n, on_body, &sink);
        free(piece);
        if (used < 0) {
            CHECK(used == -400);
            m->body_error = true;
            break;
        }
        CHECK((size_t)used <= n);
        if ((size_t)used < n)
            CHECK(r->body_done);
        off += (size_t)used;
        if (r->body_done)
            break;
    }
    m->used = off;
    m->body_done = r->body_done;
    m->decoded = sink.decoded;
    m->hash = sink.hash;
    if (r->body_done && off < len && mode == FEED_WHOLE) {
        /* A finished message takes nothing more. */
        char *next = fuzz_copy(data + off, 1);
        sink.piece = next;
        sink.piece_len = 1;
        CHECK(wsg_http_reader_body(r, next, 1, on_body, &sink) == 0);
        free(next);
    }
    if (!m->body_error && !r->body_done) {
        /* Every byte is in and the message is open: the peer closes. */
        m->eof = wsg_http_reader_eof(r);
        CHECK(m->eof == 0 || m->eof == -400);
        CHECK((m->eof == 0) == r->body_done);
    }
}

static void run_feed(enum http_parser_type type, enum feed mode, const uint8_t *data, size_t size,
                     transcript *t)
{
    size_t off = 0;
    t->count = 0;
    while (off < size && t->count < FUZZ_MAX_MESSAGES) {
        msg_result *m = &t->m[t->count];
        wsg_http_reader r;
        wsg_http_head head;
        char *owned;
        const char *base;
        size_t passed;
        size_t len = size - off;
        size_t split = ((size_t)data[0] * 131 + t->count * 17) % (len + 1);
        memset(m, 0, sizeof(*m));
        t->count++;
        wsg_http_reader_init(&r, type, FUZZ_MAX_HEAD);
        int rc = read_head(&r, mode, data + off, len, split, &head, &owned, &base, &passed);
        if (rc < 0)
            CHECK(rc == -400 || rc == -431);
        m->head = rc < 0 ? -1 : rc;
        if (rc <= 0) {
            free(owned);
            return;
        }
        CHECK((size_t)rc == head.head_len);
        check_head(type, &head, base, passed);
        m->has_body = wsg_http_head_has_body(&head, type);
        free(owned); /* the head's strings are gone from here on */
        if (!m->has_body) {
            off += (size_t)rc;
            continue;
        }
        walk_body(&r, mode, data + off + rc, len - (size_t)rc, data[0] ^ (uint32_t)t->count << 8,
                  m);
        if (!m->body_done)
            return;
        off += (size_t)rc + m->used;
    }
}

static void same_transcript(const transcript *a, const transcript *b)
{
    CHECK(a->count == b->count);
    for (size_t i = 0; i < a->count; i++) {
        const msg_result *x = &a->m[i];
        const msg_result *y = &b->m[i];
        CHECK(x->head == y->head);
        CHECK(x->has_body == y->has_body);
        CHECK(x->body_error == y->body_error);
        if (x->body_error)
            continue; /* bytes before the fault may differ with the pieces */
        CHECK(x->body_done == y->body_done);
        CHECK(x->eof == y->eof);
        CHECK(x->used == y->used);
        CHECK(x->decoded == y->decoded);
        CHECK(x->hash == y->hash);
    }
}

/* The head limit: one whole reading with a small max_head must agree with
 * the FUZZ_MAX_HEAD one, or stop at -431. */
static void check_head_limit(enum http_parser_type type, const uint8_t *data, size_t size,
                             const transcript *whole)
{
    wsg_http_reader r;
    wsg_http_head head;
    size_t max_head = 16 + data[0];
    wsg_http_reader_init(&r, type, max_head);
    int rc = wsg_http_reader_head(&r, (const char *)data, size, &head);
    int big = whole->m[0].head;
    if (big > 0) {
        CHECK(rc == ((size_t)big <= max_head ? big : -431));
    } else if (big == 0) {
        CHECK(rc == (size > max_head ? -431 : 0));
    } else {
        CHECK(rc < 0);
    }
}

static void fuzz_http(enum http_parser_type type, const uint8_t *data, size_t size)
{
    transcript whole;
    transcript split;
    transcript bytes;
    if (size == 0)
        return;
    run_feed(type, FEED_WHOLE, data, size, &whole);
    run_feed(type, FEED_SPLIT, data, size, &split);
    same_transcript(&whole, &split);
    if (size <= FUZZ_BYTEWISE_MAX) {
        run_feed(type, FEED_BYTES, data, size, &bytes);
        same_transcript(&whole, &bytes);
    }
    check_head_limit(type, data, size, &whole);
}

#endif
