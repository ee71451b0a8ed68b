/* Non-blocking sockets: reading, writing with a bounded queue, closing. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include "core/list.h"
#include "net/net.h"

bool wsg_fd_budget_take(wsg_fd_budget *b, long n)
{
    long used = atomic_fetch_add_explicit(&b->used, n, memory_order_relaxed);
    if (used + n <= b->limit)
        return true;
    atomic_fetch_sub_explicit(&b->used, n, memory_order_relaxed);
    return false;
}

void wsg_fd_budget_give(wsg_fd_budget *b, long n)
{
    atomic_fetch_sub_explicit(&b->used, n, memory_order_relaxed);
}

void wsg_sock_update_events(wsg_sock *s)
{
    uint8_t want = (uint8_t)((s->reading ? UV_READABLE : 0) |
                             (s->out || s->connecting ? UV_WRITABLE : 0));
    if (wsg_sock_ssl(s)) {
        want |= s->tls_want;
        want |= s->tls_write_needs_read ? UV_READABLE : 0;
        want |= s->tls_read_needs_write ? UV_WRITABLE : 0;
    }
    if (want == s->want || wsg_sock_is_closing(s))
        return;
    s->want = want;
    if (want)
        uv_poll_start(&s->poll, want, s->poll.poll_cb);
    else
        uv_poll_stop(&s->poll);
}

int wsg_sock_open(uv_loop_t *loop, wsg_sock *s, int fd, wsg_sock_cb cb)
{
    int rc = uv_poll_init_socket(loop, &s->poll, fd);
    if (rc < 0)
        return rc;
    s->poll.poll_cb = (uv_poll_cb)cb;
    s->out = NULL;
    s->poll.data = NULL;
    s->fd = fd;
    s->want = 0;
    s->reading = false;
    s->connecting = false;
    s->tls_handshaking = false;
    s->tls_want = 0;
    s->tls_read_needs_write = false;
    s->tls_write_needs_read = false;
    return 0;
}

void wsg_sock_set_reading(wsg_sock *s, bool on)
{
    s->reading = on;
    wsg_sock_update_events(s);
}

long wsg_sock_read(wsg_sock *s, void *buf, size_t len)
{
    if (wsg_sock_ssl(s))
        return wsg_sock_tls_read(s, buf, len);
    for (;;) {
        ssize_t n = recv(s->fd, buf, len, 0);
        if (n > 0)
            return (long)n;
        if (n == 0)
            return UV_EOF;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        return -errno;
    }
}

/* Copies what the kernel did not take, skipping the `sent` bytes it did. */
static int queue_rest(wsg_sock *s, const uv_buf_t *bufs, unsigned n, size_t sent)
{
    for (unsigned i = 0; i < n; i++) {
        size_t len = bufs[i].len;
        if (sent >= len) {
            sent -= len;
            continue;
        }
        if (wsg_buf_append(&s->out, bufs[i].base + sent, len - sent) < 0)
            return UV_ENOMEM;
        sent = 0;
    }
    return 0;
}

int wsg_sock_write(wsg_sock *s, const uv_buf_t *bufs, unsigned n)
{
    size_t sent = 0;
    if (wsg_sock_ssl(s))
        return wsg_sock_tls_write(s, bufs, n);
    if (s->out == NULL) {
        struct msghdr msg = {.msg_iov = (struct iovec *)bufs, .msg_iovlen = n};
        ssize_t rc;
        /* uv_buf_t has the layout of struct iovec on Unix (libuv promises
         * it), so the buffers go to the kernel as they are. */
        do {
            rc = sendmsg(s->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        } while (rc < 0 && errno == EINTR);
        if (rc < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        sent = rc > 0 ? (size_t)rc : 0;
    }
    int rc = queue_rest(s, bufs, n, sent);
    if (rc < 0)
        return rc;
    wsg_sock_update_events(s);
    return 0;
}

int wsg_sock_flush(wsg_sock *s)
{
    if (wsg_sock_ssl(s))
        return wsg_sock_tls_flush(s);
    while (s->out) {
        size_t len = wsg_buf_len(s->out);
        ssize_t rc = send(s->fd, wsg_buf_begin(s->out), len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -errno;
        }
        wsg_buf_consume(&s->out, (size_t)rc);
        if ((size_t)rc < len)
            return 0;
    }
    wsg_sock_update_events(s);
    return 1;
}

void wsg_sock_close(wsg_sock *s, uv_close_cb close_cb)
{
    if (wsg_sock_ssl(s))
        wsg_sock_tls_free(s);
    wsg_buf_free(&s->out);
    uv_close((uv_handle_t *)&s->poll, close_cb);
    /* uv_close has already stopped the watcher and dropped pending events
     * for this descriptor, so it may be closed now. */
    close(s->fd);
    s->fd = -1;
}

int wsg_sock_detach(wsg_sock *s, uv_close_cb close_cb, struct ssl_st **ssl)
{
    int fd = s->fd;
    *ssl = wsg_sock_ssl(s);
    s->poll.data = NULL;
    wsg_buf_free(&s->out);
    uv_close((uv_handle_t *)&s->poll, close_cb);
    s->fd = -1;
    return fd;
}

int wsg_dial(const struct sockaddr *addr, socklen_t addrlen, int *fd_out)
{
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, addr, addrlen) < 0 && errno != EINPROGRESS) {
        int err = -errno;
        close(fd);
        return err;
    }
    *fd_out = fd;
    return 0;
}

void wsg_sock_await_connect(wsg_sock *s)
{
    s->connecting = true;
    wsg_sock_update_events(s);
}

int wsg_sock_error(const wsg_sock *s, int status)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (status != UV_EBADF || s->fd < 0 ||
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err == 0)
        return status;
    return -err;
}

int wsg_sock_connect_result(wsg_sock *s)
{
    int err = 0;
    socklen_t len = sizeof(err);
    s->connecting = false;
    wsg_sock_update_events(s);
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return -errno;
    return -err;
}
