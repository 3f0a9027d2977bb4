/* Descriptors through the channel (issue 23): a worker killed (SIGKILL) with descriptors
 * queued to it. Two workers, A and B, each blocked in a handler (reading a pipe of its
 * own) behind 8 MiB of plain frames; the master queues A 10 frames of 3 descriptors and B
 * 4 frames of 2 (write ends of pipes whose read ends it keeps; its own write ends closed at
 * once), then kills A.
 * - A's death: none of its 30 descriptors leaks in the master: every one of its pipes sees
 *   end of file (no copy left open, in the master or in the replacement forked from it);
 *   the replacement's stats say fds_lost 30, restarts 1 (carried over to the slot).
 * - B, queued to when A's replacement was forked, is then released (once the replacement
 *   has said hello): B's descriptors all arrive with their frames, and B's pipes see their
 *   numbers then end of file: the replacement did not keep copies of B's queue.
 * - At the end the master has as many descriptors open as before the test. */
#define _GNU_SOURCE
#include <stdint.h>
#include "fds.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_HELLO 8701 /* worker -> master, from worker_process */
#define T_BLOCK 8702 /* master -> worker: block (payload: which pipe) */
#define T_FILL 8703  /* master -> worker: 1 MiB */
#define T_FD 8704    /* master -> worker: seq + descriptors */
#define T_END 8705   /* master -> B */
#define T_DONE 8706  /* B -> master: frames and descriptors received */
#define FILL (1u << 20)
#define FILLS 8
#define A_FRAMES 10
#define A_FDS 3
#define B_FRAMES 4
#define B_FDS 2

static int bp[2][2];
static unsigned char fillbuf[FILL];

/* Master. */
static mln_fork_t *fa, *fb;
static pid_t a_pid, b_pid, a2_pid;
static int pa[A_FRAMES][A_FDS], pb[B_FRAMES][B_FDS], base, a_exited, a2_hello, finished;

/* Worker. */
static uint32_t w_next;
static uint64_t w_fds;

static void worker_block(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int which;
    char c;
    ssize_t n;
    (void)ev; (void)f_ptr; (void)udata_ptr;
    CHECK(len == sizeof(which));
    memcpy(&which, buf, sizeof(which));
    do n = read(bp[which][0], &c, 1);
    while (n < 0 && errno == EINTR);
    if (n == 0) exit(3); /* the master is gone */
    CHECK(n == 1);
}

static void worker_fill(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)udata_ptr;
    CHECK(len == FILL && mln_ipc_fds_count() == 0);
}

static void worker_fd(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    uint32_t seq, k;
    (void)ev; (void)f_ptr; (void)udata_ptr;
    CHECK(len == sizeof(seq));
    memcpy(&seq, buf, sizeof(seq));
    CHECK(seq == w_next);
    CHECK(mln_ipc_fds_count() == B_FDS && mln_ipc_fds_truncated() == 0);
    for (k = 0; k < B_FDS; ++k) {
        uint32_t mark[2] = {seq, k};
        int fd = mln_ipc_fd_take(k);
        CHECK(fd >= 0);
        CHECK(write(fd, mark, sizeof(mark)) == (ssize_t)sizeof(mark));
        close(fd);
    }
    w_fds += B_FDS;
    ++w_next;
}

static void worker_end(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    uint64_t r[2] = {w_next, w_fds};
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    CHECK(stats_of(NULL).fds_received == w_fds);
    CHECK(mln_ipc_worker_send_prepare(ev, T_DONE, r, sizeof(r)) == 0);
}

/* Once the replacement is started (checked) and its loop runs (its hello came): release B,
 * queued to when the replacement was forked. */
static void release_b(mln_event_t *ev)
{
    if (a2_pid == 0 || !a2_hello) return;
    CHECK(write(bp[1][1], "x", 1) == 1);
    CHECK(mln_ipc_master_send_prepare(ev, T_END, NULL, 0, fb) == 0);
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    mln_ipc_stats_t s;
    int j, k;
    (void)data;
    if (e->type == M_IPC_CHILD_EXITED) {
        if (e->pid != a_pid) {
            fprintf(stderr, "worker %d ended (status %d): failing\n", (int)e->pid, e->status);
            exit(3);
        }
        CHECK(e->how == M_IPC_END_CRASHED && e->exited == 0 && e->status == SIGKILL);
        CHECK(e->frames_lost >= A_FRAMES);
        a_exited = 1;
        /* Gone: the library's copies of A's descriptors are closed. */
        for (j = 0; j < A_FRAMES; ++j)
            for (k = 0; k < A_FDS; ++k) pipe_expect_eof(pa[j][k]);
        return;
    }
    if (e->type == M_IPC_CHILD_STARTED && e->pid != a_pid && e->pid != b_pid) {
        CHECK(a_exited && a2_pid == 0);
        a2_pid = e->pid;
        s = stats_of(f);
        fprintf(stderr, "replacement %d: fds_lost %llu, restarts %llu\n", (int)e->pid,
                (unsigned long long)s.fds_lost, (unsigned long long)s.restarts);
        CHECK(s.fds_lost == A_FRAMES * A_FDS && s.restarts == 1);
        CHECK(s.fds_sent == 0 && s.fds_received == 0);
        /* Forked after A's descriptors were closed: it holds no copy. */
        for (j = 0; j < A_FRAMES; ++j)
            for (k = 0; k < A_FDS; ++k) {
                pipe_expect_eof(pa[j][k]);
                close(pa[j][k]);
            }
        release_b(ev);
    }
}

