/* A worker exits with status 127 once its master is gone (SIGKILL). This test process is
 * the subreaper, so it collects the orphaned worker's status. */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

static int pfd[2];

static void worker_process(mln_event_t *ev)
{
    pid_t me = getpid();
    (void)ev;
    CHECK(write(pfd[1], &me, sizeof(me)) == (ssize_t)sizeof(me));
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, NULL, NULL, NULL, worker_process};
    pid_t master, worker;
    CHECK(prctl_subreaper() == 0);
    CHECK(pipe(pfd) == 0);
    master = fork();
    CHECK(master >= 0);
    if (master == 0) {
        mln_framework_init(&a);
        _exit(0);
    }
    close(pfd[1]);
    CHECK(read(pfd[0], &worker, sizeof(worker)) == (ssize_t)sizeof(worker));
    CHECK(kill(master, SIGKILL) == 0);
    CHECK(wait_status(master) == 128 + SIGKILL);
    CHECK(wait_status(worker) == 127);
    return 0;
}
