/* 1000 stop / start cycles: one worker; at each STARTED it is stopped (deadline alternating
 * 0 and 2000 ms), at each EXITED a new one is forked with mln_fork_restart. The EXITED
 * records are kept and every one is read again at the end (all within the 4096 tombstones
 * the docs promise): f->pid must still be the pid of its event. Descriptors and RSS of the
 * master must not grow between cycle 200 and cycle 1000 (100 cycles under valgrind). */
#include "life_rec.h"

#ifndef CYCLES
#define CYCLES 1000
#endif

static int cycles, phase;
/* Cycles run: CYCLES, or 100 under valgrind (each start and stop is slow there). */
static int total;
static mln_fork_t *dead[CYCLES + 8];
static pid_t dead_pid[CYCLES + 8];
static int fds200;
static long rss200;
static int n_d0_how[8];

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    (void)data;
    if (e->type == M_IPC_CHILD_STARTED) {
        ACHECK(mln_fork_stop(ev, f, (cycles & 1) ? 2000 : 0) == 0);
    } else if (e->type == M_IPC_CHILD_EXITED) {
        int r, i;
        if (cycles & 1) ACHECK(e->how == M_IPC_END_STOPPED);
        else if (e->how < 8) ++n_d0_how[e->how];
        ACHECK(e->restart_in_ms == -1);
        dead[cycles] = f;
        dead_pid[cycles] = e->pid;
        ++cycles;
        if (cycles % 2000 == 0) fprintf(stderr, "cycle %d rss %ld fds %d\n", cycles, rss_kb(), count_fds());
        if (cycles == total / 5) { fds200 = count_fds(); rss200 = rss_kb(); }
        if (cycles == total) {
            int fds = count_fds();
            long rss = rss_kb();
            fprintf(stderr, "fds %d -> %d, rss %ld -> %ld KiB; deadline-0 stops: STOPPED %d TERMINATED %d KILLED %d CRASHED %d\n",
                    fds200, fds, rss200, rss, n_d0_how[M_IPC_END_STOPPED], n_d0_how[M_IPC_END_TERMINATED],
                    n_d0_how[M_IPC_END_KILLED], n_d0_how[M_IPC_END_CRASHED]);
            for (i = 0; i < total; ++i) ACHECK(dead[i]->pid == dead_pid[i]);
            ACHECK(fds == fds200);
            /* Under valgrind its own allocations make RSS say nothing. */
            ACHECK(valgrind() || rss - rss200 < 2048);
            phase = 1;
            mln_event_break_set(ev);
            return;
        }
        r = mln_fork_restart(ev);
        ACHECK(r >= 0);
        if (r == 0) { mln_event_break_set(ev); return; }
    }
}

static int global_init(void)
{
    ctest_workers(1);
    mln_ipc_child_event_handler_set(on_event, NULL);
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, NULL, NULL};
    total = valgrind() ? 100 : CYCLES;
    rec_init(55);
    if (ctest_framework_init(&a) < 0) return 1;
    if (getpid() != rec_master) return 0;
    ACHECK(phase == 1);
    return 0;
}
