/* A Melon framework program that calls no IPC function itself (its workers come from the
 * configuration's worker_proc), linked through the installed mln_ipc_melon.pc
 * (scripts/check-install.sh melon). It passes only if melon-ipc's IPC runs, not Melon's:
 * the worker exits at once every time, and melon-ipc restarts it with backoff (0, 0,
 * +100, +200, +400, +800 ms: 4 to 8 starts in 1.5 s), where Melon's own IPC re-forks it
 * in a tight loop (thousands of starts).
 *
 * MELON_FRAMEWORK_CONF names the Melon configuration (framework "multiprocess",
 * worker_proc 1, daemon off, a log_path); the script writes it. Not one of the C tests run
 * by ctests/run.sh: it needs an installed melon-ipc. Linked without the flags of
 * mln_ipc_melon.pc (plain -lmln_ipc_melon -lmelon under --as-needed, or the static
 * archive without -u), it gets Melon's IPC and fails with about 3,000 starts. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "mln_framework.h"
#include "mln_path.h"
#include "mln_ipc_ext.h" /* from mln_ipc_melon.pc's Cflags; nothing of it is used */

static int pfd[2];
static pid_t master_pid;

static char *conf_path(void) { return getenv("MELON_FRAMEWORK_CONF"); }

static void stop(mln_event_t *ev, void *data)
{
    (void)data;
    mln_event_break_set(ev);
}

static void master_process(mln_event_t *ev)
{
    if (mln_event_timer_set(ev, 1500, NULL, stop) == NULL) {
        fprintf(stderr, "mln_event_timer_set failed\n");
        exit(2);
    }
}

/* Melon runs the worker routine in the workers and, once the master's loop has ended, in
 * the master too: there it counts the starts and ends the program. */
static void worker_process(mln_event_t *ev)
{
    char b[4096];
    ssize_t n;
    int starts = 0;
    (void)ev;
    if (getpid() != master_pid) {
        if (write(pfd[1], "s", 1) != 1) _exit(2);
        _exit(3);
    }
    while ((n = read(pfd[0], b, sizeof(b))) > 0) starts += (int)n;
    printf("worker starts in 1.5 s: %d (melon-ipc: 4 to 8; Melon's own IPC: thousands)\n", starts);
    fflush(stdout);
    exit(starts >= 4 && starts <= 8 ? 0 : 1);
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, NULL, NULL, master_process, worker_process};
    if (conf_path() == NULL) {
        fprintf(stderr, "MELON_FRAMEWORK_CONF is not set\n");
        return 2;
    }
    mln_path_hook_set(m_p_conf, conf_path);
    master_pid = getpid();
    if (pipe(pfd) != 0 || fcntl(pfd[0], F_SETFL, O_NONBLOCK) != 0) return 2;
    if (mln_framework_init(&a) < 0) return 2;
    return 1; /* not reached: worker_process ends the master */
}
