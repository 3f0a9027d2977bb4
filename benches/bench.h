/* melon-ipc benchmark: what the parts of ipc_bench share (see ipc_bench.c for the program,
 * benches/README.md for how to read it).
 *
 *   common.c     helpers, the message content and its checks
 *   raw.c        the raw limit: blocking I/O on a socketpair, no library
 *   mlnipc.c     melon-ipc (or, built with -DBENCH_MELON against Melon's headers, whichever
 *                IPC the link line brings: Melon's own or melon-ipc's melon build)
 *   ipc_bench.c  the driver: figures, repetitions, table, targets */
#ifndef IPC_BENCH_H
#define IPC_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define T_GO    6000 /* master -> worker: start (a worker sends, or says it is ready) */
#define T_DATA  6001 /* the measured messages */
#define T_ACK   6002 /* receiver -> sender: u64 messages received so far (windowed streams) */
#define T_DONE  6003 /* worker -> master: everything received */
#define T_PING  6004
#define T_PONG  6005
#define T_READY 6006 /* worker -> master: ready (for a burst, or for the next round of one) */
#define T_START 6007 /* master -> workers (fan-in): every worker is ready, burst now */

#define RAW_CHUNK (64 * 1024)
#define FANOUT 4       /* workers of the windowed fan-out stream (fanout) */
#define FANIN 16       /* workers of the fan-in bursts (fanin, rawfanin) by default */
#define MAX_WORKERS 256

/* Exit statuses of a measurement process, read by the driver. */
#define EXIT_ERRNO   2 /* a system call failed */
#define EXIT_CHECK   3 /* a check on what arrived failed, or a peer died */
#define EXIT_REFUSED 4 /* a send_prepare returned -1 */

/* The message being sent: msg_size bytes, bytes 0..3 the sequence number; msg_count of
 * them (in total). Bursts come in rounds of msg_burst messages (in total over the workers;
 * msg_count when one burst is the whole measurement); msg_workers is the worker count of
 * the kinds that take one (fanin, rr, rawfanin). */
extern size_t msg_size;
extern long msg_count, msg_burst;
extern int msg_workers;
extern unsigned char *msg;

void die(const char *what);
void fail(const char *what);
long long now_ns(void);
/* CPU time of the calling thread (its own work and the kernel's on its behalf), ns. */
long long cpu_ns(void);
long peak_rss_kib(pid_t pid);
int proc_alive(pid_t pid);
void make_msg(void);
void set_seq(unsigned char *p, uint32_t seq);
void check_msg(const unsigned char *p, size_t len, long seq, long count);

/* raw.c: one raw measurement (stream, or ping-pong); prints the result line. */
int run_raw(int pingpong);
/* raw.c: descriptors, one per frame, with sendmsg/recvmsg (SCM_RIGHTS); prints the result
 * line. */
int run_raw_fds(void);
/* raw.c: fan-in, msg_workers processes each writing msg_count / msg_workers frames on a
 * socketpair of its own (as the raw sender), one process reading them all through epoll;
 * prints the result line. */
int run_raw_fanin(void);
/* mlnipc.c: one melon-ipc measurement of KIND (w2m, m2w, pp, fanout, bw2m, bm2w, cw2m,
 * fdm2w, fanin, rr); prints the result line. Returns 2 for an unknown kind. */
int run_melon(const char *kind);

#endif
