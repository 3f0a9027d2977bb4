/* melon-ipc example: handing accepted connections to workers (descriptor passing, an
 * extension, not in Melon).
 *
 * The master listens on a TCP port, accepts connections and hands each accepted socket to
 * one of its WORKERS workers in turn (round-robin) through the channel
 * (mln_ipc_master_send_fds_prepare, one descriptor per frame), then closes its own copy.
 * The workers never see the listening socket (it is opened after they are forked): every
 * connection reaches them through the channel. A worker serves a connection on its own
 * loop, without blocking: it reads one line and answers "worker <pid>: <line>", then
 * closes it. SIGTERM (or SIGINT) stops the workers gracefully: a worker with connections
 * still open finishes them first.
 *
 *   accept_handoff [PORT]        listens on 127.0.0.1:PORT (0 or none: a free port,
 *                                printed); try: echo hi | nc 127.0.0.1 PORT
 *   accept_handoff --self-test   a client process (forked before anything else) opens
 *                                CLIENTS connections at once, checks every answer and that
 *                                more than one worker answered; it leaves one more
 *                                connection open mid-line while the master stops the
 *                                workers, and checks it is still answered; exit 0 if all
 *                                went as it should (`make example-handoff` runs this)
 *
 * Signal handlers only set a flag and call mln_fork_stop (which may be called from one). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <signal.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_CONN  7100          /* master -> worker: a connection (u32 number + 1 descriptor) */
#define WORKERS 3
#define CLIENTS 24            /* self-test: connections checked */
#define STOP_DEADLINE_MS 5000 /* a worker still there then gets SIGTERM (SIGKILL 1 s later) */
#define IDLE_MS 10000         /* a worker drops a connection silent for that long */
#define LINE_MAX_BYTES 256

static mln_event_t *master_ev;
static int listen_fd = -1;
static unsigned short listen_port; /* 0: any free port */
static volatile sig_atomic_t stopping;
static int live, exited_stopped, exited_other;
static unsigned handed, rr;   /* connections handed over; the next worker in turn */

/* Self-test: the client's pipes (port and "stopping" to it, its reports from it). */
static int self_test, to_client[2] = {-1, -1}, from_client[2] = {-1, -1};
static int failures, report_ok, late_ok, client_done;
static pid_t client_pid;

static void fail_test(const char *what)
{
    fprintf(stderr, "self-test: %s\n", what);
    ++failures;
}

/* ---- worker: serving connections on its loop ---- */

struct conn {
    int fd;
    unsigned no;
    size_t in, out_len, out_off;
    char buf[LINE_MAX_BYTES];
    char out[LINE_MAX_BYTES + 32];
};

static int open_conns, quitting;
static unsigned served;

static void conn_close(mln_event_t *ev, struct conn *c)
{
    mln_event_fd_set(ev, c->fd, M_EV_CLR, M_EV_UNLIMITED, NULL, NULL);
    close(c->fd);
    free(c);
    --open_conns;
    /* Asked to stop while connections were open: the last one is done, end the worker
     * (the framework writes what is queued to the master and returns). */
    if (quitting && open_conns == 0) mln_event_break_set(ev);
}

/* Writes what is left of the answer; 1 when all of it is written. */
static int conn_flush(struct conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return 0;
        if (n < 0) return 1; /* the client is gone: nothing more to do */
        c->out_off += (size_t)n;
    }
    return 1;
}

static void conn_writable(mln_event_t *ev, int fd, void *data)
{
    (void)fd;
    if (conn_flush(data)) conn_close(ev, data);
}

static void conn_timeout(mln_event_t *ev, int fd, void *data)
{
    (void)fd;
    printf("worker %d: connection #%u idle for %d ms; closed\n", (int)getpid(),
           ((struct conn *)data)->no, IDLE_MS);
    fflush(stdout);
    conn_close(ev, data);
}

