/* Lifecycle item 8: a dead child's mln_fork_t * is never reissued to its replacement.
 * Two supervised workers. Three times, the oldest child dies: SIGKILLed by the master, then
 * exiting by itself (exit(0) on request), then closed by the master with
 * mln_fork_socketpair_close_handler from a timer. When its replacement has said hello, a
 * send through every stale pointer so far must return -1 (and the worker handler of that
 * type reports a failure if such a frame ever arrives), no replacement may have the
 * address of a dead child, and the live children (the survivor and the replacement)
 * answer pings; 5 distinct workers in all. Every process reports failures to the master
 * (life.h).
 * Today: the replacement's record is allocated where the dead child's was freed, so the
 * stale pointer is "live" again: the send returns 0 and reaches the new worker. (Under
 * valgrind, which does not reuse freed blocks at once, the addresses differ and the test
 * passes.) */
#include "life.h"

#define N 2
#define KILLS 3
#define T_STALE 6801 /* master -> worker: must never arrive */
#define T_EXIT 6802  /* master -> worker: exit(0) */

static mln_fork_t *stale[KILLS];
static pid_t stale_pid[KILLS];
static struct life_pids dead;
static int kills, checked;

static void worker_stale(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    CHECK(!"a frame sent through a dead child's mln_fork_t * reached its replacement");
}

static void worker_exit(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    exit(0);
}

static int oldest(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)ev;
    *(mln_fork_t **)data = f;
    return -1;
}

static void close_it(mln_event_t *ev, void *data)
{
    life_close(ev, data);
}

static void kill_oldest(mln_event_t *ev)
{
    mln_fork_t *f = NULL;
    CHECK(mln_fork_iterate(ev, oldest, &f) == -1 && f != NULL);
    stale[kills] = f;
    stale_pid[kills] = f->pid;
    life_pids_add(&dead, f->pid);
    switch (kills++) {
    case 0:
        CHECK(kill(f->pid, SIGKILL) == 0);
        break;
    case 1:
        CHECK(mln_ipc_master_send_prepare(ev, T_EXIT, NULL, 0, f) == 0);
        break;
    default:
        CHECK(mln_event_timer_set(ev, 0, f, close_it) != NULL);
        break;
    }
}

static void round_done(mln_event_t *ev)
{
    if (kills < KILLS) kill_oldest(ev);
    else mln_event_break_set(ev);
}

static void on_hello(mln_event_t *ev, mln_fork_t *f)
{
    int j;
    if (life_hellos.n < N) return;
    if (life_hellos.n == N) {
        kill_oldest(ev);
        return;
    }
    /* The replacement of stale[kills - 1]. */
    CHECK(life_hellos.n == N + kills);
    for (j = 0; j < kills; ++j) {
        int r;
        if (f == stale[j])
            fprintf(stderr, "master: replacement %d got the record of dead child %d\n", (int)f->pid, (int)stale_pid[j]);
        r = mln_ipc_master_send_prepare(ev, T_STALE, "stale", 5, stale[j]);
        if (r != -1)
            fprintf(stderr, "master: a send through the pointer of dead child %d returned %d\n", (int)stale_pid[j], r);
        CHECK(r == -1);
        CHECK(f != stale[j]);
    }
    ++checked;
    life_check_live(ev, N, 2, &dead, round_done);
}

static void master_process(mln_event_t *ev)
{
    life_master_watch(ev);
    life_watchdog(20);
}

static int global_init(void)
{
    ctest_workers(N);
    life_max_workers = N + KILLS;
    life_on_hello = on_hello;
    if (!mln_ipc_handler_register(T_STALE, NULL, worker_stale, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_EXIT, NULL, worker_exit, NULL, NULL)) return -1;
    return life_register_common();
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, life_worker_hello};
    life_init();
    if (ctest_framework_init(&a) < 0) return 1;
    life_master_end();
    CHECK(checked == KILLS && life_hellos.n == N + KILLS);
    return 0;
}
