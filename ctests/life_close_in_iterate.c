/* Lifecycle item 1 (a): a mln_fork_iterate callback closes the child it is given with
 * mln_fork_socketpair_close_handler (the header allows it). Three supervised workers; once
 * all said hello, a timer walks the list and closes the second child. Expected: the walk
 * visits the three children once each and no process other than the master ever runs the
 * callback (getpid() is the master's before and after the close, and after the walk); the
 * closed child is restarted from the loop after the callback returns, and the replacement
 * behaves as a normal worker (says hello, answers three rounds of pings with the two
 * survivors); 4 distinct workers in all. Every process reports failures to the master
 * (life.h).
 * Today: the restart forks inside the callback, so the new worker returns into the
 * master's callback (its getpid() check fails there and reports) and then into
 * mln_fork_iterate, which reads the freed records of its siblings. */
#include "life.h"

#define N 3

static struct life_kids kids;
static int visits, phase, seen[N];
static pid_t victim;
static struct life_pids dead;

static int close_second(mln_event_t *ev, mln_fork_t *f, void *data)
{
    int i = life_kids_index(&kids, f);
    (void)data;
    CHECK(getpid() == life_master);
    /* Only children of the start of the walk, each once. */
    CHECK(i >= 0 && !seen[i]);
    seen[i] = 1;
    if (++visits == 2) {
        victim = f->pid;
        life_pids_add(&dead, victim);
        life_close(ev, f);
    }
    CHECK(getpid() == life_master);
    return 0;
}

static void go(mln_event_t *ev, void *data)
{
    (void)data;
    life_kids_collect(ev, &kids);
    CHECK(kids.n == N);
    CHECK(mln_fork_iterate(ev, close_second, NULL) == 0);
    CHECK(getpid() == life_master);
    CHECK(visits == N);
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
