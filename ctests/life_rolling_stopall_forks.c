/* mln_fork_stop(ev, NULL) while a rolling restart runs (8 workers, batch 1; the stop is
 * made in the first replacement's STARTED). Docs: stop NULL = every child stopped, never
 * restarted, pending restarts cancelled. Expected: no process is forked after the stop: a
 * STARTED after it must name a pid that existed (as a child of the master, per /proc) when
 * the stop was made. (Those STARTED events themselves are rec_rolling_stopall.c's
 * subject.) */
#include "life_rec.h"

#define N 8

static int phase, after_stop;
static pid_t known[64];
static int nknown;

/* every process whose parent is the master, at the moment of the stop */
static void snapshot_children(void)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    CHECK(d != NULL);
    while ((de = readdir(d)) != NULL) {
        char path[300];
        int pid, ppid;
        char comm[256], st;
        FILE *f;
        if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
        snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
        if ((f = fopen(path, "r")) == NULL) continue;
        if (fscanf(f, "%d %255s %c %d", &pid, comm, &st, &ppid) == 4 && ppid == getpid() && nknown < 64)
            known[nknown++] = pid;
        fclose(f);
    }
    closedir(d);
}

static void finish(mln_event_t *ev, void *d)
{
    (void)d;
    fprintf(stderr, "processes forked after mln_fork_stop(NULL): %d\n", after_stop);
    ACHECK(rec_live(ev) == 0);
    ACHECK(after_stop == 0);
    phase = 3;
    mln_event_break_set(ev);
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    int i, k = 0;
    (void)data;
    rec_record(f, e);
    if (e->type != M_IPC_CHILD_STARTED) return;
    for (i = 0; i < nknown; ++i) if (known[i] == e->pid) k = 1;
    if (phase == 2 && !k) {
        fprintf(stderr, "STARTED slot %u pid %d: forked after the stop\n", e->slot, (int)e->pid);
        ++after_stop;
    }
    if (phase == 0) {
        known[nknown++] = e->pid;
        if (nknown == N) {
            phase = 1;
            ACHECK(mln_fork_rolling_restart(ev, 1, 5000, 3000) == 0);
        }
    } else if (phase == 1) {
        known[nknown++] = e->pid; /* the replacement in flight */
        phase = 2;
        snapshot_children();
        ACHECK(mln_fork_stop(ev, NULL, 1000) == 0);
        ACHECK(mln_event_timer_set(ev, 3000, NULL, finish) != NULL);
    }
}

static int global_init(void)
{
    ctest_workers(N);
    mln_ipc_child_event_handler_set(on_event, NULL);
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, NULL, NULL};
    rec_init(30);
    if (ctest_framework_init(&a) < 0) return 1;
    ACHECK(phase == 3);
    return 0;
}
