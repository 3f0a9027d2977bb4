/*
 * melon-ipc: the extensions (not in Melon) that both builds provide, for C programs of the
 * melon build, which are compiled against Melon's own headers (they do not declare them):
 *   mln_ipc_max_message_set, mln_ipc_queue_limit_set, mln_ipc_writable_handler,
 *   mln_ipc_writable_handler_set, mln_ipc_stats_t, mln_ipc_stats_get, and lifecycle control:
 *   mln_ipc_child_event_t and its handler, mln_fork_stop, mln_ipc_worker_quit_handler_set,
 *   mln_fork_rolling_restart, mln_fork_restart_policy_set; descriptors through the channel:
 *   mln_ipc_master_send_fds_prepare, mln_ipc_worker_send_fds_prepare, mln_ipc_fds_count,
 *   mln_ipc_fd_take, mln_ipc_fds_truncated, mln_ipc_fds_limit_set.
 *
 * Include it after Melon's headers (or on its own: it includes mln_fork.h and mln_event.h
 * for mln_fork_t, mln_event_t, mln_size_t and mln_u64_t). Written by hand; the declarations
 * and the documentation are those of the generated mln_ipc.h (src/capi/ipc.rs, src/abi.rs),
 * whose trailer defines MLN_IPC_EXTENSIONS: with that header included first (the standalone
 * build), this one declares nothing.
 *
 * The two headers are included with <>, not "": this file may sit next to melon-ipc's
 * forwarding headers of the same names (include/, or an installed copy), and a program of
 * the melon build must get Melon's, which come first in its include path. In the standalone
 * tree (-Iinclude) they are melon-ipc's forwarding headers, which include mln_ipc.h.
 */
#ifndef MLN_IPC_EXT_H
#define MLN_IPC_EXT_H

#include <stddef.h>
#include <mln_fork.h>
#include <mln_event.h>

#ifndef MLN_IPC_EXTENSIONS

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Extension (not in Melon): sets the largest frame accepted and sent, counted as Melon's
 * length field (4 + payload bytes). Default 64 MiB. A peer announcing a longer frame is
 * a protocol error: nothing reaches a handler, the connection is closed and handled as
 * the peer's death. A send of a longer payload returns -1 (EMSGSIZE). Returns 0, or -1
 * with EINVAL if `max` is below 4, above 4294967295, or above a non-zero queue limit.
 */
int mln_ipc_max_message_set(mln_size_t max);

/*
 * Extension (not in Melon): per-peer cap on bytes queued and not yet written to the
 * socket (frame headers included), in both directions. 0 = unlimited. Default: 256 MiB.
 * A send that would go over it returns -1 with errno EAGAIN; nothing is queued and
 * nothing else changes (no close, no restart). An empty queue always takes one frame, so
 * a frame of the maximum message size is never refused for good. Returns 0, or -1 with
 * EINVAL if `bytes` is non-zero and below the maximum message size.
 */
int mln_ipc_queue_limit_set(mln_size_t bytes);

/*
 * Extension (not in Melon): called on the loop when a peer whose send was refused with
 * EAGAIN (queue limit) has drained to half the limit or less. `f`: the child, or NULL in a
 * worker (the master connection). Set with `mln_ipc_writable_handler_set`.
 */
typedef void (*mln_ipc_writable_handler)(mln_event_t *ev, mln_fork_t *f, void *data);

/*
 * Extension (not in Melon): sets the handler called on the loop, as `h(ev, f, data)`,
 * when a peer whose send was refused with EAGAIN has drained to half the queue limit or
 * less; `f` is the child, or NULL in a worker (the master connection). Called once per
 * refusal episode. NULL disables it. Thread-safe.
 */
void mln_ipc_writable_handler_set(mln_ipc_writable_handler h, void *data);

/*
 * Extension (not in Melon): counters of one connection, filled by `mln_ipc_stats_get`
 * (104 bytes, thirteen 64-bit counters).
 */
