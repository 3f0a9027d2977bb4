/* melon-ipc benchmark: the raw limit of this machine. Two processes on an AF_UNIX
 * socketpair, blocking I/O, no library: the sender encodes frames ([u32 len = 4 + payload]
 * [u32 type][payload], melon-ipc's wire format) into a 64 KiB buffer and writes it whenever
 * it is full; the receiver parses frames out of 64 KiB reads. Ping-pong: one frame back and
 * forth with blocking write/read, or (rawepp) through epoll_wait and non-blocking reads,
 * the floor of any event-loop design. Descriptors (rawfd): one frame per blocking sendmsg
 * with one descriptor attached (SCM_RIGHTS), one recvmsg per frame, the descriptor closed.
 * Fan-in (rawfanin): several raw senders, each on a socketpair of its own, and one
 * receiver reading them all through epoll (non-blocking, 64 KiB reads, frames parsed). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include "bench.h"

static void write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            die("write");
        }
        c += w;
        n -= (size_t)w;
    }
}

static void read_all(int fd, void *p, size_t n)
{
    char *c = p;
    while (n > 0) {
        ssize_t r = read(fd, c, n);
        if (r < 0) {
            if (errno == EINTR) continue;
            die("read");
        }
        if (r == 0) fail("unexpected end of stream");
        c += r;
        n -= (size_t)r;
    }
}

static void frame_header(unsigned char h[8], uint32_t type, size_t len)
{
    uint32_t l = (uint32_t)(4 + len);
    memcpy(h, &l, 4);
    memcpy(h + 4, &type, 4);
}

/* The raw sender's 64 KiB staging buffer: frames are copied in and written when full. */
static unsigned char raw_out[RAW_CHUNK];
static size_t raw_pos;

static void raw_emit(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        size_t k = RAW_CHUNK - raw_pos;
        if (k > n) k = n;
        memcpy(raw_out + raw_pos, p, k);
        raw_pos += k;
        p += k;
        n -= k;
        if (raw_pos == RAW_CHUNK) {
            write_all(fd, raw_out, RAW_CHUNK);
            raw_pos = 0;
        }
    }
}

static void raw_sender(int fd)
{
    unsigned char h[8];
    char go;
    long i;
    read_all(fd, &go, 1);
    frame_header(h, T_DATA, msg_size);
    for (i = 0; i < msg_count; ++i) {
        set_seq(msg, (uint32_t)i);
        raw_emit(fd, h, 8);
        raw_emit(fd, msg, msg_size);
    }
    if (raw_pos > 0) write_all(fd, raw_out, raw_pos);
}

/* Receiver: 64 KiB reads into a buffer with room for two whole frames, frames parsed in
 * place; the unparsed tail moves to the front only when less than one read's room is
 * left. */
static void raw_receiver(int fd)
{
    size_t frame = 8 + msg_size;
    size_t cap = 2 * frame + 2 * RAW_CHUNK;
    unsigned char *buf = malloc(cap);
    size_t start = 0, end = 0;
    long seq = 0;
    if (buf == NULL) die("malloc");
    while (seq < msg_count) {
        ssize_t r;
        if (cap - end < RAW_CHUNK) {
            memmove(buf, buf + start, end - start);
            end -= start;
            start = 0;
        }
        r = read(fd, buf + end, RAW_CHUNK);
        if (r < 0) {
            if (errno == EINTR) continue;
            die("read");
        }
        if (r == 0) fail("unexpected end of stream");
        end += (size_t)r;
        while (end - start >= 8) {
            uint32_t len, type;
            memcpy(&len, buf + start, 4);
            if (end - start < 4 + (size_t)len) break;
            memcpy(&type, buf + start + 4, 4);
            if (type != T_DATA) fail("frame type");
            check_msg(buf + start + 8, len - 4, seq, msg_count);
            ++seq;
            start += 4 + (size_t)len;
        }
        if (start == end) start = end = 0;
    }
    free(buf);
}

/* The event-loop floor (rawepp): the socket is non-blocking and registered on an epoll
 * instance; each side waits in epoll_wait before it reads, as any event loop must. */
