/* Registration and handler setting are thread-safe: 8 threads at once register,
 * unregister, set master/worker handlers and install the registry (2,000 rounds each),
 * with no crash, no lost or double unregistration, and consistent tables. Then the
 * ordinary lifecycle works: handlers registered afterwards win over everything the threads
 * left, and a fork and an exchange with two workers succeed. */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"
#include <pthread.h>

#define THREADS 8
#define ROUNDS 2000
#define T_BASE 7400 /* the threads use T_BASE .. T_BASE + 7 */
#define T_PING T_BASE
#define T_PONG (T_BASE + 1)

static int pongs;

static void noise(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    fprintf(stderr, "a handler set by the threads ran\n");
    exit(4);
}

static void *churn(void *arg)
{
    long id = (long)arg;
    mln_ipc_cb_t *mine[16];
    int n = 0, i;
    unsigned x = (unsigned)id * 2654435761u + 1;
    for (i = 0; i < ROUNDS; ++i) {
        mln_u32_t ty;
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        ty = T_BASE + (x >> 8) % 8;
        switch (x % 6) {
        case 0:
        case 1:
            if (n < 16) {
                mine[n] = mln_ipc_handler_register(ty, noise, noise, (void *)id, NULL);
                CHECK(mine[n] != NULL && mine[n]->type == ty);
                ++n;
            }
            break;
        case 2:
            if (n > 0) mln_ipc_handler_unregister(mine[--n]);
            break;
        case 3: CHECK(mln_fork_master_ipc_handler_set(ty, noise, (void *)id) == 0); break;
        case 4: CHECK(mln_fork_worker_ipc_handler_set(ty, noise, (void *)id) == 0); break;
        default: CHECK(mln_ipc_set_process_handlers() == 0); break;
        }
    }
    while (n > 0) mln_ipc_handler_unregister(mine[--n]);
    return NULL;
}

static void worker_ping(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)udata_ptr;
    CHECK(mln_ipc_worker_send_prepare(ev, T_PONG, buf, len) == 0);
}

static void master_pong(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)udata_ptr;
    CHECK(len == 4 && memcmp(buf, "ping", 4) == 0);
    if (++pongs == 2) mln_event_break_set(ev);
}

static int ping(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)data;
    return mln_ipc_master_send_prepare(ev, T_PING, "ping", 4, f);
}

static void master_process(mln_event_t *ev)
{
    CHECK(mln_fork_iterate(ev, ping, NULL) == 0);
}

static int global_init(void)
{
    pthread_t t[THREADS];
    long i;
    for (i = 0; i < THREADS; ++i) CHECK(pthread_create(&t[i], NULL, churn, (void *)i) == 0);
    for (i = 0; i < THREADS; ++i) CHECK(pthread_join(t[i], NULL) == 0);
    /* The explicit handlers the threads set for T_PING/T_PONG beat the registry: replace
     * them explicitly, as a program would. */
    CHECK(mln_fork_worker_ipc_handler_set(T_PING, worker_ping, NULL) == 0);
    CHECK(mln_fork_master_ipc_handler_set(T_PONG, master_pong, NULL) == 0);
    CHECK(mln_fork_master_ipc_handler_set(T_PING, master_pong, NULL) == 0);
    CHECK(mln_fork_worker_ipc_handler_set(T_PONG, worker_ping, NULL) == 0);
    ctest_workers(2);
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, NULL};
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(pongs == 2);
    return 0;
}
