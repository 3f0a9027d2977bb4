/* How a worker ended is in the default-level log line for its death, although the master
 * ignores SIGCHLD (Melon's rule, kept): three supervised workers; the first calls
 * exit(7), the second raises SIGSEGV, the master SIGKILLs the third. The master's stderr
 * goes to a file; once the three replacements have said hello the log must hold
 *   child <pid> (worker 0) exited with status 7 (end of stream); restarting in 0 ms
 *   child <pid> (worker 1) killed by SIGSEGV (end of stream); restarting in 0 ms
 *   child <pid> (worker 2) killed by SIGKILL (end of stream); restarting in 0 ms
 * and no child of the master may be a zombie (the dead ones are reaped, by the library,
 * before their replacements start), nor any be left once mln_framework_init returned.
 * SIGCHLD must still be ignored in the master. Log level: the default (standalone: no
 * MLN_IPC_LOG; melon build: log_level "warn").
 * The defect it was written for: each line said "gone (exit status unknown: SIGCHLD is ignored)". */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"
#include <sys/resource.h>

#define T_HELLO 7801
#define T_EXIT 7802
#define T_SEGV 7803
#define N 3

static pid_t first[N], second[N];
static int hellos;

static void worker_exit(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    exit(7);
}

static void worker_segv(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    struct rlimit no_core = {0, 0};
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    CHECK(setrlimit(RLIMIT_CORE, &no_core) == 0);
    signal(SIGSEGV, SIG_DFL);
    /* raise, not a bad access: valgrind reports only a fault the kernel raised. */
    raise(SIGSEGV);
    _exit(3);
}

static void worker_process(mln_event_t *ev)
{
    pid_t me = getpid();
    CHECK(mln_ipc_worker_send_prepare(ev, T_HELLO, &me, sizeof(me)) == 0);
}

static int end_them(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)data;
    if (f->pid == first[0]) CHECK(mln_ipc_master_send_prepare(ev, T_EXIT, NULL, 0, f) == 0);
    else if (f->pid == first[1]) CHECK(mln_ipc_master_send_prepare(ev, T_SEGV, NULL, 0, f) == 0);
    else if (f->pid == first[2]) CHECK(kill(f->pid, SIGKILL) == 0);
    return 0;
}

static void master_hello(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_fork_t *f = f_ptr;
    int i, live, zombies;
    (void)buf; (void)len; (void)udata_ptr;
    if (hellos < N) {
        first[hellos++] = f->pid;
        /* All up: worker 0 exits, worker 1 faults, worker 2 is killed. */
        if (hellos == N) CHECK(mln_fork_iterate(ev, end_them, NULL) == 0);
        return;
    }
    second[hellos - N] = f->pid;
    if (++hellos < 2 * N) return;
    /* Every replacement is up, so every dead worker was found gone: none is a zombie. */
    for (i = 0; i < N; ++i) {
        errno = 0;
        CHECK(kill(first[i], 0) == -1 && errno == ESRCH);
    }
    child_processes(&live, &zombies);
    if (live != N || zombies != 0) fprintf(stderr, "children: %d live, %d zombies\n", live, zombies);
    CHECK(live == N && zombies == 0);
    mln_event_break_set(ev);
}

static int global_init(void)
{
    ctest_workers(N);
#ifdef CTEST_MELON
    ctest_log_level("warn");
#endif
    if (!mln_ipc_handler_register(T_HELLO, master_hello, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_EXIT, NULL, worker_exit, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_SEGV, NULL, worker_segv, NULL, NULL)) return -1;
    return 0;
}

/* The log line for the death of `pid` contains `what`. */
static int logged(const char *log, pid_t pid, const char *what)
{
    char want[64];
    const char *p, *eol;
    snprintf(want, sizeof(want), "child %d (worker ", (int)pid);
    p = strstr(log, want);
    if (p == NULL) return 0;
    eol = strchr(p, '\n');
    p = strstr(p, what);
    return p != NULL && (eol == NULL || p < eol);
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, NULL, worker_process};
    char path[] = "/tmp/ipc_exit_status.XXXXXX", log[16384];
    int fd = mkstemp(path), saved = dup(2), r, live, zombies;
    struct sigaction sa;
    ssize_t n;
    unsetenv("MLN_IPC_LOG"); /* the default level */
    CHECK(fd >= 0 && saved >= 0);
    unlink(path);
    CHECK(dup2(fd, 2) == 2);
    r = ctest_framework_init(&a);
    CHECK(dup2(saved, 2) == 2);
    CHECK(r == 0);
    n = pread(fd, log, sizeof(log) - 1, 0);
    CHECK(n >= 0);
    log[n] = 0;
    fprintf(stderr, "%s", log);
    CHECK(hellos == 2 * N);
    CHECK(logged(log, first[0], ") exited with status 7 (end of stream); restarting in "));
    CHECK(logged(log, first[1], ") killed by SIGSEGV (end of stream); restarting in "));
    CHECK(logged(log, first[2], ") killed by SIGKILL (end of stream); restarting in "));
    CHECK(strstr(log, "unknown") == NULL);
    /* Melon's rule kept: SIGCHLD is ignored in the master. */
    CHECK(sigaction(SIGCHLD, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN);
#ifdef CTEST_MELON
    /* Melon's framework leaves its workers running when the master's loop ends. */
    for (r = 0; r < N; ++r) kill(second[r], SIGKILL);
    return 0;
#endif
    child_processes(&live, &zombies);
    if (live != 0 || zombies != 0) fprintf(stderr, "after the end: %d live, %d zombies\n", live, zombies);
    CHECK(live == 0 && zombies == 0);
    return 0;
}
