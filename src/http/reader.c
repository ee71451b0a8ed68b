/* Reading HTTP/1.1 heads and bodies with http-parser.
 *
 * http-parser hands out pointers into the bytes of the current call. A head
 * may arrive over several reads, and the caller's buffer may move between
 * them, so the callbacks record offsets from the buffer start and the head
 * is resolved into strings only once it is complete.
 */
#include <stdio.h>
#include <string.h>

#include "http/http.h"

static wsg_http_reader *reader_of(http_parser *p)
{
    return p->data;
}

/* Extends the span when http-parser continues a piece it had begun in an
 * earlier call, else starts a new one. A piece that resumes somewhere else
 * is a folded header line (obs-fold), which RFC 9112 section 5.2 lets a
 * server reject: returns -1 then. */
static int record(wsg_http_reader *r, wsg_http_span *span, const char *at, size_t len)
{
    uint32_t off = (uint32_t)(at - r->base);
    if (span->len == 0) {
        *span = (wsg_http_span){off, (uint32_t)len};
        return 0;
    }
    if (span->off + span->len != off) {
        r->error = -400;
        return -1;
    }
    span->len += (uint32_t)len;
    return 0;
}

/* RFC 9110 section 5.6.2: field names are tokens. http-parser, built
 * lenient, lets spaces through ("Content-Length : 5"), a smuggling risk. */
static bool is_token(const char *p, size_t n)
{
    static const char specials[] = "!#$%&'*+-.^_`|~";
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  (c != '\0' && strchr(specials, c) != NULL);
        if (!ok)
            return false;
    }
    return true;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    wsg_http_reader *r = reader_of(p);
    return record(r, &r->url, at, len);
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    wsg_http_reader *r = reader_of(p);
    if (r->head_done)
        return 0; /* trailers of a chunked body: not kept */
    if (!is_token(at, len)) {
        r->error = -400;
        return -1;
    }
    if (r->in_value || r->count == 0) {
        if (r->count == WSG_HTTP_MAX_HEADERS) {
            r->error = -431;
            return -1;
        }
        r->count++;
        r->names[r->count - 1] = (wsg_http_span){0, 0};
        r->values[r->count - 1] = (wsg_http_span){0, 0};
        r->in_value = false;
    }
    return record(r, &r->names[r->count - 1], at, len);
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    wsg_http_reader *r = reader_of(p);
    if (r->head_done)
        return 0;
    r->in_value = true;
    if (r->count == 0)
        return -1;
    return record(r, &r->values[r->count - 1], at, len);
}

