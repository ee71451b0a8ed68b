/* loadgen's TLS client (wss://): one OpenSSL context per worker and one
 * session per connection, over the connection's non-blocking socket.
 *
 * Every connection makes a full TLS 1.3 handshake (no session resumption)
 * and verifies nothing: the peer is a gateway under test on loopback, and
 * what is measured is what a first-time client costs it.
 *
 * The I/O calls keep the socket calls' contract so that loadgen_conn.c
 * treats both alike: >0 bytes moved; for reads 0 when the peer closed; -1
 * with errno set otherwise, EAGAIN when the handshake or a record needs the
 * socket again (lg_tls_want says which way), anything else ends the
 * connection.
 */
#ifndef LG_TLS_H
#define LG_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct ssl_ctx_st lg_tls_ctx;
typedef struct ssl_st lg_tls;

/* A client context for TLS 1.3 without verification. Returns NULL (and
 * prints why) when OpenSSL cannot make one. */
lg_tls_ctx *lg_tls_ctx_new(void);
void lg_tls_ctx_free(lg_tls_ctx *ctx);

/* A session over the connected socket fd, or NULL when memory runs out. */
lg_tls *lg_tls_new(lg_tls_ctx *ctx, int fd);
void lg_tls_free(lg_tls *t);

/* Drives the handshake. Returns 1 when it is done, 0 when it waits for the
 * socket (lg_tls_want), -1 on failure with a reason in why[0..cap). */
int lg_tls_handshake(lg_tls *t, char *why, size_t cap);

/* After a 0 or an EAGAIN: the epoll events the session waits for
 * (EPOLLIN or EPOLLOUT). */
uint32_t lg_tls_want(const lg_tls *t);

ssize_t lg_tls_write(lg_tls *t, const void *p, size_t n);
ssize_t lg_tls_read(lg_tls *t, void *p, size_t n);

/* Decrypted bytes that the session holds and that no read returned yet:
 * epoll cannot see them, so the reader must come back for them. */
int lg_tls_pending(const lg_tls *t);

#endif
