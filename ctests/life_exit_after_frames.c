/* EXITED comes "after every frame the child sent reached the master's handlers": a worker
 * sends 2000 frames of 8 KiB then exits 3 at once; the master's handler for frame 10 runs
 * the loop itself for 300 ms (nested dispatch, allowed). Expected at EXITED: all 2000
 * frames handled, and no frame handled after EXITED.
 * CTEST_STANDALONE_ONLY: the worker ends by breaking its own loop, after which the
 * standalone framework writes what it queued; Melon's framework returns at once (frames
 * still queued are lost: docs/melon-build.md). */
#include "life_rec.h"

#define T_F 9281
#define T_GO 9282
#define NF 2000

static int got, got_at_exit = -1, phase;

static void unnest(mln_event_t *ev, void *d) { (void)d; mln_event_break_set(ev); }

static void master_f(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    (void)f_ptr; (void)buf; (void)len; (void)u;
    ACHECK(got_at_exit < 0);
    if (++got == 10) {
        ACHECK(mln_event_timer_set(ev, 300, NULL, unnest) != NULL);
        mln_event_dispatch(ev);
        mln_event_break_reset(ev);
    }
}

static void finish(mln_event_t *ev, void *d)
{
    (void)d;
    fprintf(stderr, "frames handled at EXITED: %d, in all: %d\n", got_at_exit, got);
    ACHECK(got_at_exit == NF && got == NF);
    phase = 2;
    mln_event_break_set(ev);
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    (void)data;
    rec_record(f, e);
    if (e->type == M_IPC_CHILD_STARTED && phase == 0) {
        phase = 1;
        ACHECK(mln_ipc_master_send_prepare(ev, T_GO, NULL, 0, f) == 0);
    } else if (e->type == M_IPC_CHILD_EXITED && phase == 1) {
        got_at_exit = got;
        ACHECK(e->exited == 1 && e->status == 3);
        ACHECK(mln_event_timer_set(ev, 500, NULL, finish) != NULL);
    }
}

static void worker_go(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    static char b[8192];
    int i;
    (void)f_ptr; (void)buf; (void)len; (void)u;
    for (i = 0; i < NF; ++i) CHECK(mln_ipc_worker_send_prepare(ev, T_F, b, sizeof(b)) == 0);
    /* exit once everything is written: a worker that ends its own loop writes its queue */
    mln_event_break_set(ev);
}

static int global_init(void)
{
    ctest_workers(1);
    mln_ipc_child_event_handler_set(on_event, NULL);
    if (!mln_ipc_handler_register(T_F, master_f, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_GO, NULL, worker_go, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, NULL, NULL};
    rec_init(20);
    if (ctest_framework_init(&a) < 0) return 1;
    if (getpid() != rec_master) exit(3); /* the worker, after its loop ended and its queue was written */
    ACHECK(phase == 2);
    return 0;
}
