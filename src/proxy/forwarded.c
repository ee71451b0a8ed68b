/* What the WebSocket upgrade and the HTTP proxy tell a backend about the
 * client in the same way: the forwarding headers and the sticky key. */
#include <stdio.h>
#include <string.h>

#include "proxy/proxy_int.h"

bool proxy_peer_trusted(const wsg_gateway *gw, int family, const uint8_t *ip)
{
    for (size_t i = 0; i < gw->trusted_count; i++) {
        if (wsg_cidr_match(&gw->trusted[i], family, ip))
            return true;
    }
    return false;
}

void proxy_real_client_ip(const wsg_gateway *gw, const wsg_peer *peer, wsg_str xff, bool trusted,
                          char *out, size_t outlen)
{
    wsg_peer_format_ip(peer, out, outlen);
    if (!trusted)
        return;
    while (xff.len > 0) {
        size_t cut = xff.len;
        while (cut > 0 && xff.p[cut - 1] != ',')
            cut--;
        wsg_str item = wsg_str_trim(wsg_str_make(xff.p + cut, xff.len - cut));
        xff.len = cut > 0 ? cut - 1 : 0;
        wsg_cidr addr;
        if (wsg_cidr_parse(item.p, item.len, &addr) < 0)
            return;
        if (!proxy_peer_trusted(gw, addr.family, addr.ip)) {
            snprintf(out, outlen, "%.*s", (int)item.len, item.p);
            return;
        }
    }
}

int proxy_put_forwarded(const wsg_gateway *gw, const wsg_peer *peer, bool tls, wsg_str xff,
                        wsg_str proto, wsg_buf **w)
{
    char ip[64];
    bool trusted = proxy_peer_trusted(gw, peer->family, peer->ip);
    if (!trusted) {
        xff = wsg_str_make(NULL, 0);
        proto = wsg_str_make(NULL, 0);
    }
    wsg_peer_format_ip(peer, ip, sizeof(ip));
    int rc = put_cstr(w, "X-Forwarded-For: ");
    if (xff.len > 0) {
        /* Behind a proxy we trust, its list continues with its own address. */
        rc |= put_bytes(w, xff.p, xff.len) | put_bytes(w, ", ", 2);
    }
    rc |= put_cstr(w, ip) | put_cstr(w, "\r\n");
    wsg_str scheme = tls ? WSG_STR("https") : WSG_STR("http");
    rc |= put_header(w, WSG_STR("X-Forwarded-Proto"), proto.len ? proto : scheme);
    proxy_real_client_ip(gw, peer, xff, trusted, ip, sizeof(ip));
    rc |= put_header(w, WSG_STR("X-Real-IP"), wsg_str_cstr(ip));
    return rc;
}

wsg_str proxy_sticky_key(const wsg_config *cfg, const wsg_http_head *h)
{
    const char *spec = cfg->sticky_key;
    const char *colon = strchr(spec, ':');
    wsg_str name = wsg_str_cstr(colon + 1);
    if (strncmp(spec, "query:", 6) == 0)
        return wsg_http_query_param(h->query, name);
    if (strncmp(spec, "header:", 7) == 0)
        return wsg_http_header_get(h, name);
    for (uint32_t i = 0; i < h->header_count; i++) {
        if (!wsg_str_eq_nocase(h->headers[i].name, WSG_STR("Cookie")))
            continue;
        wsg_str rest = h->headers[i].value;
        while (rest.len > 0) {
            wsg_str pair = wsg_str_next_item(&rest, ';');
            wsg_str value = pair;
            wsg_str key = wsg_str_next_item(&value, '=');
            if (wsg_str_eq(key, name) && pair.len > key.len)
                return value;
        }
    }
    return wsg_str_make(NULL, 0);
}
