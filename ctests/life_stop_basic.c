/* Graceful stop of one worker of three: frames before the stop arrive, the quit handler
 * runs after them and its frame reaches the master before EXITED; EXITED is STOPPED,
 * exit 0, restart_in_ms -1; the worker is gone at once for sends/iterate/stats and is
 * never restarted. */
#include "life_rec.h"

#define T_WORK 9201
#define T_ECHO 9202
#define T_BYE 9203

static int started, echoes, byes, phase;
static mln_fork_t *victim;
static pid_t victim_pid;
static long worker_got;

static void later(mln_event_t *ev, void *data)
{
    (void)data;
    ACHECK(rec_count(M_IPC_CHILD_STARTED, -1) == 3);
    ACHECK(rec_live(ev) == 2);
    phase = 2;
    mln_event_break_set(ev);
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    rec_ev_t *r = rec_record(f, e);
    (void)data;
    if (e->type == M_IPC_CHILD_STARTED) {
        ACHECK(f != NULL && f->pid == e->pid);
        if (++started == 3) {
            long i;
            mln_ipc_stats_t st;
            victim = f;
            victim_pid = f->pid;
            for (i = 0; i < 5; ++i)
                ACHECK(mln_ipc_master_send_prepare(ev, T_WORK, &i, sizeof(i), f) == 0);
            ACHECK(mln_fork_stop(ev, f, 3000) == 0);
            errno = 0;
            ACHECK(mln_ipc_master_send_prepare(ev, T_WORK, &i, sizeof(i), f) == -1 && errno == ESRCH);
            errno = 0;
            ACHECK(mln_ipc_stats_get(f, &st) == -1 && errno == ESRCH);
            errno = 0;
            ACHECK(mln_fork_stop(ev, f, 3000) == -1 && errno == ESRCH);
            ACHECK(rec_live(ev) == 2);
            errno = 0;
            ACHECK(mln_fork_stop(NULL, f, 3000) == -1 && errno == EINVAL);
            phase = 1;
        }
    } else if (e->type == M_IPC_CHILD_EXITED) {
        ACHECK(f == victim && e->pid == victim_pid && f->pid == victim_pid);
        ACHECK(byes == 1 && echoes == 5);
        ACHECK(r->how == M_IPC_END_STOPPED);
        ACHECK(r->exited == 1 && r->status == 0);
        ACHECK(r->restart_in_ms == -1);
        ACHECK(r->frames_lost == 0);
        ACHECK(mln_event_timer_set(ev, 500, NULL, later) != NULL);
    } else {
        ACHECK(0);
    }
}

static void master_echo(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    (void)ev; (void)buf; (void)len; (void)u;
    ACHECK(f_ptr == victim);
    ++echoes;
}

static void master_bye(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    long n;
    (void)ev; (void)u;
    ACHECK(f_ptr == victim && len == sizeof(n));
    memcpy(&n, buf, sizeof(n));
    ACHECK(n == 5 && echoes == 5);
    ++byes;
}

static void worker_work(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    (void)f_ptr; (void)buf; (void)len; (void)u;
    ++worker_got;
    CHECK(mln_ipc_worker_send_prepare(ev, T_ECHO, NULL, 0) == 0);
}

static int quit(mln_event_t *ev, void *data)
{
    CHECK(data == (void *)0x1234);
    CHECK(mln_ipc_worker_send_prepare(ev, T_BYE, &worker_got, sizeof(worker_got)) == 0);
    return 0;
}

static int global_init(void)
{
    ctest_workers(3);
    mln_ipc_child_event_handler_set(on_event, NULL);
    mln_ipc_worker_quit_handler_set(quit, (void *)0x1234);
    if (!mln_ipc_handler_register(T_WORK, NULL, worker_work, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_ECHO, master_echo, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_BYE, master_bye, NULL, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, NULL, NULL};
    rec_init(30);
    if (ctest_framework_init(&a) < 0) return 1;
    ACHECK(phase == 2);
    ACHECK(rec_check_pids() == 0);
    return 0;
}