static void conn_readable(mln_event_t *ev, int fd, void *data)
{
    struct conn *c = data;
    size_t line;
    char *nl;
    for (;;) {
        ssize_t n = read(fd, c->buf + c->in, sizeof(c->buf) - 1 - c->in);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return; /* wait for more */
        if (n < 0) {
            conn_close(ev, c);
            return;
        }
        c->in += (size_t)n;
        nl = memchr(c->buf, '\n', c->in);
        if (nl != NULL || n == 0 || c->in == sizeof(c->buf) - 1) break;
    }
    if (c->in == 0) { /* closed without a word */
        conn_close(ev, c);
        return;
    }
    line = nl != NULL ? (size_t)(nl - c->buf) : c->in;
    c->out_len = (size_t)snprintf(c->out, sizeof(c->out), "worker %d: %.*s\n", (int)getpid(),
                                  (int)line, c->buf);
    ++served;
    printf("worker %d: connection #%u: \"%.*s\"\n", (int)getpid(), c->no, (int)line, c->buf);
    fflush(stdout);
    if (conn_flush(c)) {
        conn_close(ev, c);
        return;
    }
    /* The socket is full (a slow client): finish on the loop. */
    mln_event_fd_set(ev, fd, M_EV_SEND | M_EV_NONBLOCK, IDLE_MS, c, conn_writable);
}

/* A connection from the master: take its descriptor (ours from now on) and serve it. */
static void worker_conn(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    struct conn *c;
    int fd = mln_ipc_fd_take(0);
    (void)f_ptr; (void)udata_ptr;
    if (fd < 0) {
        /* Only when this process was at its descriptor limit (the kernel dropped it). */
        fprintf(stderr, "worker %d: a connection without its descriptor (%s)\n", (int)getpid(),
                mln_ipc_fds_truncated() ? "descriptor limit" : "none sent");
        return;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return;
    }
    c->fd = fd;
    if (len == sizeof(c->no)) memcpy(&c->no, buf, sizeof(c->no));
    if (mln_event_fd_set(ev, fd, M_EV_RECV | M_EV_NONBLOCK, IDLE_MS, c, conn_readable) != 0) {
        close(fd);
        free(c);
        return;
    }
    mln_event_fd_timeout_handler_set(ev, fd, c, conn_timeout);
    ++open_conns;
}

/* Asked to stop: at once if idle; otherwise once the open connections are done (1: the
 * worker ends itself, see conn_close; the master's deadline still applies). */
static int worker_quit(mln_event_t *ev, void *data)
{
    (void)ev; (void)data;
    printf("worker %d: asked to stop; served %u connection(s), %d still open\n", (int)getpid(),
           served, open_conns);
    fflush(stdout);
    if (open_conns == 0) return 0;
    quitting = 1;
    return 1;
}

static void worker_process(mln_event_t *ev)
{
    (void)ev;
    printf("worker %d: ready\n", (int)getpid());
    fflush(stdout);
}

/* ---- master: accepting and handing over ---- */

struct live_list {
    mln_fork_t *f[64];
    unsigned n;
};

static int list_worker(mln_event_t *ev, mln_fork_t *f, void *data)
{
    struct live_list *l = data;
    (void)ev;
    if (l->n < sizeof(l->f) / sizeof(l->f[0])) l->f[l->n++] = f;
    return 0;
}

/* Hands `fd` to the next worker in turn; one whose descriptor queue is full (EAGAIN: it
 * does not keep up) is skipped. The library has its own duplicate: the caller closes fd. */
static void hand_off(mln_event_t *ev, int fd)
{
    struct live_list l;
    unsigned i, no = handed + 1;
    l.n = 0;
    mln_fork_iterate(ev, list_worker, &l); /* workers being stopped are not listed */
    for (i = 0; i < l.n; ++i) {
        mln_fork_t *f = l.f[(rr + i) % l.n];
        if (mln_ipc_master_send_fds_prepare(ev, T_CONN, &no, sizeof(no), &fd, 1, f) == 0) {
            rr = (rr + i + 1) % l.n;
            ++handed;
            printf("master: connection #%u to worker %d\n", no, (int)f->pid);
            fflush(stdout);
            return;
        }
        if (errno != EAGAIN) fprintf(stderr, "master: send to %d: %s\n", (int)f->pid, strerror(errno));
    }
    fprintf(stderr, "master: no worker takes a connection now; dropped\n");
}

