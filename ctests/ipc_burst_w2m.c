/* A burst of 20,000 x 1 KiB from a worker to its master, queued in one go: far more than a
 * socket buffer holds (Melon loses it). Order and content are checked. */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_DATA 5001
#define COUNT 20000
#define SIZE 1024

static int received;

static void fill(unsigned char *b, int seq)
{
    int i;
    memcpy(b, &seq, sizeof(seq));
    for (i = sizeof(seq); i < SIZE; ++i) b[i] = (unsigned char)(seq * 31 + i);
}

static void master_data(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    unsigned char expect[SIZE];
    (void)f_ptr; (void)udata_ptr;
    CHECK(len == SIZE);
    fill(expect, received);
    CHECK(memcmp(buf, expect, SIZE) == 0);
    if (++received == COUNT) mln_event_break_set(ev);
}

static void worker_process(mln_event_t *ev)
{
    unsigned char b[SIZE];
    int i;
    for (i = 0; i < COUNT; ++i) {
        fill(b, i);
        CHECK(mln_ipc_worker_send_prepare(ev, T_DATA, b, SIZE) == 0);
    }
}

static int global_init(void)
{
    return mln_ipc_handler_register(T_DATA, master_data, NULL, NULL, NULL) ? 0 : -1;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, NULL, worker_process};
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(received == COUNT);
    return 0;
}
