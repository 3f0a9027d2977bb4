/* Adversarial: mln_fork with the fork server asked for (mln_fork_server_set) while the
 * process already runs a second thread, which holds a lock. The server cannot start (it
 * must be a single-threaded copy of the process), so mln_fork fails with EDEADLK; it must
 * fail before it forks anything: a worker forked now would be a copy of a process whose
 * other thread holds a lock (here: the worker would hang on it for ever), which is what
 * the server is there to prevent, and the caller, told that mln_fork failed, would not
 * know that it has workers.
 * CTEST_STANDALONE_ONLY: mln_fork_server_set is an extension of the standalone build.
 * Checks: mln_fork() returns -1 with errno EDEADLK in this process, no other process
 * returns from it, and this process has no child afterwards (none forked). */
#define _GNU_SOURCE
#include "ctest.h"
#include "procs.h"


static void kill_one(const struct proc_child *c, void *data)
{
    (void)data;
    kill(c->pid, SIGKILL);
}

/* The processes whose parent is `parent` (killed with SIGKILL if `kill_them`). */
static int children_of(pid_t parent, int kill_them)
{
    return proc_children(parent, kill_them ? kill_one : NULL, NULL);
}

int main(void)
{
    pid_t me = getpid();
    int r, e, n;
    alarm(30);
    holder_start();
    mln_fork_worker_num_set(2);
    mln_fork_server_set(1);
    CHECK(mln_fork_prepare() == 0);
    errno = 0;
    r = mln_fork();
    e = errno;
    if (getpid() != me) {
        /* A worker forked beside the thread: it cannot take the lock. */
        fprintf(stderr, "worker %d returned %d from mln_fork\n", (int)getpid(), r);
        for (;;) pause(); /* the master sees it, and kills it */
    }
    n = children_of(me, 1);
    if (r != -1 || e != EDEADLK || n != 0)
        fprintf(stderr, "mln_fork: %d (errno %d), %d children forked\n", r, e, n);
    CHECK(r == -1 && e == EDEADLK);
    CHECK(n == 0);
    holder_release();
    return 0;
}
