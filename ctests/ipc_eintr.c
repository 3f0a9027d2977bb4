/* EINTR everywhere: master and workers take a 1 kHz SIGALRM (setitimer, handler installed
 * without SA_RESTART, so blocking calls are interrupted) while the master streams 20,000
 * frames of 1..8192 bytes to each of two workers and each worker echoes every frame back.
 * Nothing is lost, duplicated, reordered or corrupted in either direction. */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"
#include <sys/time.h>

#define N 2
#define FULL_COUNT 20000
/* Under valgrind (ctests/memcheck.sh) fewer frames and 100 Hz: the point there is memory
 * errors, and valgrind's own signal delivery is so slow that at 1 kHz the master does
 * little but take signals (natively 1 kHz costs nothing; 50 kHz is a signal storm in the
 * kernel, not in the library, per perf). */
#define COUNT (getenv("CTEST_VALGRIND_LOGS") ? 1000 : FULL_COUNT)
#define T_DATA 7501
#define T_ECHO 7502

static volatile sig_atomic_t alarms;
static long echoed[N + 1];
static int finished;
static pid_t pids[N];

static void on_alarm(int sig)
{
    (void)sig;
    ++alarms;
}

static void kHz(void)
{
    struct itimerval it;
    it.it_interval.tv_sec = 0;
    it.it_interval.tv_usec = getenv("CTEST_VALGRIND_LOGS") ? 10000 : 1000;
    it.it_value = it.it_interval;
    CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
}

static size_t size_of(int seq)
{
    return 1 + (size_t)((unsigned)seq * 2654435761u % 8192);
}

static void fill(unsigned char *b, int seq)
{
    size_t i, n = size_of(seq);
    memcpy(b, &seq, sizeof(seq) < n ? sizeof(seq) : n);
    for (i = sizeof(seq); i < n; ++i) b[i] = (unsigned char)(seq * 7 + i * 13);
}

static void check(const void *buf, mln_u32_t len, int seq)
{
    static unsigned char expect[8192];
    CHECK(len == size_of(seq));
    fill(expect, seq);
    CHECK(memcmp(buf, expect, len) == 0);
}

static void worker_data(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    long n = (long)*udata_ptr;
    (void)f_ptr;
    check(buf, len, (int)n);
    *udata_ptr = (void *)(n + 1);
    CHECK(mln_ipc_worker_send_prepare(ev, T_ECHO, buf, len) == 0);
}

static int which(mln_fork_t *f)
{
    int i;
    for (i = 0; i < N; ++i)
        if (pids[i] == f->pid) return i;
    return N;
}

static void master_echo(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int i = which(f_ptr);
    (void)udata_ptr;
    CHECK(i < N);
    check(buf, len, (int)echoed[i]);
    if (++echoed[i] == COUNT && ++finished == N) mln_event_break_set(ev);
}

static int blast(mln_event_t *ev, mln_fork_t *f, void *data)
{
    static unsigned char b[8192];
    int *k = data, seq;
    pids[(*k)++] = f->pid;
    for (seq = 0; seq < COUNT; ++seq) {
        fill(b, seq);
        CHECK(mln_ipc_master_send_prepare(ev, T_DATA, b, size_of(seq), f) == 0);
    }
    return 0;
}

static void master_process(mln_event_t *ev)
{
    int k = 0;
    kHz();
    CHECK(mln_fork_iterate(ev, blast, &k) == 0 && k == N);
}

static void worker_process(mln_event_t *ev)
{
    (void)ev;
    kHz();
}

static int global_init(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm; /* no SA_RESTART: interrupted calls fail with EINTR */
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
    ctest_workers(N);
    if (!mln_ipc_handler_register(T_DATA, NULL, worker_data, NULL, (void *)0)) return -1;
    if (!mln_ipc_handler_register(T_ECHO, master_echo, NULL, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    if (ctest_framework_init(&a) < 0) return 1;
    fprintf(stderr, "master took %d SIGALRMs\n", (int)alarms);
    CHECK(finished == N && echoed[0] == COUNT && echoed[1] == COUNT);
    CHECK(alarms > 10);
    return 0;
}
