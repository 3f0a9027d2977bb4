/* A program that set a writable handler handles backpressure itself: its sends are never
 * paced. With a queue limit of 8 MiB and a worker that reads steadily (1 ms per 64 KiB
 * frame, slower than the master can queue, but always making progress), a master that
 * "sends until refused" must meet EAGAIN within the limit plus what the socket holds (well
 * under 64 MiB), its stats must show no time spent waiting, and the writable callback
 * must then resume the stream until all 512 frames of 64 KiB (32 MiB) are delivered, in
 * order.
 * The defect it was written for: sends waited in poll for the worker once 4 MiB were queued, so the loop
 * never saw EAGAIN while the worker kept up (400 MiB and counting). */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_DATA 8501
#define T_DONE 8502
#define FRAME (64 << 10)
#define FRAMES 512
#define LIMIT (8u << 20)

static mln_fork_t *worker;
static unsigned sent, refusals;
static unsigned long long first_refusal_at; /* bytes accepted before the first EAGAIN */

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

static void pump(mln_event_t *ev)
{
    static unsigned char buf[FRAME];
    while (sent < FRAMES) {
        memcpy(buf, &sent, sizeof(sent));
        if (mln_ipc_master_send_prepare(ev, T_DATA, buf, FRAME, worker) != 0) {
            CHECK(errno == EAGAIN);
            if (refusals++ == 0) first_refusal_at = (unsigned long long)sent * FRAME;
            return;
        }
        ++sent;
    }
}

static void on_writable(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)data;
    CHECK(f == worker);
    pump(ev);
}

static void start(mln_event_t *ev, void *data)
{
    (void)data;
    pump(ev);
}

static void master_done(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    unsigned n;
    mln_ipc_stats_t st;
    (void)f_ptr; (void)udata_ptr;
    CHECK(len == sizeof(n));
    memcpy(&n, buf, sizeof(n));
    CHECK(n == FRAMES);
    CHECK(mln_ipc_stats_get(worker, &st) == 0);
    fprintf(stderr, "master: first EAGAIN after %llu KiB; %u refusals; paced %llu ns\n",
            first_refusal_at >> 10, refusals, (unsigned long long)st.paced_ns);
    CHECK(st.paced_ns == 0);
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
    mln_ipc_writable_handler_set(on_writable, NULL);
    CHECK(mln_event_timer_set(ev, 1, NULL, start) != NULL);
}

static int global_init(void)
{
    ctest_workers(1);
    if (mln_ipc_max_message_set(1 << 20) < 0 || mln_ipc_queue_limit_set(LIMIT) < 0) return -1;
    if (!mln_ipc_handler_register(T_DATA, NULL, worker_data, NULL, NULL)) return -1;
    return mln_ipc_handler_register(T_DONE, master_done, NULL, NULL, NULL) ? 0 : -1;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, NULL};
    CHECK(ctest_framework_init(&a) == 0);
    CHECK(sent == FRAMES);
    /* Under valgrind the master fills the queue more slowly than the worker drains it:
     * the refusal may never come there (delivery and "never paced" are still checked). */
    if (!valgrind()) CHECK(refusals >= 1);
    CHECK(first_refusal_at < (64ull << 20));
    return 0;
}
