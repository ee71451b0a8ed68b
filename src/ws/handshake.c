/* Handshake helpers: Sec-WebSocket-Key and -Accept (RFC 6455 section 4),
 * and the permessage-deflate rewrite (RFC 7692) that keeps a session free
 * to continue on another backend. */
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws/ws.h"

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* Fetched once: OpenSSL 3 looks an implicit EVP_sha1() up in a locked
 * store on every use, which threads would contend on. */
static EVP_MD *sha1_md;
static pthread_once_t sha1_once = PTHREAD_ONCE_INIT;

static void fetch_sha1(void)
{
    sha1_md = EVP_MD_fetch(NULL, "SHA1", NULL);
    if (sha1_md == NULL) {
        fputs("wsgate: OpenSSL has no SHA-1, which WebSocket handshakes need\n", stderr);
        abort();
    }
}

static bool is_base64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

bool wsg_ws_key_valid(wsg_str key)
{
    if (key.len != WSG_WS_KEY_LEN || key.p[22] != '=' || key.p[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++) {
        if (!is_base64_char(key.p[i]))
            return false;
    }
    return true;
}

void wsg_ws_accept(wsg_str key, char out[WSG_WS_ACCEPT_LEN + 1])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned char input[WSG_WS_KEY_LEN + sizeof(ws_guid)];
    unsigned int dlen = 0;
    size_t klen = key.len < WSG_WS_KEY_LEN ? key.len : WSG_WS_KEY_LEN;
    /* SHA-1 is what RFC 6455 prescribes here; it proves the server read the
     * key, nothing more. Keys are checked to be 24 bytes before this. */
    memcpy(input, key.p, klen);
    memcpy(input + klen, ws_guid, sizeof(ws_guid) - 1);
    pthread_once(&sha1_once, fetch_sha1);
    EVP_Digest(input, klen + sizeof(ws_guid) - 1, digest, &dlen, sha1_md, NULL);
    EVP_EncodeBlock((unsigned char *)out, digest, (int)dlen);
}

void wsg_ws_make_key(wsg_rand *rng, char out[WSG_WS_KEY_LEN + 1])
{
    unsigned char raw[16];
    wsg_rand_bytes(rng, raw, sizeof(raw));
    EVP_EncodeBlock((unsigned char *)out, raw, sizeof(raw));
}

/* ---- permessage-deflate ------------------------------------------------ */

/* The parameters RFC 7692 defines; anything else makes an offer invalid. */
enum {
    P_SERVER_NCT = 1,
    P_CLIENT_NCT = 2,
    P_SERVER_BITS = 4,
    P_CLIENT_BITS = 8,
};

typedef struct writer {
    char *out;
    size_t cap;
    size_t len;
    bool overflow;
} writer;

static void put(writer *w, const char *s, size_t n)
{
    if (n == 0)
        return;
    if (w->len + n + 1 > w->cap) {
        w->overflow = true;
        return;
    }
    memcpy(w->out + w->len, s, n);
    w->len += n;
    w->out[w->len] = '\0';
}

static void put_str(writer *w, wsg_str s)
{
    put(w, s.p, s.len);
}

static bool window_bits_ok(wsg_str value, bool may_be_empty)
{
    unsigned long long bits;
    if (value.len >= 2 && value.p[0] == '"' && value.p[value.len - 1] == '"')
        value = wsg_str_make(value.p + 1, value.len - 2);
    if (value.len == 0)
        return may_be_empty;
    return wsg_str_to_u64(value, &bits) == 0 && bits >= 8 && bits <= 15;
}

/* Reads one permessage-deflate element ("name; p1; p2=v"). Returns the set of
 * parameters seen, or -1 when it is not permessage-deflate or is invalid.
 * `is_offer` allows client_max_window_bits without a value. */
static int read_element(wsg_str element, bool is_offer, wsg_str *params_out)
{
    wsg_str rest = element;
    wsg_str name = wsg_str_next_item(&rest, ';');
    int seen = 0;
    if (!wsg_str_eq_nocase(name, WSG_STR("permessage-deflate")))
        return -1;
    *params_out = rest;
    while (rest.len > 0) {
        wsg_str param = wsg_str_next_item(&rest, ';');
        wsg_str value = param;
        wsg_str key = wsg_str_next_item(&value, '=');
        bool has_value = param.len > key.len;
        int bit;
        if (param.len == 0)
            continue;
        if (wsg_str_eq_nocase(key, WSG_STR("server_no_context_takeover")))
            bit = P_SERVER_NCT;
        else if (wsg_str_eq_nocase(key, WSG_STR("client_no_context_takeover")))
            bit = P_CLIENT_NCT;
        else if (wsg_str_eq_nocase(key, WSG_STR("server_max_window_bits")))
            bit = P_SERVER_BITS;
        else if (wsg_str_eq_nocase(key, WSG_STR("client_max_window_bits")))
            bit = P_CLIENT_BITS;
        else
            return -1;
        if (seen & bit)
            return -1;
        if ((bit == P_SERVER_NCT || bit == P_CLIENT_NCT) && has_value)
            return -1;
        if (bit == P_SERVER_BITS && !window_bits_ok(value, false))
            return -1;
        if (bit == P_CLIENT_BITS && has_value && !window_bits_ok(value, false))
            return -1;
        if (bit == P_CLIENT_BITS && !has_value && !is_offer)
            return -1;
        seen |= bit;
    }
    return seen;
}

/* Writes "permessage-deflate; <params>" with the parameters as given,
 * normalised to "; " separators. */
static void put_element(writer *w, wsg_str params)
{
    put(w, "permessage-deflate", 18);
    while (params.len > 0) {
        wsg_str param = wsg_str_next_item(&params, ';');
        if (param.len == 0)
            continue;
        put(w, "; ", 2);
        put_str(w, param);
    }
}

int wsg_ws_offer_for_backend(wsg_str offer, char *out, size_t outlen)
{
    writer w = {out, outlen, 0, false};
    if (outlen)
        out[0] = '\0';
    while (offer.len > 0) {
        wsg_str element = wsg_str_next_item(&offer, ',');
        wsg_str params;
        int seen = read_element(element, true, &params);
        if (seen < 0)
            continue; /* another extension, or a malformed offer: dropped */
        if (w.len > 0)
            put(&w, ", ", 2);
        put_element(&w, params);
        if (!(seen & P_SERVER_NCT))
            put(&w, "; server_no_context_takeover", 28);
    }
    return w.overflow ? -1 : (int)w.len;
}

int wsg_ws_answer_for_client(wsg_str answer, char *out, size_t outlen)
{
    writer w = {out, outlen, 0, false};
    wsg_str rest = answer;
    wsg_str element = wsg_str_next_item(&rest, ',');
    wsg_str params;
    if (rest.len > 0)
        return -1; /* we offered one extension; two answers are not ours */
    int seen = read_element(element, false, &params);
    if (seen < 0)
        return -1;
    put_element(&w, params);
    if (!(seen & P_CLIENT_NCT))
        put(&w, "; client_no_context_takeover", 28);
    return w.overflow ? -1 : (int)w.len;
}
