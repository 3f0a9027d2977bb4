/* Hostile use: a master handler of a frame with descriptors runs the loop nested
 * (a later frame with descriptors is handled inside), then takes its own; and a handler
 * that closes its sender (mln_fork_socketpair_close_handler) before taking.
 *
 * Round 1 (worker's first life): A(memfds A0,A1) then B(B0,B1). A takes A0, runs the loop
 * nested until B was handled (B takes B0 only), then takes A1: must be A1, not B's; B1 is
 * closed when B returns, A0..A1 stay ours. take(0) again: ENOENT.
 * Round 2: C(C0,C1) then D(D0,D1) sent together; C's handler closes the sender, then takes
 * C1: still there (the frame's descriptors are the handler's until it returns). D is never
 * dispatched; its descriptors must be closed, not leaked.
 * Then the replacement says hello, and the master's descriptors are what they were.
 * CTEST_STANDALONE_ONLY: a nested dispatch receives on the channel being handled (Melon's
 * loop never reports a descriptor again while its handler runs: docs/melon-build.md). */
#define _GNU_SOURCE
#include "fds.h"
#include "mln_event.h"

#define T_A 8931
#define T_B 8932
#define T_C 8933
#define T_D 8934
#define T_HELLO 8935
#define T_GO2 8936

static int m_base = -1, b_done, finished, hellos, nested_depth;

static void send_two(mln_event_t *ev, mln_u32_t type, const char *n0, const char *n1)
{
    int fds[2];
    fds[0] = memfd_with(n0, n0);
    fds[1] = memfd_with(n1, n1);
    CHECK(mln_ipc_worker_send_fds_prepare(ev, type, NULL, 0, fds, 2) == 0);
    close(fds[0]);
    close(fds[1]);
}

static void worker_go2(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    send_two(ev, T_C, "C0", "C1");
    send_two(ev, T_D, "D0", "D1");
}

static void master_b(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int b0;
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    CHECK(nested_depth == 1);
    CHECK(mln_ipc_fds_count() == 2);
    b0 = mln_ipc_fd_take(0);
    CHECK(b0 >= 0 && memfd_named(b0, "B0"));
    close(b0);
    b_done = 1;
    mln_event_break_set(ev);
}

static void master_a(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int a0, a1, before;
    (void)buf; (void)len; (void)udata_ptr;
    CHECK(mln_ipc_fds_count() == 2);
    a0 = mln_ipc_fd_take(0);
    CHECK(a0 >= 0 && memfd_named(a0, "A0"));
    before = count_fds();
    nested_depth = 1;
    while (!b_done) {
        mln_event_dispatch(ev);
        mln_event_break_reset(ev);
    }
    nested_depth = 0;
    /* B's handler took B0 and closed it; B1 was closed when B returned. */
    if (count_fds() != before) {
        fprintf(stderr, "after the nested loop: %d descriptors, %d before it\n", count_fds(), before);
        exit(4);
    }
    if (mln_ipc_fds_count() != 2) {
        fprintf(stderr, "after the nested loop: fds_count %u (A had 2)\n", mln_ipc_fds_count());
        exit(4);
    }
    a1 = mln_ipc_fd_take(1);
    if (a1 < 0 || !memfd_named(a1, "A1")) {
        fprintf(stderr, "after the nested loop: take(1) = %d (%s), named A1: %d\n", a1,
                strerror(errno), a1 >= 0 ? memfd_named(a1, "A1") : 0);
        exit(4);
    }
    errno = 0;
    CHECK(mln_ipc_fd_take(0) == -1 && errno == ENOENT);
    close(a0);
    close(a1);
    CHECK(mln_ipc_master_send_prepare(ev, T_GO2, NULL, 0, f_ptr) == 0);
}

static void master_c(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_fork_t *f = f_ptr;
    int c1;
    (void)buf; (void)len; (void)udata_ptr;
    mln_fork_socketpair_close_handler(ev, f, mln_tcp_conn_fd_get(&f->conn));
    CHECK(mln_ipc_fds_count() == 2);
    c1 = mln_ipc_fd_take(1);
    if (c1 < 0 || !memfd_named(c1, "C1")) {
        fprintf(stderr, "after closing the sender: take(1) = %d (%s)\n", c1, strerror(errno));
        exit(5);
    }
    close(c1);
}

static void master_d(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    fprintf(stderr, "D dispatched after its sender was closed\n");
    exit(6);
}

static void check_end(mln_event_t *ev, void *data)
{
    (void)data;
    if (count_fds() != m_base) {
        char cmd[64];
        fprintf(stderr, "end: %d descriptors, %d at the start\n", count_fds(), m_base);
        snprintf(cmd, sizeof(cmd), "ls -l /proc/%d/fd >&2", (int)getpid());
        if (system(cmd)) {}
        finished = 2;
    } else {
        finished = 1;
    }
    mln_event_break_set(ev);
}

static void master_hello(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    if (++hellos == 1) return;
    /* The replacement: give the loop 300 ms to settle (a pidfd, a grace timer). */
    CHECK(mln_event_timer_set(ev, 300, NULL, check_end) != NULL);
}

static void worker_process(mln_event_t *ev)
{
    static int life;
    CHECK(mln_ipc_worker_send_prepare(ev, T_HELLO, NULL, 0) == 0);
    if (life++ == 0 && hellos == 0) {
        send_two(ev, T_A, "A0", "A1");
        send_two(ev, T_B, "B0", "B1");
    }
}

static void master_process(mln_event_t *ev)
{
    (void)ev;
    m_base = count_fds(); /* before anything arrived (at the first hello A's may have) */
}

static int global_init(void)
{
    ctest_workers(1);
    if (!mln_ipc_handler_register(T_A, master_a, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_B, master_b, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_C, master_c, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_D, master_d, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_HELLO, master_hello, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_GO2, NULL, worker_go2, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    if (ctest_framework_init(&a) < 0) return 1;
    return finished == 1 ? 0 : 1;
}
