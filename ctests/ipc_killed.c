/* A worker killed mid-stream. The master queues 5,000 x 4 KiB frames to worker A (more than
 * the socket holds). A, after its 100th frame, writes 50 frames of its own straight to the
 * socket, then SIGKILLs itself. The master must
 *   - deliver all 50 frames A sent before dying (they are in the socket before the EOF),
 *   - accept every send to A until a write to A fails, then refuse each with ESRCH,
 *   - log at warn how many queued frames to A were dropped: between 1 and the number
 *     accepted - 100,
 *   - keep serving worker B (a ping/pong after A's death), and restart A (supervised).
 * The log is captured by pointing this process's stderr at a file, at log level warn. */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_DATA 7601
#define T_UP 7602
#define T_PING 7603
#define T_PONG 7604
#define COUNT 5000
#define SIZE 4096
#define KILL_AT 100
#define UPS 50

static pid_t a_pid, b_pid;
static mln_fork_t *b;
static int ups, pongs, pinged, accepted, refused;

static void worker_data(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    long n = (long)*udata_ptr + 1;
    int i, fd = mln_tcp_conn_fd_get(mln_fork_master_connection_get());
    (void)ev; (void)f_ptr; (void)buf;
    CHECK(len == SIZE);
    *udata_ptr = (void *)n;
    if (n < KILL_AT) return;
    for (i = 0; i < UPS; ++i) {
        mln_u32_t fr[3];
        fr[0] = 8;
        fr[1] = T_UP;
        fr[2] = (mln_u32_t)i;
        CHECK(write(fd, fr, sizeof(fr)) == (ssize_t)sizeof(fr));
    }
    raise(SIGKILL);
}

static void worker_ping(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)udata_ptr;
    CHECK(mln_ipc_worker_send_prepare(ev, T_PONG, buf, len) == 0);
}

static void master_up(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)udata_ptr;
    CHECK(((mln_fork_t *)f_ptr)->pid == a_pid);
    CHECK(len == 4 && *(mln_u32_t *)buf == (mln_u32_t)ups);
    ++ups;
}

static void master_pong(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    ++pongs;
    mln_event_break_set(ev);
}

static int find(mln_event_t *ev, mln_fork_t *f, void *data)
{
    int *alive = data;
    (void)ev;
    if (f->pid == a_pid) *alive = 1;
    return 0;
}

static void watch(mln_event_t *ev, void *data)
{
    int a_alive = 0;
    (void)data;
    CHECK(mln_fork_iterate(ev, find, &a_alive) == 0);
    if (!a_alive && !pinged) {
        CHECK(mln_ipc_master_send_prepare(ev, T_PING, "ping", 4, b) == 0);
        pinged = 1;
    }
    CHECK(mln_event_timer_set(ev, 5, NULL, watch) != NULL);
}

static int blast(mln_event_t *ev, mln_fork_t *f, void *data)
{
    static unsigned char buf[SIZE];
    int i;
    (void)data;
    if (a_pid == 0) {
        a_pid = f->pid;
        /* A may die while this loop still runs (a send may wait for it to read): once a
         * write to it has failed, every later send is refused with ESRCH. */
        for (i = 0; i < COUNT; ++i) {
            errno = 0;
            if (mln_ipc_master_send_prepare(ev, T_DATA, buf, SIZE, f) == 0) {
                CHECK(refused == 0);
                ++accepted;
            } else {
                CHECK(errno == ESRCH);
                ++refused;
            }
        }
        CHECK(accepted >= KILL_AT);
    } else {
        b_pid = f->pid;
        b = f;
    }
    return 0;
}

static void master_process(mln_event_t *ev)
{
    CHECK(mln_fork_iterate(ev, blast, NULL) == 0);
    CHECK(mln_event_timer_set(ev, 5, NULL, watch) != NULL);
}

static int global_init(void)
{
    ctest_workers(2);
    ctest_log_level("warn");
    if (!mln_ipc_handler_register(T_DATA, NULL, worker_data, NULL, (void *)0)) return -1;
    if (!mln_ipc_handler_register(T_PING, NULL, worker_ping, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_UP, master_up, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_PONG, master_pong, NULL, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, NULL};
    char path[] = "/tmp/ipc_killed.XXXXXX", log[8192], want[128], *p;
    int fd = mkstemp(path), saved = dup(2), r;
    long dropped = -1;
    ssize_t n;
    CHECK(fd >= 0 && saved >= 0);
    unlink(path);
    CHECK(dup2(fd, 2) == 2);
    r = ctest_framework_init(&a);
    CHECK(dup2(saved, 2) == 2);
    CHECK(r == 0);
    n = pread(fd, log, sizeof(log) - 1, 0);
    CHECK(n >= 0);
    log[n] = 0;
    fprintf(stderr, "%s", log);
    /* One line per death: "child <pid> (worker 0) <status> (<reason>), <n> queued
     * frame(s) to it lost; restarting in <ms> ms". */
    snprintf(want, sizeof(want), "child %d (worker 0) ", (int)a_pid);
    p = strstr(log, want);
    CHECK(p != NULL);
    p = strstr(p, "), ");
    CHECK(p != NULL);
    CHECK(sscanf(p, "), %ld queued frame(s) to it lost; restarting in", &dropped) == 1);
    fprintf(stderr, "A: %d frames before death delivered; of %d sends to it %d accepted, %d "
            "refused (ESRCH), %ld queued frames dropped\n", ups, COUNT, accepted, refused, dropped);
    CHECK(ups == UPS);
    CHECK(accepted + refused == COUNT);
    CHECK(dropped >= 1 && dropped <= accepted - KILL_AT);
    CHECK(pongs == 1);
    return 0;
}
