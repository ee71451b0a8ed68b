/* Upgrade request and response, and the timed messages (loadgen_wire.h). */
#include "loadgen_wire.h"

#include <stdio.h>
#include <string.h>

#include "core/str.h"

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* splitmix64's finaliser: neighbouring (index, seq) pairs get unrelated
 * patterns, so a message swapped with its neighbour is caught. */
static uint64_t pattern(uint64_t index, uint64_t seq)
{
    uint64_t z = index * UINT64_C(0x9e3779b97f4a7c15) ^ seq;
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Copies path into out with "{i}" replaced by index. Returns the length,
 * or -1 when it does not fit. */
static int expand_path(char *out, size_t cap, const char *path, uint64_t index)
{
    char num[24];
    int nlen = snprintf(num, sizeof(num), "%llu", (unsigned long long)index);
    size_t len = 0;
    while (*path) {
        bool is_var = strncmp(path, "{i}", 3) == 0;
        const char *piece = is_var ? num : path;
        size_t plen = is_var ? (size_t)nlen : 1;
        if (len + plen >= cap)
            return -1;
        memcpy(out + len, piece, plen);
        len += plen;
        path += is_var ? 3 : 1;
    }
    out[len] = '\0';
    return (int)len;
}

int lg_wire_request(char *out, size_t cap, const char *host, const char *path, uint64_t index,
                    const char *key)
{
    return lg_wire_request_ext(out, cap, host, path, index, key, false);
}

int lg_wire_request_ext(char *out, size_t cap, const char *host, const char *path, uint64_t index,
                        const char *key, bool deflate)
{
    char target[1200];
    if (expand_path(target, sizeof(target), path, index) < 0)
        return -1;
    int n = snprintf(out, cap,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s\r\n",
                     target, host, key, deflate ? LG_DEFLATE_OFFER : "");
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

static wsg_str next_line(wsg_str *rest)
{
    wsg_str line = wsg_str_next_item(rest, '\n');
    if (line.len > 0 && line.p[line.len - 1] == '\r')
        line.len--;
    return line;
}

/* Reads "HTTP/1.x NNN ..." Returns the status, or -1. */
static int status_of(wsg_str line)
{
    if (!wsg_str_starts_with(line, WSG_STR("HTTP/1.")) || line.len < 12 || line.p[8] != ' ')
        return -1;
    int status = 0;
    for (size_t i = 9; i < 12; i++) {
        if (line.p[i] < '0' || line.p[i] > '9')
            return -1;
        status = status * 10 + (line.p[i] - '0');
    }
    return status;
}

int lg_wire_response(const char *p, size_t n, const char *accept, int *status)
{
    const char *end = memmem(p, n, "\r\n\r\n", 4);
    const char *eol = memchr(p, '\n', n);
    *status = eol ? status_of(wsg_str_make(p, (size_t)(eol - p))) : 0;
    if (*status < 0 || (eol && *status != 101))
        return LG_HS_BAD_STATUS;
    if (end == NULL)
        return n >= LG_HEAD_MAX ? LG_HS_TOO_LONG : 0;
    wsg_str rest = wsg_str_make(p, (size_t)(end - p) + 2);
    bool upgrade = false;
    bool accepted = false;
    next_line(&rest);
    while (rest.len > 0) {
        wsg_str value = next_line(&rest);
        wsg_str name = wsg_str_next_item(&value, ':');
        if (wsg_str_eq_nocase(name, WSG_STR("Upgrade")))
            upgrade = wsg_str_list_has_token(value, WSG_STR("websocket"));
        else if (wsg_str_eq_nocase(name, WSG_STR("Sec-WebSocket-Accept")))
            accepted = wsg_str_eq(wsg_str_trim(value), wsg_str_cstr(accept));
    }
    if (!upgrade)
        return LG_HS_BAD_UPGRADE;
    if (!accepted)
        return LG_HS_BAD_ACCEPT;
    return (int)(end - p) + 4;
}

bool lg_wire_accepts_deflate(const char *p, size_t n)
{
    wsg_str rest = wsg_str_make(p, n);
    next_line(&rest);
    while (rest.len > 0) {
        wsg_str value = next_line(&rest);
        wsg_str name = wsg_str_next_item(&value, ':');
        if (!wsg_str_eq_nocase(name, WSG_STR("Sec-WebSocket-Extensions")))
            continue;
        while (value.len > 0) {
            wsg_str element = wsg_str_next_item(&value, ',');
            wsg_str ext = wsg_str_trim(wsg_str_next_item(&element, ';'));
            if (wsg_str_eq_nocase(ext, WSG_STR("permessage-deflate")))
                return true;
        }
    }
    return false;
}

/* Fills p[0..n) with the pattern word, little-endian, repeated. */
static void fill(uint8_t *p, size_t n, uint64_t word)
{
    uint8_t w[8];
    put_u64(w, word);
    for (size_t i = 0; i < n; i += 8)
        memcpy(p + i, w, n - i < 8 ? n - i : 8);
}

size_t lg_wire_message(uint8_t *out, uint32_t size, uint64_t index, uint64_t seq, uint64_t sent_ns,
                       const uint8_t key[4])
{
    size_t hs = wsg_ws_header_write(out, true, 0, WSG_WS_OP_BINARY, size, key);
    uint8_t *p = out + hs;
    put_u64(p, seq);
    put_u64(p + 8, sent_ns);
    fill(p + LG_MSG_MIN, size - LG_MSG_MIN, pattern(index, seq));
    wsg_ws_mask(p, size, key, 0);
    return hs + size;
}

size_t lg_wire_message_deflated(uint8_t *out, uint32_t size, uint64_t index, uint64_t seq,
                                uint64_t sent_ns, const uint8_t key[4])
{
    size_t len = size + LG_STORED_OVERHEAD(size);
    size_t hs = wsg_ws_header_write(out, true, 4, WSG_WS_OP_BINARY, len, key);
    uint8_t *p = out + hs;
    uint8_t *plain = p + len - size;
    /* The plain payload goes at the end, then each block's header is
     * written in front of its bytes, moving them forward: a block's bytes
     * never overlap what is still to be moved. */
    put_u64(plain, seq);
    put_u64(plain + 8, sent_ns);
    fill(plain + LG_MSG_MIN, size - LG_MSG_MIN, pattern(index, seq));
    size_t at = 0;
    for (size_t done = 0; done < size;) {
        size_t chunk = size - done < LG_STORED_MAX ? size - done : LG_STORED_MAX;
        p[at] = done + chunk == size ? 1 : 0; /* BFINAL on the last, BTYPE 00 */
        p[at + 1] = (uint8_t)chunk;
        p[at + 2] = (uint8_t)(chunk >> 8);
        p[at + 3] = (uint8_t)~chunk;
        p[at + 4] = (uint8_t)(~chunk >> 8);
        memmove(p + at + 5, plain + done, chunk);
        at += 5 + chunk;
        done += chunk;
    }
    wsg_ws_mask(p, len, key, 0);
    return hs + len;
}

long lg_wire_unstore(uint8_t *p, size_t n)
{
    size_t in = 0;
    size_t out = 0;
    for (;;) {
        if (in == n)
            return -1; /* no block with BFINAL set */
        if (n - in == 1 && p[in] == 0)
            return (long)out; /* the 00 00 ff ff tail that RFC 7692 removes */
        if (n - in < 5 || (p[in] & 0x06) != 0)
            return -1; /* cut, or not a stored block */
        bool last = p[in] & 1;
        size_t len = (size_t)p[in + 1] | (size_t)p[in + 2] << 8;
        size_t nlen = (size_t)p[in + 3] | (size_t)p[in + 4] << 8;
        if ((len ^ nlen) != 0xffff || n - in - 5 < len)
            return -1;
        memmove(p + out, p + in + 5, len);
        out += len;
        in += 5 + len;
        if (last)
            return in == n ? (long)out : -1;
    }
}

int lg_wire_check(const uint8_t *p, size_t n, uint32_t size, uint64_t index, lg_echo *e)
{
    if (n != size || n < LG_MSG_MIN)
        return -1;
    uint8_t w[8];
    uint64_t seq = get_u64(p);
    put_u64(w, pattern(index, seq));
    for (size_t i = LG_MSG_MIN; i < n; i += 8) {
        if (memcmp(p + i, w, n - i < 8 ? n - i : 8) != 0)
            return -1;
    }
    e->seq = seq;
    e->sent_ns = get_u64(p + 8);
    return 0;
}
