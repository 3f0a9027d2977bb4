/*
 * melon-ipc: the extensions (not in Melon) that both builds provide, for C programs of the
 * melon build, which are compiled against Melon's own headers (they do not declare them):
 *   mln_ipc_max_message_set, mln_ipc_queue_limit_set, mln_ipc_writable_handler,
 *   mln_ipc_writable_handler_set, mln_ipc_stats_t, mln_ipc_stats_get.
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
 * (80 bytes, ten 64-bit counters).
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
} mln_ipc_stats_t;

/* The layout of src/abi.rs (assert_layout!(mln_ipc_stats_t, size 80, ...)); a C99 and C++
 * static assertion: the array size is negative if the layout differs. */
typedef char mln_ipc_stats_t_layout_check[(sizeof(mln_ipc_stats_t) == 80
    && offsetof(mln_ipc_stats_t, frames_sent) == 0
    && offsetof(mln_ipc_stats_t, sends_refused) == 56
    && offsetof(mln_ipc_stats_t, restarts) == 64
    && offsetof(mln_ipc_stats_t, paced_ns) == 72) ? 1 : -1];

/*
 * Extension (not in Melon): fills `*out` with the counters of child `f`, or, with `f`
 * NULL in a worker, of its connection to the master. Returns 0, or -1 with errno EINVAL
 * (`out` NULL) or ESRCH (`f` is not a live child; NULL outside a worker).
 */
int mln_ipc_stats_get(mln_fork_t *f, mln_ipc_stats_t *out);

#ifdef __cplusplus
}
#endif

#endif /* MLN_IPC_EXTENSIONS */
#endif /* MLN_IPC_EXT_H */
