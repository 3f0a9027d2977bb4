/* melon-ipc, melon build: a Melon framework program, compiled against Melon's own headers.
 *
 * The worker sends 20,000 x 1 KiB to its master in one go (far more than a socket buffer);
 * the master checks every frame (length, sequence number, contents) and exits 0 once one
 * worker's whole burst has arrived in order, 1 if that has not happened within 20 s.
 * Linked before -lmelon with melon-ipc's melon build, everything arrives. With Melon's
 * own IPC (-lmelon alone) the first full socket buffer is taken for a dead peer:
 * the worker exits, a new one starts over, and no burst is ever complete.
 *
 * BURST_FRAMES=n changes the number of frames (default 20000).
 *
 * With BURST_RELOADS=N in the environment the master then stays up and prints "READY";
 * send it SIGUSR2 (Melon's configuration reload) N times. Each reload reaches
 * the worker as an IPC message of type 1; the worker's reload hook answers with a frame
 * of its own, and the master exits 0 after N answers (a master deadlocked in its SIGUSR2
 * handler, as Melon's own IPC is, never gets them: alarm(60) then kills it).
 *
 * Build and run: see docs/melon-build.md (`make melon-example`). Needs a conf
 * file with `framework "multiprocess"; worker_proc 1;`: BURST_CONF names it (default:
 * Melon's own, $MELON_PREFIX/conf/melon.conf). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>
#include "mln_framework.h"
#include "mln_ipc.h"
#include "mln_fork.h"
#include "mln_conf.h"
#include "mln_event.h"
#include "mln_path.h"

#define T_BURST  3000 /* worker -> master: u32 sequence number, then filler */
#define T_RELOAD 3001 /* worker -> master: "reloaded" */
#define FRAMES_DEFAULT 20000
#define FRAME_LEN 1024

static unsigned frames = FRAMES_DEFAULT;
static unsigned expected, generations, frames_total, bad, complete;
static unsigned reloads_wanted, reloads_seen;
static int is_worker;

static void master_burst(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata)
{
    unsigned seq, i;
    unsigned char *p = buf;
    (void)ev; (void)f_ptr; (void)udata;
    ++frames_total;
    if (len != FRAME_LEN) { ++bad; return; }
    memcpy(&seq, p, sizeof(seq));
    for (i = sizeof(seq); i < FRAME_LEN; ++i) {
        if (p[i] != (unsigned char)seq) { ++bad; return; }
    }
    if (seq == 0) { ++generations; expected = 0; }
    if (seq != expected) { ++bad; return; }
    if (++expected == frames && !complete) {
        complete = 1;
        printf("master: %u/%u frames of %u bytes in order from one worker "
               "(%u frames in all, %u worker generation(s), %u bad)\n",
               expected, frames, FRAME_LEN, frames_total, generations, bad);
        fflush(stdout);
        if (reloads_wanted == 0) exit(0);
        printf("READY\n");
        fflush(stdout);
    }
}

static void master_reloaded(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata;
    printf("master: worker confirmed reload %u\n", ++reloads_seen);
    fflush(stdout);
    if (reloads_seen >= reloads_wanted) exit(0);
}

static void worker_ignore(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata;
}

static mln_event_t *worker_ev;

/* Runs after every configuration reload, in the master (signal context) and in the worker
 * (its type-1 IPC handler). Only the worker answers. */
static int reload_hook(void *data)
{
    (void)data;
    if (!is_worker || worker_ev == NULL) return 0;
    return mln_ipc_worker_send_prepare(worker_ev, T_RELOAD, "reloaded", 8) < 0 ? -1 : 0;
}

static void master_timeout(mln_event_t *ev, void *data)
{
    (void)ev; (void)data;
    if (complete) return;
    printf("master: burst incomplete after 20 s: best run %u/%u, %u frames in all, "
           "%u worker generation(s), %u bad\n", expected, frames, frames_total, generations, bad);
    fflush(stdout);
    exit(1);
}

static int global_init(void)
{
    const char *r = getenv("BURST_RELOADS");
    const char *n = getenv("BURST_FRAMES");
    if (n != NULL && atoi(n) > 0) frames = (unsigned)atoi(n);
    reloads_wanted = r ? (unsigned)atoi(r) : 0;
    if (mln_ipc_handler_register(T_BURST, master_burst, worker_ignore, NULL, NULL) == NULL) return -1;
    if (mln_ipc_handler_register(T_RELOAD, master_reloaded, worker_ignore, NULL, NULL) == NULL) return -1;
    if (mln_conf_hook_set(reload_hook, NULL) == NULL) return -1;
    return 0;
}

static void master_process(mln_event_t *ev)
{
    alarm(60);
    mln_event_timer_set(ev, 20000, NULL, master_timeout);
}

static void worker_send(mln_event_t *ev, void *data)
{
    unsigned char frame[FRAME_LEN];
    unsigned seq;
    (void)data;
    for (seq = 0; seq < frames; ++seq) {
        memcpy(frame, &seq, sizeof(seq));
        memset(frame + sizeof(seq), (unsigned char)seq, FRAME_LEN - sizeof(seq));
        if (mln_ipc_worker_send_prepare(ev, T_BURST, frame, FRAME_LEN) < 0) {
            fprintf(stderr, "worker: send %u refused\n", seq);
            exit(3);
        }
    }
}

static void worker_process(mln_event_t *ev)
{
    is_worker = 1;
    worker_ev = ev;
    mln_event_timer_set(ev, 10, NULL, worker_send);
}

static char *conf_path(void)
{
    return getenv("BURST_CONF");
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr attr;
    if (getenv("BURST_CONF") != NULL) mln_path_hook_set(m_p_conf, conf_path);
    attr.argc = argc;
    attr.argv = argv;
    attr.global_init = global_init;
    attr.main_thread = NULL;
    attr.master_process = master_process;
    attr.worker_process = worker_process;
    return mln_framework_init(&attr);
}
