/* TLS with OpenSSL 3: server certificates (several, chosen by SNI, swapped
 * on SIGHUP), client contexts for wss:// backends, and the TLS side of
 * wsg_sock (handshake, read, write, the WANT_READ/WANT_WRITE inversions).
 *
 * A TLS socket keeps the same contract as a plain one: the owner sees
 * UV_READABLE when application data may be read and UV_WRITABLE when queued
 * data can go out; the handshake and OpenSSL's own needs (a read that must
 * write first, a write that must read) are handled here.
 */
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "net/net.h"

/* Mozilla's "intermediate" list for TLS 1.2; TLS 1.3 suites are OpenSSL's
 * defaults, all of them modern AEADs. */
static const char cipher_list[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

/* Bytes gathered from small buffers into one TLS record. */
#define COALESCE 16384

struct wsg_tls_certs {
    atomic_int refs;     /* the holder's, plus one per socket made from it */
    SSL_CTX **ctx;       /* [0] is the default certificate */
    X509 **cert;
    size_t count;
};

/* Per-SSL data: the certificate set it came from, and the owner's socket
 * callback (plain sockets keep theirs in the poll handle; a TLS socket's
 * handle calls tls_poll_cb instead). */
static int certs_index = -1;
static int owner_index = -1;
static pthread_once_t index_once = PTHREAD_ONCE_INIT;

static void make_index(void)
{
    certs_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    owner_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static void owner_call(wsg_sock *s, int status, int events)
{
    /* OpenSSL keeps only void pointers: the callback goes through uintptr_t both ways. */
    // NOLINTNEXTLINE(performance-no-int-to-ptr)
    wsg_sock_cb cb = (wsg_sock_cb)(uintptr_t)SSL_get_ex_data(wsg_sock_ssl(s), owner_index);
    cb(s, status, events);
}

static void openssl_error(char *err, size_t errlen, const char *what)
{
    char detail[256];
    unsigned long e = ERR_get_error();
    ERR_error_string_n(e, detail, sizeof(detail));
    snprintf(err, errlen, "%s: %s", what, e ? detail : "unknown error");
    ERR_clear_error();
}

static void certs_unref(wsg_tls_certs *c)
{
    if (c == NULL || atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    for (size_t i = 0; i < c->count; i++) {
        SSL_CTX_free(c->ctx[i]);
        X509_free(c->cert[i]);
    }
    free(c->ctx);
    free(c->cert);
    free(c);
}

/* ALPN: WebSocket upgrades and the HTTP API speak HTTP/1.1. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char h11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    (void)ssl;
    (void)arg;
    unsigned char *selected;
    if (SSL_select_next_proto(&selected, outlen, h11, sizeof(h11), in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
}

/* SNI: the first certificate whose names match the requested host. */
static int select_certificate(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    (void)arg;
    /* Called from the servername extension, when the name is known. */
    wsg_tls_certs *c = SSL_get_ex_data(ssl, certs_index);
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (c == NULL || name == NULL)
        return SSL_TLSEXT_ERR_OK;
    for (size_t i = 1; i < c->count; i++) {
        if (X509_check_host(c->cert[i], name, 0, 0, NULL) == 1) {
            SSL_set_SSL_CTX(ssl, c->ctx[i]);
            break;
        }
    }
    return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *server_ctx(const char *cert_file, const char *key_file, X509 **cert, char *err,
                           size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    char what[600];
    if (ctx == NULL) {
        openssl_error(err, errlen, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_cipher_list(ctx, cipher_list);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
    SSL_CTX_set_tlsext_servername_callback(ctx, select_certificate);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        snprintf(what, sizeof(what), "cannot load the certificate %s (TLS_CERT)", cert_file);
        openssl_error(err, errlen, what);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(what, sizeof(what), "cannot load the key %s for %s (TLS_KEY)", key_file,
                 cert_file);
        openssl_error(err, errlen, what);
        goto fail;
    }
    *cert = SSL_CTX_get0_certificate(ctx);
    X509_up_ref(*cert);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* Reads "cert.pem:key.pem,cert2.pem:key2.pem" into the set after [0]. */
static int add_extras(wsg_tls_certs *c, const char *extras, char *err, size_t errlen)
{
    char *copy = strdup(extras ? extras : "");
    char *save = NULL;
    int rc = 0;
    if (copy == NULL)
        return -1;
    for (char *pair = strtok_r(copy, ",", &save); pair && rc == 0;
         pair = strtok_r(NULL, ",", &save)) {
        while (*pair == ' ')
            pair++;
        char *colon = strchr(pair, ':');
        if (colon == NULL) {
            snprintf(err, errlen, "TLS_SNI_CERTS: \"%s\" is not CERT.pem:KEY.pem", pair);
            rc = -1;
            break;
        }
        *colon = '\0';
        SSL_CTX *ctx = server_ctx(pair, colon + 1, &c->cert[c->count], err, errlen);
        if (ctx == NULL) {
            rc = -1;
            break;
        }
        c->ctx[c->count++] = ctx;
    }
    free(copy);
    return rc;
}

wsg_tls_certs *wsg_tls_certs_load(const char *cert, const char *key, const char *extras,
                                  char *err, size_t errlen)
{
    pthread_once(&index_once, make_index);
    size_t slots = 1;
    for (const char *p = extras ? extras : ""; *p; p++)
        slots += *p == ',';
    slots += extras && extras[0] ? 1 : 0;
    wsg_tls_certs *c = calloc(1, sizeof(*c));
    if (c == NULL || (c->ctx = calloc(slots, sizeof(*c->ctx))) == NULL ||
        (c->cert = calloc(slots, sizeof(*c->cert))) == NULL) {
        if (c)
            free(c->ctx);
        free(c);
        snprintf(err, errlen, "out of memory loading certificates");
        return NULL;
    }
    atomic_init(&c->refs, 1);
    c->ctx[0] = server_ctx(cert, key, &c->cert[0], err, errlen);
    if (c->ctx[0] == NULL) {
        certs_unref(c);
        return NULL;
    }
    c->count = 1;
    if (add_extras(c, extras, err, errlen) < 0) {
        certs_unref(c);
        return NULL;
    }
    return c;
}

void wsg_tls_server_init(wsg_tls_server *t, wsg_tls_certs *certs)
{
    pthread_mutex_init(&t->lock, NULL);
    t->certs = certs;
}

void wsg_tls_server_swap(wsg_tls_server *t, wsg_tls_certs *certs)
{
    pthread_mutex_lock(&t->lock);
    wsg_tls_certs *old = t->certs;
    t->certs = certs;
    pthread_mutex_unlock(&t->lock);
    /* Sockets made from the old set keep it alive until they close. */
    certs_unref(old);
}

void wsg_tls_server_deinit(wsg_tls_server *t)
{
    certs_unref(t->certs);
    t->certs = NULL;
    pthread_mutex_destroy(&t->lock);
}

SSL_CTX *wsg_tls_client_ctx(const char *ca_file, bool verify, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        openssl_error(err, errlen, "cannot create a TLS client context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_cipher_list(ctx, cipher_list);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_verify(ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    int ok = ca_file && ca_file[0] ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                                   : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        char what[300];
        snprintf(what, sizeof(what), "cannot load CA certificates %s (WSGATE_BACKEND_CA)",
                 ca_file && ca_file[0] ? ca_file : "(system store)");
        openssl_error(err, errlen, what);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* ---- sockets ------------------------------------------------------------ */

static void tls_poll_cb(uv_poll_t *p, int status, int events);

static int handshake_step(wsg_sock *s)
{
    ERR_clear_error();
    int r = SSL_do_handshake(wsg_sock_ssl(s));
    if (r == 1) {
        s->tls_handshaking = false;
        s->tls_want = 0;
        wsg_sock_update_events(s);
        return 1;
    }
    int e = SSL_get_error(wsg_sock_ssl(s), r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        s->tls_want = e == SSL_ERROR_WANT_READ ? UV_READABLE : UV_WRITABLE;
        wsg_sock_update_events(s);
        return 0;
    }
    if (wsg_log_enabled(WSG_LOG_DEBUG)) {
        char detail[256];
        ERR_error_string_n(ERR_peek_error(), detail, sizeof(detail));
        wsg_log_debug("TLS handshake failed", "fd=%d why=\"%s\"", s->fd, detail);
    }
    ERR_clear_error();
    return UV_EPROTO;
}

static int attach(wsg_sock *s, SSL *ssl)
{
    if (ssl == NULL || SSL_set_fd(ssl, s->fd) != 1) {
        SSL_free(ssl);
        ERR_clear_error();
        return UV_ENOMEM;
    }
    pthread_once(&index_once, make_index);
    /* as in owner_call: a function pointer kept as a void pointer. */
    // NOLINTNEXTLINE(performance-no-int-to-ptr)
    SSL_set_ex_data(ssl, owner_index, (void *)(uintptr_t)s->poll.poll_cb);
    s->poll.data = ssl;
    s->tls_handshaking = true;
    s->tls_want = 0;
    s->poll.poll_cb = tls_poll_cb;
    return 0;
}

int wsg_sock_tls_accept(wsg_sock *s, wsg_tls_server *t)
{
    pthread_mutex_lock(&t->lock);
    wsg_tls_certs *c = t->certs;
    atomic_fetch_add(&c->refs, 1);
    pthread_mutex_unlock(&t->lock);
    SSL *ssl = SSL_new(c->ctx[0]);
    int rc = attach(s, ssl);
    if (rc < 0) {
        certs_unref(c);
        return rc;
    }
    SSL_set_ex_data(ssl, certs_index, c);
    SSL_set_accept_state(ssl);
    s->tls_want = UV_READABLE;
    wsg_sock_update_events(s);
    return 0;
}

int wsg_sock_tls_connect(wsg_sock *s, SSL_CTX *ctx, const char *host)
{
    SSL *ssl = SSL_new(ctx);
    int rc = attach(s, ssl);
    if (rc < 0)
        return rc;
    unsigned char addr[16];
    bool literal = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
    if (!literal)
        SSL_set_tlsext_host_name(ssl, host);
    if (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) {
        X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
        if (literal)
            X509_VERIFY_PARAM_set1_ip_asc(param, host);
        else
            SSL_set1_host(ssl, host);
    }
    SSL_set_connect_state(ssl);
    return handshake_step(s) < 0 ? UV_EPROTO : 0;
}

long wsg_sock_tls_read(wsg_sock *s, void *buf, size_t len)
{
    if (s->tls_handshaking) {
        int r = handshake_step(s);
        if (r <= 0)
            return r;
    }
    ERR_clear_error();
    int n = SSL_read(wsg_sock_ssl(s), buf, len > INT32_MAX ? INT32_MAX : (int)len);
    if (n > 0)
        return n;
    int e = SSL_get_error(wsg_sock_ssl(s), n);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        return 0;
    case SSL_ERROR_WANT_WRITE:
        s->tls_read_needs_write = true;
        wsg_sock_update_events(s);
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        return UV_EOF;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        /* A peer that closes without close_notify: the end of the stream. */
        return UV_EOF;
    default:
        ERR_clear_error();
        return UV_EPROTO;
    }
}

/* Writes what SSL_write takes of p; returns bytes (possibly fewer), 0 when
 * it must wait, or a negative errno. */
static long tls_write_some(wsg_sock *s, const void *p, size_t len)
{
    ERR_clear_error();
    int n = SSL_write(wsg_sock_ssl(s), p, len > INT32_MAX ? INT32_MAX : (int)len);
    if (n > 0)
        return n;
    int e = SSL_get_error(wsg_sock_ssl(s), n);
    if (e == SSL_ERROR_WANT_WRITE)
        return 0;
    if (e == SSL_ERROR_WANT_READ) {
        s->tls_write_needs_read = true;
        return 0;
    }
    ERR_clear_error();
    return UV_EPIPE;
}

int wsg_sock_tls_write(wsg_sock *s, const uv_buf_t *bufs, unsigned n)
{
    unsigned i = 0;
    if (s->out == NULL && !s->tls_handshaking) {
        char gathered[COALESCE];
        while (i < n) {
            const char *p = bufs[i].base;
            size_t len = bufs[i].len;
            unsigned used = 1;
            /* Small pieces go out as one record, not one record each. */
            if (len < COALESCE && i + 1 < n) {
                len = 0;
                used = 0;
                while (i + used < n && len + bufs[i + used].len <= COALESCE) {
                    memcpy(gathered + len, bufs[i + used].base, bufs[i + used].len);
                    len += bufs[i + used].len;
                    used++;
                }
                p = gathered;
            }
            long w = len ? tls_write_some(s, p, len) : 0;
            if (w < 0)
                return (int)w;
            if ((size_t)w < len) {
                /* Keep the unwritten rest of this group, then the others. */
                if (wsg_buf_append(&s->out, p + w, len - (size_t)w) < 0)
                    return UV_ENOMEM;
                i += used;
                break;
            }
            i += used;
        }
    }
    for (; i < n; i++) {
        if (wsg_buf_append(&s->out, bufs[i].base, bufs[i].len) < 0)
            return UV_ENOMEM;
    }
    wsg_sock_update_events(s);
    return 0;
}

int wsg_sock_tls_flush(wsg_sock *s)
{
    if (s->tls_handshaking) {
        int r = handshake_step(s);
        if (r <= 0)
            return r;
    }
    while (s->out) {
        size_t len = wsg_buf_len(s->out);
        long w = tls_write_some(s, wsg_buf_begin(s->out), len);
        if (w < 0)
            return (int)w;
        if (w == 0) {
            wsg_sock_update_events(s);
            return 0;
        }
        wsg_buf_consume(&s->out, (size_t)w);
    }
    wsg_sock_update_events(s);
    return 1;
}

void wsg_sock_tls_free(wsg_sock *s)
{
    wsg_tls_certs *c = SSL_get_ex_data(wsg_sock_ssl(s), certs_index);
    if (!s->tls_handshaking) {
        /* One try at close_notify; a peer that is gone does not hold us. */
        ERR_clear_error();
        SSL_shutdown(wsg_sock_ssl(s));
    }
    SSL_free(wsg_sock_ssl(s));
    ERR_clear_error();
    s->poll.data = NULL;
    certs_unref(c);
}

void wsg_sock_tls_adopt(wsg_sock *s, SSL *ssl)
{
    /* as in attach: a function pointer kept as a void pointer. */
    // NOLINTNEXTLINE(performance-no-int-to-ptr)
    SSL_set_ex_data(ssl, owner_index, (void *)(uintptr_t)s->poll.poll_cb);
    s->poll.data = ssl;
    s->tls_handshaking = false;
    s->tls_want = 0;
    s->poll.poll_cb = tls_poll_cb;
}

void wsg_sock_tls_drop(SSL *ssl)
{
    if (ssl == NULL)
        return;
    wsg_tls_certs *c = SSL_get_ex_data(ssl, certs_index);
    SSL_free(ssl);
    ERR_clear_error();
    if (c)
        certs_unref(c);
}

bool wsg_sock_tls_pending(const wsg_sock *s)
{
    return wsg_sock_ssl(s) && !s->tls_handshaking && SSL_has_pending(wsg_sock_ssl(s));
}

/* Turns socket readiness into stream readiness for the owner. */
static void tls_poll_cb(uv_poll_t *p, int status, int events)
{
    wsg_sock *s = (wsg_sock *)p;
    if (status < 0) {
        owner_call(s, status, events);
        return;
    }
    if (s->tls_handshaking) {
        int r = handshake_step(s);
        if (r < 0) {
            owner_call(s, r, 0);
            return;
        }
        if (r == 0)
            return;
        events = UV_READABLE | UV_WRITABLE;
    }
    int logical = 0;
    if ((events & UV_READABLE) && s->tls_write_needs_read) {
        s->tls_write_needs_read = false;
        logical |= UV_WRITABLE;
    }
    if ((events & UV_WRITABLE) && s->tls_read_needs_write) {
        s->tls_read_needs_write = false;
        logical |= UV_READABLE;
    }
    if ((events & UV_READABLE) && s->reading)
        logical |= UV_READABLE;
    if ((events & UV_WRITABLE) && (s->out || s->connecting))
        logical |= UV_WRITABLE;
    wsg_sock_update_events(s);
    if (logical)
        owner_call(s, 0, logical);
    /* Records already decrypted wait inside OpenSSL, where epoll cannot see
     * them: hand them over while the owner keeps reading. */
    for (int i = 0; i < 64 && !wsg_sock_is_closing(s) && s->reading && wsg_sock_tls_pending(s);
         i++)
        owner_call(s, 0, UV_READABLE);
}
