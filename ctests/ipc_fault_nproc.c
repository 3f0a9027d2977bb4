/* fork() failing with EAGAIN (RLIMIT_NPROC): mln_fork_restart, mln_fork_spawn and mln_fork
 * return -1, leak no descriptor, and leave the library usable (forking works again once the
 * limit is lifted; the child list is unchanged).
 *
 * RLIMIT_NPROC is not enforced for root (CAP_SYS_RESOURCE / CAP_SYS_ADMIN), and tests run
 * as root in CI. So the test runs in a forked helper that sets RLIMIT_NPROC to 1 and drops
 * to uid/gid 65534 (nobody): it then owns one process, itself, and every fork fails. Run
 * as a non-root user, the helper keeps its uid (the limit applies anyway). If the helper
 * can neither drop privileges nor see fork fail, the test says so and fails. The melon
 * build's mln_fork() returns 1 there, as Melon's does (docs/melon-build.md). */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"
#include <grp.h>
#include <sys/resource.h>

static int count(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)ev; (void)f;
    ++*(int *)data;
    return 0;
}

static int children(mln_event_t *ev)
{
    int n = 0;
    CHECK(mln_fork_iterate(ev, count, &n) == 0);
    return n;
}

static int helper(void)
{
    struct rlimit one = {1, 1};
    char a0[] = "/bin/true";
    char *args[1];
    mln_event_t *ev = mln_event_new();
    int fds, r;
    args[0] = a0;
    CHECK(ev != NULL);
    CHECK(mln_fork_prepare() == 0);
    CHECK(setrlimit(RLIMIT_NPROC, &one) == 0);
    if (geteuid() == 0) {
        CHECK(setgroups(0, NULL) == 0);
        CHECK(setgid(65534) == 0);
        CHECK(setuid(65534) == 0);
    }
    /* Is fork really refused now? */
    r = fork();
    if (r == 0) _exit(0);
    if (r > 0) {
        fprintf(stderr, "fork still works under RLIMIT_NPROC=1 as uid %d\n", (int)getuid());
        return 3;
    }
    CHECK(errno == EAGAIN);

    fds = count_fds();
    CHECK(mln_fork_restart(ev) == -1);
    CHECK(mln_fork_restart(NULL) == -1);
    CHECK(mln_fork_spawn(M_PST_SUP, args, 1, ev) == -1);
    CHECK(mln_fork_spawn(M_PST_DFL, args, 1, NULL) == -1);
    ctest_workers(3);
#ifdef CTEST_MELON
    CHECK(mln_fork() == 1); /* as Melon's: a worker whose fork fails is skipped */
#else
    CHECK(mln_fork() == -1);
#endif
    CHECK(count_fds() == fds);
    CHECK(children(ev) == 0);
    mln_event_free(ev);
    return 0;
}

int main(void)
{
    pid_t pid;
    int st;
    mln_event_t *ev;
    CHECK(mln_fork_prepare() == 0);
    CHECK(ctest_conf_load() == 0); /* mln_fork() of the melon build reads it */
    /* mln_fork_prepare ignores SIGCHLD (children are reaped automatically, as in Melon),
     * which would make the helper's status vanish: restore the default disposition for
     * the helper's lifetime. */
    signal(SIGCHLD, SIG_DFL);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) _exit(helper());
    st = wait_status(pid);
    CHECK(mln_fork_prepare() == 0);
    if (st == -1) {
        fprintf(stderr, "helper status lost\n");
        return 1;
    }
    CHECK(st == 0);

    /* Nothing in this process was touched: forking works. */
    ev = mln_event_new();
    CHECK(ev != NULL);
    st = mln_fork_restart(ev);
    CHECK(st >= 0);
    if (st == 0) _exit(0);
    CHECK(children(ev) == 1);
    mln_event_free(ev);
    return 0;
}
