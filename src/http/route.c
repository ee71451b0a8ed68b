/* Routing by service on the HTTP port (seed 002's shapes), as pure string
 * work: which route a path names, and the target the backend gets. */
#include <string.h>

#include "http/http.h"

static const struct {
    wsg_str prefix; /* "/kind/" */
    wsg_route_kind kind;
} prefixes[] = {
    {WSG_STR("/ws/"), WSG_ROUTE_WS},
    {WSG_STR("/api/"), WSG_ROUTE_API},
    {WSG_STR("/sse/"), WSG_ROUTE_SSE},
};

wsg_route_kind wsg_http_route(wsg_str path, wsg_str *service, size_t *prefix_len)
{
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        wsg_str pre = prefixes[i].prefix;
        if (!wsg_str_starts_with(path, pre))
            continue;
        const char *name = path.p + pre.len;
        size_t left = path.len - pre.len;
        const char *slash = memchr(name, '/', left);
        size_t n = slash ? (size_t)(slash - name) : left;
        /* /ws/:service takes its path from the query: nothing may follow. */
        if (n == 0 || (prefixes[i].kind == WSG_ROUTE_WS && slash != NULL))
            return WSG_ROUTE_NONE;
        *service = wsg_str_make(name, n);
        *prefix_len = pre.len + n;
        return prefixes[i].kind;
    }
    return WSG_ROUTE_NONE;
}

int wsg_http_route_strip(wsg_str target, size_t prefix_len, char *out, size_t cap)
{
    if (target.len < prefix_len || target.len == 0 || target.p[0] != '/')
        return -1;
    wsg_str rest = wsg_str_make(target.p + prefix_len, target.len - prefix_len);
    bool slash = rest.len == 0 || rest.p[0] != '/';
    size_t n = (slash ? 1 : 0) + rest.len;
    if (n + 1 > cap)
        return -1;
    if (slash)
        out[0] = '/';
    memcpy(out + (slash ? 1 : 0), rest.p, rest.len);
    out[n] = '\0';
    return (int)n;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = wsg_ascii_lower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes %XX and '+' (form encoding, what URLSearchParams writes) into out.
 * Returns the length, or -1 for a bad escape, a byte that cannot stand in a
 * request line (controls, space, DEL) or no room. */
static int decode_path(wsg_str v, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < v.len; i++) {
        int c = (unsigned char)v.p[i];
        if (c == '%') {
            int hi = i + 2 < v.len ? hex_value(v.p[i + 1]) : -1;
            int lo = hi >= 0 ? hex_value(v.p[i + 2]) : -1;
            if (lo < 0)
                return -1;
            c = hi * 16 + lo;
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (c <= ' ' || c == 0x7f || n + 1 >= cap)
            return -1;
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return (int)n;
}

/* True when s holds no byte a request line cannot carry. The parser that
 * read the query may have been lenient; the backend's request is ours. */
static bool request_line_safe(wsg_str s)
{
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (c <= ' ' || c == 0x7f)
            return false;
    }
    return true;
}

int wsg_http_route_ws_target(wsg_str query, char *out, size_t cap)
{
    wsg_str path = wsg_http_query_param(query, WSG_STR("path"));
    int n = 1;
    if (path.len > 0) {
        n = decode_path(path, out, cap);
        if (n <= 0 || out[0] != '/')
            return -1;
    } else if (cap < 2) {
        return -1;
    } else {
        out[0] = '/';
    }
    /* The other parameters follow in their order, as sent. */
    char sep = memchr(out, '?', (size_t)n) ? '&' : '?';
    wsg_str rest = query;
    while (rest.len > 0) {
        wsg_str pair = wsg_str_next_item(&rest, '&');
        const char *eq = memchr(pair.p, '=', pair.len);
        wsg_str key = wsg_str_make(pair.p, eq ? (size_t)(eq - pair.p) : pair.len);
        if (pair.len == 0 || wsg_str_eq(key, WSG_STR("path")))
            continue;
        if ((size_t)n + 1 + pair.len + 1 > cap || !request_line_safe(pair))
            return -1;
        out[n++] = sep;
        memcpy(out + n, pair.p, pair.len);
        n += (int)pair.len;
        sep = '&';
    }
    out[n] = '\0';
    return n;
}

bool wsg_http_forwardable(wsg_str name, wsg_str connection)
{
    /* Written by the gateway itself: Host as the client sent it, framing
     * from the body actually sent, the forwarding headers from the peer. */
    static const wsg_str ours[] = {
        WSG_STR("Host"),
        WSG_STR("Content-Length"),
        WSG_STR("X-Forwarded-For"),
        WSG_STR("X-Forwarded-Proto"),
        WSG_STR("X-Real-IP"),
    };
    for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++) {
        if (wsg_str_eq_nocase(name, ours[i]))
            return false;
    }
    return !wsg_http_is_hop_by_hop(name, connection);
}
