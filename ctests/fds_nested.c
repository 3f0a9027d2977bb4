/* CTEST_STANDALONE_ONLY: Melon's loop never reports a descriptor again while its handler runs, so a nested dispatch cannot receive on the channel being handled (as life_nested_dispatch) */
/* Descriptors through the channel (issue 23): a handler that runs the event loop itself
 * (nested dispatch) keeps its own frame's descriptors. One worker.
 * - The master sends T_OUTER with 2 descriptors (pipes' write ends; it keeps the read
 *   ends). The worker's handler takes fds[0], asks for T_INNER and dispatches until it
 *   was handled.
 * - T_PLAIN comes first, without descriptors: its (nested) handler sees none (not the
 *   outer frame's: only frames with descriptors get an entry on the library's stack, so
 *   this checks that a nested handler of a plain frame does not see the outer entry).
 * - T_INNER comes with 3 descriptors; its (nested) handler sees 3, takes fds[1] and leaves
 *   fds[0] and fds[2], which are closed when it returns.
 * - Back in the outer handler: mln_ipc_fds_count() is 2 again, fds[0] is taken already
 *   (-1 + ENOENT), fds[1] is the outer frame's own (what is written through it reaches the
 *   outer pipe), not truncated.
 * - The master then finds in each pipe what was written through its own descriptor, and
 *   end of file everywhere (the two the inner handler left were closed). */
#define _GNU_SOURCE
#include "fds.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_OUTER 8901
#define T_ASK 8902
#define T_INNER 8903
#define T_DONE 8904
#define T_PLAIN 8905

static int po[2], pi[3], finished; /* master: read ends */
static int inner_done, plain_seen;  /* worker */

static void put(int fd, const char *s)
{
    CHECK(fd >= 0 && fd_cloexec(fd));
    CHECK(write(fd, s, 2) == 2);
    close(fd);
}

static void worker_outer(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    CHECK(mln_ipc_fds_count() == 2);
    put(mln_ipc_fd_take(0), "o0");
    CHECK(mln_ipc_worker_send_prepare(ev, T_ASK, NULL, 0) == 0);
    while (!inner_done) {
        mln_event_dispatch(ev);
        mln_event_break_reset(ev);
    }
    /* The outer frame's descriptors again. */
    CHECK(mln_ipc_fds_count() == 2);
    CHECK(mln_ipc_fds_truncated() == 0);
    errno = 0;
    CHECK(mln_ipc_fd_take(0) == -1 && errno == ENOENT);
    put(mln_ipc_fd_take(1), "o1");
    CHECK(mln_ipc_worker_send_prepare(ev, T_DONE, NULL, 0) == 0);
}

static void worker_plain(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    CHECK(mln_ipc_fds_count() == 0);
    CHECK(mln_ipc_fds_truncated() == 0);
    errno = 0;
    CHECK(mln_ipc_fd_take(1) == -1 && errno == ENOENT);
    ++plain_seen;
}

static void worker_inner(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    CHECK(plain_seen == 1);
    CHECK(mln_ipc_fds_count() == 3);
    put(mln_ipc_fd_take(1), "i1");
    inner_done = 1;
    mln_event_break_set(ev);
}

static void master_ask(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int fds[3], p[2], k;
    (void)buf; (void)len; (void)udata_ptr;
    for (k = 0; k < 3; ++k) {
        CHECK(pipe(p) == 0);
        pi[k] = p[0];
        fds[k] = p[1];
    }
    CHECK(mln_ipc_master_send_prepare(ev, T_PLAIN, NULL, 0, f_ptr) == 0);
    CHECK(mln_ipc_master_send_fds_prepare(ev, T_INNER, NULL, 0, fds, 3, f_ptr) == 0);
    for (k = 0; k < 3; ++k) close(fds[k]);
}

static void master_done(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    pipe_expect(po[0], "o0", 2);
    pipe_expect(po[1], "o1", 2);
    pipe_expect(pi[1], "i1", 2);
    pipe_expect_eof(po[0]); pipe_expect_eof(po[1]);
    pipe_expect_eof(pi[0]); pipe_expect_eof(pi[1]); pipe_expect_eof(pi[2]);
    close(po[0]); close(po[1]);
    close(pi[0]); close(pi[1]); close(pi[2]);
    finished = 1;
    mln_event_break_set(ev);
}

static int start(mln_event_t *ev, mln_fork_t *f, void *data)
{
    int fds[2], p[2], k;
    (void)data;
    for (k = 0; k < 2; ++k) {
        CHECK(pipe(p) == 0);
        po[k] = p[0];
        fds[k] = p[1];
    }
    CHECK(mln_ipc_master_send_fds_prepare(ev, T_OUTER, NULL, 0, fds, 2, f) == 0);
    close(fds[0]); close(fds[1]);
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
    if (!mln_ipc_handler_register(T_OUTER, NULL, worker_outer, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_INNER, NULL, worker_inner, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_PLAIN, NULL, worker_plain, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_ASK, master_ask, NULL, NULL, NULL)) return -1;
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
