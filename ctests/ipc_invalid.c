/* Invalid and unknown frames written raw by a worker: a zero length (ignored), a length
 * of 2 (2 bytes discarded), an unknown type (dropped), and a length of 3 whose discarded
 * bytes arrive only later. The master must dispatch exactly the valid frames, in order,
 * and keep running its loop (a timer fires) while it waits for the owed bytes. */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_VALID 7001
#define T_GO 7002

static int stage;

static void raw(const void *b, size_t n)
{
    int fd = mln_tcp_conn_fd_get(mln_fork_master_connection_get());
    const char *p = b;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        CHECK(w > 0);
        p += w;
        n -= (size_t)w;
    }
}

static void frame(mln_u32_t type, const char *s)
{
    mln_u32_t h[2];
    h[0] = 4 + (mln_u32_t)strlen(s);
    h[1] = type;
    raw(h, sizeof(h));
    raw(s, strlen(s));
}

static void go_timer(mln_event_t *ev, void *data)
{
    mln_fork_t *f = data;
    (void)ev;
    CHECK(mln_ipc_master_send_prepare(ev, T_GO, NULL, 0, f) == 0);
}

static void master_valid(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)udata_ptr;
    if (stage == 0) {
        CHECK(len == 1 && memcmp(buf, "A", 1) == 0);
        stage = 1;
        /* The master is now owed 2 discard bytes; its loop must stay alive. */
        CHECK(mln_event_timer_set(ev, 20, f_ptr, go_timer) != NULL);
    } else {
        CHECK(stage == 1 && len == 1 && memcmp(buf, "B", 1) == 0);
        stage = 2;
        mln_event_break_set(ev);
    }
}

static void worker_go(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    unsigned char owed[2] = {0xEE, 0xEE};
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    raw(owed, 2);
    frame(T_VALID, "B");
}

static void worker_process(mln_event_t *ev)
{
    unsigned char zero[4] = {0, 0, 0, 0};
    unsigned char two[6] = {2, 0, 0, 0, 0xAA, 0xBB};
    unsigned char three[5] = {3, 0, 0, 0, 0xCC};
    (void)ev;
    raw(zero, 4);
    raw(two, 6);
    frame(777, "unknown");
    frame(T_VALID, "A");
    raw(three, 5);
}

static int global_init(void)
{
    if (!mln_ipc_handler_register(T_VALID, master_valid, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_GO, NULL, worker_go, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, NULL, worker_process};
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(stage == 2);
    return 0;
}
