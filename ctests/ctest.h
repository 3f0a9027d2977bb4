/* Helpers shared by the C tests: a failure macro, descriptor counting, waiting for a
 * child, and what lets one test source run in both builds. Not part of the API.
 *
 * Both builds (ctests/run.sh; CTEST_BUILD=melon for the melon build):
 *   ctest_workers(n)          the number of workers mln_fork() starts. Standalone: the
 *                             extension mln_fork_worker_num_set(n). Melon build:
 *                             `worker_proc n` in Melon's loaded configuration (as Melon's
 *                             own t/fork.c does), so call it after the configuration is
 *                             loaded: in global_init, or after ctest_conf_load().
 *   ctest_log_level(level)    how much the library logs: "error", "warn" or "debug" (the
 *                             words mean the same in both builds). Standalone: MLN_IPC_LOG.
 *                             Melon build: `log_level` in Melon's loaded configuration (our
 *                             lines go to Melon's log, which also writes them to stderr while
 *                             not a daemon). Call it in global_init, as ctest_workers.
 *   ctest_framework_init(a)   mln_framework_init(a), returning in the master once the
 *                             master's loop is broken (see below).
 *   ctest_conf_load()         for tests that call mln_fork() without the framework:
 *                             Melon's mln_conf_load() in the melon build, nothing otherwise.
 *
 * The melon build (-DCTEST_MELON, compiled against Melon's installed headers, linked with
 * our melon archive before libmelon_static.a):
 * - Configuration: run.sh writes one file per test (framework "multiprocess", daemon off,
 *   worker_proc 1, log_level, and log_path in the test's own directory, where Melon also
 *   writes its melon.pid) and names it in CTEST_MELON_CONF; a constructor below points
 *   Melon's configuration path at it (mln_path_hook_set(m_p_conf, ...)) before main runs.
 * - Melon's framework runs the worker routine in the master too once the master's loop
 *   ends (with a fresh loop and no master connection: worker_process, then a dispatch that
 *   never ends). ctest_framework_init hands Melon a worker_process of its own that, in the
 *   master, frees that loop and jumps back out, so mln_framework_init "returns 0" there as
 *   in the standalone build; in workers it calls the test's worker_process.
 * - Extensions present in both builds but not in Melon's headers (mln_ipc_max_message_set,
 *   mln_ipc_queue_limit_set, mln_ipc_writable_handler_set, mln_ipc_stats_get) come from
 *   include/mln_ipc_ext.h, included in both builds (a no-op after our mln_ipc.h). */
#ifndef CTEST_H
#define CTEST_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <signal.h>
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "../include/mln_ipc_ext.h"
#ifdef CTEST_MELON
#include <setjmp.h>
#include "mln_conf.h"
#include "mln_path.h"
#endif

#define CHECK(cond) do { if (!(cond)) { \
    fprintf(stderr, "%s:%d: check failed: %s (pid %d)\n", __FILE__, __LINE__, #cond, (int)getpid()); \
    exit(2); } } while (0)

/* Number of open descriptors of this process. */
static inline int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    if (d == NULL) return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') ++n;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

/* Waits for child `pid` (bounded by the harness timeout) and returns its exit status,
 * 128 + the signal that killed it, or -1. */
