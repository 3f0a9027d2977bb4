/* CTEST_STANDALONE_ONLY: melon-ipc's framework and mln_fork_worker_num_set; the melon build runs Melon's */
/* mln_framework_init asked for more workers than the descriptor limit allows (RLIMIT_NOFILE
 * 64, 100 workers: each costs the master one descriptor) returns -1 with EMFILE, and the
 * workers it started before the failure are ended before it returns: no child of this
 * process is left running and the master's descriptors are back to what they were (but
 * for the library's wake-up eventfd).
 * The defect it was written for: 58 workers stayed alive, holding every descriptor. */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"
#include <dirent.h>
#include <sys/resource.h>

/* Live (not zombie) processes whose parent is this one. */
static int live_children(void)
{
    int live, zombies;
    child_processes(&live, &zombies);
    return live;
}

static void worker_process(mln_event_t *ev)
{
    (void)ev;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, NULL, NULL, NULL, worker_process};
    struct rlimit lim, saved;
    int before, r;
    before = count_fds();
    CHECK(getrlimit(RLIMIT_NOFILE, &saved) == 0);
    lim = saved;
    lim.rlim_cur = 64; /* the soft limit only, so that it can be raised back */
    CHECK(setrlimit(RLIMIT_NOFILE, &lim) == 0);
    ctest_workers(100);
    errno = 0;
    r = mln_framework_init(&a);
    if (r != -1 || errno != EMFILE) fprintf(stderr, "mln_framework_init: %d, errno %d\n", r, errno);
    /* Under valgrind, which keeps descriptors of its own near the limit, the failing call
     * is sometimes refused with EBADF instead. */
    CHECK(r == -1 && (errno == EMFILE || (getenv("CTEST_VALGRIND_LOGS") && errno == EBADF)));
    CHECK(setrlimit(RLIMIT_NOFILE, &saved) == 0);
    if (live_children() != 0) fprintf(stderr, "%d workers still running\n", live_children());
    CHECK(live_children() == 0);
    /* The library's one process-wide descriptor (its wake-up eventfd) may have appeared. */
    if (count_fds() > before + 1) fprintf(stderr, "descriptors: %d before, %d after\n", before, count_fds());
    CHECK(count_fds() <= before + 1);
    return 0;
}
