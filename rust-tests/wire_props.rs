//! Property tests of the frame decoder (`mln_ipc::wire`), the bounded in-tree version of
//! the `fuzz/` decoder target: whatever bytes arrive, split however the socket splits them,
//! the decoder yields the same frames and events as an independent reference reading of
//! the whole stream, never panics, and never asks for more than the announced frame.
//! `PROPTEST_CASES` raises the case count (`make fuzz` does when cargo-fuzz cannot run).

use mln_ipc::wire;
use proptest::prelude::*;

#[path = "support/split_decode.rs"]
mod split_decode;
use split_decode::{incremental, reference, Event};

/// One piece of a generated stream.
#[derive(Debug, Clone)]
enum Piece {
    Frame(u32, Vec<u8>),
    /// A length of 0 (ignored).
    Zero,
    /// A length of 1..=3 and that many bytes to discard.
    Short(Vec<u8>),
    /// A header announcing more than the maximum.
    TooLong(u32),
    Garbage(Vec<u8>),
}

fn piece(max: usize) -> impl Strategy<Value = Piece> {
    prop_oneof![
        6 => (any::<u32>(), prop::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(t, p)| Piece::Frame(t, p)),
        2 => Just(Piece::Zero),
        2 => prop::collection::vec(any::<u8>(), 1..=3).prop_map(Piece::Short),
        1 => ((max as u64 + 1)..=u32::MAX as u64).prop_map(|n| Piece::TooLong(n as u32)),
        1 => prop::collection::vec(any::<u8>(), 0..16).prop_map(Piece::Garbage),
    ]
}

fn render(pieces: &[Piece]) -> Vec<u8> {
    let mut s = Vec::new();
    for p in pieces {
        match p {
            Piece::Frame(t, payload) => wire::encode_into(&mut s, *t, payload).unwrap(),
            Piece::Zero => s.extend_from_slice(&0u32.to_ne_bytes()),
            Piece::Short(b) => {
                s.extend_from_slice(&(b.len() as u32).to_ne_bytes());
                s.extend_from_slice(b);
            }
            Piece::TooLong(n) => s.extend_from_slice(&n.to_ne_bytes()),
            Piece::Garbage(g) => s.extend_from_slice(g),
        }
    }
    s
}

/// The frames a stream made only of well-formed pieces must yield, in order.
fn expected(pieces: &[Piece]) -> Vec<Event> {
    let mut out = Vec::new();
    for p in pieces {
        match p {
            Piece::Frame(t, payload) => out.push(Event::Frame(*t, payload.clone())),
            Piece::TooLong(n) => {
                out.push(Event::TooLong(*n));
                break;
            }
            Piece::Zero | Piece::Short(_) => {}
            Piece::Garbage(_) => unreachable!(),
        }
    }
    out
}

const MAX: usize = 1 << 16;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Random bytes, random splits: same events as the reference, whatever the split.
    #[test]
    fn random_bytes_any_split_matches_reference(
        stream in prop::collection::vec(any::<u8>(), 0..512),
        cuts in prop::collection::vec(any::<usize>(), 0..32),
        max in prop_oneof![Just(4usize), Just(64), Just(MAX), Just(u32::MAX as usize)],
    ) {
        let whole = incremental(&stream, &[], max);
        prop_assert_eq!(&whole, &reference(&stream, max));
        prop_assert_eq!(incremental(&stream, &cuts, max), whole);
    }

    /// Byte-at-a-time delivery is the worst split; it must change nothing either.
    #[test]
    fn byte_at_a_time_matches_reference(
        stream in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let cuts: Vec<usize> = (0..stream.len()).collect();
        prop_assert_eq!(incremental(&stream, &cuts, MAX), reference(&stream, MAX));
    }

    /// Streams built from valid frames and invalid lengths (0, 1..3 with their discard
    /// bytes, above the maximum): exactly the valid frames come out, in order, up to the
    /// first length above the maximum, whatever the split.
    #[test]
    fn invalid_lengths_are_handled(
        pieces in prop::collection::vec(piece(MAX), 0..40)
            .prop_map(|v| v.into_iter().filter(|p| !matches!(p, Piece::Garbage(_))).collect::<Vec<_>>()),
        cuts in prop::collection::vec(any::<usize>(), 0..32),
    ) {
        let stream = render(&pieces);
        prop_assert_eq!(incremental(&stream, &cuts, MAX), expected(&pieces));
    }

    /// Garbage mixed in anywhere: no panic, split-independent, and the decoder is never
    /// asked to wait for more than the maximum frame.
    #[test]
    fn garbage_never_panics(
        pieces in prop::collection::vec(piece(64), 0..40),
        cuts in prop::collection::vec(any::<usize>(), 0..32),
    ) {
        let stream = render(&pieces);
        prop_assert_eq!(incremental(&stream, &cuts, 64), incremental(&stream, &[], 64));
    }

    /// The encoder refuses exactly the payloads whose length field would not fit 32 bits.
    #[test]
    fn header_fits_or_is_refused(len in prop_oneof![
        0usize..1 << 20,
        (u32::MAX as usize - 8)..=(u32::MAX as usize),
        any::<usize>(),
    ]) {
        let h = wire::encode_header(1, len);
        prop_assert_eq!(h.is_some(), len <= u32::MAX as usize - 4);
        if let Some(h) = h {
            let n = u32::from_ne_bytes(h[..4].try_into().unwrap()) as usize;
            prop_assert_eq!(n, len + 4);
        }
    }
}