static inline int wait_status(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Whether the test runs under valgrind (ctests/memcheck.sh sets CTEST_VALGRIND_LOGS). */
static inline int valgrind(void) { return getenv("CTEST_VALGRIND_LOGS") != NULL; }

/* Whether process `pid` has exited: gone, or a zombie (/proc/<pid>/stat's state). */
static inline int pid_exited(pid_t pid)
{
    char path[64], buf[512], *p;
    ssize_t n;
    int fd;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    fd = open(path, O_RDONLY);
    if (fd < 0) return 1;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) return 1;
    buf[n] = 0;
    p = strrchr(buf, ')');
    return p != NULL && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

/* Milliseconds of CLOCK_MONOTONIC. */
static inline long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* This process's resident set size (VmRSS), in KiB. */
static inline long rss_kb(void)
{
    char line[256];
    long kb = -1;
    FILE *f = fopen("/proc/self/status", "r");
    CHECK(f != NULL);
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
    fclose(f);
    CHECK(kb > 0);
    return kb;
}

/* Children of this process (by /proc/<pid>/stat's ppid): live ones and zombies (each
 * zombie is named on stderr). */
static inline void child_processes(int *live, int *zombies)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    *live = *zombies = 0;
    CHECK(d != NULL);
    while ((e = readdir(d)) != NULL) {
        char path[300], comm[256], state;
        int pid, ppid;
        FILE *f;
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        f = fopen(path, "r");
        if (f == NULL) continue;
        if (fscanf(f, "%d %255s %c %d", &pid, comm, &state, &ppid) == 4 && ppid == getpid()) {
            if (state == 'Z') {
                fprintf(stderr, "zombie child %d\n", pid);
                ++*zombies;
            } else {
                ++*live;
            }
        }
        fclose(f);
    }
    closedir(d);
}

#ifndef CTEST_MELON

static inline void ctest_workers(mln_u32_t n) { mln_fork_worker_num_set(n); }
static inline void ctest_log_level(const char *level) { CHECK(setenv("MLN_IPC_LOG", level, 1) == 0); }
static inline int ctest_conf_load(void) { return 0; }
static inline int ctest_framework_init(struct mln_framework_attr *a) { return mln_framework_init(a); }

#else /* CTEST_MELON */

static char *ctest_conf_path(void) { return getenv("CTEST_MELON_CONF"); }

__attribute__((constructor)) static void ctest_melon_conf(void)
{
    const char *p = getenv("CTEST_MELON_CONF");
    if (p == NULL || *p == 0) {
        fprintf(stderr, "CTEST_MELON_CONF is not set: run melon-build tests through "
                        "'CTEST_BUILD=melon ctests/run.sh' (make ctest-melon)\n");
        exit(2);
    }
    mln_path_hook_set(m_p_conf, ctest_conf_path);
}

static inline int ctest_conf_load(void) { return mln_conf_load(); }

/* Sets command `cmd` of domain main to one item in Melon's loaded configuration. */
static inline void ctest_conf_set(char *cmd, mln_conf_item_t *item)
{
    mln_conf_t *cf = mln_conf();
    mln_conf_domain_t *cd;
    mln_conf_cmd_t *cc;
    CHECK(cf != NULL); /* configuration not loaded yet: call from global_init */
    cd = cf->search(cf, "main");
    CHECK(cd != NULL);
    cc = cd->search(cd, cmd);
    if (cc == NULL) cc = cd->insert(cd, cmd);
    CHECK(cc != NULL);
    CHECK(cc->update(cc, item, 1) == 0); /* copies the item (and its string) */
}

static inline void ctest_workers(mln_u32_t n)
{
    mln_conf_item_t item;
    item.type = CONF_INT;
    item.val.i = (mln_sauto_t)n;
    ctest_conf_set("worker_proc", &item);
}

static inline void ctest_log_level(const char *level)
{
    mln_string_t s;
    mln_conf_item_t item;
    mln_string_nset(&s, (char *)level, strlen(level));
    item.type = CONF_STR;
    item.val.s = &s;
    ctest_conf_set("log_level", &item);
}

static jmp_buf ctest_master_done;
static pid_t ctest_master_pid;
static mln_framework_process_t ctest_worker_process;

static void ctest_worker_routine(mln_event_t *ev)
{
    if (getpid() == ctest_master_pid) {
        /* The master's loop has ended: leave Melon's worker routine. */
        mln_event_free(ev);
        longjmp(ctest_master_done, 1);
    }
    if (ctest_worker_process != NULL) ctest_worker_process(ev);
}

static inline int ctest_framework_init(struct mln_framework_attr *a)
{
    ctest_master_pid = getpid();
    ctest_worker_process = a->worker_process;
    a->worker_process = ctest_worker_routine;
    if (setjmp(ctest_master_done) != 0) return 0;
    return mln_framework_init(a);
}

#endif /* CTEST_MELON */
#endif
