/* Hostile use: a graceful stop (mln_fork_stop) while hundreds of frames with
 * descriptors are queued to the worker (it is asleep, the socket is full). c-api.md: the
 * quit frame is "queued behind everything sent to that worker before; the worker runs its
 * quit handler when that frame comes, after every earlier frame"; the duplicates "are closed
 * once written to the socket, or when the peer dies first". So the worker must receive every
 * frame and every descriptor; nothing lost (fds_lost 0); afterwards the master holds no
 * duplicate (the pipe whose write end was sent reaches end of file) and its descriptor count
 * is the start's minus the worker's socket. */
#define _GNU_SOURCE
#include "fds.h"
#include "mln_event.h"

#define T_SLOW 8941
#define T_F 8942
#define T_RESULT 8943
#define NF 300

static int m_base, p[2], sent_frames, sent_fds, finished, got_result;
static int w_frames, w_fds;
static mln_fork_t *child;

static void worker_slow(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    usleep(700 * 1000);
}

static void worker_f(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int seq;
    (void)ev; (void)f_ptr; (void)udata_ptr;
    CHECK(len >= 4);
    memcpy(&seq, buf, 4);
    CHECK(seq == w_frames);
    CHECK(mln_ipc_fds_count() == 3 && !mln_ipc_fds_truncated());
    ++w_frames;
    w_fds += 3;
    if (seq % 2) { /* take and close one now and then */
        int fd = mln_ipc_fd_take(1);
        CHECK(fd >= 0);
        close(fd);
    }
}

static int quit(mln_event_t *ev, void *data)
{
    int r[2] = {w_frames, w_fds};
    (void)data;
    CHECK(mln_ipc_worker_send_prepare(ev, T_RESULT, r, sizeof(r)) == 0);
    return 0;
}

static void master_result(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int r[2];
    (void)ev; (void)f_ptr; (void)udata_ptr;
    CHECK(len == sizeof(r));
    memcpy(r, buf, sizeof(r));
    fprintf(stderr, "worker got %d frames, %d descriptors; master sent %d, %d\n", r[0], r[1], sent_frames, sent_fds);
    if (r[0] != sent_frames || r[1] != sent_fds) { fprintf(stderr, "lost\n"); exit(4); }
    got_result = 1;
}

static void check_end(mln_event_t *ev, void *data)
{
    (void)data;
    finished = 1;
    pipe_expect_eof(p[0]);
    if (count_fds() != m_base - 1) {
        char cmd[64];
        fprintf(stderr, "end: %d descriptors, expected %d\n", count_fds(), m_base - 1);
        snprintf(cmd, sizeof(cmd), "ls -l /proc/%d/fd >&2", (int)getpid());
        if (system(cmd)) {}
        finished = 2;
    }
    mln_event_break_set(ev);
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    (void)f; (void)data;
    if (e->type != M_IPC_CHILD_EXITED) return;
    fprintf(stderr, "EXITED how %d exited %d status %d frames_lost %llu\n", (int)e->how, e->exited,
            e->status, (unsigned long long)e->frames_lost);
    if (e->how != M_IPC_END_STOPPED || e->exited != 1 || e->status != 0 || e->frames_lost != 0 || !got_result) {
        fprintf(stderr, "the stop did not deliver everything (result %d)\n", got_result);
        exit(5);
    }
    CHECK(mln_event_timer_set(ev, 300, NULL, check_end) != NULL);
}

static int go(mln_event_t *ev, mln_fork_t *f, void *data)
{
    static char payload[4096];
    int i;
    (void)data;
    child = f;
    CHECK(mln_ipc_master_send_prepare(ev, T_SLOW, NULL, 0, f) == 0);
    for (i = 0; i < NF; ++i) {
        int fds[3], m = memfd_with("stopq", "q");
        fds[0] = p[1];
        fds[1] = m;
        fds[2] = p[1];
        memcpy(payload, &sent_frames, 4);
        if (mln_ipc_master_send_fds_prepare(ev, T_F, payload, sizeof(payload), fds, 3, f) == 0) {
            ++sent_frames;
            sent_fds += 3;
        } else {
            CHECK(errno == EAGAIN);
        }
        close(m);
    }
    fprintf(stderr, "queued %d frames with descriptors; master has %d descriptors\n", sent_frames, count_fds());
    close(p[1]);
    CHECK(mln_fork_stop(ev, f, 10000) == 0);
    { /* a stopping child refuses (ESRCH) with nothing duplicated */
        int before = count_fds(), fds[253], m = memfd_with("late", "l"), k;
        for (k = 0; k < 253; ++k) fds[k] = m;
        errno = 0;
        CHECK(mln_ipc_master_send_fds_prepare(ev, T_F, NULL, 0, fds, 253, f) == -1 && errno == ESRCH);
        close(m);
        CHECK(count_fds() == before);
    }
    return 0;
}

static void master_process(mln_event_t *ev)
{
    m_base = count_fds() - 1; /* p[1] is closed in go */
    CHECK(mln_fork_iterate(ev, go, NULL) == 0);
}

static int global_init(void)
{
    ctest_workers(1);
    mln_ipc_child_event_handler_set(on_event, NULL);
    mln_ipc_worker_quit_handler_set(quit, NULL);
    if (!mln_ipc_handler_register(T_SLOW, NULL, worker_slow, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_F, NULL, worker_f, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_RESULT, master_result, NULL, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, NULL};
    CHECK(pipe(p) == 0);
    if (ctest_framework_init(&a) < 0) return 1;
    return finished == 1 ? 0 : 1;
}
