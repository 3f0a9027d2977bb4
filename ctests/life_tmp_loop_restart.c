/* CTEST_MELON_XFAIL: Melon's loop cannot say whether it runs inside a callback of another loop, so a restart handled on a temporary loop forks in place there, as in Melon (docs/melon-build.md) */
/* Lifecycle: a worker dies while the children are registered on a temporary loop that a
 * master callback runs (mln_fork_master_events_set(ev2), then mln_event_dispatch(ev2)
 * from a timer of the master's loop). The death is handled on ev2, but the restart must
 * not fork there: a master callback is still on the stack below ev2's dispatch, and the
 * new worker would run the rest of it. Expected: the callback finishes in the master only
 * (getpid check), ev2 is freed and the children go back to the master's loop; the restart
 * pending on the freed ev2 moves to the master's loop and happens there; exactly one
 * replacement, which answers three ping rounds. Every process reports failures (life.h).
 * The defect it was written for: the new worker returned from mln_event_dispatch(ev2) into the
 * master's timer callback (its getpid check reported). */
#include "life.h"

static pid_t victim;
static struct life_pids dead;
static int outer_done;

static void stop2(mln_event_t *ev, void *data)
{
    (void)data;
    mln_event_break_set(ev);
}

static void outer(mln_event_t *ev, void *data)
{
    mln_event_t *ev2 = mln_event_new();
    (void)data;
    CHECK(ev2 != NULL);
    mln_fork_master_events_set(ev2);
    CHECK(kill(victim, SIGKILL) == 0);
    CHECK(mln_event_timer_set(ev2, 300, NULL, stop2) != NULL);
    mln_event_dispatch(ev2);
    CHECK(getpid() == life_master);
    mln_event_free(ev2);
    mln_fork_master_events_set(ev);
    CHECK(getpid() == life_master);
    outer_done = 1;
}

static void on_hello(mln_event_t *ev, mln_fork_t *f)
{
    if (life_hellos.n == 1) {
        victim = f->pid;
        life_pids_add(&dead, victim);
        CHECK(mln_event_timer_set(ev, 0, NULL, outer) != NULL);
        return;
    }
    CHECK(life_hellos.n == 2 && f->pid != victim && outer_done);
    life_check_live(ev, 1, 3, &dead, life_stop);
}

static void master_process(mln_event_t *ev)
{
    life_master_watch(ev);
    life_watchdog(20);
}

static int global_init(void)
{
    ctest_workers(1);
    life_max_workers = 2;
    life_on_hello = on_hello;
    return life_register_common();
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, life_worker_hello};
    life_init();
    if (ctest_framework_init(&a) < 0) return 1;
    life_master_end();
    CHECK(outer_done && life_hellos.n == 2);
    return 0;
}
