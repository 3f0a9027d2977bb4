/* melon-ipc example: lifecycle control (extensions, not in Melon).
 *
 * A master with WORKERS workers that answer requests with the configuration they were
 * started with (one line read from a file). SIGHUP makes the master re-read the file and
 * replace its workers by a rolling restart, one at a time: each replacement is forked
 * from the master as it is now (so it has the new configuration) and the old worker is
 * stopped gracefully only once its replacement's loop runs. SIGTERM (or SIGINT) stops
 * every worker gracefully; the master exits once each one has ended.
 *
 *   rolling_reload CONFIG        runs until SIGTERM; edit CONFIG, then kill -HUP <pid>
 *   rolling_reload --self-test   writes a temporary CONFIG, waits for all workers to serve
 *                                it, rewrites it and sends itself SIGHUP, waits for all
 *                                workers to serve the new one, sends itself SIGTERM, and
 *                                exits 0 if everything happened as it should
 *                                (`make example-rolling` runs this)
 *
 * Signal handlers only write to a pipe (SIGHUP: the rolling restart must be started from
 * the loop) or set a flag and call mln_fork_stop (which may be called from one). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <signal.h>
#include <unistd.h>
#include <fcntl.h>
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_REQUEST 7000       /* master -> worker: a round number */
#define T_ANSWER  7001       /* worker -> master: the round number, then its configuration */
#define WORKERS   3
#define BATCH     1          /* workers replaced at a time */
#define READY_TIMEOUT_MS 2000 /* a replacement whose loop does not run by then is killed */
#define STOP_DEADLINE_MS 5000 /* a worker still there then gets SIGTERM (SIGKILL 1 s later) */
#define TICK_MS   100        /* one round of requests */

static char config_path[4096];
static char config[256];     /* the master's configuration; a worker keeps the one it was forked with */
static mln_event_t *master_ev;
static int hup_pipe[2] = {-1, -1};
static volatile sig_atomic_t stopping;
static int live, rolling, reload_pending;
static unsigned round_no, round_matching, rounds_printed;

/* Self-test state. */
static int self_test, step, failures, exited_stopped, exited_other, rollings_done;

static const char *how_name(mln_ipc_end_t how)
{
    switch (how) {
    case M_IPC_END_CRASHED: return "crashed";
    case M_IPC_END_STOPPED: return "stopped";
    case M_IPC_END_TERMINATED: return "terminated at the deadline";
    case M_IPC_END_KILLED: return "killed";
    }
    return "?";
}

/* Reads the first line of the configuration file into `config`. 0, or -1. */
static int load_config(void)
{
    char line[sizeof(config)];
    FILE *f = fopen(config_path, "r");
    if (f == NULL) {
        fprintf(stderr, "master: cannot read %s: %s\n", config_path, strerror(errno));
        return -1;
    }
    if (fgets(line, sizeof(line), f) == NULL) line[0] = 0;
    fclose(f);
    line[strcspn(line, "\r\n")] = 0;
    memcpy(config, line, sizeof(config));
    return 0;
}

static int write_config(const char *text)
{
    FILE *f = fopen(config_path, "w");
    if (f == NULL || fprintf(f, "%s\n", text) < 0) {
        if (f != NULL) fclose(f);
        return -1;
    }
    return fclose(f);
}

/* ---- signal handlers: a byte to the loop, or a flag and mln_fork_stop ---- */

static void on_sighup(int sig)
{
    int saved = errno;
    char c = (char)sig;
    if (write(hup_pipe[1], &c, 1) < 0) { /* full: a reload is pending anyway */ }
    errno = saved;
}

static void on_sigterm(int sig)
{
    int saved = errno;
    (void)sig;
    stopping = 1;
    mln_fork_stop(master_ev, NULL, STOP_DEADLINE_MS); /* takes effect from the loop */
    errno = saved;
}

/* ---- master ---- */

static void start_reload(mln_event_t *ev)
{
    if (stopping) return;
    if (rolling) { /* one runs: reload again once it has ended */
        reload_pending = 1;
        return;
    }
    if (load_config() != 0) {
        fprintf(stderr, "master: keeping the configuration \"%s\"\n", config);
        return;
    }
    printf("master: configuration \"%s\" loaded; replacing the workers, %d at a time\n", config, BATCH);
    if (mln_fork_rolling_restart(ev, BATCH, READY_TIMEOUT_MS, STOP_DEADLINE_MS) != 0) {
        fprintf(stderr, "master: rolling restart: %s\n", strerror(errno));
        return;
    }
    rolling = 1;
}

