/* A worker that dies at once every time: restarts must back off (first immediate, then
 * doubling delays; Melon re-forks in a tight loop). Each worker start writes one
 * byte to a pipe; after 1.5 s of the master's loop we expect a handful of starts, not
 * thousands, and more than one (it is still supervised). */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

static int pfd[2];
static int starts = -1;

static void worker_process(mln_event_t *ev)
{
    (void)ev;
    CHECK(write(pfd[1], "s", 1) == 1);
    _exit(3);
}

static void stop(mln_event_t *ev, void *data)
{
    char b[4096];
    ssize_t n;
    (void)data;
    starts = 0;
    while ((n = read(pfd[0], b, sizeof(b))) > 0) starts += (int)n;
    mln_event_break_set(ev);
}

static void master_process(mln_event_t *ev)
{
    CHECK(mln_event_timer_set(ev, 1500, NULL, stop) != NULL);
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, NULL, NULL, master_process, worker_process};
    CHECK(pipe(pfd) == 0);
    CHECK(fcntl(pfd[0], F_SETFL, O_NONBLOCK) == 0);
    if (ctest_framework_init(&a) < 0) return 1;
    fprintf(stderr, "worker starts in 1.5 s: %d\n", starts);
    /* Schedule: 0, 0, +100, +200, +400, +800 ms ... => 5 or 6 starts by 1.5 s. */
    CHECK(starts >= 4 && starts <= 8);
    return 0;
}
