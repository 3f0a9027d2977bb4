/* melon-ipc benchmark: melon-ipc against the raw limit of this machine, in one run.
 *
 *   ipc_bench                      calibrate every figure's count (a sample lasts about
 *                                  0.5 s, at least 0.3 s), run every figure BENCH_REPS
 *                                  times (default 5), interleaved, and print the table; the
 *                                  last line is machine-readable key=value
 *   ipc_bench one KIND SIZE COUNT [BURST [WORKERS]]
 *                                  one measurement in this process (used by the driver):
 *                                  bursts come in rounds of BURST messages (default COUNT:
 *                                  one burst), WORKERS for fanin/rawfanin (16) and rr (2)
 *
 * KIND is one of
 *   raw      two processes on a socketpair: the sender encodes frames into a 64 KiB buffer
 *            and writes it whenever it is full, the receiver parses frames out of 64 KiB
 *            reads (blocking I/O, no library; raw.c);
 *   rawpp    ping-pong of one SIZE-byte frame with blocking read/write;
 *   rawepp   the same through epoll_wait and non-blocking reads: the floor of an event loop;
 *   w2m      melon-ipc streaming with a credit window, worker to master (mlnipc.c);
 *   m2w      the same, master to worker;
 *   bw2m     melon-ipc burst, worker to master: COUNT messages queued from one handler call,
 *            no window;
 *   bm2w     the same, master to worker;
 *   pp       melon-ipc ping-pong, master to worker and back;
 *   fanout   melon-ipc streaming, master to 4 workers (COUNT messages in total);
 *   rawfanin WORKERS raw senders (the raw stream's sender, each on a socketpair of its
 *            own) and one receiver reading them all through epoll (raw.c);
 *   fanin    melon-ipc, WORKERS workers bursting to the master at once (each its share of
 *            every round of BURST messages);
 *   rr       melon-ipc, the master bursts to WORKERS workers in turn (round-robin, BURST
 *            messages a round); the figure is the cost per message sent;
 *   cw2m     melon-ipc, worker to master, as fast as the writable callback lets it: queue
 *            limit 4 MiB, the worker sends until a send is refused (EAGAIN) and resumes in
 *            the callback; no window, no acknowledgements;
 *   rawfd    descriptors: one frame per blocking sendmsg with one descriptor attached
 *            (SCM_RIGHTS), one recvmsg per frame, the descriptor closed (raw.c);
 *   fdm2w    melon-ipc, master to worker, one descriptor per frame
 *            (mln_ipc_master_send_fds_prepare) as fast as the descriptor limit lets it (the
 *            writable callback resumes); the worker takes each one and closes it.
 * A measurement prints one line: ns=... msgs=... bytes=... rss_send=KiB rss_recv=KiB (and
 * refused=N when a burst's send_prepare returned -1, which fails the row; rr adds
 * send_ns=..., the time spent in the master's send loops).
 *
 * Each message carries its sequence number in its first 4 bytes; receivers check every
 * sequence number and the whole content of the last message. Every figure is timed in one
 * process with CLOCK_MONOTONIC. Environment: BENCH_REPS (5), BENCH_SCALE (1.0, multiplies
 * the sample length and the burst sizes), BENCH_ONLY (a comma-separated list of figure
 * names, e.g. "raw64,w2m64"), BENCH_TIMEOUT (seconds one measurement may take; 120 x
 * max(1, scale)), BENCH_WINDOW. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "bench.h"

#define MAX_REPS 51
/* The sampling rule: every sample lasts at least SAMPLE_MIN seconds. A figure's count is
 * calibrated once, before the repetitions, for SAMPLE_GOAL seconds (the margin covers a
 * machine that speeds up after the calibration) at the fastest pace of CAL_RUNS runs of at
 * least CAL_MIN seconds; then it is fixed for all its samples. BENCH_SCALE multiplies the
 * three durations. */
#define SAMPLE_MIN 0.3
#define SAMPLE_GOAL 0.5
#define CAL_MIN 0.08
#define CAL_RUNS 2
#define CAL_TRIES 8

struct result { double ns, msgs, bytes, rss_send, rss_recv, send_ns, send_cpu_ns; };

/* What a figure's number is: messages per second, the round trip (microseconds), or the
 * cost of one message sent (nanoseconds; fan-out in turn). */
enum metric { M_RATE, M_RTT, M_COST };

struct figure {
    const char *name;  /* short key, e.g. w2m64 */
    const char *label; /* table label (bursts: made from the burst, see label_of) */
    const char *kind;
    size_t size;
    long count;        /* streams: about a tenth of a second here (the first calibration
                        * run); bursts: the burst (a sample is rounds of it) */
    const char *raw;   /* the figure it is compared with (NULL for raw figures) */
    int workers;       /* fanin, rawfanin, rr: the worker count */
    int fixed;         /* the count is the figure's definition: not calibrated */
    long cal;          /* the count of every sample (calibrated; raised after a short one) */
    int raised;        /* how many times a short sample raised it */
    long unit;         /* the count is a multiple of this (bursts: one burst) */
    struct result r[MAX_REPS]; /* the completed repetitions, filled by the driver */
    int n;             /* how many */
    int sel, failed;
    char why[128];     /* why it failed */
};

