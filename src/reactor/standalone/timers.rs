//! One-shot timers: a slot table addressed by (slot, generation) handles and a heap of
//! deadlines with lazy cancellation.

use super::state::{deadline_after_ms, State, HEAP_SLACK};
use crate::abi::{ev_tm_handler, mln_event_timer_t};
use core::ffi::c_void;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

pub(super) struct TimerRec {
    pub(super) h: ev_tm_handler,
    pub(super) data: *mut c_void,
}

#[derive(Default)]
pub(super) struct TimerSlot {
    gen: u32,
    rec: Option<TimerRec>,
}

/// The handle given to C for timer `idx` of generation `gen`.
pub(super) fn timer_handle(idx: u32, gen: u32) -> *mut mln_event_timer_t {
    // A token, never dereferenced: slot + 1 keeps it non-NULL.
    ((u64::from(gen) << 32) | (u64::from(idx) + 1)) as usize as *mut mln_event_timer_t
}

/// The (slot, generation) of a handle; `None` for NULL.
pub(super) fn timer_token(t: *mut mln_event_timer_t) -> Option<(usize, u32)> {
    let v = t as usize as u64;
    let low = v & 0xffff_ffff;
    if low == 0 {
        return None;
    }
    Some(((low - 1) as usize, (v >> 32) as u32))
}

impl State {
    pub(super) fn timer_valid(&self, e: &(u64, u64, u32, u32)) -> bool {
        let &(_, _, idx, gen) = e;
        self.timers
            .get(idx as usize)
            .is_some_and(|s| s.gen == gen && s.rec.is_some())
    }

    pub(super) fn compact_timers(&mut self) {
        if self.timer_heap.len() > 2 * self.live_timers + HEAP_SLACK {
            let mut v = std::mem::take(&mut self.timer_heap).into_vec();
            v.retain(|Reverse(e)| self.timer_valid(e));
            self.timer_heap = BinaryHeap::from(v);
        }
    }

    /// A timer `msec` ms from now; its (slot, generation), or `None` without memory.
    pub(super) fn add_timer(
        &mut self,
        msec: u32,
        data: *mut c_void,
        h: ev_tm_handler,
    ) -> Option<(u32, u32)> {
        self.timer_heap.try_reserve(1).ok()?;
        let idx = match self.free_timers.pop() {
            Some(i) => i,
            None => {
                let i = u32::try_from(self.timers.len())
                    .ok()
                    .filter(|&i| i < u32::MAX)?;
                self.timers.try_reserve(1).ok()?;
                self.free_timers.try_reserve(1).ok()?;
                self.timers.push(TimerSlot::default());
                i
            }
        };
        let slot = &mut self.timers[idx as usize];
        slot.gen = slot.gen.wrapping_add(1);
        slot.rec = Some(TimerRec { h, data });
        let gen = slot.gen;
        let deadline = deadline_after_ms(u64::from(msec));
        let seq = self.next_seq();
        self.timer_heap.push(Reverse((deadline, seq, idx, gen)));
        self.live_timers += 1;
        self.compact_timers();
        Some((idx, gen))
    }

    /// Takes a pending timer out; `None` if it already fired or was cancelled.
    pub(super) fn remove_timer(&mut self, idx: usize, gen: u32) -> Option<TimerRec> {
        let slot = self.timers.get_mut(idx)?;
        if slot.gen != gen {
            return None;
        }
        let rec = slot.rec.take()?;
        self.live_timers -= 1;
        // Reserved when the slot was created, so this never allocates.
        self.free_timers.push(idx as u32);
        Some(rec)
    }

    /// The next timer due at `now` that was set before this step began (`limit`), so a
    /// 0 ms timer set by a timer handler waits for the next step instead of starving fds.
    pub(super) fn pop_due_timer(&mut self, now: u64, limit: u64) -> Option<TimerRec> {
        loop {
            let &Reverse((deadline, seq, idx, gen)) = self.timer_heap.peek()?;
            if deadline > now || seq > limit {
                return None;
            }
            self.timer_heap.pop();
            if let Some(rec) = self.remove_timer(idx as usize, gen) {
                return Some(rec);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reactor::standalone::{cell, free, new};
    use core::ffi::c_int;
    use core::ptr;

    #[test]
    fn timer_handles_round_trip_and_are_non_null() {
        for &(i, g) in &[(0u32, 1u32), (5, 0), (u32::MAX - 1, u32::MAX)] {
            let h = timer_handle(i, g);
            assert!(!h.is_null());
            assert_eq!(timer_token(h), Some((i as usize, g)));
        }
        assert_eq!(timer_token(ptr::null_mut()), None);
    }

    #[test]
    fn wait_timeout_rounds_up_and_ignores_cancelled() {
        let ev = new();
        // SAFETY: `ev` is a fresh loop, used by this thread only.
        unsafe {
            cell::with_state(ev, |st| {
                assert_eq!(st.wait_timeout_ms(), -1);
                let (i, g) = st.add_timer(2_000_000_000, ptr::null_mut(), None).unwrap();
                let ms = st.wait_timeout_ms();
                assert!((1_999_000_000..=2_000_000_000).contains(&ms), "{ms}");
                let (i2, g2) = st.add_timer(u32::MAX, ptr::null_mut(), None).unwrap();
                st.remove_timer(i as usize, g).unwrap();
                assert_eq!(st.wait_timeout_ms(), c_int::MAX);
                st.remove_timer(i2 as usize, g2).unwrap();
                assert_eq!(st.wait_timeout_ms(), -1);
                st.add_timer(0, ptr::null_mut(), None).unwrap();
                assert_eq!(st.wait_timeout_ms(), 0);
            })
            .unwrap();
            free(ev);
        }
    }

    #[test]
    fn cancelled_timers_do_not_accumulate() {
        let ev = new();
        // SAFETY: as above.
        unsafe {
            cell::with_state(ev, |st| {
                for _ in 0..100_000 {
                    let (i, g) = st.add_timer(60_000, ptr::null_mut(), None).unwrap();
                    st.remove_timer(i as usize, g).unwrap();
                    st.compact_timers();
                }
                assert!(
                    st.timer_heap.len() <= 2 * HEAP_SLACK + 2,
                    "{}",
                    st.timer_heap.len()
                );
                assert_eq!(st.timers.len(), 1);
            })
            .unwrap();
            free(ev);
        }
    }
}
