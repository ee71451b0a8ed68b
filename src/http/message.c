/* Header lookups and classification, query parameters, and answers. */
#include <stdio.h>
#include <string.h>

#include "http/http.h"

wsg_str wsg_http_header_get(const wsg_http_head *h, wsg_str name)
{
    for (uint32_t i = 0; i < h->header_count; i++) {
        if (wsg_str_eq_nocase(h->headers[i].name, name))
            return h->headers[i].value;
    }
    return wsg_str_make(NULL, 0);
}

unsigned wsg_http_header_count(const wsg_http_head *h, wsg_str name)
{
    unsigned n = 0;
    for (uint32_t i = 0; i < h->header_count; i++) {
        if (wsg_str_eq_nocase(h->headers[i].name, name))
            n++;
    }
    return n;
}

bool wsg_http_is_hop_by_hop(wsg_str name, wsg_str connection)
{
    static const wsg_str hop[] = {
        WSG_STR("Connection"),        WSG_STR("Keep-Alive"),
        WSG_STR("Proxy-Connection"),  WSG_STR("Proxy-Authenticate"),
        WSG_STR("Proxy-Authorization"), WSG_STR("TE"),
        WSG_STR("Trailer"),           WSG_STR("Transfer-Encoding"),
        WSG_STR("Upgrade"),
    };
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++) {
        if (wsg_str_eq_nocase(name, hop[i]))
            return true;
    }
    return connection.len > 0 && wsg_str_list_has_token(connection, name);
}

wsg_str wsg_http_query_param(wsg_str query, wsg_str name)
{
    while (query.len > 0) {
        const char *amp = memchr(query.p, '&', query.len);
        size_t len = amp ? (size_t)(amp - query.p) : query.len;
        wsg_str pair = wsg_str_make(query.p, len);
        const char *eq = memchr(pair.p, '=', pair.len);
        wsg_str key = wsg_str_make(pair.p, eq ? (size_t)(eq - pair.p) : pair.len);
        if (wsg_str_eq(key, name)) {
            if (!eq)
                return wsg_str_make(pair.p + pair.len, 0);
            return wsg_str_make(eq + 1, pair.len - key.len - 1);
        }
        if (!amp)
            break;
        query = wsg_str_make(amp + 1, query.len - len - 1);
    }
    return wsg_str_make(NULL, 0);
}

const char *wsg_http_reason(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

size_t wsg_json_quote(char *out, size_t cap, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (cap < 3)
        return 0;
    out[o++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        /* Room for the longest escape (6), the closing quote and the NUL. */
        if (o + 8 > cap)
            return 0;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(out + o, "\\u00", 4);
            out[o + 4] = hex[c >> 4];
            out[o + 5] = hex[c & 15];
            o += 6;
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
    return o;
}

size_t wsg_http_error_response(char *out, size_t cap, int status, const char *extra_headers,
                               const char *message)
{
    char body[512];
    char quoted[400];
    if (wsg_json_quote(quoted, sizeof(quoted), message, strlen(message)) == 0)
        snprintf(quoted, sizeof(quoted), "\"%s\"", wsg_http_reason(status));
    int blen = snprintf(body, sizeof(body), "{\"error\":%s}\n", quoted);
    int n = snprintf(out, cap,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: application/json\r\n"
                     "Content-Length: %d\r\n"
                     "Connection: close\r\n"
                     "Cache-Control: no-store\r\n"
                     "X-Content-Type-Options: nosniff\r\n"
                     "%s"
                     "\r\n"
                     "%s",
                     status, wsg_http_reason(status), blen, extra_headers, body);
    if (n < 0 || (size_t)n >= cap)
        return 0;
    return (size_t)n;
}
