/* Four workers: the master broadcasts with mln_fork_iterate, each worker answers with its
 * pid, and the master checks it heard every child in its list exactly once. Also checks
 * that an iterate handler's negative return stops the walk. */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_WHO 4001
#define T_ME 4002
#define N 4

static pid_t seen[N];
static int nseen;

static int count_child(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)ev;
    CHECK(f->pid > 0);
    ++*(int *)data;
    return 0;
}

static int stop_at_first(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)ev; (void)f;
    ++*(int *)data;
    return -1;
}

static int ask(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)data;
    return mln_ipc_master_send_prepare(ev, T_WHO, NULL, 0, f);
}

static void master_me(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_fork_t *f = (mln_fork_t *)f_ptr;
    int i;
    (void)udata_ptr;
    CHECK(len == sizeof(pid_t) && *(pid_t *)buf == f->pid);
    for (i = 0; i < nseen; ++i) CHECK(seen[i] != f->pid);
    seen[nseen++] = f->pid;
    if (nseen == N) mln_event_break_set(ev);
}

static void worker_who(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    pid_t me = getpid();
    (void)f_ptr; (void)udata_ptr;
    CHECK(len == 0 && buf != NULL);
    CHECK(mln_ipc_worker_send_prepare(ev, T_ME, &me, sizeof(me)) == 0);
}

static void master_process(mln_event_t *ev)
{
    int n = 0;
    CHECK(mln_fork_iterate(ev, count_child, &n) == 0 && n == N);
    n = 0;
    CHECK(mln_fork_iterate(ev, stop_at_first, &n) == -1 && n == 1);
    CHECK(mln_fork_iterate(ev, NULL, NULL) == 0);
    CHECK(mln_fork_iterate(ev, ask, NULL) == 0);
}

static int global_init(void)
{
    ctest_workers(N);
    if (mln_ipc_handler_register(T_ME, master_me, NULL, NULL, NULL) == NULL) return -1;
    if (mln_ipc_handler_register(T_WHO, NULL, worker_who, NULL, NULL) == NULL) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, NULL};
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(nseen == N);
    return 0;
}