static double scale = 1.0;
static int reps = 5;
static const char *only;

#define FIG(n, l, k, s, c, r) {.name = n, .label = l, .kind = k, .size = s, .count = c, .raw = r}
#define FIGW(n, l, k, s, c, r, w) \
    {.name = n, .label = l, .kind = k, .size = s, .count = c, .raw = r, .workers = w}
static struct figure figs[] = {
    FIG("raw16", "raw stream 16 B", "raw", 16, 4000000, NULL),
    FIG("raw64", "raw stream 64 B", "raw", 64, 6000000, NULL),
    FIG("raw1k", "raw stream 1 KiB", "raw", 1024, 750000, NULL),
    FIG("raw16k", "raw stream 16 KiB", "raw", 16384, 75000, NULL),
    FIG("raw256k", "raw stream 256 KiB", "raw", 262144, 5000, NULL),
    FIG("raw1m", "raw stream 1 MiB", "raw", 1048576, 1250, NULL),
    FIG("rawpp", "raw ping-pong 16 B", "rawpp", 16, 10000, NULL),
    FIG("rawepp", "raw ping-pong 16 B, epoll", "rawepp", 16, 10000, "rawpp"),
    FIG("w2m16", "w2m stream 16 B", "w2m", 16, 3000000, "raw16"),
    FIG("w2m64", "w2m stream 64 B", "w2m", 64, 4000000, "raw64"),
    FIG("w2m1k", "w2m stream 1 KiB", "w2m", 1024, 500000, "raw1k"),
    FIG("w2m16k", "w2m stream 16 KiB", "w2m", 16384, 50000, "raw16k"),
    FIG("w2m256k", "w2m stream 256 KiB", "w2m", 262144, 3000, "raw256k"),
    FIG("m2w16", "m2w stream 16 B", "m2w", 16, 3000000, "raw16"),
    FIG("m2w64", "m2w stream 64 B", "m2w", 64, 4000000, "raw64"),
    FIG("m2w1k", "m2w stream 1 KiB", "m2w", 1024, 500000, "raw1k"),
    FIG("m2w16k", "m2w stream 16 KiB", "m2w", 16384, 50000, "raw16k"),
    FIG("m2w256k", "m2w stream 256 KiB", "m2w", 262144, 3000, "raw256k"),
    FIG("pp", "ping-pong 16 B", "pp", 16, 10000, "rawepp"),
    FIG("fanout64", "fan-out 4 x 64 B", "fanout", 64, 4000000, "raw64"),
    {.name = "rss64", .label = "w2m 1M x 64 B (RSS)", .kind = "w2m", .size = 64,
     .count = 1000000, .fixed = 1},
    FIG("bw2m64", NULL, "bw2m", 64, 2000000, "raw64"),
    FIG("bw2m16k", NULL, "bw2m", 16384, 20000, "raw16k"),
    FIG("bw2m256k", NULL, "bw2m", 262144, 2000, "raw256k"),
    FIG("bw2m1m", NULL, "bw2m", 1048576, 500, "raw1m"),
    FIG("bm2w64", NULL, "bm2w", 64, 2000000, "raw64"),
    FIG("bm2w16k", NULL, "bm2w", 16384, 20000, "raw16k"),
    FIG("bm2w256k", NULL, "bm2w", 262144, 2000, "raw256k"),
    FIG("bm2w1m", NULL, "bm2w", 1048576, 500, "raw1m"),
    FIG("cw2m16k", "w2m writable-cb 16 KiB", "cw2m", 16384, 20000, "raw16k"),
    FIG("rawfd", "raw descriptors 1/frame", "rawfd", 16, 100000, NULL),
    FIG("m2wfd", "m2w descriptors 1/frame", "fdm2w", 16, 100000, "rawfd"),
    FIGW("rawfanin64", "raw fan-in 16 x 64 B, epoll", "rawfanin", 64, 4000000, NULL, FANIN),
    FIGW("fanin64", NULL, "fanin", 64, 2000000, "rawfanin64", FANIN),
    FIGW("rr2", NULL, "rr", 64, 1000000, NULL, 2),
    FIGW("rr16", NULL, "rr", 64, 1000000, "rr2", 16),
    FIGW("rr64", NULL, "rr", 64, 1000000, "rr2", 64),
    FIGW("rr200", NULL, "rr", 64, 1000000, "rr2", 200),
};
#define N_FIGS (sizeof(figs) / sizeof(figs[0]))

static struct figure *fig(const char *name)
{
    size_t i;
    for (i = 0; i < N_FIGS; ++i)
        if (strcmp(figs[i].name, name) == 0) return &figs[i];
    return NULL;
}

static int selected(const char *name)
{
    const char *p = only;
    size_t n = strlen(name);
    if (only == NULL || *only == '\0') return 1;
    while (p != NULL && *p) {
        if (strncmp(p, name, n) == 0 && (p[n] == ',' || p[n] == '\0')) return 1;
        p = strchr(p, ',');
        if (p != NULL) ++p;
    }
    return 0;
}

