/* Routing by service (src/http/route.c): the route a request path names,
 * the target an /api or /sse backend gets, and the target a /ws/:service
 * backend gets from the query.
 *
 * Input layout: byte 0 is the size of the small output buffer (0-255); the
 * rest, S, is used as a path, a target and a query. Each is handed over in
 * a heap copy exactly as long as it, so reading past its end is caught.
 *
 * Checks: a route's service is a non-empty piece of the path with no '/',
 * and its prefix ends where the name does; a target written is
 * NUL-terminated, as long as returned, starts with '/', and never holds a
 * byte a request line cannot carry (for /ws) or more than the input after
 * the prefix (for /api); a buffer too small gives -1, and the same call
 * with a large buffer gives the same answer when the small one worked.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *copy_of(const void *p, size_t n)
{
    char *c = malloc(n ? n : 1);
    CHECK(c != NULL);
    if (n)
        memcpy(c, p, n);
    return c;
}

static void check_route(wsg_str s)
{
    wsg_str service = wsg_str_make(NULL, 0);
    size_t prefix = 0;
    wsg_route_kind k = wsg_http_route(s, &service, &prefix);
    if (k == WSG_ROUTE_NONE)
        return;
    CHECK(k == WSG_ROUTE_WS || k == WSG_ROUTE_API || k == WSG_ROUTE_SSE);
    CHECK(service.len > 0 && service.p >= s.p && service.p + service.len <= s.p + s.len);
    CHECK(memchr(service.p, '/', service.len) == NULL);
    CHECK((size_t)(service.p - s.p) + service.len == prefix);
    CHECK(k != WSG_ROUTE_WS || prefix == s.len);
}

static void check_strip(wsg_str s, size_t small)
{
    char big[1024];
    char *out = malloc(small ? small : 1);
    CHECK(out != NULL);
    size_t prefix = s.len > 0 ? (size_t)(unsigned char)s.p[0] % (s.len + 1) : 0;
    int n = wsg_http_route_strip(s, prefix, big, sizeof(big));
    int m = wsg_http_route_strip(s, prefix, out, small);
    if (n >= 0) {
        CHECK((size_t)n < sizeof(big) && big[n] == '\0' && big[0] == '/');
        CHECK((size_t)n <= s.len - prefix + 1);
        CHECK(memcmp(big + (size_t)n - (s.len - prefix), s.p + prefix, s.len - prefix) == 0);
    }
    CHECK(m == -1 || (m == n && memcmp(out, big, (size_t)n + 1) == 0));
    CHECK(m == -1 || (size_t)m < small);
    free(out);
}

static void check_ws_target(wsg_str s, size_t small)
{
    char big[4096];
    char *out = malloc(small ? small : 1);
    CHECK(out != NULL);
    int n = wsg_http_route_ws_target(s, big, sizeof(big));
    int m = wsg_http_route_ws_target(s, out, small);
    if (n >= 0) {
        CHECK((size_t)n < sizeof(big) && big[n] == '\0' && big[0] == '/');
        CHECK(strlen(big) == (size_t)n);
        for (int i = 0; i < n; i++)
            CHECK((unsigned char)big[i] > ' ' && big[i] != 0x7f);
    }
    CHECK(m == -1 || (m == n && memcmp(out, big, (size_t)n + 1) == 0));
    CHECK(m == -1 || (size_t)m < small);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t small = data[0];
    char *s = copy_of(data + 1, size - 1);
    wsg_str str = wsg_str_make(s, size - 1);
    check_route(str);
    check_strip(str, small);
    check_ws_target(str, small);
    free(s);
    return 0;
}