static void maybe_stop(mln_event_t *ev);

static void on_accept(mln_event_t *ev, int fd, void *data)
{
    (void)data;
    for (;;) {
        int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EINTR) continue;
            /* EAGAIN: all taken. EMFILE and the like: the loop (level-triggered) calls
             * again; a real server would pause accepting for a moment. */
            if (errno != EAGAIN) perror("master: accept");
            break;
        }
        if (!stopping) hand_off(ev, c);
        close(c); /* ours; the worker has its own */
    }
    if (self_test) maybe_stop(ev);
}

static void stop_all(mln_event_t *ev)
{
    printf("master: stopping the workers\n");
    fflush(stdout);
    stopping = 1;
    if (mln_fork_stop(ev, NULL, STOP_DEADLINE_MS) != 0) perror("master: mln_fork_stop");
}

static void on_sigterm(int sig)
{
    int saved = errno;
    (void)sig;
    stopping = 1;
    mln_fork_stop(master_ev, NULL, STOP_DEADLINE_MS); /* takes effect from the loop */
    errno = saved;
}

static void on_child(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    (void)data;
    if (e->type == M_IPC_CHILD_STARTED) {
        ++live;
        if (stopping) mln_fork_stop(ev, f, STOP_DEADLINE_MS); /* started while we stop */
    } else if (e->type == M_IPC_CHILD_EXITED) {
        --live;
        printf("master: worker %d ended (%s, status %d)\n", (int)e->pid,
               e->how == M_IPC_END_STOPPED ? "stopped" : "not stopped gracefully", e->status);
        fflush(stdout);
        if (e->how == M_IPC_END_STOPPED && e->exited == 1 && e->status == 0) ++exited_stopped;
        else ++exited_other;
    }
    if (stopping && live == 0 && (!self_test || client_done)) mln_event_break_set(ev);
}

/* ---- self-test: the client (a process of its own) ---- */

static int connect_to(unsigned short port)
{
    struct sockaddr_in a;
    struct timeval tv = {10, 0};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0) return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads the whole answer (the worker closes after it); the pid that answered, or -1. */
static int read_answer(int fd, const char *line)
{
    char b[LINE_MAX_BYTES + 64], want[LINE_MAX_BYTES + 8];
    size_t got = 0;
    ssize_t n;
    int pid = -1, off = 0;
    while (got < sizeof(b) - 1 && (n = read(fd, b + got, sizeof(b) - 1 - got)) > 0) got += (size_t)n;
    b[got] = 0;
    snprintf(want, sizeof(want), "%s\n", line);
    if (sscanf(b, "worker %d: %n", &pid, &off) != 1 || off == 0 || strcmp(b + off, want) != 0) {
        fprintf(stderr, "client: for \"%s\" got \"%s\"\n", line, b);
        return -1;
    }
    return pid;
}

