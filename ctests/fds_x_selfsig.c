/* Hostile use: 
 * 1. a worker sends its own channel descriptor (mln_tcp_conn_fd_get of the master
 *    connection), and its epoll descriptor, through that very channel; the master does not
 *    take them (closed when the handler returns): the channel keeps working, and when the
 *    worker ends, the master sees it (no stray copy of the worker's end keeps it open);
 * 2. frames with descriptors from a SIGALRM handler at ~2 kHz for 1.5 s in the worker
 *    (threads-and-signals.md: either 0 and a frame as from the loop, or -1 EAGAIN with
 *    nothing queued): the master receives exactly the frames that returned 0, each with its
 *    descriptor, and the pipe reaches end of file at the end (no duplicate kept). */
#define _GNU_SOURCE
#include "fds.h"
#include <sys/time.h>
#include <sys/epoll.h>
#include "mln_event.h"

#define T_SELF 8971
#define T_SIG 8972
#define T_COUNT 8973
#define T_PING 8974

static int p[2], finished, m_sig_frames, m_sig_fds;
static volatile int w_ok, w_again, w_other, w_stop;
static mln_event_t *w_ev;

static void on_alarm(int sig)
{
    int e = errno;
    (void)sig;
    if (w_stop) return;
    if (mln_ipc_worker_send_fds_prepare(w_ev, T_SIG, NULL, 0, &p[1], 1) == 0) ++w_ok;
    else if (errno == EAGAIN) ++w_again;
    else ++w_other;
    errno = e;
}

static void stop_timer(mln_event_t *ev, void *data)
{
    struct itimerval it;
    int r[3];
    (void)data;
    memset(&it, 0, sizeof(it));
    w_stop = 1;
    CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
    close(p[1]);
    r[0] = w_ok; r[1] = w_again; r[2] = w_other;
    CHECK(mln_ipc_worker_send_prepare(ev, T_COUNT, r, sizeof(r)) == 0);
}

static void worker_ping(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    struct itimerval it;
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    w_ev = ev;
    CHECK(signal(SIGALRM, on_alarm) != SIG_ERR);
    it.it_interval.tv_sec = 0;
    it.it_interval.tv_usec = 500;
    it.it_value = it.it_interval;
    CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
    CHECK(mln_event_timer_set(ev, 1500, NULL, stop_timer) != NULL);
}

static void master_self(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)buf; (void)len; (void)udata_ptr;
    CHECK(mln_ipc_fds_count() == 2);
    CHECK(mln_ipc_master_send_prepare(ev, T_PING, NULL, 0, f_ptr) == 0);
}

static void master_sig(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    ++m_sig_frames;
    m_sig_fds += (int)mln_ipc_fds_count();
    if (mln_ipc_fds_count() != 1) { fprintf(stderr, "T_SIG with %u descriptors\n", mln_ipc_fds_count()); exit(4); }
}

static void master_count(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int r[3];
    (void)ev; (void)f_ptr; (void)udata_ptr;
    CHECK(len == sizeof(r));
    memcpy(r, buf, sizeof(r));
    fprintf(stderr, "worker: %d sent, %d EAGAIN, %d other; master got %d frames, %d descriptors\n",
            r[0], r[1], r[2], m_sig_frames, m_sig_fds);
    if (r[2] != 0 || r[0] != m_sig_frames || m_sig_fds != r[0]) exit(5);
    /* The worker now ends on its own (it exits below, after its queue is written). */
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    (void)f; (void)data;
    if (e->type != M_IPC_CHILD_EXITED) return;
    fprintf(stderr, "worker ended (exited %d status %d)\n", e->exited, e->status);
    {
        char c, cmd[256];
        if (read_nb(p[0], &c, 1) != 0) {
            snprintf(cmd, sizeof(cmd), "ls -l /proc/%d/fd >&2; ls -l /proc/[0-9]*/fd 2>/dev/null | grep -B30 \"$(readlink /proc/%d/fd/%d)\" | grep -E '^/proc|pipe' >&2; ps -o pid,ppid,cmd --ppid %d >&2",
                     (int)getpid(), (int)getpid(), p[0], (int)getpid());
            if (system(cmd)) {}
            exit(6);
        }
    }
    finished = (e->exited == 1 && e->status == 0 && m_sig_frames > 0) ? 1 : 2;
    mln_event_break_set(ev);
}

static void exit_timer(mln_event_t *ev, void *data)
{
    (void)ev; (void)data;
    _exit(0);
}

static void worker_process(mln_event_t *ev)
{
    int fds[2];
    fds[0] = mln_tcp_conn_fd_get(mln_fork_master_connection_get());
    fds[1] = epoll_create1(0);
    CHECK(fds[0] >= 0 && fds[1] >= 0);
    CHECK(mln_ipc_worker_send_fds_prepare(ev, T_SELF, NULL, 0, fds, 2) == 0);
    close(fds[1]);
    close(p[0]);
    CHECK(mln_event_timer_set(ev, 2500, NULL, exit_timer) != NULL);
}

static void master_process(mln_event_t *ev)
{
    (void)ev;
    close(p[1]); /* the worker has its copy; replacements must not get one */
}

static int global_init(void)
{
    ctest_workers(1);
    mln_ipc_fds_limit_set(0);
    mln_ipc_child_event_handler_set(on_event, NULL);
    if (!mln_ipc_handler_register(T_SELF, master_self, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_SIG, master_sig, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_COUNT, master_count, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_PING, NULL, worker_ping, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    CHECK(pipe(p) == 0);
    if (ctest_framework_init(&a) < 0) return 1;
    return finished == 1 ? 0 : 1;
}