static int ep = -1;

static void epoll_setup(int fd)
{
    struct epoll_event e;
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) die("fcntl");
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    memset(&e, 0, sizeof(e));
    e.events = EPOLLIN;
    e.data.fd = fd;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0) die("epoll_ctl");
}

/* Reads exactly n bytes, waiting in epoll_wait whenever the socket is empty (or always,
 * in blocking mode, where read_all blocks instead). */
static void read_frame(int fd, void *p, size_t n)
{
    char *c = p;
    struct epoll_event e;
    if (ep < 0) {
        read_all(fd, p, n);
        return;
    }
    while (n > 0) {
        ssize_t r;
        if (epoll_wait(ep, &e, 1, -1) < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        r = read(fd, c, n);
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            die("read");
        }
        if (r == 0) fail("raw ping-pong: end of stream");
        c += r;
        n -= (size_t)r;
    }
}

static void raw_pingpong_child(int fd)
{
    size_t frame = 8 + msg_size;
    unsigned char *b = malloc(frame);
    long i;
    if (b == NULL) die("malloc");
    for (i = 0; i < msg_count; ++i) {
        read_frame(fd, b, frame);
        write_all(fd, b, frame);
    }
    free(b);
}

static void raw_pingpong_parent(int fd)
{
    size_t frame = 8 + msg_size;
    unsigned char *b = malloc(frame), *in = malloc(frame);
    long i;
    if (b == NULL || in == NULL) die("malloc");
    frame_header(b, T_PING, msg_size);
    memcpy(b + 8, msg, msg_size);
    for (i = 0; i < msg_count; ++i) {
        set_seq(b + 8, (uint32_t)i);
        write_all(fd, b, frame);
        read_frame(fd, in, frame);
        check_msg(in + 8, frame - 8, i, msg_count);
    }
    free(b);
    free(in);
}

/* ---- descriptors (rawfd): one per frame, SCM_RIGHTS ---- */

/* The sender: each frame in one blocking sendmsg, with `send_fd` attached (the kernel
 * installs a new descriptor for it in the receiver every time). */
