/* Descriptors through the channel (issue 23): the limits of one send, one worker.
 * - 253 descriptors in one frame (memfds, each holding its index) arrive, all of them, each
 *   at its index (the same file as the sender's fds[i]), and are usable: the worker reads
 *   each one's index and writes a reply into it; then it sends the 253 back in one frame and
 *   the master finds its own 253 files, in order, with the worker's replies;
 * - 254 are refused with EINVAL; fds NULL with nfds > 0 (1, 253, UINT32_MAX) EINVAL; an
 *   array with a descriptor that is not open (first, middle, last) EBADF; each time nothing
 *   is queued: the stats are unchanged and so is the number of open descriptors (the
 *   library's copies of the valid ones in the refused array are closed); the same from the
 *   worker;
 * - nfds 0 is a plain send (fds NULL or not): the handler sees 0, -1 + ENOENT, 0;
 * - the stats count 253 descriptors each way and no more. */
#define _GNU_SOURCE
#include <stdint.h>
#include "fds.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_MANY 8201  /* master -> worker: 253 memfds */
#define T_BACK 8202  /* worker -> master: the same 253 */
#define T_PLAIN 8203 /* both ways, nfds 0 */
#define T_DONE 8204  /* worker -> master: its stats */
#define MAX 253

static int mfd[MAX + 1], finished, plains;

/* What a memfd of index i holds: its index at 0, the worker's reply at 8. */
static void put(int fd, uint32_t v, off_t at)
{
    CHECK(pwrite(fd, &v, sizeof(v), at) == (ssize_t)sizeof(v));
}

static uint32_t get(int fd, off_t at)
{
    uint32_t v;
    CHECK(pread(fd, &v, sizeof(v), at) == (ssize_t)sizeof(v));
    return v;
}

static int same_stats(const mln_ipc_stats_t *a, const mln_ipc_stats_t *b)
{
    return memcmp(a, b, sizeof(*a)) == 0;
}

/* Every refused send of this side (f: the child, or NULL in the worker), with `valid` an
 * array of at least 254 open descriptors: refused with the right errno, nothing queued, no
 * descriptor left behind. */
static void refusals(mln_event_t *ev, mln_fork_t *f, int *valid)
{
    static const struct { int nfds, null, bad_at, err; } cases[] = {
        {MAX + 1, 0, -1, EINVAL}, {1000, 0, -1, EINVAL},
        {1, 1, -1, EINVAL}, {MAX, 1, -1, EINVAL}, {-1 /* UINT32_MAX */, 1, -1, EINVAL},
        {1, 0, 0, EBADF}, {3, 0, 0, EBADF}, {3, 0, 1, EBADF}, {MAX, 0, MAX - 1, EBADF},
    };
    mln_ipc_stats_t s0, s1;
    int closed, fds[MAX + 1], n0, r;
    size_t k;
    /* A number that is not open, above the lowest free one (the lowest free one is
     * fds_badf_reuse's case). */
    closed = fcntl(0, F_DUPFD, 900);
    CHECK(closed >= 900);
    close(closed);
    s0 = stats_of(f);
    n0 = count_fds();
    for (k = 0; k < sizeof(cases) / sizeof(cases[0]); ++k) {
        mln_u32_t nfds = (mln_u32_t)cases[k].nfds;
        memcpy(fds, valid, sizeof(fds));
        if (cases[k].bad_at >= 0) fds[cases[k].bad_at] = closed;
        errno = 0;
        if (f != NULL)
            r = mln_ipc_master_send_fds_prepare(ev, T_MANY, "x", 1, cases[k].null ? NULL : fds,
                                                nfds, f);
        else
            r = mln_ipc_worker_send_fds_prepare(ev, T_BACK, "x", 1, cases[k].null ? NULL : fds,
                                                nfds);
        if (r != -1 || errno != cases[k].err)
            fprintf(stderr, "case %zu: %d, errno %d (%s), expected %d\n", k, r, errno,
                    strerror(errno), cases[k].err);
        CHECK(r == -1 && errno == cases[k].err);
        s1 = stats_of(f);
        CHECK(same_stats(&s0, &s1));
        CHECK(count_fds() == n0);
    }
}

static void plain_check(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)udata_ptr;
    CHECK(len == 5 && memcmp(buf, "plain", 5) == 0);
    CHECK(mln_ipc_fds_count() == 0);
    errno = 0;
    CHECK(mln_ipc_fd_take(0) == -1 && errno == ENOENT);
    CHECK(mln_ipc_fds_truncated() == 0);
    ++plains;
}