typedef struct mln_ipc_stats_t {
    /* Frames completely written to the socket, and their payload bytes. */
    mln_u64_t frames_sent;
    mln_u64_t bytes_sent;
    /* Frames received and dispatched (or dropped: no handler), and their payload bytes. */
    mln_u64_t frames_received;
    mln_u64_t bytes_received;
    /* Frames and wire bytes (headers included) queued and not yet written, now. */
    mln_u64_t queued_frames;
    mln_u64_t queued_bytes;
    /* The largest `queued_bytes` seen. */
    mln_u64_t queue_peak_bytes;
    /* Sends refused with EAGAIN (queue limit). */
    mln_u64_t sends_refused;
    /* Restarts of this worker slot so far (master side; 0 in a worker). */
    mln_u64_t restarts;
    /* Nanoseconds sends to this peer spent waiting for it to read (pacing: only in a
     * program that set no writable handler). */
    mln_u64_t paced_ns;
    /* Descriptors handed to the socket (mln_ipc_*_send_fds_prepare). */
    mln_u64_t fds_sent;
    /* Descriptors received with frames. */
    mln_u64_t fds_received;
    /* Descriptors queued to this worker slot's earlier processes that died before they
     * were written (closed, not leaked); carried over to the replacement as `restarts`. */
    mln_u64_t fds_lost;
} mln_ipc_stats_t;

/* The layout of src/abi.rs (assert_layout!(mln_ipc_stats_t, size 104, ...)); a C99 and C++
 * static assertion: the array size is negative if the layout differs. */
typedef char mln_ipc_stats_t_layout_check[(sizeof(mln_ipc_stats_t) == 104
    && offsetof(mln_ipc_stats_t, frames_sent) == 0
    && offsetof(mln_ipc_stats_t, sends_refused) == 56
    && offsetof(mln_ipc_stats_t, restarts) == 64
    && offsetof(mln_ipc_stats_t, paced_ns) == 72
    && offsetof(mln_ipc_stats_t, fds_lost) == 96) ? 1 : -1];

/*
 * Extension (not in Melon): fills `*out` with the counters of child `f`, or, with `f`
 * NULL in a worker, of its connection to the master. Returns 0, or -1 with errno EINVAL
 * (`out` NULL) or ESRCH (`f` is not a live child; NULL outside a worker).
 */
int mln_ipc_stats_get(mln_fork_t *f, mln_ipc_stats_t *out);

/*
 * Lifecycle control. Extension (not in Melon): the kind of a child event.
 */
typedef enum {
    /* The fork handshake is done: f is the new record, sends to it work (a child stopped
     * before this event is delivered still gets it; sends to it fail then). */
    M_IPC_CHILD_STARTED = 1,
    /* The process is gone: f is its record, readable during the call. */
    M_IPC_CHILD_EXITED,
    /* The restart policy was exceeded: the slot stays empty. */
    M_IPC_CHILD_GAVE_UP,
    /* A rolling restart ended: f is NULL, status 0 done, -1 aborted. */
    M_IPC_ROLLING_DONE,
    /* A restart could not fork: f is NULL, status the errno (EDEADLK: refused because
     * other threads run, the Rust API's rule), restart_in_ms when it is tried again. */
    M_IPC_CHILD_RESTART_FAILED
} mln_ipc_child_event_type_t;

/* Extension (not in Melon): how a child ended (mln_ipc_child_event_t.how). */
typedef enum {
    /* Exited or was killed without being asked to stop. */
    M_IPC_END_CRASHED = 1,
    /* Exited after a graceful stop (or a close asked by the program), before the deadline. */
    M_IPC_END_STOPPED,
    /* Ended by SIGTERM at the deadline of a graceful stop. */
    M_IPC_END_TERMINATED,
    /* Ended by SIGKILL from the library (after a stop's deadline, a closed channel's grace,
     * a missed fork handshake, an aborted rolling replacement). */
    M_IPC_END_KILLED
} mln_ipc_end_t;