/* The SIGHUP pipe is readable: drain it, then reload once. */
static void hup_ready(mln_event_t *ev, int fd, void *data)
{
    char b[64];
    (void)data;
    while (read(fd, b, sizeof(b)) > 0) {
    }
    start_reload(ev);
}

static void on_child(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    (void)data;
    switch (e->type) {
    case M_IPC_CHILD_STARTED:
        ++live;
        printf("master: worker %u started, pid %d (restarts of the slot: %u)\n", e->slot, (int)e->pid,
               e->restarts);
        if (stopping) mln_fork_stop(ev, f, STOP_DEADLINE_MS); /* started while we stop */
        break;
    case M_IPC_CHILD_EXITED:
        --live;
        printf("master: worker %u (pid %d) %s", e->slot, (int)e->pid, how_name(e->how));
        if (e->exited == 1) printf(", exit status %d", e->status);
        else if (e->exited == 0) printf(", signal %d", e->status);
        if (e->restart_in_ms >= 0) printf(", restarting in %lld ms", (long long)e->restart_in_ms);
        printf("\n");
        if (e->how == M_IPC_END_STOPPED && e->exited == 1 && e->status == 0) ++exited_stopped;
        else ++exited_other;
        break;
    case M_IPC_CHILD_GAVE_UP:
        printf("master: worker %u given up\n", e->slot);
        break;
    case M_IPC_ROLLING_DONE:
        rolling = 0;
        ++rollings_done;
        printf("master: rolling restart %s\n", e->status == 0 ? "done" : "aborted (the old workers keep running)");
        if (self_test && e->status != 0) ++failures;
        if (reload_pending) {
            reload_pending = 0;
            start_reload(ev);
        }
        break;
    case M_IPC_CHILD_RESTART_FAILED:
        printf("master: worker %u could not be restarted (%s); trying again in %lld ms\n", e->slot,
               strerror(e->status), (long long)e->restart_in_ms);
        break;
    }
    fflush(stdout);
    if (stopping && live == 0) mln_event_break_set(ev);
}

/* Self-test: every worker answered the last round with the master's configuration. */
static void all_serve(mln_event_t *ev)
{
    (void)ev;
    if (!self_test) return;
    if (step == 0) {
        step = 1;
        if (write_config("generation 2") != 0) {
            perror("self-test: writing the configuration");
            ++failures;
        }
        printf("self-test: configuration rewritten; SIGHUP\n");
        fflush(stdout);
        kill(getpid(), SIGHUP);
    } else if (step == 1 && !rolling && strcmp(config, "generation 2") == 0) {
        step = 2;
        printf("self-test: every worker serves \"%s\"; SIGTERM\n", config);
        fflush(stdout);
        kill(getpid(), SIGTERM);
    }
}

static int send_request(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)data;
    if (mln_ipc_master_send_prepare(ev, T_REQUEST, &round_no, sizeof(round_no), f) != 0)
        fprintf(stderr, "master: send to %d: %s\n", (int)f->pid, strerror(errno));
    return 0;
}

/* Every TICK_MS: one request to each worker (those being stopped are not listed). */
static void tick(mln_event_t *ev, void *data)
{
    (void)data;
    if (stopping && live == 0) { /* nothing left to end (or no event to come) */
        mln_event_break_set(ev);
        return;
    }
    ++round_no;
    round_matching = 0;
    mln_fork_iterate(ev, send_request, NULL);
    mln_event_timer_set(ev, TICK_MS, NULL, tick);
}

static void master_answer(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_u32_t r;
    const char *text = (const char *)buf + sizeof(r);
    int n = (int)len - (int)sizeof(r);
    (void)f_ptr; (void)udata_ptr;
    if (len < sizeof(r)) return;
    memcpy(&r, buf, sizeof(r));
    if (r != round_no) return; /* a late answer to an earlier round */
    if ((size_t)n == strlen(config) && memcmp(text, config, (size_t)n) == 0 && ++round_matching == WORKERS) {
        if (rounds_printed != round_no / 50 + 1 || self_test) {
            rounds_printed = round_no / 50 + 1; /* now and then, not every round */
            printf("master: round %u: all %d workers serve \"%s\"\n", round_no, WORKERS, config);
            fflush(stdout);
        }
        all_serve(ev);
    }
}

