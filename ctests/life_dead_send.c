/* Lifecycle item 9: a send to a worker that just died must not harm its replacement.
 * Three supervised workers. Twice (a different original worker each time): the master
 * SIGKILLs the worker, waits until the process has exited (a zombie: the library reaps it
 * once its loop has seen the death), and sends it a 100 KB job at once; the flush of that
 * job then fails (EPIPE). Expected: exactly one replacement starts for each death; it says
 * hello, receives a 100 KB job sent after its start and completes it; then three rounds of
 * pings reach exactly the three live workers. Any extra process (more than 3 + 2 distinct
 * workers say hello, or a hello while no replacement is due) fails the test. Every process
 * reports failures to the master (life.h).
 * Today: the drain after EPIPE sees the end of stream, restarts the child at once, the
 * replacement gets the same record, and the drain then closes it with the old child's
 * error: its job is lost and a third process starts after backoff (extra hello). */
#include "life.h"
#include <sched.h>

#define N 3
#define DEATHS 2
#define T_JOB 6901  /* master -> worker: int id, then a pattern */
#define T_DONE 6902 /* worker -> master: {id, pid, pattern ok} */
#define JOB 100000

static int deaths, jobs_done, phase;
static pid_t originals[N], victim;
static int noriginals;
static struct life_pids dead;
static mln_fork_t *replacement;

static unsigned char *job(int id)
{
    static unsigned char b[JOB];
    int i;
    for (i = 0; i < JOB; ++i) b[i] = (unsigned char)(i * 13 + id);
    memcpy(b, &id, sizeof(id));
    return b;
}

static void worker_job(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int r[3], id;
    (void)f_ptr; (void)udata_ptr;
    CHECK(len == JOB);
    memcpy(&id, buf, sizeof(id));
    r[0] = id;
    r[1] = (int)getpid();
    r[2] = memcmp(buf, job(id), JOB) == 0;
    CHECK(r[2]);
    CHECK(mln_ipc_worker_send_prepare(ev, T_DONE, r, sizeof(r)) == 0);
}

static int find_pid(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)ev;
    if (f->pid == victim) {
        *(mln_fork_t **)data = f;
        return -1;
    }
    return 0;
}

static void kill_and_send(mln_event_t *ev, void *data)
{
    mln_fork_t *f = NULL;
    int r;
    (void)data;
    victim = originals[deaths];
    CHECK(mln_fork_iterate(ev, find_pid, &f) == -1 && f != NULL);
    life_pids_add(&dead, victim);
    CHECK(kill(victim, SIGKILL) == 0);
    /* Dead, but the loop has not seen the end of stream (nor reaped it). */
    while (!pid_exited(victim)) sched_yield();
    r = mln_ipc_master_send_prepare(ev, T_JOB, job(1000 + deaths), JOB, f);
    fprintf(stderr, "master: job sent to the dead worker %d: %d\n", (int)victim, r);
    ++deaths;
    phase = 1;
}

static void round_done(mln_event_t *ev)
{
    if (deaths < DEATHS) {
        phase = 0;
        CHECK(mln_event_timer_set(ev, 0, NULL, kill_and_send) != NULL);
        return;
    }
    phase = 3;
    mln_event_break_set(ev);
}

static void master_done(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int r[3];
    (void)udata_ptr;
    CHECK(len == sizeof(r));
    memcpy(r, buf, sizeof(r));
    CHECK(phase == 2 && f_ptr == replacement);
    CHECK(r[0] == 2000 + deaths && r[1] == (int)replacement->pid && r[2] == 1);
    ++jobs_done;
    life_check_live(ev, N, 3, &dead, round_done);
}

static void on_hello(mln_event_t *ev, mln_fork_t *f)
{
    if (noriginals < N) {
        originals[noriginals++] = f->pid;
        if (noriginals == N) CHECK(mln_event_timer_set(ev, 0, NULL, kill_and_send) != NULL);
        return;
    }
    /* The replacement. */
    if (phase != 1)
        fprintf(stderr, "master: unexpected worker %d (phase %d)\n", (int)f->pid, phase);
    CHECK(phase == 1);
    CHECK(life_hellos.n == N + deaths);
    phase = 2;
    replacement = f;
    CHECK(mln_ipc_master_send_prepare(ev, T_JOB, job(2000 + deaths), JOB, f) == 0);
}

static void master_process(mln_event_t *ev)
{
    life_master_watch(ev);
    life_watchdog(20);
}

static int global_init(void)
{
    ctest_workers(N);
    life_max_workers = N + DEATHS;
    life_on_hello = on_hello;
    if (!mln_ipc_handler_register(T_JOB, NULL, worker_job, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_DONE, master_done, NULL, NULL, NULL)) return -1;
    return life_register_common();
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, life_worker_hello};
    life_init();
    if (ctest_framework_init(&a) < 0) return 1;
    life_master_end();
    CHECK(phase == 3 && jobs_done == DEATHS && life_hellos.n == N + DEATHS);
    return 0;
}
