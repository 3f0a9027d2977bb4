/* Hostile use: the master's read boundary falls inside (or next to) the
 * announcement that carries a frame's descriptors. c-api.md: "The descriptors arrive with
 * their frame and no other ... whatever the sizes and however the kernel splits reads".
 *
 * The worker writes the byte stream the library itself writes (raw, to control timing):
 * while the master sleeps in a handler, a plain frame of T bytes, then in one sendmsg the
 * announcement (8, 1023, 2) + a frame carrying 2 descriptors (a memfd named after the
 * round). The master's next read then ends T + k bytes into the stream for whatever read
 * size it uses; T sweeps around 64 KiB, 128 KiB, 256 KiB, 512 KiB. Each round the master must
 * see the T_FDS frame with both descriptors, the round's memfd, not truncated. *
 * CTEST_STANDALONE_ONLY: in the melon build the worker is sometimes still there when the test
 * ends (Melon's framework does not stop its workers), which the harness counts as a failure. */
#define _GNU_SOURCE
#include <stdint.h>
#include "fds.h"
#include <sys/socket.h>
#include "mln_event.h"

#define T_BLOCK 8911
#define T_FILL 8912
#define T_FDS 8913

static int s_sleep[2], s_ack[2], finished, rounds_ok;
static mln_u32_t fill_len_seen;

static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }

static void raw_all(int sock, const void *buf, size_t len, int fd, int n)
{
    struct msghdr m;
    struct iovec io;
    char ctl[CMSG_SPACE(sizeof(int) * 2)];
    size_t off = 0;
    while (off < len) {
        ssize_t r;
        memset(&m, 0, sizeof(m));
        io.iov_base = (char *)buf + off;
        io.iov_len = len - off;
        m.msg_iov = &io;
        m.msg_iovlen = 1;
        if (n > 0 && off == 0) {
            struct cmsghdr *c;
            memset(ctl, 0, sizeof(ctl));
            m.msg_control = ctl;
            m.msg_controllen = CMSG_SPACE(sizeof(int) * n);
            c = CMSG_FIRSTHDR(&m);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int) * n);
            for (int i = 0; i < n; ++i) ((int *)CMSG_DATA(c))[i] = fd;
        }
        r = sendmsg(sock, &m, MSG_NOSIGNAL);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) { usleep(500); continue; }
        if (r <= 0) { fprintf(stderr, "worker: sendmsg %s\n", strerror(errno)); _exit(9); }
        off += (size_t)r;
    }
}

static int wait_byte(int fd, int ms)
{
    long t = now_ms();
    char c;
    while (now_ms() - t < ms) {
        if (read_nb(fd, &c, 1) == 1) return 1;
        usleep(1000);
    }
    return 0;
}

static void worker_process(mln_event_t *ev)
{
    static unsigned char buf[(1 << 20) + 64];
    static const long bases[] = {65536, 131072, 262144, 524288};
    int sock = mln_tcp_conn_fd_get(mln_fork_master_connection_get()), sz = 4 << 20;
    int round = 0;
    (void)ev;
    CHECK(setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)) == 0);
    for (size_t b = 0; b < sizeof(bases) / sizeof(bases[0]); ++b) {
        for (long d = -14; d <= 4; ++d, ++round) {
            long total = bases[b] + d; /* bytes of the fill frame */
            unsigned char a[24];
            char name[32];
            int mfd;
            put32(buf, 8);
            put32(buf + 4, T_BLOCK);
            put32(buf + 8, (uint32_t)round);
            raw_all(sock, buf, 12, -1, 0);
            if (!wait_byte(s_sleep[0], 5000)) { fprintf(stderr, "round %d: no sleep\n", round); _exit(10); }
            put32(buf, (uint32_t)(total - 4));
            put32(buf + 4, T_FILL);
            memset(buf + 8, 'f', (size_t)total - 8);
            raw_all(sock, buf, (size_t)total, -1, 0);
            snprintf(name, sizeof(name), "r%d", round);
            mfd = memfd_create(name, 0);
            CHECK(mfd >= 0);
            put32(a, 8); put32(a + 4, 1023); put32(a + 8, 2);
            put32(a + 12, 8); put32(a + 16, T_FDS); put32(a + 20, (uint32_t)round);
            raw_all(sock, a, 24, mfd, 2);
            close(mfd);
            if (!wait_byte(s_ack[0], 5000)) {
                fprintf(stderr, "round %d (fill %ld = %ld%+ld): no ack from the master\n", round, total, bases[b], d);
                _exit(11);
            }
        }
    }
    _exit(0);
}

static void master_block(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    CHECK(write(s_sleep[1], "s", 1) == 1);
    usleep(60000); /* the worker writes the fill and the descriptors meanwhile */
}

static void master_fill(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)udata_ptr;
    fill_len_seen = len;
    CHECK(mln_ipc_fds_count() == 0);
}

static void master_fds(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int round, a, b;
    char name[32];
    (void)ev; (void)f_ptr; (void)udata_ptr;
    CHECK(len == 4);
    memcpy(&round, buf, 4);
    if (mln_ipc_fds_count() != 2 || mln_ipc_fds_truncated()) {
        fprintf(stderr, "round %d (fill payload %u): %u descriptors, truncated %d\n", round,
                fill_len_seen, mln_ipc_fds_count(), mln_ipc_fds_truncated());
        exit(4);
    }
    a = mln_ipc_fd_take(0);
    b = mln_ipc_fd_take(1);
    snprintf(name, sizeof(name), "r%d", round);
    CHECK(a >= 0 && b >= 0 && memfd_named(a, name) && memfd_named(b, name));
    close(a);
    close(b);
    ++rounds_ok;
    CHECK(write(s_ack[1], "a", 1) == 1);
}

static void exited(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    (void)f; (void)data;
    if (e->type != M_IPC_CHILD_EXITED) return;
    fprintf(stderr, "worker ended: exited %d status %d after %d rounds\n", e->exited, e->status, rounds_ok);
    finished = (e->exited == 1 && e->status == 0) ? 1 : 2;
    mln_event_break_set(ev);
}

static int global_init(void)
{
    ctest_workers(1);
    CHECK(mln_ipc_max_message_set(2 << 20) == 0);
    mln_ipc_child_event_handler_set(exited, NULL);
    if (!mln_ipc_handler_register(T_BLOCK, master_block, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_FILL, master_fill, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_FDS, master_fds, NULL, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, NULL, worker_process};
    CHECK(pipe(s_sleep) == 0 && pipe(s_ack) == 0);
    if (ctest_framework_init(&a) < 0) return 1;
    return finished == 1 ? 0 : 1;
}
