/* Lifecycle item 2: "restart all" through mln_fork_iterate. Three supervised workers.
 * Round 1: once all said hello, one walk closes every child it is given. Expected: the
 * callback runs 3 times, once per child that existed when the walk started (never for a
 * replacement), 3 replacements start (from the loop, after the callbacks) and nothing
 * more: 6 distinct workers, the list holds exactly the 3 new ones, each answers pings.
 * Round 2 ("whatever the callback closes"): a walk whose first callback closes all three
 * children: the callback runs once (the others were closed meanwhile and are skipped),
 * 3 more replacements (after backoff: these die young), 9 distinct workers in all, and
 * again three rounds of pings with exactly the 3 newest. No process other than the master
 * ever returns from a close in a callback. Every process reports failures (life.h).
 * Today: replacements are forked inside the callback and appended to the list being
 * walked: the walk visits and closes them too (9 closes, 9 forks), and each new worker
 * returns into the master's callback. */
#include "life.h"

#define N 3

static struct life_kids kids;
static int visits, phase;
static struct life_pids dead;

static void close_kid(mln_event_t *ev, int i)
{
    life_pids_add(&dead, kids.pid[i]);
    life_close(ev, kids.f[i]);
}

/* Round 1: close the child given. */
static int close_each(mln_event_t *ev, mln_fork_t *f, void *data)
{
    int i = life_kids_index(&kids, f);
    (void)data;
    CHECK(getpid() == life_master);
    if (i < 0 || life_pids_has(&dead, f->pid) || visits >= N)
        fprintf(stderr, "master: walk %d reached child %d (%s)\n", visits + 1, (int)f->pid,
                i < 0 ? "not in the list at the start" : "closed before");
    CHECK(visits < N);
    CHECK(i >= 0 && !life_pids_has(&dead, f->pid));
    ++visits;
    close_kid(ev, i);
    return 0;
}

/* Round 2: the first callback closes everything. */
static int close_all(mln_event_t *ev, mln_fork_t *f, void *data)
{
    int i;
    (void)data;
    CHECK(getpid() == life_master);
    CHECK(life_kids_index(&kids, f) == 0 && !life_pids_has(&dead, f->pid));
    CHECK(++visits == 1);
    for (i = 0; i < N; ++i) close_kid(ev, i);
    return 0;
}

static void walk(mln_event_t *ev, void *data)
{
    (void)data;
    life_kids_collect(ev, &kids);
    CHECK(kids.n == N);
    visits = 0;
    CHECK(mln_fork_iterate(ev, phase == 0 ? close_each : close_all, NULL) == 0);
    CHECK(getpid() == life_master);
    CHECK(visits == (phase == 0 ? N : 1));
    ++phase;
}

static void round_done(mln_event_t *ev)
{
    if (phase == 1) {
        phase = 2;
        CHECK(mln_event_timer_set(ev, 0, NULL, walk) != NULL);
        return;
    }
    CHECK(phase == 3);
    mln_event_break_set(ev);
}

static void on_hello(mln_event_t *ev, mln_fork_t *f)
{
    (void)f;
    if (life_hellos.n == N) {
        CHECK(phase == 0);
        CHECK(mln_event_timer_set(ev, 0, NULL, walk) != NULL);
    } else if (life_hellos.n == 2 * N) {
        CHECK(phase == 1);
        life_check_live(ev, N, 3, &dead, round_done);
    } else if (life_hellos.n == 3 * N) {
        CHECK(phase == 3);
        life_check_live(ev, N, 3, &dead, round_done);
    }
}

static void master_process(mln_event_t *ev)
{
    life_master_watch(ev);
    life_watchdog(20);
}

static int global_init(void)
{
    ctest_workers(N);
    life_max_workers = 3 * N;
    life_on_hello = on_hello;
    return life_register_common();
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, life_worker_hello};
    life_init();
    if (ctest_framework_init(&a) < 0) return 1;
    life_master_end();
    CHECK(phase == 3 && life_hellos.n == 3 * N);
    return 0;
}
