/* A replacement that never completes its fork handshake is killed at the deadline (10 s,
 * README) and replaced, and the master's loop runs meanwhile. One worker; once it said
 * hello the master closes it; the first replacement hangs in its resource-clear handler
 * (a flag in shared memory says "hang once"). The master must then see a second
 * replacement say hello 10 s (and not much more) after the close, while its timer kept
 * ticking, and the hung process must be gone by then.
 * The defect it was written for: the master blocked in the handshake read for as long as the child hung. */
#include "ctest.h"
#include <time.h>
#include <sys/mman.h>
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_HELLO 8301
#define DEADLINE_MS 10000

static volatile int *shared; /* [0]: hang once; [1]: pid of the child that hung */
static int armed;            /* set in the master before the replacement forks */

static void clr(void *data)
{
    (void)data;
    if (armed && __sync_bool_compare_and_swap(&shared[0], 1, 0)) {
        shared[1] = (int)getpid();
        for (;;) pause();
    }
}

static void worker_process(mln_event_t *ev)
{
    int pid = (int)getpid();
    CHECK(mln_ipc_worker_send_prepare(ev, T_HELLO, &pid, sizeof(pid)) == 0);
}

static int hellos, ticks_waiting;
static long closed_at, hello_at, last_tick, max_gap;

static void master_hello(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)buf; (void)len; (void)udata_ptr;
    ++hellos;
    if (hellos == 1) {
        armed = 1;
        shared[0] = 1;
        closed_at = now_ms();
        mln_fork_socketpair_close_handler(ev, (mln_fork_t *)f_ptr, -1);
    } else {
        CHECK(hellos == 2);
        hello_at = now_ms();
        mln_event_break_set(ev);
    }
}

static void tick(mln_event_t *ev, void *data)
{
    long t = now_ms();
    (void)data;
    if (closed_at != 0 && hello_at == 0) {
        ++ticks_waiting;
        if (t - last_tick > max_gap) max_gap = t - last_tick;
    }
    last_tick = t;
    CHECK(mln_event_timer_set(ev, 50, NULL, tick) != NULL);
}

static void watchdog(mln_event_t *ev, void *data)
{
    (void)ev; (void)data;
    fprintf(stderr, "master: watchdog (hellos %d)\n", hellos);
    exit(4);
}

static void master_process(mln_event_t *ev)
{
    last_tick = now_ms();
    CHECK(mln_event_timer_set(ev, 50, NULL, tick) != NULL);
    CHECK(mln_event_timer_set(ev, 45000, NULL, watchdog) != NULL);
}

static int global_init(void)
{
    ctest_workers(1);
    mln_fork_resource_clear_handler_set(clr, NULL);
    return mln_ipc_handler_register(T_HELLO, master_hello, NULL, NULL, NULL) ? 0 : -1;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(shared != MAP_FAILED);
    CHECK(ctest_framework_init(&a) == 0);
    fprintf(stderr, "master: second replacement after %ld ms; longest tick gap %ld ms; hung pid %d\n",
            hello_at - closed_at, max_gap, shared[1]);
    CHECK(shared[1] > 0);                        /* a replacement did hang */
    CHECK(kill(shared[1], 0) == -1 && errno == ESRCH); /* and is gone */
    CHECK(hello_at - closed_at >= DEADLINE_MS - 100);
    CHECK(hello_at - closed_at < DEADLINE_MS + (valgrind() ? 15000 : 5000));
    CHECK(max_gap < (valgrind() ? 3000 : 500));
    CHECK(ticks_waiting >= 20);
    return 0;
}
