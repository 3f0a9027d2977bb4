/* Lifecycle item 4: frames sent from a signal handler keep their order with the frames the
 * loop sends. Two workers. Each side (the master towards each worker, each worker towards
 * the master) runs a 5 kHz SIGALRM (a POSIX timer re-armed by the handler: 200 us after it
 * returns, or 4x its own duration when longer, e.g. under valgrind) whose handler sends a
 * numbered frame to its peer(s) (through mln_fork_iterate in the master), while its loop
 * streams numbered frames from a 0 ms timer. Per peer one counter numbers every frame
 * whose send_prepare returned 0, from either context (the loop marks its send + increment
 * so that the handler skips while it runs: no two send_prepare calls nest, so their order
 * is well defined). The receiver checks that the numbers arrive consecutively (strict
 * order, nothing lost), and the final frame (type T_END, sent from the loop after the
 * signals are off) carries the total, which must equal the number received before it. A
 * signal send may return -1 (slots full) and is then not counted; at least one signal
 * send must have succeeded on each side. The stream runs until each side has sent
 * >= 20,000 loop frames and >= 300 signal frames per peer, or 2 s; at most 8192 loop
 * frames are in flight per peer (the receiver reports its count every 1024 frames). Every
 * process reports failures to the master (life.h). The common part is in
 * life_signal_order.h; life_signal_order_hup.c is the SIGHUP form.
 * Today: a frame sent by a signal that interrupted the library is parked and queued only
 * when the loop reads its wake-up, after frames the loop sent later (5-6% of them). */
#define SIGORDER_BOTH_WAYS 1
#define SIG_MIN 300
#include "life_signal_order.h"

static timer_t sig_timer;

/* One-shot, re-armed by the handler: 200 us after the handler ends (5 kHz), or 4 times the
 * handler's own duration when that is longer (under valgrind), so that the signals can
 * never starve the loop. */
static void sig_arm(long long ns)
{
    struct itimerspec its;
    memset(&its, 0, sizeof(its));
    its.it_value.tv_sec = (time_t)(ns / 1000000000LL);
    its.it_value.tv_nsec = (long)(ns % 1000000000LL);
    timer_settime(sig_timer, 0, &its, NULL);
}

static void on_alarm(int sig)
{
    int e = errno;
    long long t = now_ns(), d;
    (void)sig;
    if (stopped) return;
    if (!in_send) {
        if (getpid() == life_master) mln_fork_iterate(loop_ev, sig_each, NULL);
        else sig_send_one(loop_ev, &peers[0]);
    }
    d = 4 * (now_ns() - t);
    sig_arm(d > 200000 ? d : 200000);
    errno = e;
}

static void sig_start(void)
{
    struct sigaction sa;
    struct sigevent se;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
    memset(&se, 0, sizeof(se));
    se.sigev_notify = SIGEV_SIGNAL;
    se.sigev_signo = SIGALRM;
    CHECK(timer_create(CLOCK_MONOTONIC, &se, &sig_timer) == 0);
    sig_arm(200000);
}

static void sig_stop(void)
{
    stopped = 1;
    sig_arm(0);
}