static void master_hello(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    pid_t pid = ((mln_fork_t *)f_ptr)->pid;
    (void)buf; (void)len; (void)udata_ptr;
    if (pid == a_pid || pid == b_pid) return;
    CHECK(!a2_hello && (a2_pid == 0 || pid == a2_pid));
    a2_hello = 1;
    release_b(ev);
}

static void master_done(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    uint64_t r[2];
    mln_ipc_stats_t s;
    uint32_t j, k;
    (void)udata_ptr;
    CHECK(f_ptr == fb && len == sizeof(r));
    memcpy(r, buf, sizeof(r));
    CHECK(r[0] == B_FRAMES && r[1] == B_FRAMES * B_FDS);
    for (j = 0; j < B_FRAMES; ++j)
        for (k = 0; k < B_FDS; ++k) {
            uint32_t mark[2] = {j, k};
            pipe_expect(pb[j][k], mark, sizeof(mark));
            pipe_expect_eof(pb[j][k]);
            close(pb[j][k]);
        }
    s = stats_of(fb);
    CHECK(s.fds_sent == B_FRAMES * B_FDS && s.fds_lost == 0 && s.restarts == 0);
    close(bp[0][1]);
    close(bp[1][1]);
    CHECK(count_fds() == base - 2); /* the block pipes' write ends were counted */
    finished = 1;
    mln_event_break_set(ev);
}

static void queue_fds(mln_event_t *ev, mln_fork_t *f, int *rd, uint32_t frames, uint32_t n)
{
    uint32_t j, k;
    for (j = 0; j < frames; ++j) {
        int fds[A_FDS], p[2];
        for (k = 0; k < n; ++k) {
            CHECK(pipe(p) == 0);
            rd[j * n + k] = p[0];
            fds[k] = p[1];
        }
        CHECK(mln_ipc_master_send_fds_prepare(ev, T_FD, &j, sizeof(j), fds, n, f) == 0);
        for (k = 0; k < n; ++k) close(fds[k]);
    }
}

static int find(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)ev; (void)data;
    if (fa == NULL) fa = f;
    else fb = f;
    return 0;
}

static void master_process(mln_event_t *ev)
{
    int i, k;
    mln_fork_t *f;
    close(bp[0][0]);
    close(bp[1][0]);
    base = count_fds();
    CHECK(mln_fork_iterate(ev, find, NULL) == 0 && fa != NULL && fb != NULL);
    a_pid = fa->pid;
    b_pid = fb->pid;
    for (i = 0; i < 2; ++i) {
        f = i == 0 ? fa : fb;
        CHECK(mln_ipc_master_send_prepare(ev, T_BLOCK, &i, sizeof(i), f) == 0);
        for (k = 0; k < FILLS; ++k)
            CHECK(mln_ipc_master_send_prepare(ev, T_FILL, fillbuf, FILL, f) == 0);
    }
    queue_fds(ev, fa, &pa[0][0], A_FRAMES, A_FDS);
    queue_fds(ev, fb, &pb[0][0], B_FRAMES, B_FDS);
    /* Nothing of them written: all in the master's queues. */
    CHECK(stats_of(fa).fds_sent == 0 && stats_of(fb).fds_sent == 0);
    CHECK(count_fds() == base + (A_FRAMES * A_FDS + B_FRAMES * B_FDS) * 2);
    CHECK(kill(a_pid, SIGKILL) == 0);
}

static void worker_process(mln_event_t *ev)
{
    close(bp[0][1]);
    close(bp[1][1]);
    CHECK(mln_ipc_worker_send_prepare(ev, T_HELLO, NULL, 0) == 0);
}

static int global_init(void)
{
    ctest_workers(2);
    mln_ipc_child_event_handler_set(on_event, NULL);
    if (!mln_ipc_handler_register(T_HELLO, master_hello, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_BLOCK, NULL, worker_block, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_FILL, NULL, worker_fill, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_FD, NULL, worker_fd, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_END, NULL, worker_end, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_DONE, master_done, NULL, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    CHECK(pipe(bp[0]) == 0 && pipe(bp[1]) == 0);
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(finished);
    return 0;
}
