/* A child that dies before the fork handshake (here: in the resource-clear handler) makes
 * mln_fork_restart return -1 at once instead of spinning (as Melon does), without leaking a
 * descriptor. mln_fork_prepare is idempotent. */
#include "ctest.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

static void die_early(void *data)
{
    (void)data;
    _exit(5);
}

static void mark(void *data)
{
    *(int *)data = 1;
}

static int count(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)ev; (void)f;
    ++*(int *)data;
    return 0;
}

int main(void)
{
    int before, n = 0, ran = 0, r;
    mln_event_t *ev = mln_event_new();
    CHECK(ev != NULL);
    CHECK(mln_fork_prepare() == 0);
    CHECK(mln_fork_prepare() == 0);
    before = count_fds();
    mln_fork_resource_clear_handler_set(die_early, NULL);
    CHECK(mln_fork_restart(NULL) == -1);
    CHECK(mln_fork_restart(NULL) == -1);
    CHECK(count_fds() == before);
    CHECK(mln_fork_iterate(ev, count, &n) == 0 && n == 0);

    mln_fork_resource_clear_handler_set(mark, &ran);
    r = mln_fork_restart(NULL);
    CHECK(r >= 0);
    if (r == 0) {
        /* The child: the clear handler ran before the handshake; its list is empty. */
        n = 0;
        _exit(ran == 1 && mln_fork_iterate(ev, count, &n) == 0 && n == 0 ? 0 : 9);
    }
    CHECK(ran == 0);
    CHECK(mln_fork_iterate(ev, count, &n) == 0 && n == 1);
    mln_event_free(ev);
    return 0;
}