/* Bursts (bw2m, bm2w, fanin, rr): a sample is rounds of one burst. */
static int is_burst(const struct figure *f)
{
    return f->kind[0] == 'b' || strcmp(f->kind, "fanin") == 0 || strcmp(f->kind, "rr") == 0;
}
static enum metric metric_of(const struct figure *f)
{
    if (strstr(f->kind, "pp") != NULL) return M_RTT;
    return strcmp(f->kind, "rr") == 0 ? M_COST : M_RATE;
}

/* The count is a multiple of this: a burst (bursts), the worker count (fan-out, fan-in). */
static long unit_of(const struct figure *f)
{
    int w = strcmp(f->kind, "fanout") == 0 ? FANOUT : f->workers > 0 ? f->workers : 1;
    long n;
    if (!is_burst(f)) return w;
    n = (long)((double)f->count * scale);
    if (n < 8L * w) n = 8L * w;
    return n - n % w;
}

static long round_up(double n, long unit)
{
    long k = (long)((n + (double)unit - 1) / (double)unit);
    return (k < 1 ? 1 : k) * unit;
}

static void thousands(char *d, long v)
{
    char c[32];
    size_t k, j = 0, len = (size_t)snprintf(c, sizeof(c), "%ld", v);
    for (k = 0; k < len; ++k) {
        if (k > 0 && (len - k) % 3 == 0) d[j++] = ',';
        d[j++] = c[k];
    }
    d[j] = '\0';
}

/* "w2m burst 20,000 x 16 KiB" for bursts (the scaled burst), "fan-in 16 bursts, 64 B",
 * "fan-out 200 in turn, 64 B", the fixed label otherwise. */
static const char *label_of(const struct figure *f, char *b, size_t n)
{
    char c[32], d[48];
    if (!is_burst(f)) return f->label;
    thousands(d, f->unit);
    if (f->size % (1 << 20) == 0) snprintf(c, sizeof(c), "%zu MiB", f->size >> 20);
    else if (f->size % 1024 == 0) snprintf(c, sizeof(c), "%zu KiB", f->size >> 10);
    else snprintf(c, sizeof(c), "%zu B", f->size);
    if (strcmp(f->kind, "fanin") == 0)
        snprintf(b, n, "fan-in %d bursts, %s", f->workers, c);
    else if (strcmp(f->kind, "rr") == 0)
        snprintf(b, n, "fan-out %d in turn, %s", f->workers, c);
    else snprintf(b, n, "%s burst %s x %s", f->kind + 1, d, c);
    return b;
}

static pid_t alarm_pgid;
static volatile sig_atomic_t timed_out;

static void on_alarm(int sig)
{
    (void)sig;
    timed_out = 1;
    if (alarm_pgid > 0) kill(-alarm_pgid, SIGKILL);
}

static int timeout_s(void)
{
    const char *e = getenv("BENCH_TIMEOUT");
    if (e != NULL && atoi(e) > 0) return atoi(e);
    return (int)(120 * (scale > 1 ? scale : 1));
}

/* Runs one measurement in a fresh process (the library's state is per process), in a
 * process group of its own so that a measurement that overruns BENCH_TIMEOUT goes with
 * every worker it forked. Returns 1 with OUT filled, or 0 with the reason in f->why. */
