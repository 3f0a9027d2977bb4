/* Pacing (a Melon program that set no writable handler) keeps every frame but bounds how
 * long the program's loop waits for a slow peer: one send waits at most 20 ms, and the
 * sends between two turns of the loop at most 100 ms in all (README "Backpressure"). The
 * worker reads steadily but slowly (1 ms per 64 KiB frame, about 64 MB/s); the master
 * sends a 64 MiB burst from one timer callback. Checks: the time spent pacing (stats) is
 * within the 100 ms budget of the turn, and more than nothing (the burst did wait for the
 * worker); the callback returns long before the worker could read the burst (about a
 * second), and no single send took long (both with a wide margin for a loaded machine);
 * the worker receives all 1,024 frames in order.
 * The defect it was written for: pacing waited for as long as the worker kept up: the callback took about
 * a second. */
#include "ctest.h"
#include <time.h>
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_DATA 8401
#define T_DONE 8402
#define FRAME (64 << 10)
#define FRAMES 1024

static mln_fork_t *worker;
static long burst_ms, longest_send_us;
static mln_u64_t paced_ns;

static long now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static void worker_data(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    static unsigned next;
    unsigned n;
    (void)f_ptr; (void)udata_ptr;
    CHECK(len == FRAME);
    memcpy(&n, buf, sizeof(n));
    CHECK(n == next);
    ++next;
    usleep(1000);
    if (next == FRAMES) CHECK(mln_ipc_worker_send_prepare(ev, T_DONE, &next, sizeof(next)) == 0);
}

static void burst(mln_event_t *ev, void *data)
{
    static unsigned char buf[FRAME];
    mln_ipc_stats_t st;
    long t0 = now_us(), t;
    unsigned i;
    (void)data;
    for (i = 0; i < FRAMES; ++i) {
        memcpy(buf, &i, sizeof(i));
        t = now_us();
        CHECK(mln_ipc_master_send_prepare(ev, T_DATA, buf, FRAME, worker) == 0);
        t = now_us() - t;
        if (t > longest_send_us) longest_send_us = t;
    }
    burst_ms = (now_us() - t0) / 1000;
    CHECK(mln_ipc_stats_get(worker, &st) == 0);
    paced_ns = st.paced_ns;
}

static void master_done(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    unsigned n;
    (void)f_ptr; (void)udata_ptr;
    CHECK(len == sizeof(n));
    memcpy(&n, buf, sizeof(n));
    CHECK(n == FRAMES);
    mln_event_break_set(ev);
}

static int find(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)ev; (void)data;
    worker = f;
    return 0;
}

static void master_process(mln_event_t *ev)
{
    CHECK(mln_fork_iterate(ev, find, NULL) == 0 && worker != NULL);
    CHECK(mln_event_timer_set(ev, 1, NULL, burst) != NULL);
}

static int global_init(void)
{
    ctest_workers(1);
    if (!mln_ipc_handler_register(T_DATA, NULL, worker_data, NULL, NULL)) return -1;
    return mln_ipc_handler_register(T_DONE, master_done, NULL, NULL, NULL) ? 0 : -1;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, NULL};
    CHECK(ctest_framework_init(&a) == 0);
    fprintf(stderr, "master: burst callback %ld ms, longest send %ld us, paced %llu us\n",
            burst_ms, longest_send_us, (unsigned long long)(paced_ns / 1000));
    CHECK(paced_ns <= 100000000ull + 5000000ull); /* the turn's budget (timer slack) */
    /* Under valgrind the master copies so slowly that the queue may never reach the pacing
     * threshold: only the delivery and the bound are checked there. */
    if (!valgrind()) {
        CHECK(paced_ns > 0);
        /* Generous against the machine's load; the budget itself is checked exactly
         * above (paced_ns), and without it the callback takes over a second. */
        CHECK(longest_send_us < 200000);
        CHECK(burst_ms < 600);
    }
    return 0;
}
