/* CTEST_STANDALONE_ONLY: melon-ipc's framework; the melon build runs Melon's */
/* The master frees the framework's loop from one of its handlers (the header allows
 * mln_event_free from a handler of the loop itself: the running dispatch returns and the
 * memory goes then). mln_framework_init must not touch the loop afterwards (memcheck
 * catches a read or a second free of it), must end the two workers as for a break,
 * and return 0. The workers report their pids through a pipe, read after the return. */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

static int pids[2];
static int freed;

static void worker_process(mln_event_t *ev)
{
    pid_t me = getpid();
    (void)ev;
    CHECK(write(pids[1], &me, sizeof(me)) == (ssize_t)sizeof(me));
}

static void free_loop(mln_event_t *ev, void *data)
{
    (void)data;
    freed = 1;
    mln_event_free(ev);
}

static void master_process(mln_event_t *ev)
{
    CHECK(mln_event_timer_set(ev, 50, NULL, free_loop) != NULL);
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, NULL, NULL, master_process, worker_process};
    pid_t w[2];
    int i;
    CHECK(pipe(pids) == 0);
    ctest_workers(2);
    CHECK(mln_framework_init(&a) == 0);
    CHECK(freed == 1);
    for (i = 0; i < 2; ++i) {
        CHECK(read(pids[0], &w[i], sizeof(w[i])) == (ssize_t)sizeof(w[i]));
        errno = 0;
        CHECK(kill(w[i], 0) == -1 && errno == ESRCH);
    }
    return 0;
}
