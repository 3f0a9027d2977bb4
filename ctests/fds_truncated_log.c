/* Descriptors through the channel (issue 23): a receiver at its descriptor limit logs it,
 * once per peer ("logged once per peer"). One worker, log level warn, this process's stderr
 * (inherited by the worker) pointed at a file.
 *
 * The worker lowers its RLIMIT_NOFILE and fills its table but for 2 slots (as
 * fds_truncated; under valgrind the master also applies the limit with prlimit), then the
 * master sends 3 frames of 5 descriptors: each arrives truncated (the worker takes none:
 * the 2 that came are closed after each handler). The log must then hold exactly one line
 * of the worker's (its pid) that mentions descriptors. */
#define _GNU_SOURCE
#include <sys/resource.h>
#include "fds.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_LIMIT 9101   /* worker -> master: lower my limit (valgrind only) */
#define T_LIMITED 9102 /* master -> worker */
#define T_FULL 9103    /* worker -> master */
#define T_A 9104       /* master -> worker: 5 descriptors */
#define T_END 9105     /* master -> worker */
#define T_DONE 9106    /* worker -> master */
#define LIMIT 256

/* The master's copy of its stderr, restored at the end (workers close theirs). */
static int saved = -1;
#define FREE 2
#define FRAMES 3

static int fill[LIMIT], nfill, truncs, finished;
static pid_t w_pid;

static void worker_fill(mln_event_t *ev)
{
    int fd, i;
    while ((fd = dup(0)) >= 0) {
        CHECK(nfill < LIMIT);
        fill[nfill++] = fd;
    }
    CHECK(errno == EMFILE && nfill > FREE);
    for (i = 0; i < FREE; ++i) close(fill[--nfill]);
    CHECK(mln_ipc_worker_send_prepare(ev, T_FULL, NULL, 0) == 0);
}

static void worker_limited(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    worker_fill(ev);
}

static void worker_a(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    CHECK(mln_ipc_fds_truncated() == 1 && mln_ipc_fds_count() == FREE);
    ++truncs;
}

static void worker_end(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    CHECK(truncs == FRAMES);
    while (nfill > 0) close(fill[--nfill]);
    CHECK(mln_ipc_worker_send_prepare(ev, T_DONE, NULL, 0) == 0);
}

static void master_limit(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    struct rlimit rl;
    pid_t pid = ((mln_fork_t *)f_ptr)->pid;
    (void)buf; (void)len; (void)udata_ptr;
    CHECK(prlimit(pid, RLIMIT_NOFILE, NULL, &rl) == 0);
    rl.rlim_cur = LIMIT;
    CHECK(prlimit(pid, RLIMIT_NOFILE, &rl, NULL) == 0);
    CHECK(mln_ipc_master_send_prepare(ev, T_LIMITED, NULL, 0, f_ptr) == 0);
}

static void master_full(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int p[2], fds[5], i, k;
    (void)buf; (void)len; (void)udata_ptr;
    w_pid = ((mln_fork_t *)f_ptr)->pid;
    for (i = 0; i < FRAMES; ++i) {
        CHECK(pipe(p) == 0);
        for (k = 0; k < 5; ++k) fds[k] = p[1];
        CHECK(mln_ipc_master_send_fds_prepare(ev, T_A, NULL, 0, fds, 5, f_ptr) == 0);
        close(p[0]);
        close(p[1]);
    }
    CHECK(mln_ipc_master_send_prepare(ev, T_END, NULL, 0, f_ptr) == 0);
}

static void master_done(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    finished = 1;
    mln_event_break_set(ev);
}

static void worker_process(mln_event_t *ev)
{
    if (saved >= 0) close(saved);
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    rl.rlim_cur = LIMIT;
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    if (valgrind()) CHECK(mln_ipc_worker_send_prepare(ev, T_LIMIT, NULL, 0) == 0);
    else worker_fill(ev);
}

static int global_init(void)
{
    ctest_workers(1);
    ctest_log_level("warn");
    mln_ipc_child_event_handler_set(fds_exit_fails, NULL);
    if (!mln_ipc_handler_register(T_LIMIT, master_limit, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_LIMITED, NULL, worker_limited, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_FULL, master_full, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_A, NULL, worker_a, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_END, NULL, worker_end, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_DONE, master_done, NULL, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, NULL, worker_process};
    char path[] = "/tmp/fds_truncated_log.XXXXXX", log[16384], tag1[32], tag2[32], *line;
    int fd = mkstemp(path), r, lines = 0;
    saved = dup(2);
    ssize_t n;
    CHECK(fd >= 0 && saved >= 0);
    unlink(path);
    CHECK(dup2(fd, 2) == 2);
    r = ctest_framework_init(&a);
    CHECK(dup2(saved, 2) == 2);
    close(saved);
    CHECK(r == 0 && finished);
    n = pread(fd, log, sizeof(log) - 1, 0);
    close(fd);
    CHECK(n >= 0);
    log[n] = 0;
    fprintf(stderr, "%s", log);
    /* The pid as the two builds' log lines give it. */
    snprintf(tag1, sizeof(tag1), "[%d]", (int)w_pid);
    snprintf(tag2, sizeof(tag2), "PID:%d ", (int)w_pid);
    for (line = strtok(log, "\n"); line != NULL; line = strtok(NULL, "\n"))
        if ((strstr(line, tag1) || strstr(line, tag2)) && strstr(line, "descriptor")) ++lines;
    fprintf(stderr, "%d line(s) of worker %d about descriptors (expected 1, for %d truncated "
                    "frames)\n", lines, (int)w_pid, FRAMES);
    CHECK(lines == 1);
    return 0;
}
