/* RFC 6455 WebSocket protocol, without sockets (STYLE.md, habit 1).
 *
 * - frame header codec (7/16/64-bit lengths, masking keys);
 * - masking, a machine word at a time;
 * - close payload checks and close codes;
 * - incremental UTF-8 validation;
 * - the pass-through stream: walks a byte stream frame by frame, keeps
 *   message boundaries, re-masks client frames in place and hands control
 *   frames to the caller whole;
 * - handshake helpers: key checks, Sec-WebSocket-Accept, the
 *   permessage-deflate rewrite that keeps sessions movable.
 *
 * Error vocabulary: parsers return >0 bytes used, 0 (WSG_WS_AGAIN) when
 * more input is needed, and <0 for a protocol error; a protocol error always
 * comes with the close code that ends the connection.
 */
#ifndef WSG_WS_H
#define WSG_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/rand.h"
#include "core/str.h"

#define WSG_WS_AGAIN 0

enum {
    WSG_WS_OP_CONT = 0x0,
    WSG_WS_OP_TEXT = 0x1,
    WSG_WS_OP_BINARY = 0x2,
    WSG_WS_OP_CLOSE = 0x8,
    WSG_WS_OP_PING = 0x9,
    WSG_WS_OP_PONG = 0xA,
};

enum {
    WSG_WS_CLOSE_NORMAL = 1000,
    WSG_WS_CLOSE_GOING_AWAY = 1001,
    WSG_WS_CLOSE_PROTOCOL = 1002,
    WSG_WS_CLOSE_UNSUPPORTED = 1003,
    WSG_WS_CLOSE_NO_STATUS = 1005,   /* never on the wire */
    WSG_WS_CLOSE_ABNORMAL = 1006,    /* never on the wire */
    WSG_WS_CLOSE_BAD_DATA = 1007,
    WSG_WS_CLOSE_POLICY = 1008,
    WSG_WS_CLOSE_TOO_BIG = 1009,
    WSG_WS_CLOSE_INTERNAL = 1011,
    WSG_WS_CLOSE_TRY_LATER = 1013,
};

#define WSG_WS_MAX_HEADER 14
#define WSG_WS_MAX_CONTROL_PAYLOAD 125
#define WSG_WS_MAX_CONTROL_FRAME (WSG_WS_MAX_HEADER + WSG_WS_MAX_CONTROL_PAYLOAD)

/* ---- frame header codec ------------------------------------------------ */

typedef struct wsg_ws_header {
    uint64_t len;      /* payload length */
    uint8_t mask[4];   /* masking key as on the wire; zero when unmasked */
    uint8_t fin;
    uint8_t rsv;       /* RSV1..3 as bits 2..0 (RSV1 = 4) */
    uint8_t opcode;
    uint8_t masked;
    uint8_t size;      /* header bytes: 2 to 14 */
} wsg_ws_header;

/* Parses a frame header. Returns its size (2..14), WSG_WS_AGAIN when n is
 * too short, or -1 when a 64-bit length has its top bit set (RFC 6455
 * section 5.2: close 1002). Other rules (opcodes, RSV bits, control
 * frames) are the stream's to check; the header is only decoded here. */
int wsg_ws_header_parse(const uint8_t *p, size_t n, wsg_ws_header *h);

/* Writes a header for a frame of `len` payload bytes into out (at least
 * WSG_WS_MAX_HEADER bytes); mask is NULL for an unmasked frame. Returns the
 * header size. rsv is as in wsg_ws_header. */
size_t wsg_ws_header_write(uint8_t *out, bool fin, uint8_t rsv, uint8_t opcode, uint64_t len,
                           const uint8_t *mask);

/* XORs n bytes with the 4-byte key, starting at key byte `phase` (the
 * payload offset mod 4). Returns the phase after the last byte. Masking and
 * unmasking are the same operation. */
unsigned wsg_ws_mask(uint8_t *p, size_t n, const uint8_t key[4], unsigned phase);

