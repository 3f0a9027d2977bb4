/* Descriptors through the channel (issue 23): a receiver at its descriptor limit
 * (RLIMIT_NOFILE), one worker.
 * - The worker lowers its RLIMIT_NOFILE (setrlimit) and fills its table (dup until EMFILE),
 *   then frees exactly FREE slots. A send of 5 descriptors from there is EMFILE (no room
 *   for the library's copies), queues nothing and leaves no copy open. It says it is full.
 * - The master sends a frame with 5 descriptors (pipes' write ends; it keeps the read ends),
 *   then a frame without. The worker gets the first with mln_ipc_fds_truncated() == 1 and
 *   exactly FREE descriptors, the sender's fds[0] and fds[1] (it writes into them; the
 *   master reads that); the other 3 were dropped by the kernel: their pipes see end of file
 *   with nothing written. The frame without descriptors: 0 and not truncated.
 * - The worker then frees its table; the next frame with descriptors (3) gets exactly its
 *   own, not truncated: nothing of the truncated frame was shifted onto it.
 * - At the end the worker has as many descriptors open as before, and its stats count
 *   FREE + 3 received.
 * Under valgrind, setrlimit is emulated (the kernel's limit stays), so the master also
 * lowers the worker's limit with prlimit(2), which valgrind passes to the kernel. */
#define _GNU_SOURCE
#include <sys/resource.h>
#include "fds.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_LIMIT 8501  /* worker -> master: lower my limit (valgrind only) */
#define T_LIMITED 8502 /* master -> worker */
#define T_FULL 8503   /* worker -> master: table full but FREE */
#define T_A 8504      /* master -> worker: 5 descriptors */
#define T_PLAIN 8505  /* master -> worker: none */
#define T_FREED 8506  /* worker -> master */
#define T_B 8507      /* master -> worker: 3 descriptors */
#define T_DONE 8508   /* worker -> master */
#define LIMIT 256
#define FREE 2
#define NA 5
#define NB 3

/* Worker. */
static int w_base, fill[LIMIT], nfill, got_a, got_plain;
/* Master. */
static int pa[NA], pb[NB], finished;

static void worker_fill(mln_event_t *ev)
{
    int i, fd;
    while ((fd = dup(0)) >= 0) {
        CHECK(nfill < LIMIT);
        fill[nfill++] = fd;
    }
    CHECK(errno == EMFILE);
    CHECK(nfill > FREE);
    for (i = 0; i < FREE; ++i) close(fill[--nfill]);
    fprintf(stderr, "worker: table full below %d, %d slot(s) free\n", LIMIT, FREE);
    /* A sender at its limit: no room for the copies of 5: EMFILE, nothing queued, the
     * copies made before it ran out closed. */
    {
        int five[NA] = {fill[0], fill[0], fill[0], fill[0], fill[0]}, n0 = count_fds(), r;
        mln_ipc_stats_t s0 = stats_of(NULL), s1;
        errno = 0;
        r = mln_ipc_worker_send_fds_prepare(ev, T_FULL, NULL, 0, five, NA);
        CHECK(r == -1 && errno == EMFILE);
        s1 = stats_of(NULL);
        CHECK(memcmp(&s0, &s1, sizeof(s0)) == 0 && count_fds() == n0);
    }
    CHECK(mln_ipc_worker_send_prepare(ev, T_FULL, NULL, 0) == 0);
}

static void worker_limited(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    worker_fill(ev);
}

static void worker_a(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int k;
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    fprintf(stderr, "worker: frame A: %u descriptor(s), truncated %d\n", mln_ipc_fds_count(),
            mln_ipc_fds_truncated());
    CHECK(mln_ipc_fds_truncated() == 1);
    CHECK(mln_ipc_fds_count() == FREE);
    for (k = 0; k < FREE; ++k) {
        char mark[2] = {'A', (char)('0' + k)};
        int fd = mln_ipc_fd_take((mln_u32_t)k);
        CHECK(fd >= 0 && fd_cloexec(fd));
        CHECK(write(fd, mark, 2) == 2);
        close(fd);
    }
    errno = 0;
    CHECK(mln_ipc_fd_take(FREE) == -1 && errno == ENOENT);
    got_a = 1;
}

