/* Helpers of the lifecycle tests (ctests/life_*.c): every process's failure reaches the
 * master, every worker process started is counted, and a watchdog bounds the master. Not
 * part of the API.
 *
 * - life_init() (in main, before mln_framework_init) creates a report pipe inherited by
 *   every process the test starts, installs handlers for fatal signals that report and exit
 *   (status 5), records the master's pid, and sets a resource-clear handler that writes
 *   the pid of every child the library forks to a "starts" pipe before its fork handshake
 *   (so a worker killed before it could say anything is counted too). The master reads it
 *   at every hello and ping round: more than life_max_workers processes fail the test.
 * - CHECK (redefined here) writes its message to stderr and to the report pipe, then exits
 *   with status 2, in whatever process it fails (master, worker, or a worker that runs
 *   master code by mistake).
 * - life_master_watch(ev) (in master_process) makes the master's loop read the pipe: any
 *   report from any process makes the master print it and exit with status 3.
 * - life_watchdog(seconds): a POSIX timer on CLOCK_MONOTONIC (not inherited by children)
 *   that makes the master exit with status 4 ("watchdog") if the test did not end.
 * - life_master_end() (in main, after mln_framework_init) fails if a report is waiting,
 *   or if a worker process started that never said hello (the common exchange below).
 * To diagnose a failure, MLN_IPC_LOG=info shows the deaths and restarts the library saw.
 */
#ifndef LIFE_H
#define LIFE_H
#include "ctest.h"
#include <time.h>
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define LIFE_UNUSED __attribute__((unused))

LIFE_UNUSED static int life_pipe[2] = {-1, -1};
LIFE_UNUSED static int life_starts[2] = {-1, -1};
LIFE_UNUSED static pid_t life_master;

