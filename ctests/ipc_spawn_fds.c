/* Descriptors of exec'd programs (D12): a program started by mln_fork_spawn, and the same
 * program restarted by its supervisor, holds only stdio and its socketpair end; nothing
 * the library or the event loop opened (loop descriptors, other children's sockets, the
 * wake-up eventfd, Melon's log file). Descriptors this test inherited are marked
 * close-on-exec first, so whatever the program sees came from the library or the loop.
 *
 * The program (this binary again, in --child mode) lists /proc/self/fd and reports
 * "n=<count> <fd>:<target> ..." in one frame; the master answers the first instance so
 * that it exits and is restarted at once (M_PST_SUP, first restart immediate), and stops
 * at the second report. Melon's own mln_fork_spawn frees the master's loop before
 * execv; the melon build must not leave that loop's epoll descriptors to the program. */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"
#include <sys/resource.h>

#define T_REPORT 9211
#define T_BYE 9212

static int reports, clean;
static char self[4096];

static int child_mode(int argc, char *argv[])
{
    int fd = atoi(argv[argc - 1]), bad = 0;
    const char *vglogs = getenv("CTEST_VALGRIND_LOGS"); /* ctests/memcheck.sh's log files */
    struct rlimit rl;
    DIR *d;
    struct dirent *e;
    mln_u32_t h[2];
    char msg[2048], list[1900] = "";
    size_t used = 0;
    /* Descriptors at or above the soft limit are valgrind's own (it reserves the top of
     * the range and lowers the limit its client sees), and so are its log files. */
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    d = opendir("/proc/self/fd");
    if (d == NULL) return 10;
    while ((e = readdir(d)) != NULL) {
        int n;
        char p[64], t[256];
        ssize_t k;
        if (e->d_name[0] == '.') continue;
        n = atoi(e->d_name);
        if (n <= 2 || n == fd || n == dirfd(d) || (rlim_t)n >= rl.rlim_cur) continue;
        snprintf(p, sizeof(p), "/proc/self/fd/%d", n);
        k = readlink(p, t, sizeof(t) - 1);
        t[k > 0 ? k : 0] = 0;
        if (vglogs != NULL && *vglogs && strncmp(t, vglogs, strlen(vglogs)) == 0) continue;
        ++bad;
        if (used < sizeof(list) - 1)
            used += (size_t)snprintf(list + used, sizeof(list) - used, " %d:%s", n, t);
    }
    closedir(d);
    snprintf(msg, sizeof(msg), "n=%d%s", bad, list);
    h[0] = 4 + (mln_u32_t)strlen(msg);
    h[1] = T_REPORT;
    if (write(fd, h, 8) != 8 || write(fd, msg, strlen(msg)) != (ssize_t)strlen(msg)) return 11;
    /* Exit once the master answers or is gone. */
    if (read(fd, h, 8) != 8 || h[1] != T_BYE) return 12;
    return 0;
}

static void cloexec_inherited(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    CHECK(d != NULL);
    while ((e = readdir(d)) != NULL) {
        int n = atoi(e->d_name);
        if (e->d_name[0] != '.' && n > 2 && n != dirfd(d)) fcntl(n, F_SETFD, FD_CLOEXEC);
    }
    closedir(d);
}

static void master_report(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_fork_t *f = f_ptr;
    (void)udata_ptr;
    ++reports;
    fprintf(stderr, "%s program: %.*s\n", reports == 1 ? "spawned" : "restarted", (int)len,
            (char *)buf);
    if (len == 3 && memcmp(buf, "n=0", 3) == 0) ++clean;
    if (reports == 1) {
        CHECK(mln_ipc_master_send_prepare(ev, T_BYE, NULL, 0, f) == 0);
    } else {
        mln_event_break_set(ev); /* Melon's macro carries its own ';': braces needed */
    }
}

static void guard(mln_event_t *ev, void *data)
{
    (void)ev; (void)data;
    fprintf(stderr, "%d report(s) in 20 s\n", reports);
    exit(3);
}

static void master_process(mln_event_t *ev)
{
    static char a0[sizeof(self)], a1[] = "--child";
    /* Room for the descriptor argument and a NULL: Melon's own mln_fork_spawn writes
     * them into the caller's array, so the test also runs against Melon's IPC. */
    static char *args[4];
    memcpy(a0, self, sizeof(self));
    args[0] = a0;
    args[1] = a1;
    CHECK(mln_fork_spawn(M_PST_SUP, args, 2, ev) == 0);
    CHECK(mln_event_timer_set(ev, 20000, NULL, guard) != NULL);
}

static int global_init(void)
{
    ctest_workers(1); /* a sibling whose socket must not leak either */
    return mln_ipc_handler_register(T_REPORT, master_report, NULL, NULL, NULL) ? 0 : -1;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, NULL};
    ssize_t n;
    if (argc >= 2 && strcmp(argv[1], "--child") == 0) return child_mode(argc, argv);
    /* This program's path, resolved once: under valgrind "/proc/self/exe" would name the
     * valgrind tool in the exec'd program, not this test. */
    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    CHECK(n > 0);
    self[n] = 0;
    cloexec_inherited();
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(reports == 2);
    CHECK(clean == 2);
    return 0;
}
