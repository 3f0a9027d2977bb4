/* Restart policy intensity 1 / 10 s with a crash loop (slot 0 exits 7 in worker_process,
 * slot 1 is healthy). Expected for slot 0: STARTED, EXITED CRASHED (restart coming),
 * STARTED (restarts 1), EXITED CRASHED restart_in_ms -1, GAVE_UP; then nothing more for
 * slot 0, slot 1 untouched; EINVAL for intensity > 0 with period 0. */
#include "life_rec.h"

static int phase;
static pid_t slot1_pid;

static void finish(mln_event_t *ev, void *d)
{
    int i, seq = 0;
    static const int want[] = {M_IPC_CHILD_STARTED, M_IPC_CHILD_EXITED, M_IPC_CHILD_STARTED,
                               M_IPC_CHILD_EXITED, M_IPC_CHILD_GAVE_UP};
    (void)d;
    for (i = 0; i < rec_nev; ++i) {
        if (rec_evs[i].slot != 0) continue;
        ACHECK(seq < 5 && rec_evs[i].type == want[seq]);
        if (seq == 1) ACHECK(rec_evs[i].how == M_IPC_END_CRASHED && rec_evs[i].restart_in_ms >= 0 && rec_evs[i].status == 7);
        if (seq == 2) ACHECK(rec_evs[i].restarts == 1);
        if (seq == 3) ACHECK(rec_evs[i].how == M_IPC_END_CRASHED && rec_evs[i].restart_in_ms == -1);
        ++seq;
    }
    ACHECK(seq == 5);
    ACHECK(rec_count(M_IPC_CHILD_STARTED, 1) == 1);
    ACHECK(rec_live(ev) == 1);
    ACHECK(!pid_exited(slot1_pid));
    phase = 2;
    mln_event_break_set(ev);
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    (void)data;
    rec_record(f, e);
    if (e->type == M_IPC_CHILD_STARTED) {
        mln_u32_t slot = e->slot;
        if (slot == 1) slot1_pid = e->pid;
        ACHECK(mln_ipc_master_send_prepare(ev, 9251, &slot, sizeof(slot), f) == 0);
    }
    if (e->type == M_IPC_CHILD_GAVE_UP) {
        ACHECK(f == NULL || f != NULL); /* f unspecified */
        ACHECK(e->slot == 0);
        ACHECK(mln_event_timer_set(ev, 2500, NULL, finish) != NULL);
        phase = 1;
    }
}

static void worker_slot(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    mln_u32_t slot;
    (void)ev; (void)f_ptr; (void)u;
    CHECK(len == sizeof(slot));
    memcpy(&slot, buf, sizeof(slot));
    if (slot == 0) _exit(7);
}

static int global_init(void)
{
    ctest_workers(2);
    errno = 0;
    CHECK(mln_fork_restart_policy_set(1, 0) == -1 && errno == EINVAL);
    CHECK(mln_fork_restart_policy_set(1, 10000) == 0);
    mln_ipc_child_event_handler_set(on_event, NULL);
    if (!mln_ipc_handler_register(9251, NULL, worker_slot, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, NULL, NULL};
    rec_init(30);
    if (ctest_framework_init(&a) < 0) return 1;
    ACHECK(phase == 2);
    return 0;
}
