/* Socket addresses: literal parsing and printing, no DNS. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/net.h"

void wsg_addr_format(const struct sockaddr *sa, char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        snprintf(out, outlen, "%s:%u", ip, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        snprintf(out, outlen, "[%s]:%u", ip, ntohs(in6->sin6_port));
    } else {
        snprintf(out, outlen, "unknown");
    }
}

static int parse_port(const char *s, uint16_t *port)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 1 || v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

int wsg_addr_parse(const char *text, uint16_t default_port, struct sockaddr_storage *out,
                   socklen_t *len)
{
    char host[INET6_ADDRSTRLEN + 1];
    uint16_t port = default_port;
    const char *colon;
    memset(out, 0, sizeof(*out));

    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || (size_t)(close - text - 1) >= sizeof(host))
            return -1;
        memcpy(host, text + 1, (size_t)(close - text - 1));
        host[close - text - 1] = '\0';
        if (close[1] == ':' && parse_port(close + 2, &port) < 0)
            return -1;
        if (close[1] != ':' && close[1] != '\0')
            return -1;
    } else if ((colon = strchr(text, ':')) && strchr(colon + 1, ':') == NULL) {
        if ((size_t)(colon - text) >= sizeof(host) || parse_port(colon + 1, &port) < 0)
            return -1;
        memcpy(host, text, (size_t)(colon - text));
        host[colon - text] = '\0';
    } else {
        size_t n = strlen(text);
        if (n >= sizeof(host))
            return -1;
        memcpy(host, text, n + 1);
    }
    if (port == 0)
        return -1;

    struct sockaddr_in *in = (struct sockaddr_in *)out;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        *len = sizeof(*in);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        *len = sizeof(*in6);
        return 0;
    }
    return -1;
}

void wsg_peer_set(wsg_peer *p, const struct sockaddr_storage *ss)
{
    static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(p, 0, sizeof(*p));
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        p->family = AF_INET;
        memcpy(p->ip, &in->sin_addr, 4);
        p->port = ntohs(in->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        p->port = ntohs(in6->sin6_port);
        if (memcmp(&in6->sin6_addr, v4_mapped, 12) == 0) {
            p->family = AF_INET;
            memcpy(p->ip, (const uint8_t *)&in6->sin6_addr + 12, 4);
        } else {
            p->family = AF_INET6;
            memcpy(p->ip, &in6->sin6_addr, 16);
        }
    }
}

void wsg_peer_format_ip(const wsg_peer *p, char *out, size_t outlen)
{
    if (p->family != AF_INET && p->family != AF_INET6) {
        snprintf(out, outlen, "unknown");
        return;
    }
    if (inet_ntop(p->family, p->ip, out, (socklen_t)outlen) == NULL)
        snprintf(out, outlen, "unknown");
}

void wsg_peer_format(const wsg_peer *p, char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN];
    wsg_peer_format_ip(p, ip, sizeof(ip));
    if (p->family == AF_INET6)
        snprintf(out, outlen, "[%s]:%u", ip, p->port);
    else
        snprintf(out, outlen, "%s:%u", ip, p->port);
}

int wsg_cidr_parse(const char *text, size_t n, wsg_cidr *out)
{
    char buf[INET6_ADDRSTRLEN + 8];
    long bits = -1;
    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, text, n);
    buf[n] = '\0';
    char *slash = strchr(buf, '/');
    if (slash) {
        char *end;
        *slash = '\0';
        bits = strtol(slash + 1, &end, 10);
        if (slash[1] == '\0' || *end != '\0' || bits < 0)
            return -1;
    }
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, buf, out->ip) == 1) {
        out->family = AF_INET;
        if (bits > 32)
            return -1;
        out->bits = (uint8_t)(bits < 0 ? 32 : bits);
        return 0;
    }
    if (inet_pton(AF_INET6, buf, out->ip) == 1) {
        out->family = AF_INET6;
        if (bits > 128)
            return -1;
        out->bits = (uint8_t)(bits < 0 ? 128 : bits);
        return 0;
    }
    return -1;
}

bool wsg_cidr_match(const wsg_cidr *c, int family, const uint8_t *ip)
{
    if (c->family != family)
        return false;
    unsigned full = c->bits / 8;
    unsigned rest = c->bits % 8;
    if (memcmp(c->ip, ip, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (c->ip[full] & mask) == (ip[full] & mask);
}

int wsg_cidr_list_parse(const char *text, wsg_cidr **out, size_t *count, char *bad,
                        size_t badlen)
{
    *out = NULL;
    *count = 0;
    const char *p = text;
    while (p && *p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        while (n > 0 && (*p == ' ' || *p == '\t')) {
            p++;
            n--;
        }
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n > 0) {
            wsg_cidr c;
            if (wsg_cidr_parse(p, n, &c) < 0) {
                snprintf(bad, badlen, "%.*s", (int)n, p);
                free(*out);
                *out = NULL;
                *count = 0;
                return -1;
            }
            wsg_cidr *grown = realloc(*out, (*count + 1) * sizeof(*grown));
            if (grown == NULL) {
                fputs("wsgate: out of memory reading an address list\n", stderr);
                abort();
            }
            grown[(*count)++] = c;
            *out = grown;
        }
        p = comma ? comma + 1 : NULL;
    }
    return 0;
}
