/* TLS for loadgen's connections (loadgen_tls.h), on OpenSSL 3. */
#include "loadgen_tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <sys/epoll.h>

lg_tls_ctx *lg_tls_ctx_new(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        goto fail;
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION))
        goto fail_ctx;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    /* A write that the socket refused is retried from the connection's
     * out buffer, which is not where the bytes first were. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* A peer that closes without close_notify reads as an ordinary close. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    return ctx;
fail_ctx:
    SSL_CTX_free(ctx);
fail:
    fprintf(stderr, "loadgen: no TLS context: %s\n", ERR_reason_error_string(ERR_get_error()));
    return NULL;
}

void lg_tls_ctx_free(lg_tls_ctx *ctx)
{
    SSL_CTX_free(ctx);
}

lg_tls *lg_tls_new(lg_tls_ctx *ctx, int fd)
{
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL)
        return NULL;
    if (!SSL_set_fd(ssl, fd)) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_connect_state(ssl);
    return ssl;
}

void lg_tls_free(lg_tls *t)
{
    SSL_free(t);
}

uint32_t lg_tls_want(const lg_tls *t)
{
    return SSL_want_write(t) ? EPOLLOUT : EPOLLIN;
}

/* Maps a failed call's result to errno: EAGAIN when it only waits for the
 * socket. Returns 0 for a clean close (reads), -1 otherwise. */
static ssize_t failed(lg_tls *t, int r)
{
    int saved = errno;
    switch (SSL_get_error(t, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        errno = saved ? saved : ECONNRESET;
        return -1;
    default:
        ERR_clear_error();
        errno = EPROTO;
        return -1;
    }
}

int lg_tls_handshake(lg_tls *t, char *why, size_t cap)
{
    ERR_clear_error();
    int r = SSL_connect(t);
    if (r == 1)
        return 1;
    int err = SSL_get_error(t, r);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
        return 0;
    unsigned long code = ERR_get_error();
    if (code)
        snprintf(why, cap, "TLS handshake: %s", ERR_reason_error_string(code));
    else
        snprintf(why, cap, "TLS handshake: %s", r == 0 ? "closed by the server" : "socket error");
    ERR_clear_error();
    return -1;
}

ssize_t lg_tls_write(lg_tls *t, const void *p, size_t n)
{
    size_t done = 0;
    ERR_clear_error();
    if (n == 0)
        return 0;
    int r = SSL_write_ex(t, p, n, &done);
    if (r == 1)
        return (ssize_t)done;
    ssize_t rc = failed(t, r);
    if (rc == 0) {
        errno = EPIPE; /* a write after the peer's close_notify */
        return -1;
    }
    return rc;
}

ssize_t lg_tls_read(lg_tls *t, void *p, size_t n)
{
    size_t done = 0;
    ERR_clear_error();
    int r = SSL_read_ex(t, p, n, &done);
    if (r == 1)
        return (ssize_t)done;
    return failed(t, r);
}

int lg_tls_pending(const lg_tls *t)
{
    return SSL_pending(t);
}
