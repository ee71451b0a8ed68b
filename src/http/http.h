/* HTTP/1.1 on top of http-parser, without sockets.
 *
 * A wsg_http_reader turns bytes into a wsg_http_head (method or status,
 * target, headers) and then, on request, walks the body. Heads are read
 * from one growing buffer that the caller owns: call wsg_http_reader_head
 * with the whole buffer each time more bytes arrive; the reader feeds
 * http-parser only the new ones and keeps offsets, so the caller may move
 * the buffer between calls. The strings in the finished head point into
 * the buffer as it was passed last.
 *
 * Error vocabulary: >0 progress, 0 need more input, <0 an HTTP status to
 * answer with, negated (-400 malformed, -431 head too large).
 */
#ifndef WSG_HTTP_H
#define WSG_HTTP_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/str.h"

#define WSG_HTTP_MAX_HEADERS 64
#define WSG_HTTP_NO_LENGTH UINT64_MAX

typedef struct wsg_http_header {
    wsg_str name;
    wsg_str value;
} wsg_http_header;

typedef struct wsg_http_head {
    int method;        /* requests: enum http_method */
    int status;        /* responses: status code */
    uint8_t major;
    uint8_t minor;
    bool keep_alive;   /* http-parser's verdict from version and Connection */
    bool chunked;
    wsg_str target;    /* requests: path and query as sent */
    wsg_str path;
    wsg_str query;     /* without the '?'; empty when absent */
    uint64_t content_length; /* WSG_HTTP_NO_LENGTH when not given */
    size_t head_len;   /* bytes of the head, final CRLF included */
    uint32_t header_count;
    wsg_http_header headers[WSG_HTTP_MAX_HEADERS];
} wsg_http_head;

typedef struct wsg_http_span {
    uint32_t off;
    uint32_t len;
} wsg_http_span;

typedef struct wsg_http_reader {
    http_parser parser;
    size_t fed;          /* buffer bytes already given to http-parser */
    size_t max_head;
    const char *base;    /* buffer of the call in progress */
    int error;           /* negated HTTP status once failed */
    bool head_done;
    bool body_done;
    bool in_value;       /* last header callback was a value */
    bool lf_pending;     /* the head's final LF is still to be fed */
    uint32_t count;
    wsg_http_span url;
    wsg_http_span names[WSG_HTTP_MAX_HEADERS];
    wsg_http_span values[WSG_HTTP_MAX_HEADERS];
    /* body walking */
    void (*on_body)(void *ctx, const char *at, size_t len);
    void *body_ctx;
} wsg_http_reader;

/* Prepares to read a request (HTTP_REQUEST) or response (HTTP_RESPONSE)
 * head of at most max_head bytes. */
void wsg_http_reader_init(wsg_http_reader *r, enum http_parser_type type, size_t max_head);

/* Reads the head from buf[0..len), where buf holds every byte received so
 * far. Returns the head length once complete (head is then filled), 0 when
 * more bytes are needed, or a negated status: -400 for malformed input,
 * -431 when the head passes max_head or WSG_HTTP_MAX_HEADERS. */
int wsg_http_reader_head(wsg_http_reader *r, const char *buf, size_t len, wsg_http_head *head);

/* Walks body bytes that follow the head (new bytes only, not the whole
 * buffer), calling on_body with decoded content (chunked framing removed).
 * Returns the bytes used: fewer than len when the message ended inside
 * them (r->body_done is then set). Returns -400 on malformed framing.
 * A response without a length ends at EOF: see wsg_http_reader_eof. */
long wsg_http_reader_body(wsg_http_reader *r, const char *data, size_t len,
                          void (*on_body)(void *ctx, const char *at, size_t len), void *ctx);

/* Tells the reader the peer closed: returns 0 when that ends the message
 * properly (a close-delimited body), -400 otherwise. */
int wsg_http_reader_eof(wsg_http_reader *r);

/* True when a body follows the head: chunked, a non-zero length, or, for a
 * response without a length, everything until EOF. */
bool wsg_http_head_has_body(const wsg_http_head *h, enum http_parser_type type);

/* Finds a header by name (case-insensitive); returns its value or an empty
 * string with p == NULL. With several, the first. */
wsg_str wsg_http_header_get(const wsg_http_head *h, wsg_str name);

/* Counts headers of that name (duplicates of headers that must be single
 * are an attack surface: smuggling). */
unsigned wsg_http_header_count(const wsg_http_head *h, wsg_str name);

/* True for hop-by-hop headers (RFC 9110 section 7.6.1) and for any header
 * the Connection header names. */
bool wsg_http_is_hop_by_hop(wsg_str name, wsg_str connection);

/* Finds a query parameter's value (not decoded); p == NULL when absent. */
wsg_str wsg_http_query_param(wsg_str query, wsg_str name);

/* The reason phrase of a status code ("Not Found"). */
const char *wsg_http_reason(int status);

/* Writes a whole answer with a JSON body {"error": message} and
 * Connection: close. extra_headers is "" or CRLF-terminated lines.
 * Returns the length, or 0 when it does not fit. */
size_t wsg_http_error_response(char *out, size_t cap, int status, const char *extra_headers,
                               const char *message);

/* Writes a JSON string literal (quotes included) of s; returns the length or
 * 0 when it does not fit. */
size_t wsg_json_quote(char *out, size_t cap, const char *s, size_t n);

/* ---- routing by service (route.c) ---------------------------------- */

typedef enum wsg_route_kind {
    WSG_ROUTE_NONE = 0,
    WSG_ROUTE_WS,  /* /ws/:service?path=P: a WebSocket to path P */
    WSG_ROUTE_API, /* /api/:service/...: HTTP, the prefix stripped */
    WSG_ROUTE_SSE, /* /sse/:service/...: HTTP streamed as events */
} wsg_route_kind;

/* Which service route a request path names. On a match, *service is the
 * name (not checked: the registry says whether it is valid) and
 * *prefix_len the bytes of "/kind/:service". /ws/:service must be the
 * whole path; an empty name matches nothing. */
wsg_route_kind wsg_http_route(wsg_str path, wsg_str *service, size_t *prefix_len);

/* The backend's target for an /api or /sse route: what follows the prefix
 * in the target, query included, with a leading '/' ("/api/users?q=1"
 * gives "/?q=1"). Writes a NUL-terminated string; returns its length, or
 * -1 when the target is not a path or out is too small. */
int wsg_http_route_strip(wsg_str target, size_t prefix_len, char *out, size_t cap);

/* The backend's target for /ws/:service: the decoded `path` parameter
 * ("/" when absent), then the other query parameters as sent. Returns the
 * length, or -1 when the path is not an absolute path, when the path or a
 * parameter holds bytes that cannot go in a request line, or when it does
 * not fit. */
int wsg_http_route_ws_target(wsg_str query, char *out, size_t cap);

/* True for a request or response header that passes through the HTTP
 * proxy unchanged: not hop-by-hop (RFC 9110 section 7.6.1, and whatever
 * `connection` names) and not one the gateway writes itself (Host,
 * Content-Length, X-Forwarded-For, X-Forwarded-Proto, X-Real-IP). */
bool wsg_http_forwardable(wsg_str name, wsg_str connection);

#endif
