/* A child whose state cannot be read is not dead. With the master at its descriptor limit
 * (no pidfd, no /proc/<pid>/stat can be opened), the master closes a worker that is busy
 * for ever (mln_fork_socketpair_close_handler): that process must still be taken for alive,
 * killed after its grace and reaped, and only then replaced; never two processes of one
 * slot, nothing left behind.
 *   1. Two supervised workers say hello. Worker 0 is made busy for ever (a timer that never
 *      returns, after it acknowledged).
 *   2. On its acknowledgement the master lowers RLIMIT_NOFILE to that worker's socket
 *      descriptor number and fills every free number below it, then closes the worker:
 *      the freed number is above the limit, so nothing can be opened (pidfd_open and
 *      /proc fail with EMFILE: the path without pidfd, without /proc).
 *   3. The master's log (its stderr, a pipe read on the master's loop) says the worker is
 *      gone and restarting: the master then raises the limit back, so the restart can
 *      fork.
 *   4. The replacement says hello: the busy process must be gone (kill(pid, 0): ESRCH, so
 *      not a zombie either), and the master's children are the other worker and the
 *      replacement, no zombie. After mln_framework_init: no child at all (standalone).
 * The defect it was written for: the unreadable /proc was taken for the child's death; the
 * replacement ran beside the busy process. */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"
#include <sys/resource.h>

#define T_HELLO 7901
#define T_BUSY 7902
#define T_ACK 7903
#define FILLERS 256

static pid_t busy, other, replacement;
static int hellos, log_fd = -1, real_stderr = -1, fillers[FILLERS], n_fillers, raised;
static struct rlimit saved;
static char log[32768];
static size_t log_len;

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

static void set_limit(rlim_t n)
{
    struct rlimit r = saved;
    r.rlim_cur = n;
    CHECK(setrlimit(RLIMIT_NOFILE, &r) == 0);
}

static void master_ack(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_fork_t *f = f_ptr;
    int fd = mln_tcp_conn_fd_get(&f->conn), d;
    (void)buf; (void)len; (void)udata_ptr;
    CHECK(f->pid == busy);
    /* Nothing may be opened once this worker's descriptor is closed. */
    set_limit((rlim_t)fd);
    while ((d = dup(0)) >= 0) {
        CHECK(n_fillers < FILLERS);
        fillers[n_fillers++] = d;
    }
    CHECK(errno == EMFILE);
    mln_fork_socketpair_close_handler(ev, f, fd);
}

/* The master's log: copied to the real stderr; once it says the busy worker is gone and
 * restarting, descriptors are given back. */
static void log_readable(mln_event_t *ev, int fd, void *data)
{
    char want[64], *p;
    ssize_t n;
    (void)ev; (void)data;
    while ((n = read(fd, log + log_len, sizeof(log) - 1 - log_len)) > 0) {
        CHECK(write(real_stderr, log + log_len, (size_t)n) == n);
        log_len += (size_t)n;
    }
    log[log_len] = 0;
    snprintf(want, sizeof(want), "child %d (worker ", (int)busy);
    if (raised || busy == 0 || (p = strstr(log, want)) == NULL || strstr(p, "restarting in ") == NULL)
        return;
    raised = 1;
    CHECK(setrlimit(RLIMIT_NOFILE, &saved) == 0);
    while (n_fillers > 0) close(fillers[--n_fillers]);
}

static void master_hello(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_fork_t *f = f_ptr;
    int live, zombies;
    (void)buf; (void)len; (void)udata_ptr;
    ++hellos;
    if (hellos == 1) {
        busy = f->pid;
        CHECK(mln_ipc_master_send_prepare(ev, T_BUSY, NULL, 0, f) == 0);
        return;
    }
    if (hellos == 2) {
        other = f->pid;
        return;
    }
    CHECK(hellos == 3);
    replacement = f->pid;
    CHECK(dup2(real_stderr, 2) == 2); /* the log is not needed any more; failures show */
    /* The replacement: its predecessor must be gone, and reaped. */
    CHECK(raised);
    errno = 0;
    if (kill(busy, 0) == 0) fprintf(stderr, "busy worker %d still there\n", (int)busy);
    CHECK(kill(busy, 0) == -1 && errno == ESRCH);
    child_processes(&live, &zombies);
    if (live != 2 || zombies != 0) fprintf(stderr, "children: %d live, %d zombies\n", live, zombies);
    CHECK(live == 2 && zombies == 0);
    mln_event_break_set(ev);
}

static void master_process(mln_event_t *ev)
{
    CHECK(mln_event_fd_set(ev, log_fd, M_EV_RECV | M_EV_NONBLOCK, M_EV_UNLIMITED, NULL, log_readable) == 0);
}

static int global_init(void)
{
    ctest_workers(2);
    ctest_log_level("warn");
    if (!mln_ipc_handler_register(T_HELLO, master_hello, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_BUSY, NULL, worker_busy, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_ACK, master_ack, NULL, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    int p[2], r, live, zombies;
    CHECK(getrlimit(RLIMIT_NOFILE, &saved) == 0);
    CHECK(pipe(p) == 0);
    real_stderr = dup(2);
    CHECK(real_stderr >= 0);
    CHECK(dup2(p[1], 2) == 2);
    close(p[1]);
    log_fd = p[0];
    r = ctest_framework_init(&a);
    CHECK(dup2(real_stderr, 2) == 2);
    CHECK(r == 0);
    CHECK(hellos == 3 && raised);
#ifdef CTEST_MELON
    /* Melon's framework leaves its workers running when the master's loop ends. */
    kill(other, SIGKILL);
    kill(replacement, SIGKILL);
    return 0;
#endif
    child_processes(&live, &zombies);
    if (live != 0 || zombies != 0) fprintf(stderr, "after the end: %d live, %d zombies\n", live, zombies);
    CHECK(live == 0 && zombies == 0);
    return 0;
}