static inline void life_write(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

/* One report line: written to stderr and (atomically, < PIPE_BUF) to the report pipe. */
static inline void life_report(const char *msg)
{
    char b[480];
    int n = snprintf(b, sizeof(b), "[pid %d%s] %s\n", (int)getpid(),
                     getpid() == life_master ? " master" : "", msg);
    if (n < 0) return;
    if (n >= (int)sizeof(b)) n = (int)sizeof(b) - 1;
    life_write(2, b, (size_t)n);
    if (life_pipe[1] >= 0) life_write(life_pipe[1], b, (size_t)n);
}

static inline void life_fail(const char *file, int line, const char *what)
{
    char m[400];
    snprintf(m, sizeof(m), "%s:%d: check failed: %s", file, line, what);
    life_report(m);
    exit(2);
}

#undef CHECK
#define CHECK(cond) do { if (!(cond)) life_fail(__FILE__, __LINE__, #cond); } while (0)

static inline void life_fatal_signal(int sig)
{
    /* Async-signal-safe subset: a fixed message per signal, write(2), _exit. */
    const char *m = sig == SIGSEGV ? "fatal signal SIGSEGV"
                  : sig == SIGBUS ? "fatal signal SIGBUS"
                  : sig == SIGABRT ? "fatal signal SIGABRT"
                  : sig == SIGFPE ? "fatal signal SIGFPE" : "fatal signal SIGILL";
    char b[96];
    size_t n = 0, k;
    pid_t p = getpid();
    char digits[16];
    int d = 0;
    memcpy(b, "[pid ", 5);
    n = 5;
    do { digits[d++] = (char)('0' + p % 10); p /= 10; } while (p > 0 && d < 15);
    while (d > 0) b[n++] = digits[--d];
    b[n++] = ']';
    b[n++] = ' ';
    k = strlen(m);
    memcpy(b + n, m, k);
    n += k;
    b[n++] = '\n';
    life_write(2, b, n);
    if (life_pipe[1] >= 0) life_write(life_pipe[1], b, n);
    _exit(5);
}

/* A set of distinct pids. */
#define LIFE_MAX_PIDS 64
struct life_pids { pid_t pid[LIFE_MAX_PIDS]; int n; };

static inline int life_pids_has(const struct life_pids *s, pid_t p)
{
    int i;
    for (i = 0; i < s->n; ++i)
        if (s->pid[i] == p) return 1;
    return 0;
}

/* Adds `p`; returns 1 if it was new. */
static inline int life_pids_add(struct life_pids *s, pid_t p)
{
    if (life_pids_has(s, p)) return 0;
    CHECK(s->n < LIFE_MAX_PIDS);
    s->pid[s->n++] = p;
    return 1;
}

/* The children in the list at one moment, oldest first: record and pid. */
struct life_kids { mln_fork_t *f[LIFE_MAX_PIDS]; pid_t pid[LIFE_MAX_PIDS]; int n; };

static inline int life_kids_add(mln_event_t *ev, mln_fork_t *f, void *data)
{
    struct life_kids *k = data;
    (void)ev;
    CHECK(k->n < LIFE_MAX_PIDS);
    k->f[k->n] = f;
    k->pid[k->n++] = f->pid;
    return 0;
}

static inline void life_kids_collect(mln_event_t *ev, struct life_kids *k)
{
    k->n = 0;
    CHECK(mln_fork_iterate(ev, life_kids_add, k) == 0);
}

/* The index of `f` in `k` (the same record with the same pid), or -1. */
static inline int life_kids_index(const struct life_kids *k, const mln_fork_t *f)
{
    int i;
    for (i = 0; i < k->n; ++i)
        if (k->f[i] == f && k->pid[i] == f->pid) return i;
    return -1;
}

/* Closes child `f` as a program does (Melon's signature: the child and its descriptor);
 * no other process may return from the call. */
static inline void life_close(mln_event_t *ev, mln_fork_t *f)
{
    pid_t me = getpid();
    mln_fork_socketpair_close_handler(ev, f, mln_tcp_conn_fd_get(&f->conn));
    if (getpid() != me)
        life_fail(__FILE__, __LINE__, "a new process returned from "
                  "mln_fork_socketpair_close_handler into the master's code");
}

/* Every worker process the library forked (life_started_child), as far as the master has
 * read them; more than life_max_workers fails. */
LIFE_UNUSED static struct life_pids life_started;
/* The workers that said hello (the common exchange below). */
LIFE_UNUSED static struct life_pids life_hellos;
LIFE_UNUSED static int life_max_workers = 1000;

static inline void life_read_starts(void)
{
    pid_t p;
    while (read(life_starts[0], &p, sizeof(p)) == (ssize_t)sizeof(p)) {
        life_pids_add(&life_started, p);
        if (life_started.n > life_max_workers) {
            fprintf(stderr, "master: %d worker processes started, at most %d expected\n",
                    life_started.n, life_max_workers);
            CHECK(life_started.n <= life_max_workers);
        }
    }
}

static inline void life_watchdog_fired(int sig)
{
    static const char m[] = "watchdog: the test did not finish in time\n";
    (void)sig;
    life_write(2, m, sizeof(m) - 1);
    _exit(4);
}

/* Resource-clear handler: runs in every child the library forks, before the fork
 * handshake, so even a worker killed at once is counted. */
static inline void life_started_child(void *data)
{
    pid_t me = getpid();
    (void)data;
    if (write(life_starts[1], &me, sizeof(me)) != (ssize_t)sizeof(me)) _exit(6);
}

/* In main, before mln_framework_init. */
static inline void life_init(void)
{
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL};
    struct sigaction sa;
    unsigned i;
    life_master = getpid();
    CHECK(pipe(life_pipe) == 0);
    CHECK(pipe(life_starts) == 0);
    CHECK(fcntl(life_starts[0], F_SETFL, O_NONBLOCK) == 0);
    mln_fork_resource_clear_handler_set(life_started_child, NULL);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = life_fatal_signal;
    sa.sa_flags = SA_RESETHAND | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); ++i)
        CHECK(sigaction(sigs[i], &sa, NULL) == 0);
}

/* The master exits 4 after `seconds` unless it ended before. SIGVTALRM, via a POSIX
 * timer: tests may use SIGALRM themselves. */
static inline void life_watchdog(int seconds)
{
    struct sigaction sa;
    struct sigevent se;
    struct itimerspec its;
    timer_t t;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = life_watchdog_fired;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGVTALRM, &sa, NULL) == 0);
    memset(&se, 0, sizeof(se));
    se.sigev_notify = SIGEV_SIGNAL;
    se.sigev_signo = SIGVTALRM;
    CHECK(timer_create(CLOCK_MONOTONIC, &se, &t) == 0);
    memset(&its, 0, sizeof(its));
    its.it_value.tv_sec = seconds;
    CHECK(timer_settime(t, 0, &its, NULL) == 0);
}