/*
 * Extension (not in Melon): one event of a child's life, given to the handler set with
 * `mln_ipc_child_event_handler_set` (48 bytes).
 */
typedef struct mln_ipc_child_event_t {
    mln_ipc_child_event_type_t type;
    /* The child's slot: 0 .. workers-1 for the workers, then the spawned programs in the
     * order they were started. A replacement keeps its predecessor's slot. */
    mln_u32_t slot;
    pid_t pid;
    /* EXITED: how it ended. */
    mln_ipc_end_t how;
    /* EXITED: 1 = it exited with `status`, 0 = killed by signal `status`, -1 = unknown
     * (then `status` is -1: a spawned program forked while SIGCHLD is ignored, or one
     * reaped by a wait of the program's own). */
    int exited;
    /* EXITED: the exit status or the signal number. ROLLING_DONE: 0 done, -1 aborted. */
    int status;
    /* Restarts of this slot so far. */
    mln_u32_t restarts;
    /* EXITED: in how many milliseconds its replacement starts (0: at once), -1 if none
     * will (not supervised, stopped, given up, replaced by a rolling restart). */
    mln_s64_t restart_in_ms;
    /* EXITED: frames queued to it and never written. */
    mln_u64_t frames_lost;
} mln_ipc_child_event_t;

typedef char mln_ipc_child_event_t_layout_check[(sizeof(mln_ipc_child_event_t) == 48
    && offsetof(mln_ipc_child_event_t, pid) == 8
    && offsetof(mln_ipc_child_event_t, restarts) == 24
    && offsetof(mln_ipc_child_event_t, restart_in_ms) == 32
    && offsetof(mln_ipc_child_event_t, frames_lost) == 40) ? 1 : -1];

/* Extension (not in Melon): the master's child-event handler, called on the master's loop
 * as `h(ev, f, e, data)`; `f` is the child's record (NULL for ROLLING_DONE), `e` valid
 * during the call only. */
typedef void (*mln_ipc_child_event_handler)(mln_event_t *ev, mln_fork_t *f,
                                            const struct mln_ipc_child_event_t *e,
                                            void *data);

/* Extension (not in Melon): a worker's quit handler (see mln_ipc_worker_quit_handler_set). */
typedef int (*mln_ipc_quit_handler)(mln_event_t *ev, void *data);

/*
 * Extension (not in Melon): sets the master's child-event handler, called on the master's
 * loop for every event of its children, in order: M_IPC_CHILD_STARTED (the fork handshake
 * is done; for the workers started by mln_fork, once the master's loop runs),
 * M_IPC_CHILD_EXITED (the process is gone, after every frame it sent reached the
 * handlers; `f` is its record, readable during the call), M_IPC_CHILD_GAVE_UP (the
 * restart policy gave its slot up), M_IPC_ROLLING_DONE (`f` NULL),
 * M_IPC_CHILD_RESTART_FAILED (`f` NULL; the restart is tried again). Never called from
 * inside a send, a walk or a fork; events that come while no handler is set are dropped.
 * NULL removes it. Thread-safe.
 */
void mln_ipc_child_event_handler_set(mln_ipc_child_event_handler h, void *data);

/*
 * Extension (not in Melon): stops child `f` gracefully, or every child with `f` NULL.
 * From the call on, sends to it fail with ESRCH, mln_fork_iterate and mln_ipc_stats_get no
 * longer see it, and it is never restarted (with `f` NULL, pending restarts are cancelled
 * too). What was queued to it before is written; then the worker runs its quit handler,
 * after every frame sent before the stop, and exits with status 0 once the handler returns
 * 0 and its own queue is written. At `deadline_ms` SIGTERM, a second later SIGKILL. May be
 * called from a signal handler. Returns 0, or -1 with errno EINVAL (`ev` NULL), ESRCH (`f`
 * is not a live child, or is already stopping), EAGAIN (from a signal handler that
 * interrupted the library, when the stops of 16 other children already wait; a stop of
 * every child is never refused).
 */
