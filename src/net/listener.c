/* Listening sockets: one per worker and port, shared through SO_REUSEPORT
 * so that the kernel spreads new connections over the workers. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "net/net.h"

/* Accepts per wake-up: enough to drain a burst, few enough that one
 * listener does not starve the connections already open. */
#define ACCEPT_BATCH 64
/* Pause after the process ran out of descriptors, instead of spinning on
 * a listener that stays readable. */
#define RETRY_AFTER_EMFILE_MS 250

static void describe_bind_error(int e, const struct sockaddr_storage *addr, char *err,
                                size_t errlen)
{
    char where[80];
    wsg_addr_format((const struct sockaddr *)addr, where, sizeof(where));
    snprintf(err, errlen, "cannot listen on %s: %s%s", where, strerror(e),
             e == EADDRINUSE ? " (another program holds the port; choose another with "
                               "--ws-port / --websrv-port, or --reuse-port to share it with "
                               "another wsgate)"
                             : "");
}

/* A TCP socket for host:port with SO_REUSEADDR, not yet bound. Returns the
 * descriptor, or a negative errno with err set. */
static int tcp_socket(const char *host, uint16_t port, int flags, struct sockaddr_storage *addr,
                      socklen_t *len, char *err, size_t errlen)
{
    int one = 1;
    if (wsg_addr_parse(host, port, addr, len) < 0) {
        snprintf(err, errlen, "cannot listen on \"%s\": not an IPv4 or IPv6 address (--bind)",
                 host);
        return -EINVAL;
    }
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot create a socket: %s", strerror(e));
        return -e;
    }
    /* Sockets in TIME_WAIT must not keep the port. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    return fd;
}

int wsg_listen_probe(const char *host, uint16_t port, char *err, size_t errlen)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int fd = tcp_socket(host, port, 0, &addr, &len, err, errlen);
    if (fd < 0)
        return fd;
    /* SO_REUSEADDR only: a listener of any kind on the port makes this
     * bind fail. */
    int rc = bind(fd, (struct sockaddr *)&addr, len);
    int e = errno;
    close(fd);
    if (rc < 0) {
        describe_bind_error(e, &addr, err, errlen);
        return -e;
    }
    return 0;
}

int wsg_listen_socket(const char *host, uint16_t port, int backlog, char *err, size_t errlen)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int one = 1;
    int fd = tcp_socket(host, port, SOCK_NONBLOCK, &addr, &len, err, errlen);
    if (fd < 0)
        return fd;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&addr, len) < 0 || listen(fd, backlog) < 0) {
        int e = errno;
        describe_bind_error(e, &addr, err, errlen);
        close(fd);
        return -e;
    }
    return fd;
}

static void on_retry(uv_timer_t *t)
{
    wsg_listener *l = t->data;
    if (l->open)
        uv_poll_start(&l->poll, UV_READABLE, l->poll.poll_cb);
}

static void on_readable(uv_poll_t *p, int status, int events)
{
    wsg_listener *l = p->data;
    (void)events;
    if (status < 0)
        return;
    for (int i = 0; i < ACCEPT_BATCH && l->open; i++) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        int fd = accept4(l->fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE) {
                wsg_log_warn("out of file descriptors; pausing accepts",
                             "worker=%u retry_ms=%d", l->worker->index, RETRY_AFTER_EMFILE_MS);
                uv_poll_stop(&l->poll);
                uv_timer_start(&l->retry, on_retry, RETRY_AFTER_EMFILE_MS, 0);
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        l->on_accept(l, fd, &peer);
    }
}

int wsg_listener_start(wsg_listener *l, wsg_worker *w, int fd, wsg_accept_cb cb)
{
    l->fd = fd;
    l->worker = w;
    l->on_accept = cb;
    int rc = uv_poll_init_socket(&w->loop, &l->poll, fd);
    if (rc < 0)
        return rc;
    l->poll.data = l;
    uv_timer_init(&w->loop, &l->retry);
    l->retry.data = l;
    l->open = true;
    return uv_poll_start(&l->poll, UV_READABLE, on_readable);
}

void wsg_listener_close(wsg_listener *l)
{
    if (!l->open)
        return;
    l->open = false;
    uv_close((uv_handle_t *)&l->poll, NULL);
    uv_close((uv_handle_t *)&l->retry, NULL);
    close(l->fd);
    l->fd = -1;
}
