/* Hostile peers: workers that write raw SCM_RIGHTS on their channel, bypassing the
 * library's framing. Whatever the master does with the bytes (deliver, drop, close the
 * channel), every descriptor that arrived must end up closed in the master: no leak.
 *
 * One pipe per mode, created before the fork; the mode's worker keeps only its write end,
 * sends it (and duplicates) raw, closes its own, exits shortly after. The master holds
 * only the read ends: each must reach end of file, i.e. the master holds no copy.
 * Wire format (observed with strace): u32 len (4 + payload), u32 type, payload; a frame
 * with descriptors is preceded by (8, 1023, u32 count) whose first byte carries them. */
#define _GNU_SOURCE
#include <stdint.h>
#include "fds.h"
#include <sys/socket.h>
#include <stdatomic.h>
#include "mln_event.h"

#define T_RAW 8901
#define T_PING 8902
#define NMODES 15

static int pr[NMODES], pw[NMODES];
static atomic_int *next_mode;
static int m_base, eof[NMODES], pings[NMODES], raw_seen, finished;
static long t0;
static struct stat pw0; /* identity of pw[0]: tells a child whether it inherited the pipes */

static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }

/* sendmsg of buf with n copies of fd attached (n may be 0). Blocking until all written. */
static void raw_send(int sock, const void *buf, size_t len, int fd, int n)
{
    struct msghdr m;
    struct iovec io = {(void *)buf, len};
    char ctl[CMSG_SPACE(sizeof(int) * 253)];
    int i, *p;
    ssize_t r;
    memset(&m, 0, sizeof(m));
    memset(ctl, 0, sizeof(ctl));
    m.msg_iov = &io;
    m.msg_iovlen = 1;
    if (n > 0) {
        struct cmsghdr *c;
        m.msg_control = ctl;
        m.msg_controllen = CMSG_SPACE(sizeof(int) * n);
        c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * n);
        p = (int *)CMSG_DATA(c);
        for (i = 0; i < n; ++i) p[i] = fd;
    }
    for (;;) {
        r = sendmsg(sock, &m, MSG_NOSIGNAL);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) { usleep(1000); continue; }
        break;
    }
    if (r != (ssize_t)len) {
        fprintf(stderr, "raw sendmsg: %zd (%s)\n", r, strerror(errno));
        _exit(9);
    }
}

static size_t hdr(unsigned char *p, uint32_t type, uint32_t plen)
{
    put32(p, 4 + plen);
    put32(p + 4, type);
    memset(p + 8, 'x', plen);
    return 8 + plen;
}

static size_t ann(unsigned char *p, uint32_t count)
{
    put32(p, 8);
    put32(p + 4, 1023);
    put32(p + 8, count);
    return 12;
}

static void attack(int mode, int sock, int w)
{
    unsigned char b[4096];
    size_t n = 0;
    fprintf(stderr, "worker %d: mode %d\n", (int)getpid(), mode);
    switch (mode) {
    case 0: /* a plain frame with 2 descriptors, no announcement */
        n = hdr(b, T_RAW, 4);
        raw_send(sock, b, n, w, 2);
        break;
    case 1: /* announcement says 3, 1 attached */
        n = ann(b, 3);
        n += hdr(b + n, T_RAW, 4);
        raw_send(sock, b, n, w, 1);
        break;
    case 2: /* announcement says 1, 3 attached */
        n = ann(b, 1);
        n += hdr(b + n, T_RAW, 4);
        raw_send(sock, b, n, w, 3);
        break;
    case 3: /* two announcements in a row, then one frame */
        n = ann(b, 2);
        raw_send(sock, b, n, w, 2);
        n = ann(b, 2);
        n += hdr(b + n, T_RAW, 4);
        raw_send(sock, b, n, w, 2);
        break;
    case 4: /* announcement with descriptors, then the worker ends */
        n = ann(b, 2);
        raw_send(sock, b, n, w, 2);
        break;
    case 5: /* descriptors attached to the middle of a frame's payload */
        n = hdr(b, T_RAW, 8);
        raw_send(sock, b, 10, -1, 0);
        raw_send(sock, b + 10, n - 10, w, 2);
        break;
    case 6: /* announcement of 0 with 2 attached */
        n = ann(b, 0);
        n += hdr(b + n, T_RAW, 4);
        raw_send(sock, b, n, w, 2);
        break;
    case 7: /* announcement of UINT32_MAX with 1 attached */
        n = ann(b, 0xffffffffu);
        n += hdr(b + n, T_RAW, 4);
        raw_send(sock, b, n, w, 1);
        break;
    case 8: /* announcement whose length is wrong (16: count + 4 bytes) */
        put32(b, 12);
        put32(b + 4, 1023);
        put32(b + 8, 1);
        put32(b + 12, 7);
        n = 16 + hdr(b + 16, T_RAW, 4);
        raw_send(sock, b, n, w, 1);
        break;
    case 9: /* announcement, then a library-reserved stop frame (1021) */
        n = ann(b, 1);
        n += hdr(b + n, 1021, 0);
        raw_send(sock, b, n, w, 1);
        break;
    case 10: /* announcement, then a frame above the maximum message size (1 MiB set) */
        n = ann(b, 2);
        put32(b + n, 4 + (64u << 20));
        put32(b + n + 4, T_RAW);
        n += 8;
        raw_send(sock, b, n, w, 2);
        break;
    case 11: /* 253 descriptors on a plain frame */
        n = hdr(b, T_RAW, 4);
        raw_send(sock, b, n, w, 253);
        break;
    case 12: /* announcement bytes plain, descriptors on the frame that follows */
        n = ann(b, 2);
        raw_send(sock, b, n, -1, 0);
        n = hdr(b, T_RAW, 4);
        raw_send(sock, b, n, w, 2);
        break;
    case 13: /* announcement split: first 3 bytes with descriptors, rest later */
        n = ann(b, 2);
        n += hdr(b + n, T_RAW, 4);
        raw_send(sock, b, 3, w, 2);
        usleep(50000);
        raw_send(sock, b + 3, n - 3, -1, 0);
        break;
    case 14: /* announcement, then a 1023 frame of length 1 (invalid) */
        n = ann(b, 1);
        put32(b + n, 1);
        put32(b + n + 4, 1023);
        n += 8;
        raw_send(sock, b, n, w, 1);
        break;
    }
}

