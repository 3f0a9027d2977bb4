/* Helpers of the lifecycle tests that record every child event (ctests/life_*.c that
 * include it): the events in order, names, a watchdog. Not part of the API. */
#ifndef REC_H
#define REC_H
#include "ctest.h"
#include "mln_event.h"

#define REC_UNUSED __attribute__((unused))
#define MAXEV 20000

typedef struct {
    int type, slot, how, exited, status;
    pid_t pid;
    unsigned restarts;
    long long restart_in_ms;
    unsigned long long frames_lost;
    mln_fork_t *f;
    long t_ms;
} rec_ev_t;

REC_UNUSED static rec_ev_t rec_evs[MAXEV];
REC_UNUSED static int rec_nev;
REC_UNUSED static pid_t rec_master;

REC_UNUSED static const char *rec_type_name(int t)
{
    switch (t) {
    case M_IPC_CHILD_STARTED: return "STARTED";
    case M_IPC_CHILD_EXITED: return "EXITED";
    case M_IPC_CHILD_GAVE_UP: return "GAVE_UP";
    case M_IPC_ROLLING_DONE: return "ROLLING_DONE";
    default: return "?";
    }
}

REC_UNUSED static const char *rec_how_name(int h)
{
    switch (h) {
    case M_IPC_END_CRASHED: return "CRASHED";
    case M_IPC_END_STOPPED: return "STOPPED";
    case M_IPC_END_TERMINATED: return "TERMINATED";
    case M_IPC_END_KILLED: return "KILLED";
    default: return "-";
    }
}

REC_UNUSED static rec_ev_t *rec_record(mln_fork_t *f, const mln_ipc_child_event_t *e)
{
    rec_ev_t *r;
    CHECK(getpid() == rec_master); /* events only in the master */
    CHECK(rec_nev < MAXEV);
    r = &rec_evs[rec_nev++];
    r->type = e->type;
    r->slot = (int)e->slot;
    r->pid = e->pid;
    r->how = e->how;
    r->exited = e->exited;
    r->status = e->status;
    r->restarts = e->restarts;
    r->restart_in_ms = e->restart_in_ms;
    r->frames_lost = e->frames_lost;
    r->f = f;
    r->t_ms = now_ms();
    if (getenv("REC_VERBOSE"))
        fprintf(stderr, "ev %s slot %u pid %d how %s exited %d status %d restarts %u in %lld lost %llu f %p\n",
                rec_type_name(e->type), e->slot, (int)e->pid, rec_how_name(e->how), e->exited,
                e->status, e->restarts, (long long)e->restart_in_ms,
                (unsigned long long)e->frames_lost, (void *)f);
    return r;
}

REC_UNUSED static void rec_dump(void)
{
    int i;
    for (i = 0; i < rec_nev; ++i)
        fprintf(stderr, "  #%d %s slot %d pid %d how %s exited %d status %d restarts %u in %lld lost %llu\n",
                i, rec_type_name(rec_evs[i].type), rec_evs[i].slot, (int)rec_evs[i].pid,
                rec_how_name(rec_evs[i].how), rec_evs[i].exited, rec_evs[i].status,
                rec_evs[i].restarts, rec_evs[i].restart_in_ms, rec_evs[i].frames_lost);
}

#define ACHECK(cond) do { if (!(cond)) { rec_dump(); \
    fprintf(stderr, "%s:%d: check failed: %s (pid %d)\n", __FILE__, __LINE__, #cond, (int)getpid()); \
    exit(2); } } while (0)

static void rec_alarm(int sig)
{
    static const char m[] = "watchdog: test hung\n";
    (void)sig;
    if (getpid() != rec_master) _exit(0);
    (void)!write(2, m, sizeof(m) - 1);
    rec_dump();
    _exit(4);
}

/* Call in main before the framework: watchdog of `secs` seconds for the master. */
REC_UNUSED static void rec_init(unsigned secs)
{
    rec_master = getpid();
    signal(SIGALRM, rec_alarm);
    alarm(secs);
}

REC_UNUSED static int rec_count(int type, int slot)
{
    int i, n = 0;
    for (i = 0; i < rec_nev; ++i)
        if (rec_evs[i].type == type && (slot < 0 || rec_evs[i].slot == slot)) ++n;
    return n;
}

static int rec_count_cb(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)ev; (void)f;
    ++*(int *)data;
    return 0;
}

REC_UNUSED static int rec_live(mln_event_t *ev)
{
    int n = 0;
    CHECK(mln_fork_iterate(ev, rec_count_cb, &n) == 0);
    return n;
}

/* Per pid: at most one STARTED, at most one EXITED, STARTED before EXITED. Returns the
 * number of EXITED pids that had no STARTED. */
REC_UNUSED static int rec_check_pids(void)
{
    int i, j, orphans = 0;
    for (i = 0; i < rec_nev; ++i) {
        int t = rec_evs[i].type;
        if (t != M_IPC_CHILD_STARTED && t != M_IPC_CHILD_EXITED) continue;
        int seen_start = 0;
        for (j = 0; j < rec_nev; ++j) {
            if (j == i || rec_evs[j].pid != rec_evs[i].pid) continue;
            if (rec_evs[j].type == t) {
                fprintf(stderr, "pid %d has two %s (#%d #%d)\n", (int)rec_evs[i].pid, rec_type_name(t), i, j);
                ACHECK(0);
            }
            if (t == M_IPC_CHILD_EXITED && rec_evs[j].type == M_IPC_CHILD_STARTED) {
                seen_start = 1;
                if (j > i) { fprintf(stderr, "pid %d EXITED before STARTED\n", (int)rec_evs[i].pid); ACHECK(0); }
            }
        }
        if (t == M_IPC_CHILD_EXITED && !seen_start) ++orphans;
    }
    return orphans;
}
#endif