/* Builds a whole control frame (payload at most 125 bytes) into out, which
 * holds WSG_WS_MAX_CONTROL_FRAME bytes; masked with a key from rng when rng
 * is not NULL. Returns the frame size. */
size_t wsg_ws_control_frame(uint8_t *out, uint8_t opcode, const void *payload, size_t len,
                            wsg_rand *rng);

/* Builds a close frame with code and reason (cut to fit 125 bytes). */
size_t wsg_ws_close_frame(uint8_t *out, uint16_t code, const char *reason, wsg_rand *rng);

/* ---- close codes --------------------------------------------------------- */

/* True for codes an endpoint may send in a close frame (1000-1003,
 * 1007-1014, 3000-4999). */
bool wsg_ws_close_code_valid(unsigned code);

/* Checks an unmasked close payload. Returns 0 and sets *code (1005 when
 * the payload is empty), or the close code to answer a bad payload with:
 * 1002 for one byte or an invalid code, 1007 for a reason that is not
 * UTF-8. */
int wsg_ws_close_payload_check(const uint8_t *p, size_t n, uint16_t *code);

/* ---- UTF-8 --------------------------------------------------------------- */

/* Incremental UTF-8 validator state; starts at 0 (WSG_UTF8_OK). */
#define WSG_UTF8_OK 0u
#define WSG_UTF8_BAD 0xffffffffu

/* Feeds n bytes. Returns the new state: WSG_UTF8_OK at a character
 * boundary, WSG_UTF8_BAD once invalid (sticky), anything else inside a
 * character. Surrogates and overlong forms are invalid. */
uint32_t wsg_utf8_feed(uint32_t state, const uint8_t *p, size_t n);

static inline bool wsg_utf8_valid(const uint8_t *p, size_t n)
{
    return wsg_utf8_feed(WSG_UTF8_OK, p, n) == WSG_UTF8_OK;
}

/* ---- pass-through stream ---------------------------------------------- */

/* What one direction of a proxied connection allows. Shared, read-only. */
typedef struct wsg_ws_policy {
    uint64_t max_message;  /* bytes; 0 = no limit */
    bool from_client;      /* frames must be masked (else: must not be) */
    bool remask;           /* give each client frame a fresh key from rng */
    bool validate_utf8;    /* check text messages that are not compressed */
} wsg_ws_policy;

/* The state of one direction: where we are in the frame and the message.
 * A new stream is all zeroes but for `deflate`. */
typedef struct wsg_ws_stream {
    uint64_t frame_left;   /* payload bytes of the current data frame to come */
    uint64_t msg_len;      /* payload bytes of the current message so far */
    uint32_t utf8;         /* validator state of the current text message */
    uint8_t old_key[4];    /* the sender's key for the current frame */
    uint8_t new_key[4];    /* the key it is forwarded with */
    uint8_t phase;         /* payload offset mod 4 */
    uint8_t flags;         /* WSG_WS_S_* */
    uint8_t fault;         /* why the stream failed; sticky, 0 while fine */
} wsg_ws_stream;

enum {
    WSG_WS_S_IN_MESSAGE = 1,  /* a fragmented message has begun */
    WSG_WS_S_FRAME_FIN = 2,   /* the current data frame ends its message */
    WSG_WS_S_TEXT = 4,        /* the current message is text */
    WSG_WS_S_COMPRESSED = 8,  /* the current message has RSV1 (deflate) */
    WSG_WS_S_DEFLATE = 16,    /* permessage-deflate was agreed: RSV1 allowed */
    WSG_WS_S_REKEY = 32,      /* the current frame is re-masked */
    WSG_WS_S_MASKED = 64,     /* the current frame is masked */
    WSG_WS_S_STOP_AT_END = 128, /* end the DATA span where the current message
                                   ends (the flag then clears itself) */
};

