//! Shared by `rust-tests/wire_props.rs` and the `fuzz/` decoder target: a reference
//! reading of a whole byte stream (the wire format of `src/wire.rs`), and the receiver's
//! incremental loop over the same stream cut into pieces. Included with `#[path]`; not a crate of its own.

use mln_ipc::wire::{Decoder, Step, HEADER_LEN, LEN_LEN};

/// What a receiver sees, in order.
#[derive(Debug, PartialEq, Eq, Clone)]
pub enum Event {
    Frame(u32, Vec<u8>),
    TooLong(u32),
}

/// The reference: the wire format read straight off the whole stream.
pub fn reference(stream: &[u8], max: usize) -> Vec<Event> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while stream.len() - pos >= LEN_LEN {
        let len = u32::from_ne_bytes(stream[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 4;
        match len {
            0 => {}
            1..=3 => pos = (pos + len).min(stream.len()),
            n if n > max => {
                out.push(Event::TooLong(n as u32));
                return out;
            }
            n => {
                if stream.len() - pos < n {
                    break;
                }
                let ty = u32::from_ne_bytes(stream[pos..pos + 4].try_into().unwrap());
                out.push(Event::Frame(ty, stream[pos + 4..pos + n].to_vec()));
                pos += n;
            }
        }
    }
    out
}

/// The receiver's loop (as `channel::Rx` does it): bytes arrive in `chunks`; after each
/// arrival the decoder is run on the unconsumed bytes until it wants more.
pub fn incremental(stream: &[u8], cuts: &[usize], max: usize) -> Vec<Event> {
    let mut d = Decoder::new(max);
    let mut out = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    points.push(stream.len());
    points.sort_unstable();
    let mut at = 0;
    for p in points {
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
                    assert!(consumed - payload.len() >= HEADER_LEN);
                    out.push(Event::Frame(ty, payload.to_vec()));
                    pending.drain(..consumed);
                }
                Step::More { consumed, need } => {
                    assert!(consumed <= pending.len());
                    pending.drain(..consumed);
                    // `need` is the announced frame (header included), never more, and only
                    // ever a length the decoder accepted.
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