static inline void life_report_ready(mln_event_t *ev, int fd, void *data)
{
    char b[4096];
    ssize_t n;
    (void)ev; (void)data;
    n = read(fd, b, sizeof(b) - 1);
    if (n <= 0) return;
    b[n] = 0;
    fprintf(stderr, "master: failure reported by a process:\n%s", b);
    exit(3);
}

/* In master_process: the master's loop watches the report pipe. */
static inline void life_master_watch(mln_event_t *ev)
{
    CHECK(getpid() == life_master);
    CHECK(mln_event_fd_set(ev, life_pipe[0], M_EV_RECV | M_EV_NONBLOCK, M_EV_UNLIMITED, NULL,
                           life_report_ready) == 0);
}

/* In main after mln_framework_init (master): no report may be waiting. */
static inline void life_master_end(void)
{
    char b[4096];
    ssize_t n;
    CHECK(getpid() == life_master);
    CHECK(fcntl(life_pipe[0], F_SETFL, O_NONBLOCK) == 0);
    n = read(life_pipe[0], b, sizeof(b) - 1);
    if (n > 0) {
        b[n] = 0;
        fprintf(stderr, "master: failure reported by a process:\n%s", b);
        exit(3);
    }
    life_read_starts();
    if (life_started.n != life_hellos.n)
        fprintf(stderr, "master: %d worker processes started, %d said hello\n", life_started.n,
                life_hellos.n);
    CHECK(life_started.n == life_hellos.n);
}

/* The common exchange (types 6001..6003; tests use other types):
 * - every worker says hello with its pid once, from worker_process (life_worker_hello);
 * - the master records the distinct pids in life_hellos, fails when more than
 *   life_max_workers distinct processes said hello, and calls life_on_hello;
 * - life_check_live(ev, n, rounds, dead, done): `rounds` rounds of ping to every child in
 *   the list: each round the list must hold exactly `n` children, none of them in `dead`
 *   and each one that said hello, and each must answer with its pid; then done(ev). */
#define T_LIFE_HELLO 6001
#define T_LIFE_PING 6002
#define T_LIFE_PONG 6003

LIFE_UNUSED static void (*life_on_hello)(mln_event_t *ev, mln_fork_t *f);

LIFE_UNUSED static struct {
    int n, rounds, round, pongs;
    const struct life_pids *dead;
    struct life_pids answered;
    void (*done)(mln_event_t *ev);
} life_live;

static inline void life_worker_hello(mln_event_t *ev)
{
    pid_t me = getpid();
    CHECK(getpid() != life_master);
    CHECK(mln_ipc_worker_send_prepare(ev, T_LIFE_HELLO, &me, sizeof(me)) == 0);
}

static inline void life_master_hello(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_fork_t *f = f_ptr;
    pid_t p;
    (void)udata_ptr;
    CHECK(getpid() == life_master);
    CHECK(len == sizeof(p));
    memcpy(&p, buf, sizeof(p));
    CHECK(p == f->pid);
    CHECK(life_pids_add(&life_hellos, p));
    life_read_starts();
    if (life_hellos.n > life_max_workers) {
        fprintf(stderr, "master: %d distinct workers said hello, at most %d expected\n",
                life_hellos.n, life_max_workers);
        CHECK(life_hellos.n <= life_max_workers);
    }
    if (life_on_hello) life_on_hello(ev, f);
}

static inline void life_worker_ping(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int r[2];
    pid_t me = getpid();
    (void)f_ptr; (void)udata_ptr;
    CHECK(getpid() != life_master);
    CHECK(len == sizeof(int));
    memcpy(&r[0], buf, sizeof(int));
    r[1] = (int)me;
    CHECK(mln_ipc_worker_send_prepare(ev, T_LIFE_PONG, r, sizeof(r)) == 0);
}

static inline int life_ping_one(mln_event_t *ev, mln_fork_t *f, void *data)
{
    int *count = data;
    if (life_live.dead != NULL && life_pids_has(life_live.dead, f->pid)) {
        fprintf(stderr, "master: dead child %d still in the list\n", (int)f->pid);
        CHECK(!life_pids_has(life_live.dead, f->pid));
    }
    if (!life_pids_has(&life_hellos, f->pid)) {
        fprintf(stderr, "master: child %d in the list never said hello\n", (int)f->pid);
        CHECK(life_pids_has(&life_hellos, f->pid));
    }
    CHECK(mln_ipc_master_send_prepare(ev, T_LIFE_PING, &life_live.round, sizeof(int), f) == 0);
    ++*count;
    return 0;
}