static int on_headers_complete(http_parser *p)
{
    wsg_http_reader *r = reader_of(p);
    r->head_done = true;
    /* Stop here: the caller decides whether and how to read a body. */
    http_parser_pause(p, 1);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    wsg_http_reader *r = reader_of(p);
    if (r->on_body)
        r->on_body(r->body_ctx, at, len);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    wsg_http_reader *r = reader_of(p);
    r->body_done = true;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void wsg_http_reader_init(wsg_http_reader *r, enum http_parser_type type, size_t max_head)
{
    memset(r, 0, sizeof(*r));
    http_parser_init(&r->parser, type);
    r->parser.data = r;
    r->max_head = max_head;
}

static wsg_str resolve(const char *buf, wsg_http_span s)
{
    return wsg_str_make(buf + s.off, s.len);
}

static void fill_head(wsg_http_reader *r, const char *buf, wsg_http_head *h)
{
    const http_parser *p = &r->parser;
    h->method = p->method;
    h->status = p->status_code;
    h->major = (uint8_t)p->http_major;
    h->minor = (uint8_t)p->http_minor;
    h->keep_alive = http_should_keep_alive(p) != 0;
    h->chunked = (p->flags & F_CHUNKED) != 0;
    h->content_length =
        (p->flags & F_CONTENTLENGTH) ? (uint64_t)p->content_length : WSG_HTTP_NO_LENGTH;
    h->target = resolve(buf, r->url);
    const char *q = h->target.len ? memchr(h->target.p, '?', h->target.len) : NULL;
    if (q) {
        h->path = wsg_str_make(h->target.p, (size_t)(q - h->target.p));
        h->query = wsg_str_make(q + 1, h->target.len - h->path.len - 1);
    } else {
        h->path = h->target;
        h->query = wsg_str_make(h->target.p + h->target.len, 0);
    }
    h->header_count = r->count;
    for (uint32_t i = 0; i < r->count; i++) {
        h->headers[i].name = resolve(buf, r->names[i]);
        h->headers[i].value = wsg_str_trim(resolve(buf, r->values[i]));
    }
}

static int status_for(enum http_errno e)
{
    return e == HPE_HEADER_OVERFLOW ? -431 : -400;
}

int wsg_http_reader_head(wsg_http_reader *r, const char *buf, size_t len, wsg_http_head *head)
{
    if (r->error)
        return r->error;
    if (r->head_done)
        return (int)head->head_len;
    if (len <= r->fed)
        return 0;
    r->base = buf;
    size_t n = http_parser_execute(&r->parser, &settings, buf + r->fed, len - r->fed);
    enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
    r->fed += n;
    if (r->head_done) {
        /* http-parser pauses on the head's last byte (the LF) without
         * counting it, and consumes it when resumed: count it here, and
         * feed it first when the body is walked. */
        r->fed++;
        r->lf_pending = true;
        if (r->fed > r->max_head) {
            r->error = -431;
            return r->error;
        }
        head->head_len = r->fed;
        fill_head(r, buf, head);
        return (int)r->fed;
    }
    if (r->error)
        return r->error;
    if (e != HPE_OK) {
        r->error = status_for(e);
        return r->error;
    }
    if (r->fed > r->max_head) {
        r->error = -431;
        return r->error;
    }
    return 0;
}

long wsg_http_reader_body(wsg_http_reader *r, const char *data, size_t len,
                          void (*body_cb)(void *ctx, const char *at, size_t len), void *ctx)
{
    if (r->error || !r->head_done)
        return r->error ? r->error : -400;
    if (r->body_done || len == 0)
        return 0;
    r->on_body = body_cb;
    r->body_ctx = ctx;
    r->base = data;
    http_parser_pause(&r->parser, 0);
    if (r->lf_pending) {
        r->lf_pending = false;
        http_parser_execute(&r->parser, &settings, "\n", 1);
        if (HTTP_PARSER_ERRNO(&r->parser) != HPE_OK && !r->body_done) {
            r->error = -400;
            return r->error;
        }
        if (r->body_done)
            return 0;
    }
    size_t n = http_parser_execute(&r->parser, &settings, data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
    r->on_body = NULL;
    if (r->body_done)
        return (long)n;
    if (e != HPE_OK) {
        r->error = -400;
        return r->error;
    }
    /* Stay paused between calls, as after the head, so that eof and
     * later calls find the parser in one known state. */
    http_parser_pause(&r->parser, 1);
    return (long)n;
}

int wsg_http_reader_eof(wsg_http_reader *r)
{
    if (r->body_done)
        return 0;
    /* http-parser asserts when unpaused in an error state. */
    if (r->error || !r->head_done || HTTP_PARSER_ERRNO(&r->parser) != HPE_PAUSED) {
        r->error = -400;
        return r->error;
    }
    http_parser_pause(&r->parser, 0);
    if (r->lf_pending) {
        r->lf_pending = false;
        http_parser_execute(&r->parser, &settings, "\n", 1);
    }
    if (!r->body_done)
        http_parser_execute(&r->parser, &settings, NULL, 0);
    if (!r->body_done)
        r->error = -400;
    return r->body_done ? 0 : -400;
}

bool wsg_http_head_has_body(const wsg_http_head *h, enum http_parser_type type)
{
    if (h->chunked)
        return true;
    if (h->content_length != WSG_HTTP_NO_LENGTH)
        return h->content_length > 0;
    if (type == HTTP_REQUEST)
        return false;
    /* Responses without a length run to EOF, except where none may exist. */
    return !(h->status == 204 || h->status == 304 || (h->status >= 100 && h->status < 200));
}