static int write_all(int fd, const char *p)
{
    size_t n = strlen(p);
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void client_run(void)
{
    int fds[CLIENTS], pids[CLIENTS], npids = 0, ok = 0, i, j, late, pid;
    char line[64], report[64 + 16 * CLIENTS], c;
    unsigned short port;
    size_t r = 0;
    alarm(60);
    if (read(to_client[0], &port, sizeof(port)) != sizeof(port)) _exit(1);
    /* All connections open at once: each worker holds several. */
    for (i = 0; i < CLIENTS; ++i) fds[i] = connect_to(port);
    for (i = 0; i < CLIENTS; ++i) {
        snprintf(line, sizeof(line), "hello %d\n", i);
        if (fds[i] >= 0) write_all(fds[i], line);
    }
    for (i = 0; i < CLIENTS; ++i) {
        if (fds[i] < 0) continue;
        snprintf(line, sizeof(line), "hello %d", i);
        pid = read_answer(fds[i], line);
        close(fds[i]);
        if (pid <= 0) continue;
        ++ok;
        for (j = 0; j < npids && pids[j] != pid; ++j) {
        }
        if (j == npids) pids[npids++] = pid;
    }
    /* One more, left mid-line while the workers are asked to stop. */
    late = connect_to(port);
    if (late >= 0) write_all(late, "late");
    r = (size_t)snprintf(report, sizeof(report), "answers %d of %d, workers", ok, CLIENTS);
    for (j = 0; j < npids; ++j) r += (size_t)snprintf(report + r, sizeof(report) - r, " %d", pids[j]);
    snprintf(report + r, sizeof(report) - r, "\n");
    write_all(from_client[1], report);
    /* The master says it is stopping the workers: the rest of the line. */
    if (read(to_client[0], &c, 1) == 1 && late >= 0 && write_all(late, "\n") == 0
        && read_answer(late, "late") > 0)
        write_all(from_client[1], "late answered\n");
    else
        write_all(from_client[1], "late not answered\n");
    if (late >= 0) close(late);
    close(to_client[0]);
    close(from_client[1]);
    _exit(0);
}

/* ---- self-test: the master's side ---- */

static int is_worker(mln_event_t *ev, int pid)
{
    struct live_list l;
    unsigned i;
    l.n = 0;
    mln_fork_iterate(ev, list_worker, &l);
    for (i = 0; i < l.n; ++i)
        if (l.f[i]->pid == pid) return 1;
    return 0;
}

/* Stops the workers once the client reported and its late connection was handed over
 * (so that it reaches its worker before the stop does). */
static void maybe_stop(mln_event_t *ev)
{
    if (stopping || !report_ok || handed < CLIENTS + 1) return;
    stop_all(ev);
    if (write(to_client[1], "s", 1) != 1) fail_test("cannot tell the client");
}

static void check_report(mln_event_t *ev, char *line)
{
    int ok, n, pid, off, npids = 0;
    char *p;
    printf("client: %s\n", line);
    fflush(stdout);
    if (sscanf(line, "answers %d of %d, workers%n", &ok, &n, &off) == 2) {
        if (ok != CLIENTS) fail_test("not every connection was answered correctly");
        for (p = line + off; sscanf(p, "%d%n", &pid, &off) == 1; p += off) {
            ++npids;
            if (!is_worker(ev, pid)) fail_test("an answer from a process that is not a worker");
        }
        if (npids < 2) fail_test("the answers did not come from more than one worker");
        report_ok = 1;
        maybe_stop(ev);
    } else if (strcmp(line, "late answered") == 0) {
        late_ok = 1;
    }
}

static void client_readable(mln_event_t *ev, int fd, void *data)
{
    static char b[1024];
    static size_t n;
    char *nl;
    ssize_t r;
    (void)data;
    r = read(fd, b + n, sizeof(b) - 1 - n);
    if (r > 0) {
        n += (size_t)r;
        b[n] = 0;
        while ((nl = strchr(b, '\n')) != NULL) {
            *nl = 0;
            check_report(ev, b);
            n -= (size_t)(nl + 1 - b);
            memmove(b, nl + 1, n + 1);
        }
        return;
    }
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
    /* The client is done (or died). */
    mln_event_fd_set(ev, fd, M_EV_CLR, M_EV_UNLIMITED, NULL, NULL);
    close(fd);
    from_client[0] = -1;
    client_done = 1;
    if (!report_ok) {
        fail_test("the client ended without a report");
        if (!stopping) stop_all(ev);
    }
    if (stopping && live == 0) mln_event_break_set(ev);
}

/* ---- master setup ---- */

static void master_process(mln_event_t *ev)
{
    struct sigaction sa;
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    int one = 1;
    master_ev = ev;
    /* Opened now, after the workers were forked: they never have it. */
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons(listen_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (listen_fd < 0 || setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0
        || bind(listen_fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(listen_fd, 128) != 0
        || getsockname(listen_fd, (struct sockaddr *)&a, &alen) != 0
        || mln_event_fd_set(ev, listen_fd, M_EV_RECV | M_EV_NONBLOCK, M_EV_UNLIMITED, NULL,
                            on_accept) != 0) {
        perror("master: listening socket");
        exit(1);
    }
    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = on_sigterm;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    printf("master: pid %d, %d workers, listening on 127.0.0.1:%u\n", (int)getpid(), WORKERS,
           (unsigned)ntohs(a.sin_port));
    fflush(stdout);
    if (self_test) {
        unsigned short port = ntohs(a.sin_port);
        if (write(to_client[1], &port, sizeof(port)) != sizeof(port)
            || mln_event_fd_set(ev, from_client[0], M_EV_RECV | M_EV_NONBLOCK, M_EV_UNLIMITED,
                                NULL, client_readable) != 0) {
            perror("master: the client's pipes");
            exit(1);
        }
    }
}

/* In every new child before it runs (the workers, and any replacement forked later from
 * the master with its listening socket): the master's descriptors are not its business. */
static void child_clear(void *data)
{
    int *fds[] = {&listen_fd, &to_client[0], &to_client[1], &from_client[0], &from_client[1]};
    size_t i;
    (void)data;
    signal(SIGINT, SIG_IGN); /* Ctrl-C reaches the whole group: the master stops us */
    signal(SIGTERM, SIG_DFL);
    for (i = 0; i < sizeof(fds) / sizeof(fds[0]); ++i)
        if (*fds[i] >= 0) {
            close(*fds[i]);
            *fds[i] = -1;
        }
}

static int global_init(void)
{
    mln_fork_worker_num_set(WORKERS); /* melon-ipc extension; Melon reads worker_proc */
    return mln_ipc_handler_register(T_CONN, NULL, worker_conn, NULL, NULL) == NULL ? -1 : 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a;
    pid_t master = getpid();
    if (argc == 2 && strcmp(argv[1], "--self-test") == 0) {
        self_test = 1;
        /* The client first, before anything of the library exists. */
        if (pipe2(to_client, O_CLOEXEC) != 0 || pipe2(from_client, O_CLOEXEC) != 0) {
            perror("self-test: pipe");
            return 1;
        }
        fflush(stdout);
        client_pid = fork();
        if (client_pid < 0) {
            perror("self-test: fork");
            return 1;
        }
        if (client_pid == 0) {
            close(to_client[1]);
            close(from_client[0]);
            client_run();
        }
        close(to_client[0]);
        close(from_client[1]);
        to_client[0] = from_client[1] = -1;
        alarm(60); /* a bound on the whole test (not inherited by the workers) */
    } else if (argc == 2 && argv[1][0] >= '0' && argv[1][0] <= '9' && atoi(argv[1]) < 65536) {
        listen_port = (unsigned short)atoi(argv[1]);
    } else if (argc != 1) {
        fprintf(stderr, "usage: %s [PORT] | --self-test\n", argv[0]);
        return 2;
    }

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
    if (getpid() != master) return 0; /* a worker that ended its own loop (a graceful stop) */

    close(listen_fd);
    if (self_test) close(to_client[1]);
    printf("master: %u connection(s) handed over; every worker has ended; bye\n", handed);
    if (!self_test) return 0;
    if (!late_ok) fail_test("the connection open during the stop was not answered");
    if (exited_stopped != WORKERS || exited_other != 0) fail_test("a worker did not stop gracefully");
    if (handed != CLIENTS + 1) fail_test("not every connection was handed over");
    printf("self-test: %s (%u connections, %d workers stopped gracefully, %d ended otherwise)\n",
           failures == 0 ? "ok" : "FAILED", handed, exited_stopped, exited_other);
    return failures == 0 ? 0 : 1;
}