static void quit_timer(mln_event_t *ev, void *data)
{
    (void)ev; (void)data;
    _exit(0);
}

/* Whether this process inherited the pipes: forked before master_process closed the
 * write ends (the descriptor number alone says nothing, it may have been reused since). */
static int holds_pipes(void)
{
    struct stat st;
    return fstat(pw[0], &st) == 0 && st.st_dev == pw0.st_dev && st.st_ino == pw0.st_ino;
}

static void worker_process(mln_event_t *ev)
{
    int mode, i, sock;
    /* A replacement forked after master_process holds no pipe: it idles and takes no
     * mode (taking one would leave a late-starting first worker holding every write
     * end with nothing to do: all modes would look leaked). */
    if (!holds_pipes()) return;
    mode = atomic_fetch_add(next_mode, 1);
    if (mode >= NMODES) { /* nothing left to do: drop the inherited ends, idle */
        for (i = 0; i < NMODES; ++i) {
            close(pr[i]);
            close(pw[i]);
        }
        return;
    }
    for (i = 0; i < NMODES; ++i) {
        close(pr[i]);
        if (i != mode) close(pw[i]);
    }
    sock = mln_tcp_conn_fd_get(mln_fork_master_connection_get());
    attack(mode, sock, pw[mode]);
    close(pw[mode]);
    if (mode == 4) _exit(0);
    mln_ipc_worker_send_prepare(ev, T_PING, &mode, sizeof(mode));
    CHECK(mln_event_timer_set(ev, 500, NULL, quit_timer) != NULL);
}

static void master_raw(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)udata_ptr;
    ++raw_seen;
    fprintf(stderr, "master: T_RAW len %u with %u descriptors (truncated %d)\n", len,
            mln_ipc_fds_count(), mln_ipc_fds_truncated());
}

static void master_ping(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int mode;
    (void)ev; (void)f_ptr; (void)udata_ptr;
    CHECK(len == sizeof(mode));
    memcpy(&mode, buf, sizeof(mode));
    CHECK(mode >= 0 && mode < NMODES);
    ++pings[mode];
}

static void tick(mln_event_t *ev, void *data)
{
    int i, all = 1;
    char c;
    (void)data;
    for (i = 0; i < NMODES; ++i) {
        if (eof[i]) continue;
        ssize_t r = read_nb(pr[i], &c, 1);
        if (r == 0) eof[i] = 1;
        else all = 0;
    }
    if (all || now_ms() - t0 > 8000) {
        int bad = 0;
        for (i = 0; i < NMODES; ++i) {
            fprintf(stderr, "mode %2d: %s, ping %d\n", i, eof[i] ? "closed" : "LEAKED (write end still open)", pings[i]);
            if (!eof[i]) bad = 1;
        }
        fprintf(stderr, "master: %d T_RAW handled; fds now %d, base %d\n", raw_seen, count_fds(), m_base);
        finished = bad ? 2 : 1;
        mln_event_break_set(ev);
        return;
    }
    CHECK(mln_event_timer_set(ev, 100, NULL, tick) != NULL);
}

static void master_process(mln_event_t *ev)
{
    int i;
    for (i = 0; i < NMODES; ++i) close(pw[i]);
    m_base = count_fds();
    t0 = now_ms();
    CHECK(mln_event_timer_set(ev, 100, NULL, tick) != NULL);
}

static int global_init(void)
{
    ctest_workers(NMODES);
    CHECK(mln_ipc_max_message_set(1 << 20) == 0);
    if (!mln_ipc_handler_register(T_RAW, master_raw, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_PING, master_ping, NULL, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    int i;
    next_mode = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(next_mode != MAP_FAILED);
    atomic_store(next_mode, 0);
    for (i = 0; i < NMODES; ++i) {
        int p[2];
        CHECK(pipe(p) == 0);
        pr[i] = p[0];
        pw[i] = p[1];
    }
    CHECK(fstat(pw[0], &pw0) == 0);
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(finished != 0);
    return finished == 1 ? 0 : 1;
}
