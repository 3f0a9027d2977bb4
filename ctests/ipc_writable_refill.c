/* The writable callback with a queue limit smaller than the socket buffer: the pattern of
 * the streaming example of docs/c-api.md, where a hang was seen under load.
 * Queue limit 32 KiB (maximum message 16 KiB), 20,000 x 1 KiB master -> worker, the
 * master sending until a send is refused (EAGAIN) and resuming from its writable
 * callback. The socket takes all that is queued in one write, so the library sees the
 * drain in its own flush just before the loop waits; the callback then refills the queue
 * there. Those frames must be written too, before the loop sleeps: the worker counts the
 * frames (in order, each with its sequence number) and reports the count at the end.
 * The master's watchdog (alarm, 30 s) fails the test if the stream stops.
 * The defect it was written for: the frames queued by a callback run from that last flush stayed
 * queued while both processes slept in epoll_wait (every run, within the first refill). */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_DATA 7801
#define T_DONE 7802
#define TOTAL 20000
#define SIZE 1024

static long sent, refusals, callbacks;

static void pump(mln_event_t *ev, mln_fork_t *f)
{
    static char chunk[SIZE];
    while (sent < TOTAL) {
        memcpy(chunk, &sent, sizeof(sent));
        errno = 0;
        if (mln_ipc_master_send_prepare(ev, T_DATA, chunk, sizeof(chunk), f) < 0) {
            CHECK(errno == EAGAIN);
            ++refusals;
            return;
        }
        ++sent;
    }
}

static void writable(mln_event_t *ev, mln_fork_t *f, void *data)
{
    CHECK(f != NULL && data == &sent);
    ++callbacks;
    pump(ev, f);
}

static int start(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)data;
    pump(ev, f);
    return 0;
}

static void worker_data(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    long n = (long)*udata_ptr, seq;
    (void)f_ptr;
    CHECK(len == SIZE);
    memcpy(&seq, buf, sizeof(seq));
    CHECK(seq == n);
    *udata_ptr = (void *)++n;
    if (n == TOTAL) CHECK(mln_ipc_worker_send_prepare(ev, T_DONE, &n, sizeof(n)) == 0);
}

static void master_done(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    long n;
    (void)f_ptr; (void)udata_ptr;
    CHECK(len == sizeof(n));
    memcpy(&n, buf, sizeof(n));
    CHECK(n == TOTAL && sent == TOTAL);
    fprintf(stderr, "master: %ld frames delivered, %ld refusals, %ld callbacks\n", n, refusals,
            callbacks);
    CHECK(refusals >= 1 && callbacks >= 1);
    mln_event_break_set(ev);
}

static void master_process(mln_event_t *ev)
{
    alarm(30);
    CHECK(mln_fork_iterate(ev, start, NULL) == 0);
}

static int global_init(void)
{
    ctest_workers(1);
    if (mln_ipc_max_message_set(16 << 10) < 0 || mln_ipc_queue_limit_set(32 << 10) < 0) return -1;
    mln_ipc_writable_handler_set(writable, &sent);
    if (!mln_ipc_handler_register(T_DATA, NULL, worker_data, NULL, (void *)0)) return -1;
    return mln_ipc_handler_register(T_DONE, master_done, NULL, NULL, NULL) ? 0 : -1;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, NULL};
    CHECK(ctest_framework_init(&a) == 0);
    CHECK(sent == TOTAL);
    return 0;
}
