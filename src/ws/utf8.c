/* Incremental UTF-8 validation (RFC 3629), resumable at any byte.
 *
 * The state packs what the next byte must be:
 *
 *   bits 0..7   continuation bytes still expected (0 at a boundary)
 *   bits 8..15  lowest allowed value of the next byte
 *   bits 16..23 highest allowed value of the next byte
 *
 * The narrowed first-continuation ranges reject overlong forms (E0, F0),
 * surrogates (ED) and code points above U+10FFFF (F4).
 */
#include <string.h>

#include "ws/ws.h"

static inline uint32_t expect(unsigned need, unsigned lo, unsigned hi)
{
    return need | lo << 8 | hi << 16;
}

static uint32_t lead_byte(uint8_t b)
{
    if (b >= 0xc2 && b <= 0xdf)
        return expect(1, 0x80, 0xbf);
    if (b == 0xe0)
        return expect(2, 0xa0, 0xbf);
    if ((b >= 0xe1 && b <= 0xec) || b == 0xee || b == 0xef)
        return expect(2, 0x80, 0xbf);
    if (b == 0xed)
        return expect(2, 0x80, 0x9f);
    if (b == 0xf0)
        return expect(3, 0x90, 0xbf);
    if (b >= 0xf1 && b <= 0xf3)
        return expect(3, 0x80, 0xbf);
    if (b == 0xf4)
        return expect(3, 0x80, 0x8f);
    return WSG_UTF8_BAD;
}

uint32_t wsg_utf8_feed(uint32_t state, const uint8_t *p, size_t n)
{
    size_t i = 0;
    if (state == WSG_UTF8_BAD)
        return state;
    while (i < n) {
        if (state == WSG_UTF8_OK) {
            /* ASCII runs, eight bytes at a time. */
            while (i + 8 <= n) {
                uint64_t w;
                memcpy(&w, p + i, 8);
                if (w & 0x8080808080808080ULL)
                    break;
                i += 8;
            }
            if (i == n)
                break;
            uint8_t b = p[i++];
            if (b < 0x80)
                continue;
            state = lead_byte(b);
            if (state == WSG_UTF8_BAD)
                return state;
            continue;
        }
        uint8_t b = p[i++];
        unsigned lo = (state >> 8) & 0xff;
        unsigned hi = (state >> 16) & 0xff;
        if (b < lo || b > hi)
            return WSG_UTF8_BAD;
        unsigned need = (state & 0xff) - 1;
        state = need ? expect(need, 0x80, 0xbf) : WSG_UTF8_OK;
    }
    return state;
}