static int measure(struct figure *f, long n, struct result *out)
{
    int p[2], status, got = 0;
    long refused = 0;
    pid_t pid;
    char line[512], size[32], count[32], burst[32], workers[32];
    struct sigaction sa;
    FILE *in;
    snprintf(size, sizeof(size), "%zu", f->size);
    snprintf(count, sizeof(count), "%ld", n);
    snprintf(burst, sizeof(burst), "%ld", is_burst(f) ? f->unit : n);
    snprintf(workers, sizeof(workers), "%d", f->workers > 0 ? f->workers : 1);
    fflush(stdout);
    if (pipe(p) < 0) die("pipe");
    pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        setpgid(0, 0);
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execl("/proc/self/exe", "ipc_bench", "one", f->kind, size, count, burst, workers,
              (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid);
    close(p[1]);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm; /* no SA_RESTART: the read below returns */
    sigaction(SIGALRM, &sa, NULL);
    alarm_pgid = pid;
    timed_out = 0;
    alarm((unsigned)timeout_s());
    in = fdopen(p[0], "r");
    if (in == NULL) die("fdopen");
    out->send_ns = 0;
    out->send_cpu_ns = 0;
    while (fgets(line, sizeof(line), in) != NULL) {
        if (sscanf(line, "ns=%lf msgs=%lf bytes=%lf rss_send=%lf rss_recv=%lf", &out->ns,
                   &out->msgs, &out->bytes, &out->rss_send, &out->rss_recv) == 5)
            got = 1;
        sscanf(line, "refused=%ld", &refused);
        sscanf(line, "send_ns=%lf send_cpu_ns=%lf", &out->send_ns, &out->send_cpu_ns);
    }
    fclose(in);
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) die("waitpid");
    alarm(0);
    alarm_pgid = 0;
    kill(-pid, SIGKILL); /* anything of the group still there */
    if (refused > 0)
        snprintf(f->why, sizeof(f->why), "send_prepare returned -1 %ld time(s)", refused);
    else if (timed_out)
        snprintf(f->why, sizeof(f->why), "no result within %d s (BENCH_TIMEOUT)", timeout_s());
    else if (WIFSIGNALED(status))
        snprintf(f->why, sizeof(f->why), "killed by signal %d", WTERMSIG(status));
    else if (WEXITSTATUS(status) == EXIT_CHECK)
        snprintf(f->why, sizeof(f->why), "check failed or a worker died (stderr says which)");
    else if (WEXITSTATUS(status) != 0)
        snprintf(f->why, sizeof(f->why), "exit status %d", WEXITSTATUS(status));
    else if (!got)
        snprintf(f->why, sizeof(f->why), "no result line");
    else
        return 1;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median, min and max of a set of values. */
struct stat3 { double med, min, max; };

static struct stat3 stat_vals(double *v, int n)
{
    struct stat3 s = {0, 0, 0};
    if (n == 0) return s;
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    s.min = v[0];
    s.max = v[n - 1];
    s.med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    return s;
}

/* Median, min and max of one derived quantity over the completed repetitions. */
static struct stat3 stat_of(const struct figure *f, double (*get)(const struct result *))
{
    double v[MAX_REPS];
    int i;
    for (i = 0; i < f->n; ++i) v[i] = get(&f->r[i]);
    return stat_vals(v, f->n);
}

static double get_msgs(const struct result *r) { return r->msgs / (r->ns / 1e9); }
static double get_mbs(const struct result *r) { return r->bytes / (r->ns / 1e3); } /* 1e6 B/s */
static double get_rtt(const struct result *r) { return r->ns / 1e3 / r->msgs; }    /* us */
/* Fan-out's cost per send: the master's CPU in its send loops (wall time counts receivers). */
static double get_cost(const struct result *r) { return r->send_cpu_ns / r->msgs; } /* ns */
static double get_wall(const struct result *r) { return r->ns / r->msgs; }         /* ns */
static double get_send(const struct result *r) { return r->send_ns / r->msgs; }    /* ns */
static double get_secs(const struct result *r) { return r->ns / 1e9; }
static double get_rss_s(const struct result *r) { return r->rss_send / 1024.0; }  /* MiB */
static double get_rss_r(const struct result *r) { return r->rss_recv / 1024.0; }

/* The figure's own number: msgs/s, round trip (us) or cost per message (ns). */
static double (*getter(const struct figure *f))(const struct result *)
{
    switch (metric_of(f)) {
    case M_RTT: return get_rtt;
    case M_COST: return get_cost;
    default: return get_msgs;
    }
}

/* A figure with numbers: selected and never failed. */
static int usable(const struct figure *f) { return f != NULL && f->sel && !f->failed && f->n > 0; }

/* The figure's ratio to its raw figure (msgs/s; round trip or cost for those, where lower is
 * better): median over median, or 0. */
static double ratio_of(const struct figure *f)
{
    const struct figure *r = f->raw != NULL ? fig(f->raw) : NULL;
    if (!usable(f) || !usable(r)) return 0;
    return stat_of(f, getter(f)).med / stat_of(r, getter(r)).med;
}

/* The spread of the ratio: per repetition, the figure over its raw figure measured in the
 * same repetition (interleaved), min and max. */
static struct stat3 ratio_spread(const struct figure *f)
{
    const struct figure *r = f->raw != NULL ? fig(f->raw) : NULL;
    double v[MAX_REPS];
    int i, n = 0;
    if (usable(f) && usable(r))
        for (i = 0; i < f->n && i < r->n; ++i)
            v[n++] = getter(f)(&f->r[i]) / getter(r)(&r->r[i]);
    return stat_vals(v, n);
}

static void human(char *b, size_t n, double v)
{
    if (v >= 1e6) snprintf(b, n, "%.2fM", v / 1e6);
    else if (v >= 1e3) snprintf(b, n, "%.1fk", v / 1e3);
    else snprintf(b, n, "%.0f", v);
}

static void machine(void)
{
    char model[256] = "unknown", line[512];
    struct utsname u;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f != NULL) {
        while (fgets(line, sizeof(line), f) != NULL) {
            char *c = strchr(line, ':');
            if (strncmp(line, "model name", 10) == 0 && c != NULL) {
                snprintf(model, sizeof(model), "%s", c + 2);
                model[strcspn(model, "\n")] = '\0';
                break;
            }
        }
        fclose(f);
    }
    uname(&u);
    printf("machine: %ld CPUs, %s, %s %s %s\n", sysconf(_SC_NPROCESSORS_ONLN), model,
           u.sysname, u.release, u.machine);
}

static void load(void)
{
    char l[128] = "?";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f != NULL) {
        if (fgets(l, sizeof(l), f) == NULL) l[0] = '\0';
        fclose(f);
    }
    l[strcspn(l, "\n")] = '\0';
    printf("load average: %s\n", l);
}

static char kv[16384];
static size_t kvn;

