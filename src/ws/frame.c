/* Frame header codec, masking, control frames and close payloads. */
#include <string.h>

#include "ws/ws.h"

int wsg_ws_header_parse(const uint8_t *p, size_t n, wsg_ws_header *h)
{
    if (n < 2)
        return WSG_WS_AGAIN;
    uint8_t b0 = p[0];
    uint8_t b1 = p[1];
    size_t size = 2;
    uint64_t len = b1 & 0x7f;

    if (len == 126) {
        if (n < 4)
            return WSG_WS_AGAIN;
        len = (uint64_t)p[2] << 8 | p[3];
        size = 4;
    } else if (len == 127) {
        if (n < 10)
            return WSG_WS_AGAIN;
        /* RFC 6455 section 5.2: the most significant bit must be 0. */
        if (p[2] & 0x80)
            return -1;
        len = 0;
        for (int i = 2; i < 10; i++)
            len = len << 8 | p[i];
        size = 10;
    }
    h->masked = (b1 & 0x80) != 0;
    if (h->masked) {
        if (n < size + 4)
            return WSG_WS_AGAIN;
        memcpy(h->mask, p + size, 4);
        size += 4;
    } else {
        memset(h->mask, 0, 4);
    }
    h->fin = (b0 & 0x80) != 0;
    h->rsv = (b0 >> 4) & 0x7;
    h->opcode = b0 & 0x0f;
    h->len = len;
    h->size = (uint8_t)size;
    return (int)size;
}

size_t wsg_ws_header_write(uint8_t *out, bool fin, uint8_t rsv, uint8_t opcode, uint64_t len,
                           const uint8_t *mask)
{
    size_t size = 2;
    out[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv & 7) << 4 | (opcode & 0x0f));
    if (len < 126) {
        out[1] = (uint8_t)len;
    } else if (len <= 0xffff) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        size = 4;
    } else {
        out[1] = 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        size = 10;
    }
    if (mask) {
        out[1] |= 0x80;
        memcpy(out + size, mask, 4);
        size += 4;
    }
    return size;
}

unsigned wsg_ws_mask(uint8_t *p, size_t n, const uint8_t key[4], unsigned phase)
{
    phase &= 3;
    /* Bytes up to an 8-byte boundary, then whole words, then the tail. The
     * word holds the key rotated to the phase the aligned part starts at. */
    while (n > 0 && ((uintptr_t)p & 7) != 0) {
        *p++ ^= key[phase];
        phase = (phase + 1) & 3;
        n--;
    }
    if (n >= 8) {
        uint8_t pattern[8];
        uint64_t k;
        for (unsigned i = 0; i < 8; i++)
            pattern[i] = key[(phase + i) & 3];
        memcpy(&k, pattern, 8);
        size_t words = n / 8;
        for (size_t i = 0; i < words; i++) {
            uint64_t w;
            memcpy(&w, p, 8);
            w ^= k;
            memcpy(p, &w, 8);
            p += 8;
        }
        n -= words * 8;
    }
    while (n > 0) {
        *p++ ^= key[phase];
        phase = (phase + 1) & 3;
        n--;
    }
    return phase;
}

size_t wsg_ws_control_frame(uint8_t *out, uint8_t opcode, const void *payload, size_t len,
                            wsg_rand *rng)
{
    uint8_t key[4];
    if (len > WSG_WS_MAX_CONTROL_PAYLOAD)
        len = WSG_WS_MAX_CONTROL_PAYLOAD;
    if (rng)
        wsg_rand_bytes(rng, key, 4);
    size_t size = wsg_ws_header_write(out, true, 0, opcode, len, rng ? key : NULL);
    if (len)
        memcpy(out + size, payload, len);
    if (rng)
        wsg_ws_mask(out + size, len, key, 0);
    return size + len;
}

size_t wsg_ws_close_frame(uint8_t *out, uint16_t code, const char *reason, wsg_rand *rng)
{
    uint8_t payload[WSG_WS_MAX_CONTROL_PAYLOAD];
    size_t rlen = reason ? strlen(reason) : 0;
    if (rlen > WSG_WS_MAX_CONTROL_PAYLOAD - 2) {
        rlen = WSG_WS_MAX_CONTROL_PAYLOAD - 2;
        /* Cut between characters: a reason must stay valid UTF-8. */
        while (rlen > 0 && ((unsigned char)reason[rlen] & 0xc0) == 0x80)
            rlen--;
    }
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    if (rlen)
        /* a close payload is bytes with a length, never a C string. */
        // NOLINTNEXTLINE(bugprone-not-null-terminated-result)
        memcpy(payload + 2, reason, rlen);
    return wsg_ws_control_frame(out, WSG_WS_OP_CLOSE, payload, rlen + 2, rng);
}

bool wsg_ws_close_code_valid(unsigned code)
{
    if (code >= 3000 && code <= 4999)
        return true;
    if (code >= 1000 && code <= 1003)
        return true;
    return code >= 1007 && code <= 1014;
}

int wsg_ws_close_payload_check(const uint8_t *p, size_t n, uint16_t *code)
{
    if (n == 0) {
        *code = WSG_WS_CLOSE_NO_STATUS;
        return 0;
    }
    if (n == 1)
        return WSG_WS_CLOSE_PROTOCOL;
    unsigned c = (unsigned)p[0] << 8 | p[1];
    if (!wsg_ws_close_code_valid(c))
        return WSG_WS_CLOSE_PROTOCOL;
    if (!wsg_utf8_valid(p + 2, n - 2))
        return WSG_WS_CLOSE_BAD_DATA;
    *code = (uint16_t)c;
    return 0;
}
