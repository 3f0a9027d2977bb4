/* Lifecycle: a master handler closes the child whose frame it is handling (the pattern of a
 * server that drops a peer on a bad request). Three supervised workers; once all said hello
 * the master pokes the first one, which answers with two frames in one write (FIRST, then
 * SECOND). The master handler of FIRST closes that child with
 * mln_fork_socketpair_close_handler and then, still inside the handler, uses the pointer it
 * was given: from that moment the child is gone for the program, as the header promises
 * for a child that is not live:
 *   - a send to it returns -1 with errno ESRCH (nothing is queued to a closed child);
 *   - mln_ipc_stats_get on it returns -1 with errno ESRCH;
 *   - mln_fork_iterate no longer visits it (2 children);
 *   - a second close is a no-op; the handler's own arguments are intact;
 *   - SECOND, behind FIRST in the same read, is never dispatched, nor anything the worker
 *     sends afterwards (it keeps sending SECOND every 2 ms until its master connection
 *     ends);
 *   - the handler then runs the loop itself for 300 ms (a nested dispatch ended by a
 *     timer): the closed child's readable socket must not wake that loop (counted with
 *     mln_event_callback_set, which runs once per loop iteration: fewer than 50).
 * Then exactly one replacement starts (from the loop, after the handler returned) and the
 * three live workers answer three ping rounds; 4 distinct workers in all.
 * The defect it was written for: the send inside the handler returned 0 (queued to a closed child,
 * lost without a word), the walk still visited the closed child, and a nested loop handed
 * out one more frame of the closed child. */
#include "life.h"

#define N 3
#define T_POKE 6201
#define T_FIRST 6202
#define T_SECOND 6203

static struct life_kids kids;
static int phase, firsts, seconds_seen;
static pid_t victim;
static struct life_pids dead;

static void worker_more(mln_event_t *ev, void *data)
{
    (void)data;
    /* Refused once the master connection has ended (the worker then exits anyway). */
    if (mln_ipc_worker_send_prepare(ev, T_SECOND, "second", 6) == 0)
        CHECK(mln_event_timer_set(ev, 2, NULL, worker_more) != NULL);
}

static void worker_poke(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    /* Both are queued before the handler returns: they leave in one write. */
    CHECK(mln_ipc_worker_send_prepare(ev, T_FIRST, "first", 5) == 0);
    CHECK(mln_ipc_worker_send_prepare(ev, T_SECOND, "second", 6) == 0);
    CHECK(mln_event_timer_set(ev, 2, NULL, worker_more) != NULL);
}

static int iterations;

static void count_iteration(mln_event_t *ev, void *data)
{
    (void)ev; (void)data;
    ++iterations;
}

static void nested_end(mln_event_t *ev, void *data)
{
    *(int *)data = 1;
    mln_event_break_set(ev);
}

static int count_child(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)ev;
    CHECK(f->pid != victim);
    ++*(int *)data;
    return 0;
}

static void master_first(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_fork_t *f = f_ptr;
    mln_ipc_stats_t st;
    int n = 0;
    (void)udata_ptr;
    CHECK(getpid() == life_master);
    CHECK(++firsts == 1);
    CHECK(life_kids_index(&kids, f) == 0);
    CHECK(len == 5 && memcmp(buf, "first", 5) == 0);
    CHECK(mln_ipc_stats_get(f, &st) == 0);
    victim = f->pid;
    life_pids_add(&dead, victim);
    life_close(ev, f);

    errno = 0;
    CHECK(mln_ipc_master_send_prepare(ev, T_POKE, "late", 4, f) == -1 && errno == ESRCH);
    errno = 0;
    CHECK(mln_ipc_stats_get(f, &st) == -1 && errno == ESRCH);
    CHECK(mln_fork_iterate(ev, count_child, &n) == 0);
    CHECK(n == N - 1);
    life_close(ev, f); /* already closed: nothing happens */
    CHECK(f->pid == victim);

    {
        int ended = 0;
        CHECK(mln_event_timer_set(ev, 300, &ended, nested_end) != NULL);
        mln_event_callback_set(ev, count_iteration, NULL);
        while (!ended) mln_event_dispatch(ev);
        mln_event_break_reset(ev);
        mln_event_callback_set(ev, NULL, NULL);
        if (iterations >= 50)
            fprintf(stderr, "master: the nested loop ran %d iterations in 300 ms\n", iterations);
        CHECK(iterations < 50);
    }
    CHECK(len == 5 && memcmp(buf, "first", 5) == 0);
    phase = 1;
}

static void master_second(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)buf; (void)len; (void)udata_ptr;
    fprintf(stderr, "master: SECOND from child %d dispatched after its close\n",
            (int)((mln_fork_t *)f_ptr)->pid);
    ++seconds_seen;
    CHECK(seconds_seen == 0);
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
    if (!mln_ipc_handler_register(T_FIRST, master_first, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_SECOND, master_second, NULL, NULL, NULL)) return -1;
    return life_register_common();
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, life_worker_hello};
    life_init();
    if (ctest_framework_init(&a) < 0) return 1;
    life_master_end();
    CHECK(phase == 2 && life_hellos.n == N + 1 && firsts == 1 && seconds_seen == 0);
    return 0;
}
