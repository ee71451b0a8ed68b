/* WebSocket handshake helpers (src/ws/handshake.c) and close payloads
 * (src/ws/frame.c): everything the gateway reads from a client's or a
 * backend's upgrade headers and close frames.
 *
 * Input layout: byte 0 picks the size of the small output buffer (0-63)
 * and whether built control frames are masked (bit 6); the rest, S, is
 * used as a Sec-WebSocket-Extensions offer, a backend's answer, a key and
 * a close payload. Every string is handed over in a heap copy exactly as
 * long as it, so reading past its end is caught.
 *
 * The rewrites are checked against themselves: a rewritten offer or answer
 * is accepted again and comes out unchanged; a buffer too small gives -1,
 * never a cut string; a large one never overflows.
 */
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ws/ws.h"

#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef int (*rewrite_fn)(wsg_str in, char *out, size_t outlen);

static char *copy_of(const void *p, size_t n)
{
    char *c = malloc(n ? n : 1);
    CHECK(c != NULL);
    if (n)
        memcpy(c, p, n);
    return c;
}

static bool contains_nocase(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++) {
        if (strncasecmp(p, needle, n) == 0)
            return true;
    }
    return false;
}

/* Runs a rewrite with a large and a small buffer; returns the large
 * result (malloc'd, NUL-terminated) or NULL when it was refused. */
static char *check_rewrite(rewrite_fn fn, const char *s, size_t n, size_t small, bool may_refuse)
{
    size_t big = 4 * n + 64;
    char *out = malloc(big);
    CHECK(out != NULL);
    int rc = fn(wsg_str_make(s, n), out, big);
    if (rc < 0) {
        CHECK(may_refuse && rc == -1);
        free(out);
        out = NULL;
    } else {
        CHECK((size_t)rc < big && strlen(out) == (size_t)rc);
    }
    char *tiny = malloc(small ? small : 1);
    CHECK(tiny != NULL);
    int trc = fn(wsg_str_make(s, n), tiny, small);
    if (out == NULL) {
        CHECK(trc == -1);
    } else if ((size_t)rc + 1 <= small || rc == 0) {
        CHECK(trc == rc);
        if (small)
            CHECK(strcmp(tiny, out) == 0);
    } else {
        CHECK(trc == -1);
    }
    free(tiny);
    return out;
}

/* RFC 7692 rewrites: the output is accepted again and is a fixed point. */
static void check_extensions(const char *s, size_t n, size_t small)
{
    char *offer = check_rewrite(wsg_ws_offer_for_backend, s, n, small, false);
    if (offer[0]) {
        CHECK(strncasecmp(offer, "permessage-deflate", 18) == 0);
        CHECK(contains_nocase(offer, "server_no_context_takeover"));
    }
    size_t olen = strlen(offer);
    char *in = copy_of(offer, olen);
    char *again = check_rewrite(wsg_ws_offer_for_backend, in, olen, small, false);
    CHECK(strcmp(again, offer) == 0);
    free(in);
    free(again);
    free(offer);

    char *answer = check_rewrite(wsg_ws_answer_for_client, s, n, small, true);
    if (answer == NULL)
        return;
    CHECK(strncasecmp(answer, "permessage-deflate", 18) == 0);
    CHECK(contains_nocase(answer, "client_no_context_takeover"));
    CHECK(strchr(answer, ',') == NULL);
    size_t alen = strlen(answer);
    in = copy_of(answer, alen);
    again = check_rewrite(wsg_ws_answer_for_client, in, alen, small, true);
    CHECK(again != NULL && strcmp(again, answer) == 0);
    free(in);
    free(again);
    free(answer);
}