static void kv_add(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void kv_add(const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(kv + kvn, sizeof(kv) - kvn, fmt, ap);
    va_end(ap);
    if (n > 0) kvn += (size_t)n < sizeof(kv) - kvn ? (size_t)n : sizeof(kv) - kvn - 1;
}

static int short_figs; /* figures with a sample under SAMPLE_MIN x scale */

static void print_row(struct figure *f)
{
    char a[32], b[32], c[32], lb[96], mm[80], mbs[16] = "", ratio[16] = "", rr[48] = "",
         cnt[32], shortest[16];
    const char *label = label_of(f, lb, sizeof(lb));
    struct stat3 rs = stat_of(f, get_rss_s), rr_ = stat_of(f, get_rss_r), m, y, q, t;
    double rv = ratio_of(f);
    enum metric k = metric_of(f);
    if (f->failed) {
        printf("%-28s FAILED: %s (%d of %d repetitions completed before)\n", label, f->why,
               f->n, reps);
        kv_add("%s_failed=1 ", f->name);
        return;
    }
    if (f->fixed) { /* defined by its count: its peak RSS only (its rate is w2m64's) */
        human(cnt, sizeof(cnt), (double)f->cal);
        printf("%-28s %9s %-19s %5s %7s %-17s %-10s %6s %6s  %.1f / %.1f\n", label, "-",
               "(RSS only)", "", "", "", "", cnt, "-", rs.med, rr_.med);
        kv_add("%s_rss_send_mib=%.1f %s_rss_recv_mib=%.1f ", f->name, rs.max, f->name, rr_.max);
        return;
    }
    m = stat_of(f, getter(f));
    q = ratio_spread(f);
    t = stat_of(f, get_secs);
    if (k == M_RTT) {
        snprintf(a, sizeof(a), "%.2f us", m.med);
        snprintf(mm, sizeof(mm), "[%.2f .. %.2f]", m.min, m.max);
        if (rv > 0) {
            snprintf(ratio, sizeof(ratio), "%.2fx", rv);
            snprintf(rr, sizeof(rr), "[%.2fx .. %.2fx]", q.min, q.max);
        }
    } else if (k == M_COST) {
        snprintf(a, sizeof(a), "%.0f ns", m.med);
        snprintf(mm, sizeof(mm), "[%.0f .. %.0f]", m.min, m.max);
        if (rv > 0) {
            snprintf(ratio, sizeof(ratio), "%.2fx", rv);
            snprintf(rr, sizeof(rr), "[%.2fx .. %.2fx]", q.min, q.max);
        }
    } else {
        y = stat_of(f, get_mbs);
        human(a, sizeof(a), m.med);
        human(b, sizeof(b), m.min);
        human(c, sizeof(c), m.max);
        snprintf(mm, sizeof(mm), "[%s .. %s]", b, c);
        snprintf(mbs, sizeof(mbs), "%.0f", y.med);
        if (rv > 0) {
            snprintf(ratio, sizeof(ratio), "%.1f%%", 100 * rv);
            snprintf(rr, sizeof(rr), "[%.1f%% .. %.1f%%]", 100 * q.min, 100 * q.max);
        }
    }
    human(cnt, sizeof(cnt), (double)f->cal);
    if (f->raised) strcat(cnt, "+");
    snprintf(shortest, sizeof(shortest), "%.2f%s", t.min, t.min < SAMPLE_MIN * scale ? "!" : "");
    if (t.min < SAMPLE_MIN * scale) ++short_figs;
    printf("%-28s %9s %-19s %5s %7s %-17s %-10s %6s %6s  %.1f / %.1f\n", label, a, mm, mbs,
           ratio, rr, f->raw ? f->raw : "", cnt, shortest, rs.med, rr_.med);
    if (k == M_RTT) {
        kv_add("%s_rtt_us=%.2f ", f->name, m.med);
    } else if (k == M_COST) {
        kv_add("%s_cpu_ns_per_send=%.1f %s_ns_per_msg=%.1f %s_send_ns_per_msg=%.1f ", f->name,
               m.med, f->name, stat_of(f, get_wall).med, f->name, stat_of(f, get_send).med);
    } else {
        kv_add("%s_msgs=%.0f %s_mbs=%.1f ", f->name, m.med, f->name, stat_of(f, get_mbs).med);
    }
    if (rv > 0) kv_add("%s_ratio=%.3f %s_ratio_min=%.3f %s_ratio_max=%.3f ", f->name, rv,
                       f->name, q.min, f->name, q.max);
    kv_add("%s_count=%ld %s_shortest_s=%.3f ", f->name, f->cal, f->name, t.min);
    if (f->raised) kv_add("%s_raised=%d ", f->name, f->raised);
    if (k == M_RATE)
        kv_add("%s_rss_send_mib=%.1f %s_rss_recv_mib=%.1f ", f->name, rs.max, f->name, rr_.max);
}

/* The targets (issues 6, 9 and 27, the backpressure issue, issue 23's descriptors), on
 * medians; RSS on the largest of the repetitions. T_FIG_RATIO_MIN compares with figure
 * `ref` instead of the raw one; T_RATIO_MAX is for round trips and costs (lower is
 * better). */
enum tkind { T_RATIO_MIN, T_RATIO_MAX, T_FIG_RATIO_MIN, T_RSS_RECV_MIB, T_RSS_SEND_SHARE,
             T_RSS_SEND_MIB };
static const struct target {
    const char *name, *what;
    double limit;
    enum tkind kind;
    const char *ref;
} tgts[] = {
    {"w2m64", "64 B streaming w2m >= 25% of raw msgs/s", 0.25, T_RATIO_MIN, NULL},
    {"m2w64", "64 B streaming m2w >= 25% of raw msgs/s", 0.25, T_RATIO_MIN, NULL},
    {"w2m16k", "16 KiB streaming w2m >= 60% of raw MB/s", 0.60, T_RATIO_MIN, NULL},
    {"m2w16k", "16 KiB streaming m2w >= 60% of raw MB/s", 0.60, T_RATIO_MIN, NULL},
    {"w2m256k", "256 KiB streaming w2m >= 60% of raw MB/s", 0.60, T_RATIO_MIN, NULL},
    {"m2w256k", "256 KiB streaming m2w >= 60% of raw MB/s", 0.60, T_RATIO_MIN, NULL},
    {"pp", "ping-pong round trip <= 1.1x raw epoll (rawepp)", 1.1, T_RATIO_MAX, NULL},
    {"rss64", "receiver peak RSS < 64 MiB streaming 1M x 64 B", 64, T_RSS_RECV_MIB, NULL},
    {"bw2m64", "64 B burst w2m >= 60% of raw msgs/s", 0.60, T_RATIO_MIN, NULL},
    {"bm2w64", "64 B burst m2w >= 60% of raw msgs/s", 0.60, T_RATIO_MIN, NULL},
    {"bw2m16k", "16 KiB burst w2m >= 90% of raw MB/s", 0.90, T_RATIO_MIN, NULL},
    {"bm2w16k", "16 KiB burst m2w >= 90% of raw MB/s", 0.90, T_RATIO_MIN, NULL},
    {"bw2m256k", "256 KiB burst w2m >= 100% of raw MB/s", 1.00, T_RATIO_MIN, NULL},
    {"bm2w256k", "256 KiB burst m2w >= 100% of raw MB/s", 1.00, T_RATIO_MIN, NULL},
    {"bw2m1m", "1 MiB burst w2m >= 60% of raw MB/s", 0.60, T_RATIO_MIN, NULL},
    {"bm2w1m", "1 MiB burst m2w >= 60% of raw MB/s", 0.60, T_RATIO_MIN, NULL},
    {"bw2m16k", "16 KiB burst w2m: sender peak RSS < 25% of burst", 0.25, T_RSS_SEND_SHARE,
     NULL},
    {"bm2w16k", "16 KiB burst m2w: sender peak RSS < 25% of burst", 0.25, T_RSS_SEND_SHARE,
     NULL},
    {"cw2m16k", "writable-callback stream >= 90% of w2m16k MB/s", 0.90, T_FIG_RATIO_MIN,
     "w2m16k"},
    {"cw2m16k", "writable-callback: sender peak RSS < limit + 16 MiB", 4 + 16, T_RSS_SEND_MIB, NULL},
    {"m2wfd", "descriptors m2w, 1 per frame >= 70% of raw/s", 0.70, T_RATIO_MIN, NULL},
    {"fanin64", "fan-in 16 x 64 B >= 50% of raw epoll fan-in msgs/s", 0.50, T_RATIO_MIN, NULL},
    {"rr16", "fan-out in turn: cost/msg, 16 workers <= 1.5x 2", 1.5, T_RATIO_MAX, NULL},
    {"rr64", "fan-out in turn: cost/msg, 64 workers <= 1.5x 2", 1.5, T_RATIO_MAX, NULL},
    {"rr200", "fan-out in turn: cost/msg, 200 workers <= 1.5x 2", 1.5, T_RATIO_MAX, NULL},
};

/* The median MB/s of figure f over that of figure ref, or 0. */
static double fig_ratio(const struct figure *f, const char *ref)
{
    const struct figure *r = fig(ref);
    if (!usable(f) || !usable(r)) return 0;
    return stat_of(f, get_mbs).med / stat_of(r, get_mbs).med;
}

static int check_targets(void)
{
    size_t k;
    int pass_all = 1, any = 0;
    printf("\ntargets (on the median of %d):\n", reps);
    for (k = 0; k < sizeof(tgts) / sizeof(tgts[0]); ++k) {
        const struct target *t = &tgts[k];
        struct figure *fx = fig(t->name);
        const char *key = t->kind == T_RSS_SEND_SHARE || t->kind == T_RSS_SEND_MIB
            ? "_rss_target" : "_target";
        double v = 0;
        int pass;
        if (fx == NULL || !fx->sel) continue;
        any = 1;
        if (!usable(fx) || (t->kind <= T_RATIO_MAX && ratio_of(fx) == 0)
            || (t->kind == T_FIG_RATIO_MIN && fig_ratio(fx, t->ref) == 0)) {
            printf("  %-52s %8s  FAIL (%s)\n", t->what, "-",
                   fx->failed ? "the row failed"
                   : t->kind == T_FIG_RATIO_MIN ? "its reference figure failed"
                   : "its raw figure failed");
            pass = 0;
        } else if (t->kind == T_FIG_RATIO_MIN) {
            v = fig_ratio(fx, t->ref);
            pass = v >= t->limit;
            printf("  %-52s %7.1f%%  %s\n", t->what, 100 * v, pass ? "PASS" : "FAIL");
        } else if (t->kind == T_RSS_SEND_MIB) {
            v = stat_of(fx, get_rss_s).max;
            pass = v < t->limit;
            printf("  %-52s %5.1f MiB %s\n", t->what, v, pass ? "PASS" : "FAIL");
        } else if (t->kind == T_RATIO_MIN) {
            v = ratio_of(fx);
            pass = v >= t->limit;
            printf("  %-52s %7.1f%%  %s\n", t->what, 100 * v, pass ? "PASS" : "FAIL");
        } else if (t->kind == T_RATIO_MAX) {
            v = ratio_of(fx);
            pass = v <= t->limit;
            printf("  %-52s %7.2fx  %s\n", t->what, v, pass ? "PASS" : "FAIL");
        } else if (t->kind == T_RSS_RECV_MIB) {
            v = stat_of(fx, get_rss_r).max;
            pass = v < t->limit;
            printf("  %-52s %5.1f MiB %s\n", t->what, v, pass ? "PASS" : "FAIL");
        } else {
            double burst_mib = (double)fx->unit * (double)fx->size / 1048576.0;
            v = stat_of(fx, get_rss_s).max;
            pass = v < t->limit * burst_mib;
            printf("  %-52s %5.0f MiB %s (%.0f%% of %.0f MiB)\n", t->what, v,
                   pass ? "PASS" : "FAIL", 100 * v / burst_mib, burst_mib);
        }
        kv_add("%s%s=%s ", t->name, key, pass ? "pass" : "fail");
        pass_all &= pass;
    }
    if (any) kv_add("targets=%s ", pass_all ? "pass" : "fail");
    return pass_all;
}

/* Fixes the count of every sample of f at the fastest pace (seconds per message) of
 * CAL_RUNS runs lasting at least CAL_MIN, the first of f->count (streams) or one burst
 * (bursts), grown until they last that long: the count that lasts SAMPLE_GOAL at that
 * pace (a whole number of bursts). The fastest, because a neighbour's burst during a
 * calibration run would otherwise make every sample short. Returns 0 (f->why says why)
 * when a run failed. */
static int calibrate(struct figure *f)
{
    double min = CAL_MIN * scale, goal = SAMPLE_GOAL * scale, d, g, pace = 0;
    struct result r;
    long c;
    int k, good = 0;
    f->unit = unit_of(f);
    if (f->fixed) {
        f->cal = f->count;
        return 1;
    }
    c = is_burst(f) ? f->unit : round_up((double)f->count * scale, f->unit);
    for (k = 0; k < CAL_TRIES && good < CAL_RUNS; ++k) {
        if (!measure(f, c, &r)) return 0;
        d = r.ns / 1e9;
        if (d > 0 && (pace == 0 || d / (double)c < pace)) pace = d / (double)c;
        if (d >= min) {
            ++good;
        } else {
            g = d > 0 ? 1.5 * min / d : 64;
            c = round_up((double)c * (g < 2 ? 2 : g > 64 ? 64 : g), f->unit);
        }
    }
    f->cal = round_up(goal / (pace > 0 ? pace : 1e-9), f->unit);
    fprintf(stderr, " %s=%ld", f->name, f->cal);
    return 1;
}

/* One sample of f into f->r[f->n]. A sample shorter than SAMPLE_MIN (the machine sped up
 * since the calibration) is not kept: the count is raised for SAMPLE_GOAL at that sample's
 * pace, for this sample and the following ones, and the sample is measured again (up to
 * RAISE_MAX times; a sample still short after that is kept and marked in the table).
 * Returns 0 (f->why says why) when a measurement failed. */
#define RAISE_MAX 3

static int sample(struct figure *f)
{
    struct result *r = &f->r[f->n];
    int k;
    for (k = 0;; ++k) {
        double d;
        long c;
        if (!measure(f, f->cal, r)) return 0;
        d = r->ns / 1e9;
        if (f->fixed || d >= SAMPLE_MIN * scale || k == RAISE_MAX) return 1;
        c = round_up((double)f->cal * SAMPLE_GOAL * scale / (d > 0 ? d : 1e-9), f->unit);
        if (c <= f->cal) c = f->cal + f->unit;
        fprintf(stderr, " (%.2f s: count %ld -> %ld)", d, f->cal, c);
        f->cal = c;
        ++f->raised;
    }
}

static int run_all(void)
{
    const char *e;
    size_t i;
    int rep, all_ok = 1;
    long long t_begin = now_ns(), t_cal;

    if ((e = getenv("BENCH_REPS")) != NULL) reps = atoi(e);
    if (reps < 1 || reps > MAX_REPS) reps = 5;
    if ((e = getenv("BENCH_SCALE")) != NULL) scale = atof(e);
    if (!(scale > 0)) scale = 1.0;
    only = getenv("BENCH_ONLY");
    setenv("MLN_IPC_LOG", getenv("MLN_IPC_LOG") ? getenv("MLN_IPC_LOG") : "error", 1);
    /* A figure compared with a raw figure needs that raw figure, and a target compared with
     * another figure needs that one. */
    for (i = 0; i < N_FIGS; ++i) {
        figs[i].sel = selected(figs[i].name);
        if (figs[i].sel && figs[i].raw != NULL && !selected(figs[i].raw)) {
            fprintf(stderr, "ipc_bench: %s needs %s in BENCH_ONLY\n", figs[i].name, figs[i].raw);
            return 2;
        }
    }
    for (i = 0; i < sizeof(tgts) / sizeof(tgts[0]); ++i)
        if (tgts[i].ref != NULL && selected(tgts[i].name) && !selected(tgts[i].ref)) {
            fprintf(stderr, "ipc_bench: %s needs %s in BENCH_ONLY\n", tgts[i].name, tgts[i].ref);
            return 2;
        }

    printf("melon-ipc benchmark: %d repetitions (interleaved), samples calibrated to %.2f s "
           "(at least %.2f s), scale %.2f\n", reps, SAMPLE_GOAL * scale, SAMPLE_MIN * scale,
           scale);
    machine();
    load();
    fflush(stdout);
    fprintf(stderr, "calibration (count of every sample):");
    for (i = 0; i < N_FIGS; ++i) {
        struct figure *f = &figs[i];
        if (!f->sel) continue;
        if (!calibrate(f)) {
            f->failed = 1;
            all_ok = 0;
            fprintf(stderr, "\nipc_bench: %s FAILED: %s (not run again)\n", f->name, f->why);
        }
    }
    fprintf(stderr, "\n");
    t_cal = now_ns();
    for (rep = 0; rep < reps; ++rep) {
        fprintf(stderr, "repetition %d/%d:", rep + 1, reps);
        for (i = 0; i < N_FIGS; ++i) {
            struct figure *f = &figs[i];
            if (!f->sel || f->failed) continue;
            fprintf(stderr, " %s", f->name);
            if (sample(f)) {
                ++f->n;
            } else {
                f->failed = 1;
                all_ok = 0;
                fprintf(stderr, "\nipc_bench: %s FAILED: %s (not run again)\n", f->name, f->why);
            }
        }
        fprintf(stderr, "\n");
    }

    printf("\nmedian [min .. max] of %d samples; MB = 10^6 payload bytes; ratio = median / "
           "median of the figure\nnamed under vs ([min .. max] of the ratios within one "
           "repetition); count: messages per sample (+: raised\nafter a sample under %.2f s, "
           "which was measured again); shortest: the shortest sample kept (s)\n\n", reps,
           SAMPLE_MIN * scale);
    printf("%-28s %9s %-19s %5s %7s %-17s %-10s %6s %6s  %s\n", "figure", "msgs/s|us|ns",
           "  [min .. max]", "MB/s", "ratio", "  [min .. max]", "vs", "count", "shortest",
           "peak RSS send/recv MiB");
    for (i = 0; i < N_FIGS; ++i)
        if (figs[i].sel) print_row(&figs[i]);
    if (short_figs > 0)
        printf("\n%d figure(s) kept a sample under %.2f s (marked !) after %d raises of the "
               "count: they break the sampling rule\n", short_figs, SAMPLE_MIN * scale,
               RAISE_MAX);
    check_targets();
    load();
    printf("time: %.0f s (calibration %.0f s, %d repetitions %.0f s)\n",
           (double)(now_ns() - t_begin) / 1e9, (double)(t_cal - t_begin) / 1e9, reps,
           (double)(now_ns() - t_cal) / 1e9);
    kv_add("short_samples=%d reps=%d scale=%.2f", short_figs, reps, scale);
    printf("\n%s\n", kv);
    if (!all_ok) fprintf(stderr, "ipc_bench: some figures FAILED (see the table)\n");
    return all_ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    if ((argc >= 5 && argc <= 7) && strcmp(argv[1], "one") == 0) {
        const char *k = argv[2];
        int fan = strcmp(k, "fanin") == 0 || strcmp(k, "rawfanin") == 0;
        msg_size = (size_t)strtoul(argv[3], NULL, 10);
        msg_count = strtol(argv[4], NULL, 10);
        msg_burst = argc >= 6 ? strtol(argv[5], NULL, 10) : msg_count;
        msg_workers = argc >= 7 ? atoi(argv[6]) : fan ? FANIN : 2;
        if (msg_size < 4 || msg_count < 1 || msg_burst < 1 || msg_workers < 1
            || msg_workers > MAX_WORKERS) {
            fprintf(stderr, "ipc_bench: SIZE must be >= 4, COUNT and BURST >= 1, WORKERS 1 to "
                    "%d\n", MAX_WORKERS);
            return 2;
        }
        make_msg();
        signal(SIGPIPE, SIG_IGN);
        if (strcmp(k, "raw") == 0) return run_raw(0);
        if (strcmp(k, "rawpp") == 0) return run_raw(1);
        if (strcmp(k, "rawepp") == 0) return run_raw(2);
        if (strcmp(k, "rawfd") == 0) return run_raw_fds();
        if (strcmp(k, "rawfanin") == 0) return run_raw_fanin();
        return run_melon(k);
    }
    if (argc != 1) {
        fprintf(stderr, "usage: ipc_bench [one raw|rawpp|rawepp|rawfd|rawfanin|w2m|m2w|bw2m|bm2w|"
                "cw2m|fdm2w|pp|fanout|fanin|rr SIZE COUNT [BURST [WORKERS]]]\n");
        return 2;
    }
    return run_all();
}