int mln_fork_stop(mln_event_t *ev, mln_fork_t *f, mln_u32_t deadline_ms);

/*
 * Extension (not in Melon): sets the worker's quit handler, called on the worker's loop as
 * `h(ev, data)` when its master stops it gracefully. Returns 0 (or no handler set): the
 * worker exits with status 0 once its queue to the master is written; 1: the program ends
 * the worker itself (the master's deadline still applies). Inherited by the workers forked
 * afterwards. NULL removes it. Thread-safe.
 */
void mln_ipc_worker_quit_handler_set(mln_ipc_quit_handler h, void *data);

/*
 * Extension (not in Melon): replaces every plain worker, `batch` at a time: forks the
 * replacement from the master as it is now (from the loop), waits until its loop runs for
 * at most `ready_timeout_ms`, then stops the old one as mln_fork_stop(ev, old, deadline_ms)
 * does. A replacement not ready in time (or that ends first) aborts the run: the
 * replacements not ready are killed, the old workers not yet replaced keep running. Ends
 * with one M_IPC_ROLLING_DONE event (status 0 done, -1 aborted). Returns 0, or -1 with
 * errno EINVAL (`ev` NULL, `batch` or `ready_timeout_ms` 0), EBUSY (one runs already),
 * ENOMEM.
 */
int mln_fork_rolling_restart(mln_event_t *ev, mln_u32_t batch, mln_u32_t ready_timeout_ms,
                             mln_u32_t deadline_ms);

/*
 * Extension (not in Melon): when a supervised child dies and its slot already had
 * `intensity` restarts within the last `period_ms`, the slot is given up (EXITED with
 * restart_in_ms -1, then GAVE_UP). `intensity` 0 never gives up (the default). Returns 0,
 * or -1 with errno EINVAL (`intensity` > 0 with `period_ms` 0). Thread-safe.
 */
int mln_fork_restart_policy_set(mln_u32_t intensity, mln_u32_t period_ms);

/*
 * Descriptors through the channel. Extension (not in Melon): as the send_prepare
 * functions, plus `nfds` descriptors (0 <= nfds <= 253) that arrive with this frame and no
 * other. The library duplicates them at once (close-on-exec): the caller keeps and closes
 * its own. -1 with EINVAL (`fds` NULL with `nfds` > 0, `nfds` > 253), EBADF (one is not
 * open), EMFILE, EAGAIN (also the peer's descriptor limit, or from a signal handler that
 * interrupted the library), or the send_prepare errno values; nothing is queued then.
 */
int mln_ipc_master_send_fds_prepare(mln_event_t *ev, mln_u32_t type, void *buf, mln_size_t len,
                                    const int *fds, mln_u32_t nfds, mln_fork_t *f_child);
int mln_ipc_worker_send_fds_prepare(mln_event_t *ev, mln_u32_t type, void *buf, mln_size_t len,
                                    const int *fds, mln_u32_t nfds);

/* Inside a handler, about the frame being handled (outside a handler: 0, -1 + ENOENT, 0):
 * how many descriptors came with it (taking some does not change it); the one that was the
 * sender's fds[i], now the caller's (-1 + ENOENT if absent or taken; those not taken are
 * closed when the handler returns); 1 if the kernel dropped some (this process was at its
 * descriptor limit). */
mln_u32_t mln_ipc_fds_count(void);
int mln_ipc_fd_take(mln_u32_t i);
int mln_ipc_fds_truncated(void);

/* Per peer, the most descriptors queued and not yet written; default 1,024, 0 = unlimited.
 * Beyond it a send returns -1 with EAGAIN (a peer with none queued always takes one
 * frame's); the writable handler fires once the peer is down to half of it. Returns 0. */
int mln_ipc_fds_limit_set(mln_u32_t n);

#ifdef __cplusplus
}
#endif

#endif /* MLN_IPC_EXTENSIONS */
#endif /* MLN_IPC_EXT_H */
