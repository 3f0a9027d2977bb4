/* The maximum message size and the queue limit stay consistent when two threads set them
 * at once (limit 0 or at least the maximum). Each round starts from max 1 MiB, limit
 * 8 MiB; then, released together, the main thread sets the maximum to 4 MiB (fine against
 * the old limit) while another sets the limit to 2 MiB (fine against the old maximum). At
 * most one may succeed, and the pair read afterwards must be consistent. The defect it was written for:
 * both did, now and then (3 to 316 times in 3 M rounds), leaving the limit below the
 * maximum. The race is a matter of chance: the test fails only when the unfixed code meets
 * it, so it runs many rounds. No process is forked. */
#include "ctest.h"
#include <pthread.h>
#include <stdatomic.h>

#define ROUNDS 1000000

static atomic_int go, done;
static int ok_b;

static void *setter_b(void *arg)
{
    int r;
    (void)arg;
    for (r = 1;; ++r) {
        int g;
        while ((g = atomic_load_explicit(&go, memory_order_acquire)) != r)
            if (g < 0) return NULL;
        ok_b = mln_ipc_queue_limit_set(2u << 20) == 0;
        atomic_store_explicit(&done, r, memory_order_release);
    }
}

int main(void)
{
    pthread_t b;
    int r, both = 0, rounds = ROUNDS;
    if (valgrind()) rounds = 2000; /* valgrind serialises threads */
    CHECK(pthread_create(&b, NULL, setter_b, NULL) == 0);
    for (r = 1; r <= rounds; ++r) {
        int ok_a;
        CHECK(mln_ipc_max_message_set(1u << 20) == 0);
        CHECK(mln_ipc_queue_limit_set(8u << 20) == 0);
        atomic_store_explicit(&go, r, memory_order_release);
        ok_a = mln_ipc_max_message_set(4u << 20) == 0;
        while (atomic_load_explicit(&done, memory_order_acquire) != r) {}
        if (ok_a && ok_b) ++both;
    }
    atomic_store_explicit(&go, -1, memory_order_release);
    CHECK(pthread_join(b, NULL) == 0);
    fprintf(stderr, "both setters succeeded in %d of %d rounds\n", both, rounds);
    CHECK(both == 0);
    return 0;
}
