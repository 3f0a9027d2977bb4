/* Lifecycle item 1 (c): a mln_fork_iterate callback closes the *next* child of the walk.
 * Three supervised workers; once all said hello, a timer walks the list and, at the first
 * child, closes the second one with mln_fork_socketpair_close_handler. Expected: the walk
 * visits only children that existed when it started and are still open (the first and
 * the third: 2 visits, never the closed one nor its replacement), no process other than
 * the master ever runs the callback, the closed child is restarted from the loop after the
 * callback returns, and the replacement behaves as a normal worker (hello, three rounds of
 * pings with the two survivors); 4 distinct workers in all. Every process reports failures
 * to the master (life.h).
 * Today: the restart forks inside the callback (the new worker runs the master's callback:
 * its getpid() check reports), and the master's walk goes on from the freed record of the
 * closed child (valgrind: invalid read in the master). */
#include "life.h"

#define N 3

static struct life_kids kids;
static int visits, phase, seen[N];
static pid_t victim;
static struct life_pids dead;

static int close_next(mln_event_t *ev, mln_fork_t *f, void *data)
{
    int i = life_kids_index(&kids, f);
    (void)data;
    CHECK(getpid() == life_master);
    /* Only children of the start of the walk, each once, never the closed one. */
    CHECK(i >= 0 && i != 1);
    CHECK(!seen[i]);
    seen[i] = 1;
    if (++visits == 1) {
        CHECK(i == 0);
        victim = kids.pid[1];
        life_pids_add(&dead, victim);
        life_close(ev, kids.f[1]);
    }
    CHECK(getpid() == life_master);
    return 0;
}

static void go(mln_event_t *ev, void *data)
{
    (void)data;
    life_kids_collect(ev, &kids);
    CHECK(kids.n == N);
    CHECK(mln_fork_iterate(ev, close_next, NULL) == 0);
    CHECK(getpid() == life_master);
    CHECK(visits == 2 && seen[0] && seen[2]);
    phase = 1;
}

static void on_hello(mln_event_t *ev, mln_fork_t *f)
{
    if (phase == 0) {
        if (life_hellos.n == N) CHECK(mln_event_timer_set(ev, 0, NULL, go) != NULL);
        return;
    }
    /* The replacement. */
    CHECK(f->pid != victim);
    CHECK(life_hellos.n == N + 1);
    phase = 2;
    life_check_live(ev, N, 3, &dead, life_stop);
}

static void master_process(mln_event_t *ev)
{
    life_master_watch(ev);
    life_watchdog(20);
}

static int global_init(void)
{
    ctest_workers(N);
    life_max_workers = N + 1;
    life_on_hello = on_hello;
    return life_register_common();
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, life_worker_hello};
    life_init();
    if (ctest_framework_init(&a) < 0) return 1;
    life_master_end();
    CHECK(phase == 2 && life_hellos.n == N + 1);
    return 0;
}
