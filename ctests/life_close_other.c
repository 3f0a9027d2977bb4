/* Lifecycle item 1 (b): a master handler closes *another* worker. Three supervised workers;
 * once all said hello, the master asks the first one for a frame, and the master handler of
 * that frame closes the second worker with mln_fork_socketpair_close_handler. Expected: no
 * process other than the master ever continues in the handler (getpid() is the master's
 * after the close, and the handler's f_ptr still names the first child), the closed worker
 * is restarted from the loop after the handler returns, and the replacement behaves as a
 * normal worker (hello, then three rounds of pings with the two survivors); 4 distinct
 * workers in all. Every process reports failures to the master (life.h).
 * Today: the restart forks inside the handler, so the new worker returns into the master's
 * handler (its getpid() check reports) and then into the master's receive loop, reading
 * records and buffers it freed after the fork. */
#include "life.h"

#define N 3
#define T_POKE 6101
#define T_POKED 6102

static struct life_kids kids;
static int phase, poked;
static pid_t victim;
static struct life_pids dead;

static void worker_poke(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    CHECK(mln_ipc_worker_send_prepare(ev, T_POKED, "poked", 5) == 0);
}

static void master_poked(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_fork_t *f = f_ptr;
    (void)udata_ptr;
    CHECK(getpid() == life_master);
    CHECK(life_kids_index(&kids, f) == 0);
    CHECK(len == 5 && memcmp(buf, "poked", 5) == 0);
    CHECK(++poked == 1);
    victim = kids.pid[1];
    life_pids_add(&dead, victim);
    life_close(ev, kids.f[1]);
    /* The handler's own arguments are intact. */
    CHECK(f->pid == kids.pid[0]);
    CHECK(len == 5 && memcmp(buf, "poked", 5) == 0);
    phase = 1;
}

static void on_hello(mln_event_t *ev, mln_fork_t *f)
{
    if (phase == 0) {
        if (life_hellos.n < N) return;
        life_kids_collect(ev, &kids);
        CHECK(kids.n == N);
        CHECK(mln_ipc_master_send_prepare(ev, T_POKE, NULL, 0, kids.f[0]) == 0);
        return;
    }
    /* The replacement. */
    CHECK(phase == 1);
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
    if (!mln_ipc_handler_register(T_POKE, NULL, worker_poke, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_POKED, master_poked, NULL, NULL, NULL)) return -1;
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