static bool b64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/* RFC 6455 section 4.1: 16 bytes in base64 are 22 characters and "==". */
static bool ref_key_valid(const char *s, size_t n)
{
    if (n != 24 || s[22] != '=' || s[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++) {
        if (!b64_char(s[i]))
            return false;
    }
    return true;
}

static void check_key(const char *s, size_t n)
{
    char *k = copy_of(s, n);
    bool valid = wsg_ws_key_valid(wsg_str_make(k, n));
    CHECK(valid == ref_key_valid(k, n));
    if (valid) {
        static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
        char accept[WSG_WS_ACCEPT_LEN + 1];
        char input[24 + sizeof(guid)];
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned int dlen = 0;
        char want[WSG_WS_ACCEPT_LEN + 8];
        wsg_ws_accept(wsg_str_make(k, n), accept);
        memcpy(input, k, 24);
        memcpy(input + 24, guid, sizeof(guid) - 1);
        CHECK(EVP_Digest(input, 24 + sizeof(guid) - 1, digest, &dlen, EVP_sha1(), NULL) == 1);
        CHECK(EVP_EncodeBlock((unsigned char *)want, digest, (int)dlen) == WSG_WS_ACCEPT_LEN);
        CHECK(memcmp(accept, want, WSG_WS_ACCEPT_LEN + 1) == 0);
    }
    free(k);
}

static bool ref_close_code_ok(unsigned c)
{
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

static void check_close_payload(const uint8_t *p, size_t n)
{
    uint8_t *c = (uint8_t *)copy_of(p, n);
    uint16_t code = 0;
    int rc = wsg_ws_close_payload_check(c, n, &code);
    if (n == 0)
        CHECK(rc == 0 && code == WSG_WS_CLOSE_NO_STATUS);
    else if (n == 1 || !ref_close_code_ok((unsigned)p[0] << 8 | p[1]))
        CHECK(rc == WSG_WS_CLOSE_PROTOCOL);
    else if (!wsg_utf8_valid(p + 2, n - 2))
        CHECK(rc == WSG_WS_CLOSE_BAD_DATA);
    else
        CHECK(rc == 0 && code == ((unsigned)p[0] << 8 | p[1]));
    free(c);
}

/* Parses a control frame built by frame.c and returns its payload,
 * unmasked, in payload (125 bytes). */
static size_t read_control(uint8_t *frame, size_t len, bool masked, uint8_t opcode,
                           uint8_t *payload)
{
    wsg_ws_header h;
    int rc = wsg_ws_header_parse(frame, len, &h);
    CHECK(rc > 0 && (size_t)rc + h.len == len);
    CHECK(h.fin && h.rsv == 0 && h.opcode == opcode && h.masked == masked);
    CHECK(h.len <= WSG_WS_MAX_CONTROL_PAYLOAD);
    memcpy(payload, frame + rc, (size_t)h.len);
    if (masked)
        wsg_ws_mask(payload, (size_t)h.len, h.mask, 0);
    return (size_t)h.len;
}

static void check_control_frames(const uint8_t *s, size_t n, bool masked)
{
    uint8_t frame[WSG_WS_MAX_CONTROL_FRAME];
    uint8_t payload[WSG_WS_MAX_CONTROL_PAYLOAD];
    wsg_rand rng;
    wsg_rand_init(&rng);
    memset(rng.pool, 0x5a, sizeof(rng.pool)); /* repeatable keys */
    rng.pos = 0;

    size_t len = wsg_ws_control_frame(frame, WSG_WS_OP_PING, s, n, masked ? &rng : NULL);
    size_t plen = read_control(frame, len, masked, WSG_WS_OP_PING, payload);
    CHECK(plen == (n < 125 ? n : 125) && memcmp(payload, s, plen) == 0);

    if (n < 2)
        return;
    uint16_t code = (uint16_t)(s[0] << 8 | s[1]);
    char reason[200];
    size_t rlen = 0;
    while (rlen < n - 2 && rlen < sizeof(reason) - 1 && s[2 + rlen] != 0) {
        reason[rlen] = (char)s[2 + rlen];
        rlen++;
    }
    reason[rlen] = '\0';
    rng.pos = 0;
    len = wsg_ws_close_frame(frame, code, reason, masked ? &rng : NULL);
    plen = read_control(frame, len, masked, WSG_WS_OP_CLOSE, payload);
    CHECK(plen >= 2 && payload[0] == s[0] && payload[1] == s[1]);
    CHECK(plen - 2 <= rlen && memcmp(payload + 2, reason, plen - 2) == 0);
    if (rlen <= 123)
        CHECK(plen - 2 == rlen);
    /* A valid reason stays valid when cut: the gateway's own close
     * frames must pass the checks it applies to others. */
    uint16_t got;
    if (ref_close_code_ok(code) && wsg_utf8_valid((const uint8_t *)reason, rlen))
        CHECK(wsg_ws_close_payload_check(payload, plen, &got) == 0 && got == code);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t small = data[0] % 64;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    check_extensions(s, n, small);
    check_key(s, n);
    if (n > 24)
        check_key(s, 24);
    check_close_payload((const uint8_t *)s, n);
    check_control_frames((const uint8_t *)s, n, data[0] & 64);

    wsg_rand rng;
    char key[WSG_WS_KEY_LEN + 1];
    wsg_rand_init(&rng);
    memset(rng.pool, data[0], sizeof(rng.pool));
    rng.pos = 0;
    wsg_ws_make_key(&rng, key);
    CHECK(strlen(key) == WSG_WS_KEY_LEN && wsg_ws_key_valid(wsg_str_cstr(key)));
    return 0;
}
