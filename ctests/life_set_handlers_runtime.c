/* Lifecycle item 7: mln_ipc_set_process_handlers() at run time. 21 registered types (20
 * spare ones and a counter), one worker.
 * Memory: the master calls mln_ipc_set_process_handlers() 200,000 times; its VmRSS
 * (/proc/self/status) must grow by less than 16 MiB (checked every 1,000 calls, so a
 * leak stops the test early).
 * udata: 1,000 frames go back and forth; on each side the counter's handler checks that
 * *udata_ptr holds the count it stored at the previous frame, stores count + 1 and calls
 * mln_ipc_set_process_handlers(): an unchanged registration keeps what its handler stored.
 * Every process reports failures to the master (life.h).
 * Today: every call reinstalls each registration with a fresh entry (so *udata_ptr is
 * back at the registered data: the count check fails at the second frame) and keeps the
 * old entries (RSS grows by ~2 KiB per call). */
#include "life.h"

#define T_SPARE 6700 /* 6700..6719 */
#define NSPARE 20
#define T_COUNT 6720
#define FRAMES 1000
#define CALLS 200000
#define MAX_GROWTH_KB (16 * 1024)

static int counted;

static void spare(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    CHECK(!"a spare handler ran");
}

static int count_of(void *buf, mln_u32_t len)
{
    int i;
    CHECK(len == sizeof(i));
    memcpy(&i, buf, sizeof(i));
    return i;
}

static void step(void **udata_ptr, int i, const char *who)
{
    long have = (long)*udata_ptr;
    if (have != i)
        fprintf(stderr, "%s: frame %d: *udata_ptr holds %ld, the handler stored %d\n", who, i, have, i);
    CHECK(have == i);
    *udata_ptr = (void *)(long)(i + 1);
    CHECK(mln_ipc_set_process_handlers() == 0);
}

static void w_count(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int i = count_of(buf, len);
    (void)f_ptr;
    step(udata_ptr, i, "worker");
    CHECK(mln_ipc_worker_send_prepare(ev, T_COUNT, &i, sizeof(i)) == 0);
}

static void m_count(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int i = count_of(buf, len);
    step(udata_ptr, i, "master");
    if (++i < FRAMES) {
        CHECK(mln_ipc_master_send_prepare(ev, T_COUNT, &i, sizeof(i), f_ptr) == 0);
        return;
    }
    CHECK((long)*udata_ptr == FRAMES);
    counted = 1;
    life_check_live(ev, 1, 2, NULL, life_stop);
}

static void on_hello(mln_event_t *ev, mln_fork_t *f)
{
    int i = 0;
    CHECK(mln_ipc_master_send_prepare(ev, T_COUNT, &i, sizeof(i), f) == 0);
}

static void master_process(mln_event_t *ev)
{
    long before, now = 0;
    int i;
    life_master_watch(ev);
    life_watchdog(40);
    CHECK(mln_ipc_set_process_handlers() == 0);
    before = rss_kb();
    for (i = 1; i <= CALLS; ++i) {
        CHECK(mln_ipc_set_process_handlers() == 0);
        if (i % 1000 == 0) {
            now = rss_kb();
            if (now - before >= MAX_GROWTH_KB)
                fprintf(stderr, "master: VmRSS grew by %ld KiB in %d calls\n", now - before, i);
            CHECK(now - before < MAX_GROWTH_KB);
        }
    }
    fprintf(stderr, "master: VmRSS %ld KiB -> %ld KiB over %d calls\n", before, now, CALLS);
}

static int global_init(void)
{
    int i;
    ctest_workers(1);
    life_max_workers = 1;
    life_on_hello = on_hello;
    for (i = 0; i < NSPARE; ++i)
        if (!mln_ipc_handler_register(T_SPARE + i, spare, spare, (void *)1, (void *)2)) return -1;
    if (!mln_ipc_handler_register(T_COUNT, m_count, w_count, (void *)0, (void *)0)) return -1;
    return life_register_common();
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, life_worker_hello};
    life_init();
    if (ctest_framework_init(&a) < 0) return 1;
    life_master_end();
    CHECK(counted);
    return 0;
}