static inline void life_ping_round(mln_event_t *ev)
{
    int count = 0;
    life_live.pongs = 0;
    life_live.answered.n = 0;
    life_read_starts();
    CHECK(mln_fork_iterate(ev, life_ping_one, &count) == 0);
    if (count != life_live.n)
        fprintf(stderr, "master: %d children in the list, %d expected\n", count, life_live.n);
    CHECK(count == life_live.n);
}

static inline void life_check_live(mln_event_t *ev, int n, int rounds, const struct life_pids *dead,
                            void (*done)(mln_event_t *ev))
{
    life_live.n = n;
    life_live.rounds = rounds;
    life_live.round = 0;
    life_live.dead = dead;
    life_live.done = done;
    life_ping_round(ev);
}

static inline void life_master_pong(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int r[2];
    (void)udata_ptr;
    CHECK(getpid() == life_master);
    CHECK(len == sizeof(r));
    memcpy(r, buf, sizeof(r));
    CHECK(r[0] == life_live.round);
    CHECK(r[1] == (int)((mln_fork_t *)f_ptr)->pid);
    CHECK(life_pids_add(&life_live.answered, (pid_t)r[1]));
    if (++life_live.pongs < life_live.n) return;
    if (++life_live.round < life_live.rounds) {
        life_ping_round(ev);
        return;
    }
    life_live.done(ev);
}

/* In global_init. */
static inline int life_register_common(void)
{
    if (!mln_ipc_handler_register(T_LIFE_HELLO, life_master_hello, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_LIFE_PING, NULL, life_worker_ping, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_LIFE_PONG, life_master_pong, NULL, NULL, NULL)) return -1;
    return 0;
}

/* Worker events (mln_ipc_child_event_handler_set), as the lifecycle-control tests record
 * them: life_event_record(f, e) (in the master's child-event handler) copies the event,
 * the record's pid read through `f` (-1 for NULL) and the time, prints it on stderr, and
 * returns the copy; life_events_dump() prints them all (on a failure). */
struct life_event { mln_ipc_child_event_t e; mln_fork_t *f; pid_t f_pid; long at_ms; };
#define LIFE_MAX_EVENTS 128
LIFE_UNUSED static struct life_event life_events[LIFE_MAX_EVENTS];
LIFE_UNUSED static int life_nevents;

static inline const char *life_event_name(int type)
{
    return type == M_IPC_CHILD_STARTED ? "STARTED" : type == M_IPC_CHILD_EXITED ? "EXITED"
         : type == M_IPC_CHILD_GAVE_UP ? "GAVE_UP" : type == M_IPC_ROLLING_DONE ? "ROLLING_DONE"
         : "?";
}

static inline const char *life_end_name(int how)
{
    return how == M_IPC_END_CRASHED ? "CRASHED" : how == M_IPC_END_STOPPED ? "STOPPED"
         : how == M_IPC_END_TERMINATED ? "TERMINATED" : how == M_IPC_END_KILLED ? "KILLED" : "?";
}

static inline void life_event_print(const struct life_event *x)
{
    const mln_ipc_child_event_t *e = &x->e;
    fprintf(stderr, "master: event at %ld ms: %s slot %u pid %d (f %p pid %d) how %s exited %d "
            "status %d restarts %u restart_in_ms %lld frames_lost %llu\n", x->at_ms,
            life_event_name((int)e->type), (unsigned)e->slot, (int)e->pid, (void *)x->f,
            (int)x->f_pid, e->type == M_IPC_CHILD_EXITED ? life_end_name((int)e->how) : "-",
            e->exited, e->status, (unsigned)e->restarts, (long long)e->restart_in_ms,
            (unsigned long long)e->frames_lost);
}

static inline void life_events_dump(void)
{
    int i;
    for (i = 0; i < life_nevents; ++i) life_event_print(&life_events[i]);
}

static inline const struct life_event *life_event_record(mln_fork_t *f, const mln_ipc_child_event_t *e)
{
    struct life_event *x;
    CHECK(getpid() == life_master);
    CHECK(e != NULL);
    CHECK(life_nevents < LIFE_MAX_EVENTS);
    x = &life_events[life_nevents++];
    x->e = *e;
    x->f = f;
    x->f_pid = f != NULL ? f->pid : -1;
    x->at_ms = now_ms();
    life_event_print(x);
    return x;
}

static inline void life_stop(mln_event_t *ev)
{
    mln_event_break_set(ev);
}
#endif
