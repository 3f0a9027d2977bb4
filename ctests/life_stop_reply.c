/* A graceful stop lets a worker finish a 100 MiB reply before it exits 0. Two supervised
 * workers (slot 1 is only a witness). Once both started (events), the master sends a
 * request to worker 0 and calls mln_fork_stop(ev, f, 30000) right after it, so the quit
 * reaches the worker behind the request. The worker's request handler sends the reply: 100
 * frames of 1 MiB (a sequence number and a pattern; the sends are paced or queued, the
 * queue limit is the default 256 MiB), and its quit handler (set in global_init, inherited
 * by the workers) sends one last frame saying whether the request's handler had run and
 * how many frames it had sent, then returns 0. Checks:
 * - right after the stop: a send to f is -1 ESRCH, mln_fork_iterate no longer visits it,
 *   mln_ipc_stats_get(f) is -1 ESRCH, a second stop of f is -1 ESRCH;
 * - every byte of the reply reaches the master's handler, in order, with f_ptr the stopped
 *   record; then the quit handler's frame (the request was handled first, 100 frames);
 * - then EXITED slot 0: how STOPPED, exited 1, status 0, restart_in_ms -1, frames_lost 0,
 *   f the stopped record (f->pid == e->pid), long before the deadline; never a SIGTERM;
 * - nothing is restarted: 1.5 s later (a replacement would have started within a few ms)
 *   no STARTED for slot 0 has come, the list holds only worker 1, which answers 3 rounds of
 *   pings, and the master has one child process, no zombie. */
#include "life.h"

#define N 2
#define CHUNK ((mln_u32_t)1 << 20)
#define FRAMES 100
#define T_REQ 2301
#define T_DATA 2302
#define T_QUIT_RAN 2303

struct quit_report { int req_handled; int frames_sent; int quit_calls; };

static mln_fork_t *f_stop, *f_other;
static pid_t pid_stop;
static int started, exited, quit_seen, finished, req_handled, frames_sent, quit_calls;
static mln_u32_t next_seq;
static unsigned long long bytes_got;
static int nev_at_stop;
static long t_stop;
static struct life_pids dead;
static unsigned char chunk[CHUNK], want[CHUNK];

static void fill(unsigned char *p, mln_u32_t seq)
{
    mln_u32_t i;
    memcpy(p, &seq, 4);
    for (i = 4; i < CHUNK; ++i) p[i] = (unsigned char)(i * 7 + seq * 13);
}

/* Worker: the reply, 100 MiB in 1 MiB frames. */
static void worker_req(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_u32_t seq;
    (void)f_ptr; (void)buf; (void)udata_ptr;
    CHECK(getpid() != life_master);
    CHECK(len == 0 && !req_handled && quit_calls == 0);
    req_handled = 1;
    for (seq = 0; seq < FRAMES; ++seq) {
        fill(chunk, seq);
        CHECK(mln_ipc_worker_send_prepare(ev, T_DATA, chunk, CHUNK) == 0);
        ++frames_sent;
    }
}

/* Worker: the quit handler reports the order, then lets the library end the worker. */
static int worker_quit(mln_event_t *ev, void *data)
{
    struct quit_report r;
    CHECK(getpid() != life_master);
    CHECK(data == (void *)&quit_seen);
    r.req_handled = req_handled;
    r.frames_sent = frames_sent;
    r.quit_calls = ++quit_calls;
    CHECK(mln_ipc_worker_send_prepare(ev, T_QUIT_RAN, &r, sizeof(r)) == 0);
    return 0;
}

static void master_data(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)udata_ptr;
    CHECK(f_ptr == f_stop && f_stop != NULL);
    CHECK(!exited && !quit_seen);
    CHECK(len == CHUNK);
    CHECK(next_seq < FRAMES);
    fill(want, next_seq);
    if (memcmp(buf, want, CHUNK) != 0) fprintf(stderr, "master: frame %u differs\n", next_seq);
    CHECK(memcmp(buf, want, CHUNK) == 0);
    ++next_seq;
    bytes_got += len;
}

static void master_quit_ran(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    struct quit_report r;
    (void)ev; (void)udata_ptr;
    CHECK(f_ptr == f_stop && !exited && !quit_seen);
    CHECK(len == sizeof(r));
    memcpy(&r, buf, sizeof(r));
    fprintf(stderr, "master: quit handler ran: request handled %d, %d frames sent, call %d; "
            "%u frames received before\n", r.req_handled, r.frames_sent, r.quit_calls, next_seq);
    CHECK(r.req_handled == 1 && r.frames_sent == FRAMES && r.quit_calls == 1);
    CHECK(next_seq == FRAMES); /* the whole reply came before it */
    quit_seen = 1;
}

