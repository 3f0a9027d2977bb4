/* Hostile use: refused descriptor sends leave nothing behind (c-api.md: "Refused
 * with nothing queued: EINVAL ..., EBADF ..., EMFILE ..., EAGAIN ..."), and hostile take
 * indexes in a handler with descriptors. Counts /proc/self/fd around every refusal, and
 * the worker counts what it received (a refused send must never arrive).
 *
 * - EINVAL: 254, fds NULL with 1, reserved types 1021..1023 with descriptors;
 * - EBADF: {ok, ok, not open}, {ok, -1};
 * - EMSGSIZE with descriptors;
 * - EMFILE: RLIMIT_NOFILE lowered to leave 5 free, 253 (and 6) descriptors;
 * - EAGAIN: fds limit 8, worker not reading, socket filled: queued up to the limit, then
 *   refused; the refused ones' duplicates not kept;
 * - the same descriptor 253 times in one frame: 253 distinct descriptors arrive;
 * - in the handler: take(UINT32_MAX), take(count), take(253), take(254) are -1 ENOENT. */
#define _GNU_SOURCE
#include "fds.h"
#include <sys/resource.h>
#include "mln_event.h"

#define T_SAME 8921  /* m -> w: one pipe write end 253 times */
#define T_BIG 8922   /* m -> w: large payload to fill the socket */
#define T_Q 8923     /* m -> w: 1 descriptor each */
#define T_GOOD 8924  /* m -> w: control frame with descriptors after refusals */
#define T_REPORT 8925 /* w -> m: the worker's counts */
#define T_SLEEP 8926 /* m -> w: sleep (stop reading) */
#define T_END 8927

static int m_base, finished, qsent;
static mln_fork_t *child;
static int w_got_frames, w_got_fds;

static void expect_refused(mln_event_t *ev, const int *fds, mln_u32_t n, mln_u32_t type,
                           void *buf, mln_size_t len, int err, const char *what)
{
    int before = count_fds();
    errno = 0;
    int r = mln_ipc_master_send_fds_prepare(ev, type, buf, len, fds, n, child);
    int after = count_fds();
    if (after < 0) {
        struct rlimit rl;
        CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
        rlim_t cur = rl.rlim_cur;
        rl.rlim_cur = cur + 300;
        CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
        after = count_fds();
        fprintf(stderr, "%s: at the limit (%d) after the call; %d open with a higher limit:\n", what, (int)cur, after);
        { char cmd[64]; snprintf(cmd, sizeof(cmd), "ls -l /proc/%d/fd >&2", (int)getpid()); if (system(cmd)) {} }
        rl.rlim_cur = cur;
        CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    }
    if (r != -1 || errno != err || after != before) {
        fprintf(stderr, "%s: returned %d errno %d (%s), expected -1 errno %d; fds %d -> %d\n",
                what, r, errno, strerror(errno), err, before, after);
        exit(5);
    }
}

static void worker_same(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int got[253], i, j, base;
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    ++w_got_frames;
    w_got_fds += (int)mln_ipc_fds_count();
    CHECK(mln_ipc_fds_count() == 253);
    CHECK(mln_ipc_fds_truncated() == 0);
    base = count_fds();
    for (i = 0; i < 253; ++i) {
        got[i] = mln_ipc_fd_take((mln_u32_t)i);
        CHECK(got[i] >= 0);
        for (j = 0; j < i; ++j) CHECK(got[j] != got[i]);
        CHECK(same_file(got[0], got[i]));
    }
    errno = 0; CHECK(mln_ipc_fd_take(0xffffffffu) == -1 && errno == ENOENT);
    errno = 0; CHECK(mln_ipc_fd_take(253) == -1 && errno == ENOENT);
    errno = 0; CHECK(mln_ipc_fd_take(254) == -1 && errno == ENOENT);
    errno = 0; CHECK(mln_ipc_fd_take(0x80000000u) == -1 && errno == ENOENT);
    for (i = 0; i < 253; ++i) close(got[i]);
    CHECK(count_fds() == base - 253);
}

static void worker_sleep(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    usleep(1500 * 1000);
}

static void worker_count(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    ++w_got_frames;
    w_got_fds += (int)mln_ipc_fds_count();
}

static void worker_good(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int r[2];
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    ++w_got_frames;
    w_got_fds += (int)mln_ipc_fds_count();
    r[0] = w_got_frames;
    r[1] = w_got_fds;
    CHECK(mln_ipc_worker_send_prepare(ev, T_REPORT, r, sizeof(r)) == 0);
}

static void master_report(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int r[2];
    mln_ipc_stats_t s;
    (void)f_ptr; (void)udata_ptr;
    CHECK(len == sizeof(r));
    memcpy(r, buf, sizeof(r));
    s = stats_of(child);
    fprintf(stderr, "worker: %d frames with descriptors, %d descriptors; master queued %d T_Q; stats fds_sent %llu\n",
            r[0], r[1], qsent, (unsigned long long)s.fds_sent);
    /* T_SAME (253) + qsent x T_Q (1) + T_GOOD (1); T_BIG has no handler */
    if (r[0] != 1 + qsent + 1 || r[1] != 253 + qsent + 1) {
        fprintf(stderr, "worker received something that was refused, or missed something\n");
        exit(6);
    }
    CHECK(s.fds_sent == (mln_u64_t)(253 + qsent + 1));
    CHECK(count_fds() == m_base);
    finished = 1;
    mln_event_break_set(ev);
}

