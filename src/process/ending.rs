//! What a child's end means: how it ended (`M_IPC_END_*`) from what was done to it, the
//! restart policy (`mln_fork_restart_policy_set`), and a rolling restart's bookkeeping of
//! ends (its step timer, and ROLLING_DONE once the children it waits for are gone).
//! Called by `supervise` (a child's end) and `lifecycle` (a rolling restart's steps).

use super::pids::Status;
use super::state::{Ending, Plan, Proc};
use super::ENTRIES;
use crate::abi::*;
use crate::log;
use crate::reactor;
use core::ptr::null_mut;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `M_IPC_END_*` for a child that ended with `status` after what `end` says was done to it.
/// Our own signals first; a child asked to stop that was killed by a signal we did not
/// send crashed all the same.
pub(crate) fn how_ended(end: &Ending, status: Status) -> mln_ipc_end_t {
    let signaled = matches!(status, Status::Signaled(..));
    if end.killed && !matches!(status, Status::Exited(_)) {
        M_IPC_END_KILLED
    } else if end.termed {
        M_IPC_END_TERMINATED
    } else if end.asked && !signaled {
        M_IPC_END_STOPPED
    } else {
        M_IPC_END_CRASHED
    }
}

/// The restart policy (`mln_fork_restart_policy_set`): intensity (0: never give up) and
/// period in milliseconds.
static POLICY: AtomicU64 = AtomicU64::new(0);

/// `mln_fork_restart_policy_set`: false (EINVAL) for a non-zero intensity with no period.
pub(crate) fn set_restart_policy(intensity: u32, period_ms: u32) -> bool {
    if intensity > 0 && period_ms == 0 {
        return false;
    }
    POLICY.store(
        u64::from(intensity) << 32 | u64::from(period_ms),
        Ordering::Relaxed,
    );
    true
}

/// Whether the slot of `plan`, which just died, is given up: it already had `intensity`
/// restarts within the period (then the intensity and the period). Otherwise the restart
/// about to happen is counted.
pub(crate) fn policy_exceeded(plan: &mut Plan) -> Option<(u32, Duration)> {
    let v = POLICY.load(Ordering::Relaxed);
    let (n, period) = ((v >> 32) as u32, Duration::from_millis(v & 0xffff_ffff));
    let now = Instant::now();
    plan.recent
        .retain(|&t| now.saturating_duration_since(t) < period);
    if n == 0 {
        plan.recent.clear();
        return None;
    }
    if plan.recent.len() >= n as usize {
        return Some((n, period));
    }
    plan.recent.push_back(now);
    None
}

/// A rolling restart's replacement died or missed its deadline: the run aborts at its next
/// step.
pub(crate) fn rolling_failed(p: &mut Proc) {
    if let Some(r) = p.rolling.as_mut() {
        if r.outcome.is_none() {
            r.failed = true;
        }
    }
    rolling_poke(p, Duration::ZERO);
}

/// Runs the rolling restart's next step `after` from now (a step already due sooner stays).
pub(crate) fn rolling_poke(p: &mut Proc, after: Duration) {
    let Some(r) = p.rolling.as_mut() else { return };
    if r.ev.is_null() {
        return;
    }
    if !r.timer.is_null() {
        // SAFETY: pending on the run's loop (live: the run is dropped when it is freed).
        unsafe { reactor::timer_cancel(r.ev, r.timer) };
    }
    let ms = after.as_millis().min(u32::MAX as u128) as u32;
    // SAFETY: `r.ev` is live (see above); the callback looks the run up.
    r.timer = unsafe { reactor::timer_set(r.ev, ms, null_mut(), Some(ENTRIES.rolling_step)) };
    if r.timer.is_null() {
        log::error(format_args!(
            "rolling restart: cannot set a timer on its loop"
        ));
    }
}

/// Child `id` has ended (its EXITED is queued): a rolling restart waiting for it may be over.
pub(crate) fn rolling_note_end(p: &mut Proc, id: u64) {
    let Some(r) = p.rolling.as_mut() else { return };
    r.waiting.retain(|&w| w != id);
    if let Some(status) = r.outcome {
        if r.waiting.is_empty() {
            rolling_finish(p, status);
        }
    }
}

/// Ends the rolling restart with ROLLING_DONE `status`.
pub(crate) fn rolling_finish(p: &mut Proc, status: i32) {
    let Some(r) = p.rolling.take() else { return };
    if !r.timer.is_null() {
        // SAFETY: pending on the run's loop.
        unsafe { reactor::timer_cancel(r.ev, r.timer) };
    }
    log::info(format_args!(
        "rolling restart {}",
        if status == 0 { "done" } else { "aborted" }
    ));
    let e = mln_ipc_child_event_t {
        r#type: M_IPC_ROLLING_DONE,
        status,
        restart_in_ms: -1,
        ..Default::default()
    };
    p.push_event(e, null_mut());
}
