/* Descriptors through the channel (issue 23): a program's frame of type 1023 (in the range
 * reserved for Melon, 0..1024) must not be taken for the library's announcement of
 * descriptors (type 1023 on the wire). (Before 7544194 it was: it claimed the descriptors
 * of the next frame that had some, which then arrived with none, marked truncated, and the
 * sender's stats never counted it written.)
 *
 * The master sends, in one go: a plain frame of type 1023 whose payload reads as a count of
 * 1, then T_A with one descriptor, then T_B without. Either the send of type 1023 is
 * refused (EINVAL: reserved), or it reaches nobody (no handler can be registered for the
 * library's type); in both cases T_A must come with its descriptor and T_B with none,
 * neither truncated. The worker waits in worker_process (on a pipe) until the master's
 * stats say all three are in the socket, so that it reads them in one recvmsg: the
 * outcome does not depend on when it wakes up. */
#define _GNU_SOURCE
#include "fds.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_RESERVED 1023
#define T_A 8951
#define T_B 8952
#define T_DONE 8953

static int pa[2], go[2], finished;
static mln_fork_t *child;

static void worker_a(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    fprintf(stderr, "worker: T_A with %u descriptor(s), truncated %d\n", mln_ipc_fds_count(),
            mln_ipc_fds_truncated());
    CHECK(mln_ipc_fds_count() == 1 && mln_ipc_fds_truncated() == 0);
}

static void worker_b(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    fprintf(stderr, "worker: T_B with %u descriptor(s), truncated %d\n", mln_ipc_fds_count(),
            mln_ipc_fds_truncated());
    CHECK(mln_ipc_fds_count() == 0 && mln_ipc_fds_truncated() == 0);
    CHECK(mln_ipc_worker_send_prepare(ev, T_DONE, NULL, 0) == 0);
}

static void master_done(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_ipc_stats_t s = stats_of(f_ptr);
    (void)buf; (void)len; (void)udata_ptr;
    /* Three frames written (two if type 1023 was refused), none left queued. */
    CHECK(s.queued_frames == 0 && s.frames_sent >= 2);
    pipe_expect_eof(pa[0]);
    close(pa[0]);
    finished = 1;
    mln_event_break_set(ev);
}

/* Once the three frames are in the socket (the user's frame of type 1023 is not counted
 * in frames_sent: the library takes it for its own), let the worker read. */
static void watch(mln_event_t *ev, void *data)
{
    mln_ipc_stats_t s = stats_of(child);
    (void)data;
    if (s.fds_sent == 1 && s.queued_bytes == 0) {
        fprintf(stderr, "master: all written; frames_sent %llu, queued_frames %llu\n",
                (unsigned long long)s.frames_sent, (unsigned long long)s.queued_frames);
        CHECK(write(go[1], "x", 1) == 1);
        return;
    }
    CHECK(mln_event_timer_set(ev, 1, NULL, watch) != NULL);
}

static int start(mln_event_t *ev, mln_fork_t *f, void *data)
{
    mln_u32_t one = 1;
    int r;
    (void)data;
    CHECK(pipe(pa) == 0);
    errno = 0;
    r = mln_ipc_master_send_prepare(ev, T_RESERVED, &one, sizeof(one), f);
    fprintf(stderr, "master: send of type 1023: %d (errno %d)\n", r, errno);
    CHECK(r == 0 || errno == EINVAL);
    CHECK(mln_ipc_master_send_fds_prepare(ev, T_A, NULL, 0, &pa[1], 1, f) == 0);
    close(pa[1]);
    CHECK(mln_ipc_master_send_prepare(ev, T_B, NULL, 0, f) == 0);
    child = f;
    CHECK(mln_event_timer_set(ev, 1, NULL, watch) != NULL);
    return 0;
}

static void master_process(mln_event_t *ev)
{
    close(go[0]);
    CHECK(mln_fork_iterate(ev, start, NULL) == 0);
}

static void worker_process(mln_event_t *ev)
{
    char c;
    (void)ev;
    close(go[1]);
    CHECK(read(go[0], &c, 1) == 1);
    close(go[0]);
}

static int global_init(void)
{
    ctest_workers(1);
    mln_ipc_child_event_handler_set(fds_exit_fails, NULL);
    if (!mln_ipc_handler_register(T_A, NULL, worker_a, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_B, NULL, worker_b, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_DONE, master_done, NULL, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    CHECK(pipe(go) == 0);
    if (ctest_framework_init(&a) < 0) return 1;
    close(go[1]);
    CHECK(finished);
    return 0;
}
