/* melon-ipc benchmark: melon-ipc against the raw limit of this machine, in one run.
 *
 *   ipc_bench                      run every figure BENCH_REPS times (default 5) and print
 *                                  the table; the last line is machine-readable key=value
 *   ipc_bench one KIND SIZE COUNT  one measurement in this process (used by the driver)
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
 *   cw2m     melon-ipc, worker to master, as fast as the writable callback lets it: queue
 *            limit 4 MiB, the worker sends until a send is refused (EAGAIN) and resumes in
 *            the callback; no window, no acknowledgements;
 *   rawfd    descriptors: one frame per blocking sendmsg with one descriptor attached
 *            (SCM_RIGHTS), one recvmsg per frame, the descriptor closed (raw.c);
 *   fdm2w    melon-ipc, master to worker, one descriptor per frame
 *            (mln_ipc_master_send_fds_prepare) as fast as the descriptor limit lets it (the
 *            writable callback resumes); the worker takes each one and closes it.
 * A measurement prints one line: ns=... msgs=... bytes=... rss_send=KiB rss_recv=KiB (and
 * refused=N when a burst's send_prepare returned -1, which fails the row).
 *
 * Each message carries its sequence number in its first 4 bytes; receivers check every
 * sequence number and the whole content of the last message. Every figure is timed in one
 * process with CLOCK_MONOTONIC. Environment: BENCH_REPS (5), BENCH_SCALE (1.0, multiplies
 * the counts), BENCH_ONLY (a comma-separated list of figure names, e.g. "raw64,w2m64"),
 * BENCH_TIMEOUT (seconds one measurement may take; 120 x max(1, scale)), BENCH_WINDOW. */
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
#include <unistd.h>
#include "bench.h"

#define MAX_REPS 51

struct result { double ns, msgs, bytes, rss_send, rss_recv; };

struct figure {
    const char *name;  /* short key, e.g. w2m64 */
    const char *label; /* table label (bursts: made from the count, see label_of) */
    const char *kind;
    size_t size;
    long count;
    const char *raw;   /* the figure it is compared with (NULL for raw figures) */
    struct result r[MAX_REPS]; /* the completed repetitions, filled by the driver */
    int n;             /* how many */
    int sel, failed;
    char why[128];     /* why it failed */
};

static double scale = 1.0;
static int reps = 5;
static const char *only;