static void worker_many(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int fds[MAX + 1], i, n0;
    mln_ipc_stats_t s;
    (void)f_ptr; (void)udata_ptr;
    CHECK(len == 4 && memcmp(buf, "many", 4) == 0);
    CHECK(plains == 2); /* in order with the frames without descriptors */
    CHECK(mln_ipc_fds_count() == MAX && mln_ipc_fds_truncated() == 0);
    for (i = 0; i < MAX; ++i) {
        fds[i] = mln_ipc_fd_take((mln_u32_t)i);
        CHECK(fds[i] >= 0 && fd_cloexec(fds[i]));
        CHECK(get(fds[i], 0) == (uint32_t)i); /* the sender's fds[i] */
        put(fds[i], 1000u + (uint32_t)i, 8);
    }
    errno = 0;
    CHECK(mln_ipc_fd_take(MAX) == -1 && errno == ENOENT);
    /* The worker's refusals, with 254 open descriptors at hand. */
    fds[MAX] = fds[0];
    refusals(ev, NULL, fds);
    /* A plain frame through the descriptor call, then the 253 back. */
    CHECK(mln_ipc_worker_send_fds_prepare(ev, T_PLAIN, "plain", 5, NULL, 0) == 0);
    n0 = count_fds();
    CHECK(mln_ipc_worker_send_fds_prepare(ev, T_BACK, "back", 4, fds, MAX) == 0);
    CHECK(count_fds() == n0 + MAX); /* the library's copies */
    for (i = 0; i < MAX; ++i) close(fds[i]);
    s = stats_of(NULL);
    CHECK(s.fds_received == MAX);
    CHECK(mln_ipc_worker_send_prepare(ev, T_DONE, NULL, 0) == 0);
}

static void master_back(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int i;
    (void)ev; (void)f_ptr; (void)udata_ptr;
    CHECK(len == 4 && memcmp(buf, "back", 4) == 0);
    CHECK(plains == 1);
    CHECK(mln_ipc_fds_count() == MAX && mln_ipc_fds_truncated() == 0);
    for (i = 0; i < MAX; ++i) {
        int fd = mln_ipc_fd_take((mln_u32_t)i);
        CHECK(fd >= 0 && fd_cloexec(fd));
        CHECK(same_file(fd, mfd[i]));
        CHECK(get(fd, 0) == (uint32_t)i && get(fd, 8) == 1000u + (uint32_t)i);
        close(fd);
    }
}

static void master_done(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_ipc_stats_t s;
    int i;
    (void)buf; (void)len; (void)udata_ptr;
    s = stats_of(f_ptr);
    CHECK(s.fds_sent == MAX && s.fds_received == MAX && s.fds_lost == 0);
    CHECK(s.frames_sent == 3); /* T_PLAIN twice, T_MANY: no announcement counted */
    CHECK(s.sends_refused == 0);
    for (i = 0; i <= MAX; ++i) close(mfd[i]);
    finished = 1;
    mln_event_break_set(ev);
}

static int start(mln_event_t *ev, mln_fork_t *f, void *data)
{
    int i, n0;
    (void)data;
    for (i = 0; i <= MAX; ++i) {
        char name[32];
        snprintf(name, sizeof(name), "fds_limits_%d", i);
        mfd[i] = memfd_with(name, "");
        put(mfd[i], (uint32_t)i, 0);
    }
    refusals(ev, f, mfd);
    /* nfds 0: a plain send, with fds NULL or not. */
    CHECK(mln_ipc_master_send_fds_prepare(ev, T_PLAIN, "plain", 5, NULL, 0, f) == 0);
    CHECK(mln_ipc_master_send_fds_prepare(ev, T_PLAIN, "plain", 5, mfd, 0, f) == 0);
    n0 = count_fds();
    CHECK(mln_ipc_master_send_fds_prepare(ev, T_MANY, "many", 4, mfd, MAX, f) == 0);
    CHECK(count_fds() == n0 + MAX);
    return 0;
}

static void master_process(mln_event_t *ev)
{
    CHECK(mln_fork_iterate(ev, start, NULL) == 0);
}

static int global_init(void)
{
    ctest_workers(1);
    mln_ipc_child_event_handler_set(fds_exit_fails, NULL);
    if (!mln_ipc_handler_register(T_MANY, NULL, worker_many, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_PLAIN, plain_check, plain_check, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_BACK, master_back, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_DONE, master_done, NULL, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, NULL};
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(finished);
    return 0;
}
