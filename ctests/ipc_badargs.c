/* Every IPC/fork function given NULL, an unknown handle, or a length that cannot be
 * framed returns its documented error value with its documented errno and changes nothing
 * (docs/differences.md); the calls that succeed leave errno alone (it is set to SENTINEL
 * before). ipc_errno covers the failures that need a running exchange. */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define SENTINEL 4242

#ifndef CTEST_MELON
static int failing_init(void) { return -1; }
#endif

static void h(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
}

static int first_child(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)ev;
    *(mln_fork_t **)data = f;
    return -1;
}

int main(void)
{
    mln_event_t *ev = mln_event_new();
    mln_fork_t fake, *f = NULL;
    mln_ipc_cb_t *cb;
    char buf[16] = "0123456789";
    char *null_arg[2] = {NULL, NULL};
    char a0[] = "/bin/true";
    char *one_arg[1];
    int r;
    one_arg[0] = a0;
    memset(&fake, 0, sizeof(fake));
    CHECK(ev != NULL);

    errno = 0;
    CHECK(mln_ipc_handler_register(100000, NULL, NULL, NULL, NULL) == NULL && errno == EINVAL);
    mln_ipc_handler_unregister(NULL);
    cb = mln_ipc_handler_register(100000, h, NULL, NULL, NULL);
    CHECK(cb != NULL);
    mln_ipc_handler_unregister(cb);
    mln_ipc_handler_unregister(cb); /* already gone: no-op */
    mln_ipc_handler_unregister((mln_ipc_cb_t *)&fake); /* never ours: no-op */
    errno = 0;
    CHECK(mln_fork_master_ipc_handler_set(1, NULL, NULL) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(mln_fork_worker_ipc_handler_set(1, NULL, NULL) == -1 && errno == EINVAL);
    errno = SENTINEL;
    CHECK(mln_ipc_set_process_handlers() == 0);
    CHECK(errno == SENTINEL);

    errno = 0;
    CHECK(mln_fork_iterate(NULL, first_child, NULL) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(mln_fork_spawn(M_PST_DFL, NULL, 1, NULL) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(mln_fork_spawn(M_PST_DFL, one_arg, 0, NULL) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(mln_fork_spawn((enum proc_state_type)7, one_arg, 1, NULL) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(mln_fork_spawn(M_PST_DFL, null_arg, 1, NULL) == -1 && errno == EINVAL);
    mln_fork_master_events_set(NULL);
    mln_fork_worker_events_set(NULL);
    mln_fork_worker_events_set(ev); /* no master: no-op */
    mln_ipc_fd_handler_master(NULL, -1, NULL);
    mln_ipc_fd_handler_master(ev, 5, &fake);
    mln_ipc_fd_handler_worker(NULL, -1, NULL);
    mln_fork_socketpair_close_handler(NULL, NULL, -1);
    mln_fork_socketpair_close_handler(ev, &fake, 3);
#ifndef CTEST_MELON /* the melon build keeps Melon's framework, which needs its attr */
    errno = 0;
    CHECK(mln_framework_init(NULL) == -1 && errno == EINVAL);
    {
        struct mln_framework_attr refuse = {0, NULL, failing_init, NULL, NULL, NULL};
        errno = 0;
        CHECK(mln_framework_init(&refuse) == -1 && errno == ECANCELED);
    }
#endif
    CHECK(mln_fork_master_connection_get() != NULL);
    CHECK(mln_tcp_conn_fd_get(mln_fork_master_connection_get()) == -1);

    errno = 0;
    CHECK(mln_ipc_max_message_set(0) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(mln_ipc_max_message_set(3) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(mln_ipc_max_message_set((mln_size_t)1 << 32) == -1 && errno == EINVAL);
    /* Above the default queue limit (256 MiB): refused until the limit allows it. */
    errno = 0;
    CHECK(mln_ipc_max_message_set(0xffffffffu) == -1 && errno == EINVAL);
    errno = SENTINEL;
    CHECK(mln_ipc_queue_limit_set(0) == 0);
    CHECK(errno == SENTINEL);
    errno = SENTINEL;
    CHECK(mln_ipc_max_message_set(0xffffffffu) == 0);
    CHECK(errno == SENTINEL);
    /* A limit below the maximum message size is refused. */
    errno = 0;
    CHECK(mln_ipc_queue_limit_set(1024) == -1 && errno == EINVAL);

    /* Sends: need a live child. */
    errno = SENTINEL;
    CHECK(mln_fork_prepare() == 0);
    CHECK(errno == SENTINEL);
    errno = SENTINEL;
    r = mln_fork_restart(NULL);
    CHECK(r >= 0);
    if (r == 0) {
        /* The worker stays until this master exits (the sends below need a live child: one
         * whose socket already failed refuses them with ESRCH). */
        mln_event_t *wev = mln_event_new();
        CHECK(wev != NULL);
        mln_fork_worker_events_set(wev);
        mln_event_dispatch(wev);
        _exit(0);
    }
    if (errno != SENTINEL) fprintf(stderr, "errno %d (%s)\n", errno, strerror(errno));
    CHECK(errno == SENTINEL);
    CHECK(mln_fork_iterate(ev, first_child, &f) == -1 && f != NULL);
    errno = 0;
    CHECK(mln_ipc_master_send_prepare(NULL, 1, buf, 1, f) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(mln_ipc_master_send_prepare(ev, 1, buf, 1, NULL) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(mln_ipc_master_send_prepare(ev, 1, buf, 1, &fake) == -1 && errno == ESRCH);
    errno = 0;
    CHECK(mln_ipc_master_send_prepare(ev, 1, NULL, 5, f) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(mln_ipc_master_send_prepare(ev, 1, buf, (mln_size_t)-1, f) == -1 && errno == EMSGSIZE);
    errno = 0;
    CHECK(mln_ipc_master_send_prepare(ev, 1, buf, 0xfffffffcu, f) == -1 && errno == EMSGSIZE);
    errno = SENTINEL;
    CHECK(mln_ipc_master_send_prepare(ev, 1, NULL, 0, f) == 0);
    CHECK(errno == SENTINEL);
    errno = SENTINEL;
    CHECK(mln_ipc_master_send_prepare(ev, 1, buf, 10, f) == 0);
    CHECK(errno == SENTINEL);
    errno = 0;
    CHECK(mln_ipc_worker_send_prepare(ev, 1, buf, 1) == -1 && errno == ESRCH); /* not a worker */
    errno = 0;
    CHECK(mln_ipc_worker_send_prepare(NULL, 1, buf, 1) == -1 && errno == EINVAL);
    mln_event_free(ev);
    return 0;
}
