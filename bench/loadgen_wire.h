/* What loadgen puts on the wire and checks coming back, without sockets
 * (STYLE.md, habit 1): the upgrade request, the server's answer to it, and
 * the messages whose echoes it times.
 *
 * A message's payload:
 *
 *   0        8                16                               size
 *   +--------+----------------+--------------------------------+
 *   | seq    | intended send  | pattern word for (index, seq), |
 *   | LE u64 | time, ns, u64  | repeated                       |
 *   +--------+----------------+--------------------------------+
 *
 * The pattern depends on the connection index and the sequence number, so
 * an echo that comes back on the wrong connection, out of order, cut short
 * or altered does not pass lg_wire_check.
 *
 * With permessage-deflate (--deflate) the same payload goes out as a valid
 * raw DEFLATE stream of stored (uncompressed) blocks, with RSV1 set
 * (RFC 7692 section 7.2.3.4: the last block has BFINAL set, so nothing is
 * cut off the end):
 *
 *   +------+---------+---------+------------------+------+---- ...
 *   | 0x00 | LEN LE  | ~LEN LE | LEN payload bytes| 0x01 | last block
 *   +------+---------+---------+------------------+------+---- ...
 *      BFINAL=0, BTYPE=00 (stored), at most 65,535 bytes per block
 *
 * That costs the sender no compression work, so what a deflate run shows
 * is the cost of negotiating and passing compressed frames, not zlib's.
 */
#ifndef LG_WIRE_H
#define LG_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ws/ws.h"

#define LG_MSG_MIN 16
#define LG_MSG_MAX (16u << 20)
/* Bytes that stored DEFLATE blocks add to `size` payload bytes. */
#define LG_STORED_MAX 65535u
#define LG_STORED_OVERHEAD(size) (5 * (((size_t)(size) + LG_STORED_MAX - 1) / LG_STORED_MAX))
/* Room lg_wire_message needs for a payload of `size` bytes, compressed or
 * not. */
#define LG_FRAME_SIZE(size) ((size_t)(size) + LG_STORED_OVERHEAD(size) + WSG_WS_MAX_HEADER)
/* The longest response head accepted. */
#define LG_HEAD_MAX 2048

/* Writes the upgrade request for connection `index` into out: `path` with
 * every "{i}" replaced by the index, `host` as the Host header, key as
 * Sec-WebSocket-Key. Returns its length, or -1 when it does not fit in
 * cap bytes. */
int lg_wire_request(char *out, size_t cap, const char *host, const char *path, uint64_t index,
                    const char *key);

/* The offer that --deflate adds to the request, CRLF included. */
#define LG_DEFLATE_OFFER                                                                           \
    "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; "                  \
    "server_no_context_takeover\r\n"

/* As lg_wire_request, with LG_DEFLATE_OFFER when `deflate`. */
int lg_wire_request_ext(char *out, size_t cap, const char *host, const char *path, uint64_t index,
                        const char *key, bool deflate);

/* Whether the whole response head p[0..n) accepts permessage-deflate
 * (a Sec-WebSocket-Extensions header naming it). */
bool lg_wire_accepts_deflate(const char *p, size_t n);

enum {
    LG_HS_BAD_STATUS = -1,  /* not "HTTP/1.1 101" */
    LG_HS_BAD_ACCEPT = -2,  /* Sec-WebSocket-Accept missing or wrong */
    LG_HS_BAD_UPGRADE = -3, /* no "Upgrade: websocket" */
    LG_HS_TOO_LONG = -4,    /* no end of head within LG_HEAD_MAX bytes */
    LG_HS_NO_DEFLATE = -5,  /* permessage-deflate offered, not accepted (the
                               caller's check: lg_wire_accepts_deflate) */
};

/* Reads the server's answer from p[0..n). Returns the head's length once it
 * is whole and accepts the upgrade with `accept`, 0 when more bytes are
 * needed, or an LG_HS_* error. *status gets the status code, or 0 while the
 * status line is incomplete. */
int lg_wire_response(const char *p, size_t n, const char *accept, int *status);

/* Writes one masked binary frame carrying message (index, seq) with
 * intended send time sent_ns and `size` payload bytes into out, which has
 * room for LG_FRAME_SIZE(size). Returns the frame's length. */
size_t lg_wire_message(uint8_t *out, uint32_t size, uint64_t index, uint64_t seq, uint64_t sent_ns,
                       const uint8_t key[4]);

/* The same message compressed: RSV1 set, the payload in stored DEFLATE
 * blocks (see the top). out has room for LG_FRAME_SIZE(size). */
size_t lg_wire_message_deflated(uint8_t *out, uint32_t size, uint64_t index, uint64_t seq,
                                uint64_t sent_ns, const uint8_t key[4]);

/* Undoes the stored blocks of a compressed payload p[0..n) in place.
 * Returns the plain length, or -1 when p is not a sequence of stored
 * blocks ending with BFINAL set or with a cut block (RFC 7692's removed
 * 00 00 ff ff tail). A server that really compressed gets -1: loadgen
 * counts it as a mismatch rather than carry an inflater. */
long lg_wire_unstore(uint8_t *p, size_t n);

typedef struct lg_echo {
    uint64_t seq;
    uint64_t sent_ns;
} lg_echo;

/* Checks an echoed (unmasked) payload p[0..n) against what connection
 * `index` sends with messages of `size` bytes. Returns 0 and fills e when it
 * is one of them, whole and unchanged; -1 otherwise. */
int lg_wire_check(const uint8_t *p, size_t n, uint32_t size, uint64_t index, lg_echo *e);

#endif
