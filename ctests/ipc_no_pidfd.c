/* Without pidfds (Linux before 5.3, a seccomp filter, valgrind) a child that does not exit
 * is still killed: the promises "a closed child is really gone before its replacement
 * starts" and "workers still running 5 s after the master's loop stopped are killed" hold.
 * A seccomp filter makes pidfd_open and pidfd_send_signal fail with ENOSYS for the master
 * and its workers (under valgrind, which does not know them, they fail anyway).
 *   1. Two workers. The first is made busy for ever (a timer that never returns, after it
 *      acknowledged), then the master closes it with mln_fork_socketpair_close_handler.
 *      When its replacement says hello, the busy process must be gone (kill(pid, 0):
 *      ESRCH; SIGCHLD is ignored, so it is reaped by the kernel).
 *   2. The replacement is made busy the same way, then the master breaks its loop:
 *      mln_framework_init must return with that process gone too, and the other worker
 *      (standalone build: Melon's framework leaves its workers running).
 * The defect it was written for: the busy process stayed alive beside its replacement, and
 * mln_framework_init returned at once with it still running. */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <stddef.h>

#define T_HELLO 7701
#define T_BUSY 7702
#define T_ACK 7703

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

static pid_t first_busy, second_busy, other;
static int hellos;

/* Both pidfd system calls fail with ENOSYS in this process and every child. */
static void forbid_pidfds(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pidfd_open, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pidfd_send_signal, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
    };
    struct sock_fprog prog = {(unsigned short)(sizeof(f) / sizeof(f[0])), f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
        || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
        fprintf(stderr, "no seccomp filter (%s): relying on pidfd_open failing anyway\n",
                strerror(errno));
    errno = 0;
    CHECK(syscall(SYS_pidfd_open, getpid(), 0) == -1 && errno == ENOSYS);
}

static void forever(mln_event_t *ev, void *data)
{
    (void)ev; (void)data;
    for (;;) pause();
}

static void worker_busy(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    /* The acknowledgement is written when this handler returns; then the timer blocks. */
    CHECK(mln_ipc_worker_send_prepare(ev, T_ACK, NULL, 0) == 0);
    CHECK(mln_event_timer_set(ev, 0, NULL, forever) != NULL);
}

static void worker_process(mln_event_t *ev)
{
    pid_t me = getpid();
    CHECK(mln_ipc_worker_send_prepare(ev, T_HELLO, &me, sizeof(me)) == 0);
}

static int find_first(mln_event_t *e, mln_fork_t *c, void *d)
{
    (void)e;
    if (c->pid != first_busy) return 0;
    *(mln_fork_t **)d = c;
    return -1;
}

static void master_hello(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_fork_t *f = f_ptr;
    (void)buf; (void)len; (void)udata_ptr;
    ++hellos;
    if (hellos == 1) {
        first_busy = f->pid;
    } else if (hellos == 2) {
        other = f->pid;
    } else {
        CHECK(hellos == 3);
        /* The replacement: its predecessor must be gone already. */
        errno = 0;
        if (kill(first_busy, 0) == 0) fprintf(stderr, "busy worker %d still alive\n", (int)first_busy);
        CHECK(kill(first_busy, 0) == -1 && errno == ESRCH);
        second_busy = f->pid;
        CHECK(mln_ipc_master_send_prepare(ev, T_BUSY, NULL, 0, f) == 0);
        return;
    }
    if (hellos == 2) {
        /* Both up: make the first one busy. */
        mln_fork_t *first = NULL;
        CHECK(mln_fork_iterate(ev, find_first, &first) == -1 && first != NULL);
        CHECK(mln_ipc_master_send_prepare(ev, T_BUSY, NULL, 0, first) == 0);
    }
}

static void master_ack(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_fork_t *f = f_ptr;
    (void)buf; (void)len; (void)udata_ptr;
    if (f->pid == first_busy) {
        mln_fork_socketpair_close_handler(ev, f, mln_tcp_conn_fd_get(&f->conn));
    } else {
        CHECK(f->pid == second_busy);
        mln_event_break_set(ev);
    }
}

static int global_init(void)
{
    ctest_workers(2);
    if (!mln_ipc_handler_register(T_HELLO, master_hello, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_BUSY, NULL, worker_busy, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_ACK, master_ack, NULL, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, NULL, worker_process};
    forbid_pidfds();
    CHECK(ctest_framework_init(&a) == 0);
    CHECK(hellos == 3 && first_busy > 0 && second_busy > 0 && other > 0);
#ifdef CTEST_MELON
    /* Melon's framework leaves its workers running when the master's loop ends. */
    kill(second_busy, SIGKILL);
    kill(other, SIGKILL);
    return 0;
#endif
    errno = 0;
    if (kill(second_busy, 0) == 0) fprintf(stderr, "busy worker %d still alive\n", (int)second_busy);
    CHECK(kill(second_busy, 0) == -1 && errno == ESRCH);
    errno = 0;
    CHECK(kill(other, 0) == -1 && errno == ESRCH);
    return 0;
}
