/* 5,000 x 4 KiB from the master to each of 4 workers, all queued at once; every worker
 * checks order and content and reports its count. */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_DATA 6001
#define T_OK 6002
#define N 4
#define COUNT 5000
#define SIZE 4096

static int oks;

static void fill(unsigned char *b, int seq)
{
    int i;
    memcpy(b, &seq, sizeof(seq));
    for (i = sizeof(seq); i < SIZE; ++i) b[i] = (unsigned char)(seq * 7 + i * 13);
}

static void worker_data(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    unsigned char expect[SIZE];
    long n = (long)*udata_ptr;
    (void)f_ptr;
    CHECK(len == SIZE);
    fill(expect, (int)n);
    CHECK(memcmp(buf, expect, SIZE) == 0);
    *udata_ptr = (void *)++n;
    if (n == COUNT) {
        int c = COUNT;
        CHECK(mln_ipc_worker_send_prepare(ev, T_OK, &c, sizeof(c)) == 0);
    }
}

static void master_ok(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)udata_ptr;
    CHECK(len == sizeof(int) && *(int *)buf == COUNT);
    if (++oks == N) mln_event_break_set(ev);
}

static int blast(mln_event_t *ev, mln_fork_t *f, void *data)
{
    unsigned char b[SIZE];
    int i;
    (void)data;
    for (i = 0; i < COUNT; ++i) {
        fill(b, i);
        if (mln_ipc_master_send_prepare(ev, T_DATA, b, SIZE, f) != 0) return -1;
    }
    return 0;
}

static void master_process(mln_event_t *ev)
{
    CHECK(mln_fork_iterate(ev, blast, NULL) == 0);
}

static int global_init(void)
{
    ctest_workers(N);
    if (!mln_ipc_handler_register(T_OK, master_ok, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_DATA, NULL, worker_data, NULL, (void *)0)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, NULL};
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(oks == N);
    return 0;
}