typedef enum wsg_ws_span_kind {
    WSG_WS_SPAN_DATA = 1,     /* forward these bytes as they now are */
    WSG_WS_SPAN_CONTROL = 2,  /* one whole control frame; payload unmasked */
    WSG_WS_SPAN_PARTIAL = 3,  /* an unfinished header or control frame: keep
                                 these bytes and put them in front of the
                                 next input */
    WSG_WS_SPAN_ERROR = 4,    /* protocol error: close the sender */
} wsg_ws_span_kind;

typedef struct wsg_ws_span {
    wsg_ws_span_kind kind;
    size_t len;             /* input bytes this span covers (0 for ERROR) */
    uint32_t messages;      /* DATA: messages that ended inside the span */
    uint16_t close_code;    /* ERROR: the code to close the sender with */
    const char *why;        /* ERROR: a short reason, for logs and close */
    wsg_ws_header header;   /* CONTROL: the frame's header */
    uint8_t *payload;       /* CONTROL: its payload, unmasked, in the input */
} wsg_ws_span;

/* Takes the next span from p[0..n) (n > 0). DATA spans are rewritten in
 * place: a re-masked frame gets its new key in its header and its payload
 * XORed with old^new key, in one pass. A DATA span ends before any control
 * frame, partial header or error, so the caller acts on each in order. The
 * bytes of a frame that turns out bad are never part of a DATA span. After
 * an error every call returns the same ERROR. */
void wsg_ws_stream_next(wsg_ws_stream *s, const wsg_ws_policy *pol, wsg_rand *rng, uint8_t *p,
                        size_t n, wsg_ws_span *span);

/* Re-masks a whole control frame (as a CONTROL span left it: payload
 * unmasked) with a fresh key, to forward it toward a server. */
void wsg_ws_control_remask(uint8_t *frame, const wsg_ws_header *h, wsg_rand *rng);

/* True when the bytes forwarded so far end on a frame boundary: a frame of
 * our own (a ping, a close) may be put in between. */
static inline bool wsg_ws_stream_at_frame_boundary(const wsg_ws_stream *s)
{
    return s->frame_left == 0;
}

/* True between two messages: a session can move to another backend here. */
static inline bool wsg_ws_stream_at_message_boundary(const wsg_ws_stream *s)
{
    return s->frame_left == 0 && !(s->flags & WSG_WS_S_IN_MESSAGE);
}

/* ---- handshake ----------------------------------------------------------- */

#define WSG_WS_KEY_LEN 24     /* base64 of 16 bytes */
#define WSG_WS_ACCEPT_LEN 28  /* base64 of a SHA-1 */

/* True when key is the base64 encoding of exactly 16 bytes. */
bool wsg_ws_key_valid(wsg_str key);

/* Computes Sec-WebSocket-Accept for key into out (WSG_WS_ACCEPT_LEN bytes
 * plus a NUL). */
void wsg_ws_accept(wsg_str key, char out[WSG_WS_ACCEPT_LEN + 1]);

/* Makes a fresh Sec-WebSocket-Key into out (WSG_WS_KEY_LEN plus NUL). */
void wsg_ws_make_key(wsg_rand *rng, char out[WSG_WS_KEY_LEN + 1]);

/* Rewrites a client's Sec-WebSocket-Extensions offer for the backend: keeps
 * only permessage-deflate offers and adds server_no_context_takeover to each,
 * so that any backend can continue the session after a move (RFC 7692
 * section 7.1.1). Writes at most outlen-1 bytes and a NUL. Returns the
 * length, 0 when nothing is left to offer, or -1 when it does not fit. */
int wsg_ws_offer_for_backend(wsg_str offer, char *out, size_t outlen);

/* Checks a backend's permessage-deflate answer against what we offered
 * and rewrites it for the client with client_no_context_takeover added.
 * Returns the length written, or -1 when the answer is not acceptable
 * (another extension, or parameters we did not allow). */
int wsg_ws_answer_for_client(wsg_str answer, char *out, size_t outlen);

#endif