static int visit(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)ev; (void)data;
    CHECK(f != f_stop);
    return 0;
}

static void start_stop(mln_event_t *ev)
{
    mln_ipc_stats_t st;
    struct life_kids kids;
    errno = EDOM;
    CHECK(mln_ipc_master_send_prepare(ev, T_REQ, NULL, 0, f_stop) == 0);
    t_stop = now_ms();
    nev_at_stop = life_nevents;
    CHECK(mln_fork_stop(ev, f_stop, 30000) == 0);
    CHECK(errno == EDOM);
    /* From the call on, the worker is out of reach. */
    errno = 0;
    CHECK(mln_ipc_master_send_prepare(ev, T_REQ, NULL, 0, f_stop) == -1 && errno == ESRCH);
    errno = 0;
    CHECK(mln_ipc_stats_get(f_stop, &st) == -1 && errno == ESRCH);
    errno = 0;
    CHECK(mln_fork_stop(ev, f_stop, 30000) == -1 && errno == ESRCH);
    CHECK(mln_fork_iterate(ev, visit, NULL) == 0);
    life_kids_collect(ev, &kids);
    CHECK(kids.n == 1 && kids.f[0] == f_other);
}

static void all_done(mln_event_t *ev)
{
    int i, live, zombies;
    for (i = nev_at_stop; i < life_nevents; ++i)
        CHECK(life_events[i].e.type != M_IPC_CHILD_STARTED);
    child_processes(&live, &zombies);
    if (live != 1 || zombies != 0) fprintf(stderr, "children: %d live, %d zombies\n", live, zombies);
    CHECK(live == 1 && zombies == 0);
    finished = 1;
    mln_event_break_set(ev);
}

static void after_exit(mln_event_t *ev, void *data)
{
    (void)data;
    life_check_live(ev, 1, 3, &dead, all_done);
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    life_event_record(f, e);
    (void)data;
    CHECK(e->type == M_IPC_CHILD_STARTED || e->type == M_IPC_CHILD_EXITED);
    CHECK(e->slot < N && f != NULL && f->pid == e->pid);
    if (e->type == M_IPC_CHILD_STARTED) {
        CHECK(e->restarts == 0 && started < N && t_stop == 0);
        if (e->slot == 0) f_stop = f;
        else f_other = f;
        if (++started == N) start_stop(ev);
        return;
    }
    /* EXITED: only the stopped worker. */
    CHECK(e->slot == 0 && f == f_stop && !exited);
    exited = 1;
    pid_stop = e->pid;
    fprintf(stderr, "master: worker 0 exited %ld ms after the stop; %llu bytes received\n",
            now_ms() - t_stop, bytes_got);
    CHECK(bytes_got == (unsigned long long)FRAMES * CHUNK);
    CHECK(quit_seen);
    CHECK(e->how == M_IPC_END_STOPPED);
    CHECK(e->exited == 1 && e->status == 0);
    CHECK(e->restart_in_ms == -1);
    CHECK(e->frames_lost == 0);
    CHECK(e->restarts == 0);
    CHECK(pid_exited(e->pid));
    CHECK(now_ms() - t_stop < (valgrind() ? 250000 : 25000));
    life_pids_add(&dead, e->pid);
    /* A replacement (none is due) would start at once: 1.5 s is plenty to see one. */
    CHECK(mln_event_timer_set(ev, 1500, NULL, after_exit) != NULL);
}

static void master_process(mln_event_t *ev)
{
    life_master_watch(ev);
    life_watchdog(valgrind() ? 280 : 50);
    mln_ipc_child_event_handler_set(on_event, NULL);
}

static int global_init(void)
{
    ctest_workers(N);
    life_max_workers = N;
    mln_ipc_worker_quit_handler_set(worker_quit, &quit_seen);
    if (!mln_ipc_handler_register(T_REQ, NULL, worker_req, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_DATA, master_data, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_QUIT_RAN, master_quit_ran, NULL, NULL, NULL)) return -1;
    return life_register_common();
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, life_worker_hello};
    life_init();
    if (ctest_framework_init(&a) < 0) return 1;
    if (!finished) life_events_dump();
    life_master_end();
    CHECK(finished && exited && quit_seen && next_seq == FRAMES);
    CHECK(life_nevents == N + 1);
    return 0;
}
