//! The frame decoder fed an arbitrary byte stream in arbitrary pieces (the first bytes of
//! the input choose the maximum and the split points): it must never panic, never ask to
//! wait for more than the maximum frame, and yield the same events whatever the split.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../rust-tests/support/split_decode.rs"]
mod split_decode;
use split_decode::{incremental, reference};

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
    let whole = incremental(stream, &[], max);
    assert_eq!(whole, reference(stream, max));
    assert_eq!(incremental(stream, &cuts, max), whole);
    let bytewise: Vec<usize> = (0..stream.len()).collect();
    if stream.len() <= 4096 {
        assert_eq!(incremental(stream, &bytewise, max), whole);
    }
});
