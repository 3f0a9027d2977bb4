/* Handler set in master_process (after the workers were forked): the initial STARTED
 * still come ("once the master's loop runs"). mln_fork_socketpair_close_handler on a
 * supervised worker: EXITED how STOPPED (docs: asked), restarted (restart_in_ms >= 0),
 * STARTED again with restarts 1. mln_fork_stop then close_handler on the same worker:
 * exactly one EXITED, never restarted. */
#include "life_rec.h"

static int phase;
static pid_t p0, p1;

static void finish(mln_event_t *ev, void *d)
{
    (void)d;
    ACHECK(rec_count(M_IPC_CHILD_EXITED, 1) == 1);
    ACHECK(rec_count(M_IPC_CHILD_STARTED, 1) == 1);
    ACHECK(rec_live(ev) == 1);
    rec_check_pids();
    phase = 9;
    mln_event_break_set(ev);
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    rec_ev_t *r = rec_record(f, e);
    (void)data;
    if (e->type == M_IPC_CHILD_STARTED && e->restarts == 0) {
        if (e->slot == 0) p0 = e->pid; else p1 = e->pid;
        if (p0 && p1 && phase == 0) {
            phase = 1;
            ACHECK(f->pid == p1 || f->pid == p0);
        }
        if (e->slot == 0) mln_fork_socketpair_close_handler(ev, f, mln_tcp_conn_fd_get(&f->conn));
        else {
            ACHECK(mln_fork_stop(ev, f, 1000) == 0);
            mln_fork_socketpair_close_handler(ev, f, mln_tcp_conn_fd_get(&f->conn));
        }
    } else if (e->type == M_IPC_CHILD_EXITED && e->slot == 0) {
        fprintf(stderr, "close_handler: %s exited %d status %d restart_in %lld\n", rec_how_name(r->how),
                r->exited, r->status, r->restart_in_ms);
        ACHECK(r->how == M_IPC_END_STOPPED);
        ACHECK(r->restart_in_ms >= 0);
    } else if (e->type == M_IPC_CHILD_STARTED && e->slot == 0) {
        ACHECK(e->restarts == 1);
        ACHECK(mln_event_timer_set(ev, 2500, NULL, finish) != NULL);
    } else if (e->type == M_IPC_CHILD_EXITED && e->slot == 1) {
        fprintf(stderr, "stop+close: %s exited %d status %d restart_in %lld\n", rec_how_name(r->how),
                r->exited, r->status, r->restart_in_ms);
        ACHECK(r->restart_in_ms == -1);
    }
}

static void master_process(mln_event_t *ev)
{
    (void)ev;
    mln_ipc_child_event_handler_set(on_event, NULL);
}

static int global_init(void)
{
    ctest_workers(2);
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, NULL};
    rec_init(20);
    if (ctest_framework_init(&a) < 0) return 1;
    ACHECK(phase == 9);
    return 0;
}