static int go(mln_event_t *ev, mln_fork_t *f, void *data)
{
    int p[2], fds[253], i, mfd;
    struct rlimit rl, low;
    static char big[512 * 1024];
    (void)data;
    child = f;
    CHECK(pipe(p) == 0);
    mfd = memfd_with("fds_x_errors", "x");
    m_base = count_fds();
    for (i = 0; i < 253; ++i) fds[i] = p[1];

    /* EINVAL */
    int fd254[254];
    for (i = 0; i < 254; ++i) fd254[i] = p[1];
    expect_refused(ev, fd254, 254, T_Q, NULL, 0, EINVAL, "254 descriptors");
    expect_refused(ev, fd254, 0xffffffffu, T_Q, NULL, 0, EINVAL, "UINT32_MAX descriptors");
    expect_refused(ev, NULL, 1, T_Q, NULL, 0, EINVAL, "fds NULL, nfds 1");
    expect_refused(ev, fds, 3, 1021, NULL, 0, EINVAL, "type 1021");
    expect_refused(ev, fds, 3, 1022, NULL, 0, EINVAL, "type 1022");
    expect_refused(ev, fds, 3, 1023, "\x01\0\0\0", 4, EINVAL, "type 1023");
    /* EBADF */
    { int b[3] = {p[1], mfd, 9999}; expect_refused(ev, b, 3, T_Q, NULL, 0, EBADF, "{ok, ok, 9999}"); }
    { int b[2] = {p[1], -1}; expect_refused(ev, b, 2, T_Q, NULL, 0, EBADF, "{ok, -1}"); }
    { int b[2] = {mfd, 0x7fffffff}; expect_refused(ev, b, 2, T_Q, NULL, 0, EBADF, "{ok, INT_MAX}"); }
    /* EMSGSIZE */
    expect_refused(ev, fds, 5, T_Q, big, sizeof(big), EMSGSIZE, "EMSGSIZE with descriptors");
    /* EMFILE */
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    low = rl;
    {   /* exactly 5 descriptor numbers free below the limit */
        int fr = 0, k;
        for (k = 0; fr < 5; ++k)
            if (fcntl(k, F_GETFD) < 0) ++fr;
        low.rlim_cur = (rlim_t)k;
    }
    CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
    expect_refused(ev, fds, 253, T_Q, NULL, 0, EMFILE, "253 at the limit (5 free)");
    expect_refused(ev, fds, 6, T_Q, NULL, 0, EMFILE, "6 at the limit (5 free)");
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);

    /* The same descriptor 253 times. */
    CHECK(mln_ipc_master_send_fds_prepare(ev, T_SAME, NULL, 0, fds, 253, f) == 0);
    /* EAGAIN: the worker stops reading, the socket fills, then descriptors queue. */
    mln_ipc_fds_limit_set(8);
    CHECK(mln_ipc_master_send_prepare(ev, T_SLEEP, NULL, 0, f) == 0);
    for (i = 0; i < 4; ++i)
        CHECK(mln_ipc_master_send_prepare(ev, T_BIG, big, 256 * 1024, f) == 0);
    for (i = 0; i < 100; ++i) {
        int before = count_fds();
        errno = 0;
        if (mln_ipc_master_send_fds_prepare(ev, T_Q, NULL, 0, &p[1], 1, f) == 0) {
            ++qsent;
            continue;
        }
        if (errno != EAGAIN || count_fds() != before) {
            fprintf(stderr, "T_Q %d: errno %d (%s), fds %d -> %d\n", i, errno, strerror(errno), before, count_fds());
            exit(7);
        }
    }
    fprintf(stderr, "T_Q: %d queued before EAGAIN (limit 8)\n", qsent);
    CHECK(qsent == 8);
    close(p[0]);
    close(p[1]);
    close(mfd);
    m_base -= 3;
    mln_ipc_fds_limit_set(1024);
    return 0;
}

static void writable(mln_event_t *ev, mln_fork_t *f, void *data)
{
    static int done;
    int p[2];
    (void)data;
    if (done) return;
    CHECK(pipe(p) == 0);
    if (mln_ipc_master_send_fds_prepare(ev, T_GOOD, NULL, 0, &p[1], 1, f) == 0) done = 1;
    close(p[0]);
    close(p[1]);
}

static void master_process(mln_event_t *ev)
{
    CHECK(mln_fork_iterate(ev, go, NULL) == 0);
}

static int global_init(void)
{
    ctest_workers(1);
    CHECK(mln_ipc_max_message_set(300 * 1024) == 0);
    mln_ipc_child_event_handler_set(fds_exit_fails, NULL);
    mln_ipc_writable_handler_set(writable, NULL);
    if (!mln_ipc_handler_register(T_SAME, NULL, worker_same, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_SLEEP, NULL, worker_sleep, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_BIG, NULL, NULL, NULL, NULL) && 0) return -1;
    if (!mln_ipc_handler_register(T_Q, NULL, worker_count, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_GOOD, NULL, worker_good, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_REPORT, master_report, NULL, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, NULL};
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(finished);
    return 0;
}
