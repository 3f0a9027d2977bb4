/* Lifecycle item 4, the "SIGHUP from another process" form: frames sent from a signal
 * handler keep their order with the frames the loop sends. Two workers. Another process
 * sends SIGHUP to the master, each 200 us after the master's handler acknowledged the
 * previous one (one byte on a pipe; at most 5 kHz, never faster than the handler); the
 * handler sends a numbered frame to each worker through mln_fork_iterate, while the
 * master's loop streams numbered frames to each worker from a 0 ms timer. Per
 * worker one counter numbers every frame whose send_prepare returned 0, from either context
 * (the loop marks its send + increment so that the handler skips while it runs: no two
 * send_prepare calls nest). Each worker checks that the numbers arrive consecutively, and
 * the final frame (T_END, sent from the loop after the signals stopped) carries the total,
 * which must equal the number received before it. A signal send may return -1 (slots full)
 * and is then not counted; at least one must have succeeded per worker. The stream runs
 * until >= 20,000 loop frames and >= 1,000 signal frames per worker were sent, or 2 s; at
 * most 8192 loop frames in flight per worker. Every process reports failures to the master
 * (life.h). The common part is in life_signal_order.h; life_signal_order.c is the 5 kHz
 * SIGALRM form, in both directions.
 * Today: a frame sent by a signal that interrupted the library is parked and queued only
 * when the loop reads its wake-up, after frames the loop sent later. */
#define SIGORDER_BOTH_WAYS 0
#define SIG_MIN 1000
#include "life_signal_order.h"

static int ack[2] = {-1, -1};

static void on_hup(int sig)
{
    int e = errno;
    char c = stopped ? 'q' : 'a';
    (void)sig;
    if (!stopped && !in_send) mln_fork_iterate(loop_ev, sig_each, NULL);
    if (write(ack[1], &c, 1) != 1) {}
    errno = e;
}

/* Master only: the signalling process. */
static void sig_start(void)
{
    struct sigaction sa;
    pid_t master = getpid(), signaller;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_hup;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGHUP, &sa, NULL) == 0);
    CHECK(pipe(ack) == 0);
    signaller = fork();
    CHECK(signaller >= 0);
    if (signaller == 0) {
        char c = 'a';
        struct timespec gap = {0, 200000};
        close(ack[1]);
        while (c == 'a') {
            if (kill(master, SIGHUP) != 0) break;
            if (read(ack[0], &c, 1) != 1) break;
            /* Pacing (at most 5 kHz), not synchronisation: lets the master run 200 us of
             * its loop between two signals, so they land anywhere in it. */
            nanosleep(&gap, NULL);
        }
        _exit(0);
    }
    close(ack[0]);
}

static void sig_stop(void)
{
    stopped = 1;
}