static void worker_plain(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    CHECK(got_a);
    CHECK(mln_ipc_fds_count() == 0 && mln_ipc_fds_truncated() == 0);
    got_plain = 1;
    /* Room again. */
    while (nfill > 0) close(fill[--nfill]);
    CHECK(mln_ipc_worker_send_prepare(ev, T_FREED, NULL, 0) == 0);
}

static void worker_b(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_ipc_stats_t s;
    int k;
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    CHECK(got_plain);
    CHECK(mln_ipc_fds_truncated() == 0);
    CHECK(mln_ipc_fds_count() == NB);
    for (k = 0; k < NB; ++k) {
        char mark[2] = {'B', (char)('0' + k)};
        int fd = mln_ipc_fd_take((mln_u32_t)k);
        CHECK(fd >= 0 && fd_cloexec(fd));
        CHECK(write(fd, mark, 2) == 2);
        close(fd);
    }
    CHECK(count_fds() == w_base);
    s = stats_of(NULL);
    CHECK(s.fds_received == FREE + NB && s.fds_lost == 0);
    CHECK(mln_ipc_worker_send_prepare(ev, T_DONE, NULL, 0) == 0);
}

static void master_limit(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    struct rlimit rl;
    (void)buf; (void)len; (void)udata_ptr;
    CHECK(prlimit(((mln_fork_t *)f_ptr)->pid, RLIMIT_NOFILE, NULL, &rl) == 0);
    rl.rlim_cur = LIMIT;
    CHECK(prlimit(((mln_fork_t *)f_ptr)->pid, RLIMIT_NOFILE, &rl, NULL) == 0);
    CHECK(mln_ipc_master_send_prepare(ev, T_LIMITED, NULL, 0, f_ptr) == 0);
}

static void master_full(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int fds[NA], k, p[2];
    (void)buf; (void)len; (void)udata_ptr;
    for (k = 0; k < NA; ++k) {
        CHECK(pipe(p) == 0);
        pa[k] = p[0];
        fds[k] = p[1];
    }
    CHECK(mln_ipc_master_send_fds_prepare(ev, T_A, "a", 1, fds, NA, f_ptr) == 0);
    for (k = 0; k < NA; ++k) close(fds[k]);
    CHECK(mln_ipc_master_send_prepare(ev, T_PLAIN, NULL, 0, f_ptr) == 0);
}

static void master_freed(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int fds[NB], k, p[2];
    (void)buf; (void)len; (void)udata_ptr;
    /* The two that arrived were written into; the three the kernel dropped are closed. */
    for (k = 0; k < NA; ++k) {
        if (k < FREE) {
            char mark[2] = {'A', (char)('0' + k)};
            pipe_expect(pa[k], mark, 2);
        }
        pipe_expect_eof(pa[k]);
        close(pa[k]);
    }
    for (k = 0; k < NB; ++k) {
        CHECK(pipe(p) == 0);
        pb[k] = p[0];
        fds[k] = p[1];
    }
    CHECK(mln_ipc_master_send_fds_prepare(ev, T_B, "b", 1, fds, NB, f_ptr) == 0);
    for (k = 0; k < NB; ++k) close(fds[k]);
}

static void master_done(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_ipc_stats_t s;
    int k;
    (void)buf; (void)len; (void)udata_ptr;
    for (k = 0; k < NB; ++k) {
        char mark[2] = {'B', (char)('0' + k)};
        pipe_expect(pb[k], mark, 2);
        pipe_expect_eof(pb[k]);
        close(pb[k]);
    }
    s = stats_of(f_ptr);
    CHECK(s.fds_sent == NA + NB && s.fds_received == 0 && s.fds_lost == 0);
    finished = 1;
    mln_event_break_set(ev);
}

static void worker_process(mln_event_t *ev)
{
    struct rlimit rl;
    w_base = count_fds();
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    rl.rlim_cur = LIMIT;
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    if (valgrind()) CHECK(mln_ipc_worker_send_prepare(ev, T_LIMIT, NULL, 0) == 0);
    else worker_fill(ev);
}

static int global_init(void)
{
    ctest_workers(1);
    mln_ipc_child_event_handler_set(fds_exit_fails, NULL);
    if (!mln_ipc_handler_register(T_LIMIT, master_limit, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_LIMITED, NULL, worker_limited, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_FULL, master_full, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_A, NULL, worker_a, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_PLAIN, NULL, worker_plain, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_FREED, master_freed, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_B, NULL, worker_b, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_DONE, master_done, NULL, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, NULL, worker_process};
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(finished);
    return 0;
}
