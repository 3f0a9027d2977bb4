/* Descriptors through the channel (issue 23): a descriptor in the array that is not open
 * is EBADF, also when its number is the lowest free one, after a valid descriptor.
 *
 * The stale number of a descriptor the program closed by mistake is typically the lowest
 * free one. The master sends [memfd A, closed number] to the worker: the send must fail
 * with EBADF, queue nothing and leave no descriptor behind. Before that is checked, the
 * worker's handler says what arrived, if anything did (its report is printed). */
#define _GNU_SOURCE
#include "fds.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_BAD 8301
#define T_END 8302

static int finished, r, e, n0, n1, same;

static void worker_bad(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    fprintf(stderr, "worker: a refused frame arrived with %u descriptor(s); fds[1] is %s\n",
            mln_ipc_fds_count(), memfd_named(mln_ipc_fd_take(1), "fds_badf_A")
                                     ? "a copy of fds[0] (memfd A)" : "something else");
}

static void worker_end(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    CHECK(mln_ipc_worker_send_prepare(ev, T_END, NULL, 0) == 0);
}

static void master_end(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    /* The worker's report, if any, is on stderr by now. */
    if (r != -1 || e != EBADF)
        fprintf(stderr, "send of [open, closed (lowest free)]: %d, errno %d (%s), expected "
                        "-1 EBADF; open descriptors %d -> %d\n", r, e, strerror(e), n0, n1);
    CHECK(r == -1 && e == EBADF);
    CHECK(n1 == n0);
    CHECK(same);
    finished = 1;
    mln_event_break_set(ev);
}

static int start(mln_event_t *ev, mln_fork_t *f, void *data)
{
    int p[2], fds[2], a;
    mln_ipc_stats_t s0, s1;
    (void)data;
    a = memfd_with("fds_badf_A", "A");
    CHECK(pipe(p) == 0);
    close(p[0]);
    close(p[1]);
    /* p[0] is now the lowest free number. */
    fds[0] = a;
    fds[1] = p[0];
    n0 = count_fds();
    s0 = stats_of(f);
    errno = 0;
    r = mln_ipc_master_send_fds_prepare(ev, T_BAD, "bad", 3, fds, 2, f);
    e = errno;
    n1 = count_fds();
    s1 = stats_of(f);
    same = memcmp(&s0, &s1, sizeof(s0)) == 0;
    close(a);
    CHECK(mln_ipc_master_send_prepare(ev, T_END, NULL, 0, f) == 0);
    return 0;
}

static void master_process(mln_event_t *ev)
{
    CHECK(mln_fork_iterate(ev, start, NULL) == 0);
}

static int global_init(void)
{
    ctest_workers(1);
    if (!mln_ipc_handler_register(T_BAD, NULL, worker_bad, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_END, master_end, worker_end, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, NULL};
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(finished);
    return 0;
}