#define FIG(n, l, k, s, c, r) {.name = n, .label = l, .kind = k, .size = s, .count = c, .raw = r}
static struct figure figs[] = {
    FIG("raw16", "raw stream 16 B", "raw", 16, 16000000, NULL),
    FIG("raw64", "raw stream 64 B", "raw", 64, 24000000, NULL),
    FIG("raw1k", "raw stream 1 KiB", "raw", 1024, 3000000, NULL),
    FIG("raw16k", "raw stream 16 KiB", "raw", 16384, 300000, NULL),
    FIG("raw256k", "raw stream 256 KiB", "raw", 262144, 20000, NULL),
    FIG("raw1m", "raw stream 1 MiB", "raw", 1048576, 5000, NULL),
    FIG("rawpp", "raw ping-pong 16 B", "rawpp", 16, 30000, NULL),
    FIG("rawepp", "raw ping-pong 16 B, epoll", "rawepp", 16, 30000, "rawpp"),
    FIG("w2m16", "w2m stream 16 B", "w2m", 16, 12000000, "raw16"),
    FIG("w2m64", "w2m stream 64 B", "w2m", 64, 16000000, "raw64"),
    FIG("w2m1k", "w2m stream 1 KiB", "w2m", 1024, 2000000, "raw1k"),
    FIG("w2m16k", "w2m stream 16 KiB", "w2m", 16384, 200000, "raw16k"),
    FIG("w2m256k", "w2m stream 256 KiB", "w2m", 262144, 12000, "raw256k"),
    FIG("m2w16", "m2w stream 16 B", "m2w", 16, 12000000, "raw16"),
    FIG("m2w64", "m2w stream 64 B", "m2w", 64, 16000000, "raw64"),
    FIG("m2w1k", "m2w stream 1 KiB", "m2w", 1024, 2000000, "raw1k"),
    FIG("m2w16k", "m2w stream 16 KiB", "m2w", 16384, 200000, "raw16k"),
    FIG("m2w256k", "m2w stream 256 KiB", "m2w", 262144, 12000, "raw256k"),
    FIG("pp", "ping-pong 16 B", "pp", 16, 30000, "rawpp"),
    FIG("fanout64", "fan-out 4 x 64 B", "fanout", 64, 16000000, "raw64"),
    FIG("rss64", "w2m 1M x 64 B (RSS)", "w2m", 64, 1000000, "raw64"),
    FIG("bw2m64", NULL, "bw2m", 64, 2000000, "raw64"),
    FIG("bw2m16k", NULL, "bw2m", 16384, 20000, "raw16k"),
    FIG("bw2m256k", NULL, "bw2m", 262144, 2000, "raw256k"),
    FIG("bw2m1m", NULL, "bw2m", 1048576, 500, "raw1m"),
    FIG("bm2w64", NULL, "bm2w", 64, 2000000, "raw64"),
    FIG("bm2w16k", NULL, "bm2w", 16384, 20000, "raw16k"),
    FIG("bm2w256k", NULL, "bm2w", 262144, 2000, "raw256k"),
    FIG("bm2w1m", NULL, "bm2w", 1048576, 500, "raw1m"),
    FIG("cw2m16k", "w2m writable-cb 16 KiB", "cw2m", 16384, 20000, "raw16k"),
    FIG("rawfd", "raw descriptors 1/frame", "rawfd", 16, 400000, NULL),
    FIG("m2wfd", "m2w descriptors 1/frame", "fdm2w", 16, 400000, "rawfd"),
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

static long scaled(const struct figure *f)
{
    long n = (long)((double)f->count * scale);
    if (strcmp(f->name, "rss64") == 0) n = f->count; /* the target is stated for 1M */
    if (n < 8) n = 8;
    if (strcmp(f->kind, "fanout") == 0) n -= n % FANOUT;
    return n;
}

static int is_burst(const struct figure *f) { return f->kind[0] == 'b'; }
static int is_pp(const struct figure *f) { return strstr(f->kind, "pp") != NULL; }

/* "w2m burst 20,000 x 16 KiB" for bursts (the scaled count), the fixed label otherwise. */
static const char *label_of(const struct figure *f, char *b, size_t n)
{
    char c[32], d[48];
    size_t k, j = 0, len;
    if (!is_burst(f)) return f->label;
    len = (size_t)snprintf(c, sizeof(c), "%ld", scaled(f));
    for (k = 0; k < len; ++k) {
        if (k > 0 && (len - k) % 3 == 0) d[j++] = ',';
        d[j++] = c[k];
    }
    d[j] = '\0';
    if (f->size % (1 << 20) == 0) snprintf(c, sizeof(c), "%zu MiB", f->size >> 20);
    else if (f->size % 1024 == 0) snprintf(c, sizeof(c), "%zu KiB", f->size >> 10);
    else snprintf(c, sizeof(c), "%zu B", f->size);
    snprintf(b, n, "%s burst %s x %s", f->kind + 1, d, c);
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
static int measure(struct figure *f, struct result *out)
{
    int p[2], status, got = 0;
    long refused = 0;
    pid_t pid;
    char line[512], size[32], count[32];
    struct sigaction sa;
    FILE *in;
    snprintf(size, sizeof(size), "%zu", f->size);
    snprintf(count, sizeof(count), "%ld", scaled(f));
    fflush(stdout);
    if (pipe(p) < 0) die("pipe");
    pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        setpgid(0, 0);
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execl("/proc/self/exe", "ipc_bench", "one", f->kind, size, count, (char *)NULL);
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
    while (fgets(line, sizeof(line), in) != NULL) {
        if (sscanf(line, "ns=%lf msgs=%lf bytes=%lf rss_send=%lf rss_recv=%lf", &out->ns,
                   &out->msgs, &out->bytes, &out->rss_send, &out->rss_recv) == 5)
            got = 1;
        sscanf(line, "refused=%ld", &refused);
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

/* Median, min and max of one derived quantity over the completed repetitions. */
struct stat3 { double med, min, max; };

static struct stat3 stat_of(const struct figure *f, double (*get)(const struct result *))
{
    double v[MAX_REPS];
    struct stat3 s = {0, 0, 0};
    int i, n = f->n;
    if (n == 0) return s;
    for (i = 0; i < n; ++i) v[i] = get(&f->r[i]);
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    s.min = v[0];
    s.max = v[n - 1];
    s.med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    return s;
}

static double get_msgs(const struct result *r) { return r->msgs / (r->ns / 1e9); }
static double get_mbs(const struct result *r) { return r->bytes / (r->ns / 1e3); } /* 1e6 B/s */
static double get_rtt(const struct result *r) { return r->ns / 1e3 / r->msgs; }    /* us */
static double get_rss_s(const struct result *r) { return r->rss_send / 1024.0; }  /* MiB */
static double get_rss_r(const struct result *r) { return r->rss_recv / 1024.0; }

/* A figure with numbers: selected and never failed. */
static int usable(const struct figure *f) { return f != NULL && f->sel && !f->failed && f->n > 0; }

/* The figure's ratio to its raw figure (msgs/s; round trip for ping-pong), or 0. */
static double ratio_of(const struct figure *f)
{
    const struct figure *r = f->raw != NULL ? fig(f->raw) : NULL;
    if (!usable(f) || !usable(r)) return 0;
    if (is_pp(f)) return stat_of(f, get_rtt).med / stat_of(r, get_rtt).med;
    return stat_of(f, get_msgs).med / stat_of(r, get_msgs).med;
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

static void print_row(struct figure *f)
{
    char a[32], b[32], c[32], lb[96], ratio[32] = "", mm[80], yy[48];
    const char *label = label_of(f, lb, sizeof(lb));
    struct stat3 rs = stat_of(f, get_rss_s), rr = stat_of(f, get_rss_r), m, y;
    double rv = ratio_of(f);
    if (f->failed) {
        printf("%-26s FAILED: %s (%d of %d repetitions completed before)\n", label, f->why,
               f->n, reps);
        kv_add("%s_failed=1 ", f->name);
        return;
    }
    if (is_pp(f)) {
        m = stat_of(f, get_rtt);
        if (rv > 0) snprintf(ratio, sizeof(ratio), "%.2fx", rv);
        snprintf(a, sizeof(a), "%.2f us", m.med);
        snprintf(c, sizeof(c), "[%.2f .. %.2f]", m.min, m.max);
        printf("%-26s %9s %-21s %9s %-19s %7s  %-8s %.1f / %.1f\n", label, a, c, "", "", ratio,
               f->raw ? f->raw : "", rs.med, rr.med);
        kv_add("%s_rtt_us=%.2f ", f->name, m.med);
        if (rv > 0) kv_add("%s_ratio=%.3f ", f->name, rv);
        return;
    }
    m = stat_of(f, get_msgs);
    y = stat_of(f, get_mbs);
    human(a, sizeof(a), m.med);
    human(b, sizeof(b), m.min);
    human(c, sizeof(c), m.max);
    snprintf(mm, sizeof(mm), "[%s .. %s]", b, c);
    snprintf(yy, sizeof(yy), "[%.0f .. %.0f]", y.min, y.max);
    if (rv > 0) snprintf(ratio, sizeof(ratio), "%.1f%%", 100 * rv);
    printf("%-26s %9s %-21s %9.0f %-19s %7s  %-8s %.1f / %.1f\n", label, a, mm, y.med, yy, ratio,
           f->raw ? f->raw : "", rs.med, rr.med);
    kv_add("%s_msgs=%.0f %s_mbs=%.1f ", f->name, m.med, f->name, y.med);
    if (rv > 0) kv_add("%s_ratio=%.3f ", f->name, rv);
    kv_add("%s_rss_send_mib=%.1f %s_rss_recv_mib=%.1f ", f->name, rs.max, f->name, rr.max);
}

/* The targets (issues 6 and 9, the backpressure issue, issue 23's descriptors), on medians;
 * RSS on the largest of the repetitions. T_FIG_RATIO_MIN compares with figure `ref`
 * instead of the raw one. */
enum tkind { T_RATIO_MIN, T_RTT_MAX, T_FIG_RATIO_MIN, T_RSS_RECV_MIB, T_RSS_SEND_SHARE,
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
    {"pp", "ping-pong round trip <= 1.3x raw", 1.3, T_RTT_MAX, NULL},
    {"rss64", "receiver peak RSS < 64 MiB streaming 1M x 64 B", 64, T_RSS_RECV_MIB, NULL},
    {"bw2m64", "64 B burst w2m >= 40% of raw msgs/s", 0.40, T_RATIO_MIN, NULL},
    {"bm2w64", "64 B burst m2w >= 40% of raw msgs/s", 0.40, T_RATIO_MIN, NULL},
    {"bw2m16k", "16 KiB burst w2m >= 60% of raw MB/s", 0.60, T_RATIO_MIN, NULL},
    {"bm2w16k", "16 KiB burst m2w >= 60% of raw MB/s", 0.60, T_RATIO_MIN, NULL},
    {"bw2m256k", "256 KiB burst w2m >= 60% of raw MB/s", 0.60, T_RATIO_MIN, NULL},
    {"bm2w256k", "256 KiB burst m2w >= 60% of raw MB/s", 0.60, T_RATIO_MIN, NULL},
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
    printf("\ntargets (median of %d):\n", reps);
    for (k = 0; k < sizeof(tgts) / sizeof(tgts[0]); ++k) {
        const struct target *t = &tgts[k];
        struct figure *fx = fig(t->name);
        const char *key = t->kind == T_RSS_SEND_SHARE || t->kind == T_RSS_SEND_MIB
            ? "_rss_target" : "_target";
        double v = 0;
        int pass;
        if (fx == NULL || !fx->sel) continue;
        any = 1;
        if (!usable(fx) || (t->kind <= T_RTT_MAX && ratio_of(fx) == 0)
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
        } else if (t->kind == T_RTT_MAX) {
            v = ratio_of(fx);
            pass = v <= t->limit;
            printf("  %-52s %7.2fx  %s\n", t->what, v, pass ? "PASS" : "FAIL");
        } else if (t->kind == T_RSS_RECV_MIB) {
            v = stat_of(fx, get_rss_r).max;
            pass = v < t->limit;
            printf("  %-52s %5.1f MiB %s\n", t->what, v, pass ? "PASS" : "FAIL");
        } else {
            double burst_mib = (double)scaled(fx) * (double)fx->size / 1048576.0;
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

static int run_all(void)
{
    const char *e;
    size_t i;
    int rep, all_ok = 1;

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

    printf("melon-ipc benchmark: %d repetitions (interleaved), scale %.2f\n", reps, scale);
    machine();
    fflush(stdout);
    for (rep = 0; rep < reps; ++rep) {
        fprintf(stderr, "repetition %d/%d:", rep + 1, reps);
        for (i = 0; i < N_FIGS; ++i) {
            struct figure *f = &figs[i];
            if (!f->sel || f->failed) continue;
            fprintf(stderr, " %s", f->name);
            if (measure(f, &f->r[f->n])) {
                ++f->n;
            } else {
                f->failed = 1;
                all_ok = 0;
                fprintf(stderr, "\nipc_bench: %s FAILED: %s (not run again)\n", f->name, f->why);
            }
        }
        fprintf(stderr, "\n");
    }

    printf("\nmedian [min .. max] of %d; MB = 10^6 payload bytes; ratio = median / median of "
           "the raw figure on the right\n\n", reps);
    printf("%-26s %9s %-21s %9s %-19s %7s  %-8s %s\n", "figure", "msgs/s|RTT", "  [min .. max]",
           "MB/s", "  [min .. max]", "ratio", "vs", "peak RSS send/recv MiB");
    for (i = 0; i < N_FIGS; ++i)
        if (figs[i].sel) print_row(&figs[i]);
    check_targets();
    kv_add("reps=%d scale=%.2f", reps, scale);
    printf("\n%s\n", kv);
    if (!all_ok) fprintf(stderr, "ipc_bench: some figures FAILED (see the table)\n");
    return all_ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "one") == 0) {
        const char *k = argv[2];
        msg_size = (size_t)strtoul(argv[3], NULL, 10);
        msg_count = strtol(argv[4], NULL, 10);
        if (msg_size < 4 || msg_count < 1) {
            fprintf(stderr, "ipc_bench: SIZE must be >= 4 and COUNT >= 1\n");
            return 2;
        }
        make_msg();
        signal(SIGPIPE, SIG_IGN);
        if (strcmp(k, "raw") == 0) return run_raw(0);
        if (strcmp(k, "rawpp") == 0) return run_raw(1);
        if (strcmp(k, "rawepp") == 0) return run_raw(2);
        if (strcmp(k, "rawfd") == 0) return run_raw_fds();
        return run_melon(k);
    }
    if (argc != 1) {
        fprintf(stderr, "usage: ipc_bench [one raw|rawpp|rawepp|rawfd|w2m|m2w|bw2m|bm2w|cw2m|fdm2w|pp|"
                "fanout SIZE COUNT]\n");
        return 2;
    }
    return run_all();
}