static void raw_fd_sender(int fd, int send_fd)
{
    unsigned char h[8];
    union { struct cmsghdr c; char b[CMSG_SPACE(sizeof(int))]; } ctl;
    struct iovec iov[2];
    struct msghdr m;
    struct cmsghdr *c;
    char go;
    long i;
    read_all(fd, &go, 1);
    frame_header(h, T_DATA, msg_size);
    for (i = 0; i < msg_count; ++i) {
        ssize_t w;
        set_seq(msg, (uint32_t)i);
        iov[0].iov_base = h;
        iov[0].iov_len = 8;
        iov[1].iov_base = msg;
        iov[1].iov_len = msg_size;
        memset(&m, 0, sizeof(m));
        m.msg_iov = iov;
        m.msg_iovlen = 2;
        m.msg_control = ctl.b;
        m.msg_controllen = sizeof(ctl.b);
        c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &send_fd, sizeof(int));
        while ((w = sendmsg(fd, &m, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
        }
        if (w < 0) die("sendmsg");
        /* The descriptor went with the first byte: the rest, if any, without it. */
        if ((size_t)w < 8 + msg_size) {
            unsigned char *frame = malloc(8 + msg_size);
            if (frame == NULL) die("malloc");
            memcpy(frame, h, 8);
            memcpy(frame + 8, msg, msg_size);
            write_all(fd, frame + w, 8 + msg_size - (size_t)w);
            free(frame);
        }
    }
}

/* The receiver: one blocking recvmsg per frame (close-on-exec, as melon-ipc receives);
 * exactly one descriptor must come with each frame; it is closed at once. */
static void raw_fd_receiver(int fd)
{
    size_t frame = 8 + msg_size;
    unsigned char *buf = malloc(frame);
    union { struct cmsghdr c; char b[CMSG_SPACE(4 * sizeof(int))]; } ctl;
    long seq;
    if (buf == NULL) die("malloc");
    for (seq = 0; seq < msg_count; ++seq) {
        struct iovec iov = {buf, frame};
        struct msghdr m;
        struct cmsghdr *c;
        int got = -1, n = 0;
        ssize_t r;
        uint32_t len, type;
        memset(&m, 0, sizeof(m));
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = ctl.b;
        m.msg_controllen = sizeof(ctl.b);
        while ((r = recvmsg(fd, &m, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
        }
        if (r < 0) die("recvmsg");
        if (r == 0) fail("unexpected end of stream");
        if (m.msg_flags & MSG_CTRUNC) fail("descriptors dropped (MSG_CTRUNC)");
        for (c = CMSG_FIRSTHDR(&m); c != NULL; c = CMSG_NXTHDR(&m, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                n += (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                memcpy(&got, CMSG_DATA(c), sizeof(int));
            }
        if (n != 1 || got < 0) fail("not exactly one descriptor with the frame");
        if ((size_t)r < frame) read_all(fd, buf + r, frame - (size_t)r);
        memcpy(&len, buf, 4);
        memcpy(&type, buf + 4, 4);
        if (type != T_DATA || len != 4 + msg_size) fail("frame header");
        check_msg(buf + 8, msg_size, seq, msg_count);
        if (close(got) != 0) die("close (a received descriptor)");
    }
    free(buf);
}

/* The end of a raw measurement started at `t0` (the receiver is done): waits for the raw
 * child `pid` and prints the figure line. */
static int raw_finish(pid_t pid, long long t0)
{
    long long t1 = now_ns();
    long rss_recv = peak_rss_kib(getpid());
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) die("wait4");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail("raw child failed");
    printf("ns=%lld msgs=%ld bytes=%lld rss_send=%ld rss_recv=%ld\n", t1 - t0, msg_count,
           (long long)msg_count * (long long)msg_size, ru.ru_maxrss, rss_recv);
    return 0;
}

/* rawfd: msg_count descriptors, one per frame, from a child to this process. */
int run_raw_fds(void)
{
    int sv[2];
    pid_t pid;
    long long t0;
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) die("socketpair");
    pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        int send_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (send_fd < 0) die("open /dev/null");
        close(sv[0]);
        raw_fd_sender(sv[1], send_fd);
        _exit(0);
    }
    close(sv[1]);
    t0 = now_ns();
    write_all(sv[0], "g", 1);
    raw_fd_receiver(sv[0]);
    return raw_finish(pid, t0);
}

/* ---- fan-in (rawfanin): msg_workers raw senders, one epoll receiver ---- */

/* One sender's stream as the receiver sees it: its own buffer (room for two frames and two
 * reads, as raw_receiver's), frames parsed in place. */
struct in_stream {
    int fd;
    unsigned char *buf;
    size_t start, end;
    long seq;
};

/* Reads once (64 KiB) from a ready stream and parses the frames that are complete; returns
 * 1 when the stream has brought all `per` frames. */
static int fanin_read(struct in_stream *s, size_t cap, long per)
{
    ssize_t r;
    if (cap - s->end < RAW_CHUNK) {
        memmove(s->buf, s->buf + s->start, s->end - s->start);
        s->end -= s->start;
        s->start = 0;
    }
    r = read(s->fd, s->buf + s->end, RAW_CHUNK);
    if (r < 0) {
        if (errno == EINTR || errno == EAGAIN) return 0;
        die("read");
    }
    if (r == 0) fail("unexpected end of stream");
    s->end += (size_t)r;
    while (s->end - s->start >= 8) {
        uint32_t len, type;
        memcpy(&len, s->buf + s->start, 4);
        if (s->end - s->start < 4 + (size_t)len) break;
        memcpy(&type, s->buf + s->start + 4, 4);
        if (type != T_DATA) fail("frame type");
        check_msg(s->buf + s->start + 8, len - 4, s->seq, per);
        ++s->seq;
        s->start += 4 + (size_t)len;
    }
    if (s->start == s->end) s->start = s->end = 0;
    return s->seq == per;
}

/* rawfanin: msg_workers children each send msg_count / msg_workers frames (raw_sender: the
 * 64 KiB batches of the raw stream) on a socketpair of its own, all at once on this
 * process's "go"; this process reads them all through one epoll instance (level-triggered,
 * non-blocking sockets, one 64 KiB read per ready socket per epoll_wait). */
int run_raw_fanin(void)
{
    int n = msg_workers, i, left, epfd, sv[2];
    long per = msg_count / msg_workers;
    size_t cap = 2 * (8 + msg_size) + 2 * RAW_CHUNK;
    struct in_stream *in = calloc((size_t)n, sizeof(*in));
    pid_t *pids = calloc((size_t)n, sizeof(*pids));
    struct epoll_event e, evs[MAX_WORKERS];
    long long t0, t1;
    long rss_send = 0, rss_recv;
    if (in == NULL || pids == NULL) die("calloc");
    if (per * n != msg_count) fail("fan-in count must divide by the worker count");
    for (i = 0; i < n; ++i) {
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) die("socketpair");
        pids[i] = fork();
        if (pids[i] < 0) die("fork");
        if (pids[i] == 0) {
            int j;
            for (j = 0; j < i; ++j) close(in[j].fd);
            close(sv[0]);
            msg_count = per;
            raw_sender(sv[1]);
            _exit(0);
        }
        close(sv[1]);
        in[i].fd = sv[0];
        in[i].buf = malloc(cap);
        if (in[i].buf == NULL) die("malloc");
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1");
    for (i = 0; i < n; ++i) {
        if (fcntl(in[i].fd, F_SETFL, fcntl(in[i].fd, F_GETFL) | O_NONBLOCK) < 0) die("fcntl");
        memset(&e, 0, sizeof(e));
        e.events = EPOLLIN;
        e.data.u32 = (uint32_t)i;
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, in[i].fd, &e) < 0) die("epoll_ctl");
    }
    t0 = now_ns();
    for (i = 0; i < n; ++i) write_all(in[i].fd, "g", 1);
    for (left = n; left > 0;) {
        int k, got = epoll_wait(epfd, evs, n, -1);
        if (got < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (k = 0; k < got; ++k) {
            struct in_stream *s = &in[evs[k].data.u32];
            if (s->seq < per && fanin_read(s, cap, per)) {
                if (epoll_ctl(epfd, EPOLL_CTL_DEL, s->fd, NULL) < 0) die("epoll_ctl");
                --left;
            }
        }
    }
    t1 = now_ns();
    rss_recv = peak_rss_kib(getpid());
    for (i = 0; i < n; ++i) {
        int status;
        struct rusage ru;
        if (wait4(pids[i], &status, 0, &ru) < 0) die("wait4");
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail("raw child failed");
        if (ru.ru_maxrss > rss_send) rss_send = ru.ru_maxrss;
        close(in[i].fd);
        free(in[i].buf);
    }
    close(epfd);
    printf("ns=%lld msgs=%ld bytes=%lld rss_send=%ld rss_recv=%ld\n", t1 - t0, msg_count,
           (long long)msg_count * (long long)msg_size, rss_send, rss_recv);
    free(in);
    free(pids);
    return 0;
}

/* pingpong: 0 stream, 1 ping-pong with blocking read/write, 2 ping-pong through epoll. */
int run_raw(int pingpong)
{
    int sv[2];
    pid_t pid;
    long long t0;
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) die("socketpair");
    pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        close(sv[0]);
        if (pingpong == 2) epoll_setup(sv[1]);
        if (pingpong) raw_pingpong_child(sv[1]);
        else raw_sender(sv[1]);
        _exit(0);
    }
    close(sv[1]);
    if (pingpong == 2) epoll_setup(sv[0]);
    t0 = now_ns();
    if (pingpong) {
        raw_pingpong_parent(sv[0]);
    } else {
        write_all(sv[0], "g", 1);
        raw_receiver(sv[0]);
    }
    return raw_finish(pid, t0);
}