static void master_process(mln_event_t *ev)
{
    struct sigaction sa;
    master_ev = ev;
    if (pipe(hup_pipe) != 0 || fcntl(hup_pipe[0], F_SETFL, O_NONBLOCK) != 0
        || fcntl(hup_pipe[1], F_SETFL, O_NONBLOCK) != 0
        || mln_event_fd_set(ev, hup_pipe[0], M_EV_RECV | M_EV_NONBLOCK, M_EV_UNLIMITED, NULL, hup_ready) != 0) {
        perror("master: SIGHUP pipe");
        exit(1);
    }
    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = on_sighup;
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = on_sigterm;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    printf("master: pid %d, %d workers, configuration \"%s\"", (int)getpid(), WORKERS, config);
    if (!self_test) printf("; kill -HUP %d reloads %s, kill -TERM %d stops", (int)getpid(), config_path, (int)getpid());
    printf("\n");
    fflush(stdout);
    mln_event_timer_set(ev, TICK_MS, NULL, tick);
}

/* ---- worker ---- */

/* In every new child before it runs (the initial workers and each replacement, forked from
 * the master with its signal handlers and SIGHUP pipe): the master's business is not its. */
static void child_clear(void *data)
{
    (void)data;
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, SIG_IGN); /* Ctrl-C reaches the whole group: the master stops us */
    signal(SIGTERM, SIG_DFL);
    if (hup_pipe[0] >= 0) {
        close(hup_pipe[0]);
        close(hup_pipe[1]);
        hup_pipe[0] = hup_pipe[1] = -1;
    }
}

static void worker_request(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    char answer[sizeof(mln_u32_t) + sizeof(config)];
    size_t n = strlen(config);
    (void)f_ptr; (void)udata_ptr;
    if (len != sizeof(mln_u32_t)) return;
    memcpy(answer, buf, sizeof(mln_u32_t));
    memcpy(answer + sizeof(mln_u32_t), config, n);
    mln_ipc_worker_send_prepare(ev, T_ANSWER, answer, sizeof(mln_u32_t) + n);
}

/* Worker side of a graceful stop: what is left to do, then 0 (the library ends the worker
 * once what it queued to the master is written). */
static int worker_quit(mln_event_t *ev, void *data)
{
    (void)ev; (void)data;
    printf("worker %d: asked to stop; bye\n", (int)getpid());
    fflush(stdout);
    return 0;
}

static void worker_process(mln_event_t *ev)
{
    (void)ev;
    printf("worker %d: serving \"%s\"\n", (int)getpid(), config);
    fflush(stdout);
}

static int global_init(void)
{
    mln_fork_worker_num_set(WORKERS); /* melon-ipc extension; Melon reads worker_proc */
    if (mln_ipc_handler_register(T_REQUEST, NULL, worker_request, NULL, NULL) == NULL) return -1;
    if (mln_ipc_handler_register(T_ANSWER, master_answer, NULL, NULL, NULL) == NULL) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a;
    pid_t master = getpid();
    if (argc == 2 && strcmp(argv[1], "--self-test") == 0) {
        int fd;
        const char *tmp = getenv("TMPDIR");
        self_test = 1;
        snprintf(config_path, sizeof(config_path), "%s/rolling_reload.XXXXXX", tmp != NULL && *tmp ? tmp : "/tmp");
        fd = mkstemp(config_path);
        if (fd < 0) {
            perror("self-test: mkstemp");
            return 1;
        }
        close(fd);
        if (write_config("generation 1") != 0) {
            perror("self-test: writing the configuration");
            return 1;
        }
        alarm(60); /* a bound on the whole test (not inherited by the workers) */
    } else if (argc == 2 && argv[1][0] != '-') {
        snprintf(config_path, sizeof(config_path), "%s", argv[1]);
    } else {
        fprintf(stderr, "usage: %s CONFIG | --self-test\n", argv[0]);
        return 2;
    }
    if (load_config() != 0) return 1;

    mln_ipc_child_event_handler_set(on_child, NULL);
    mln_ipc_worker_quit_handler_set(worker_quit, NULL);
    mln_fork_resource_clear_handler_set(child_clear, NULL);

    memset(&a, 0, sizeof(a));
    a.argc = argc;
    a.argv = argv;
    a.global_init = global_init;
    a.master_process = master_process;
    a.worker_process = worker_process;
    if (mln_framework_init(&a) < 0) {
        fprintf(stderr, "master: mln_framework_init failed\n");
        return 1;
    }
    if (getpid() != master) return 0; /* a worker whose loop ended */

    printf("master: every worker has ended; bye\n");
    if (!self_test) return 0;
    unlink(config_path);
    /* 3 workers replaced, then 3 stopped: each exited 0 after its quit handler. */
    if (step != 2 || rollings_done != 1 || exited_stopped != 2 * WORKERS || exited_other != 0 || live != 0)
        ++failures;
    printf("self-test: %s (step %d, %d rolling restart(s), %d workers stopped, %d ended otherwise)\n",
           failures == 0 ? "ok" : "FAILED", step, rollings_done, exited_stopped, exited_other);
    return failures == 0 ? 0 : 1;
}
