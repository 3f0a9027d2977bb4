//! The frame decoder fed an arbitrary byte stream in arbitrary pieces (the first bytes of
//! the input choose the maximum and the split points): it must never panic, never ask to
//! wait for more than the maximum frame, and yield the same events whatever the split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mln_ipc::wire::{Decoder, Step, LEN_LEN};

#[derive(Debug, PartialEq, Eq)]
enum Event {
    Frame(u32, Vec<u8>),
    TooLong(u32),
}

fn run(stream: &[u8], cuts: &[usize], max: usize) -> Vec<Event> {
    let mut d = Decoder::new(max);
    let mut out = Vec::new();
    let mut pending = Vec::new();
    let mut at = 0;
    for &p in cuts.iter().chain(core::iter::once(&stream.len())) {
        let p = p.clamp(at, stream.len());
        pending.extend_from_slice(&stream[at..p]);
        at = p;
        loop {
            match d.next(&pending) {
                Step::Frame {
                    ty,
                    payload,
                    consumed,
                } => {
                    assert!(consumed <= pending.len());
                    out.push(Event::Frame(ty, payload.to_vec()));
                    pending.drain(..consumed);
                }
                Step::More { consumed, need } => {
                    assert!(consumed <= pending.len());
                    pending.drain(..consumed);
                    assert!(need == 0 || (need > pending.len() && need <= LEN_LEN + max));
                    break;
                }
                Step::TooLong { length } => {
                    assert!(length as usize > max);
                    out.push(Event::TooLong(length));
                    return out;
                }
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let max = match data[0] % 4 {
        0 => 4,
        1 => 64,
        2 => 1 << 16,
        _ => u32::MAX as usize,
    };
    let ncuts = usize::from(data[1] % 32);
    let seed = data[2];
    let stream = &data[3..];
    let mut cuts = Vec::with_capacity(ncuts);
    let mut x = u32::from(seed) | 1;
    for _ in 0..ncuts {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        cuts.push(x as usize % (stream.len() + 1));
    }
    cuts.sort_unstable();
    let whole = run(stream, &[], max);
    assert_eq!(run(stream, &cuts, max), whole);
    let bytewise: Vec<usize> = (0..stream.len()).collect();
    if stream.len() <= 4096 {
        assert_eq!(run(stream, &bytewise, max), whole);
    }
});
