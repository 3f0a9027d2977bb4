//! The wire format and an incremental, allocation-free frame decoder.
//!
//! A frame is `[u32 length][u32 type][payload]`, host byte order, where
//! `length = 4 + payload length` (it counts the type, not itself). Receiving rules:
//! `length == 0` is ignored; `length` 1..=3 means "discard the next `length` bytes"
//! (Melon's rule, kept); a `length` above the configured maximum is a protocol error
//! (Melon accepts up to 4 GiB and allocates it).
//!
//! The decoder works on whatever bytes have arrived so far and never allocates: the caller
//! owns the buffer, feeds the unconsumed tail again after more bytes arrive, and gets
//! payloads as slices of that buffer. Pure logic: no I/O, no `unsafe`.

/// Bytes of the length field.
pub const LEN_LEN: usize = 4;
/// Bytes of the type field.
pub const TYPE_LEN: usize = 4;
/// Bytes before the payload.
pub const HEADER_LEN: usize = LEN_LEN + TYPE_LEN;
/// Default largest accepted `length` field (type + payload): 64 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 64 << 20;

/// The frame header for a payload of `payload_len` bytes, or `None` when
/// `4 + payload_len` does not fit the 32-bit length field (a heap overflow in Melon).
pub fn encode_header(ty: u32, payload_len: usize) -> Option<[u8; HEADER_LEN]> {
    let length = u32::try_from(payload_len.checked_add(TYPE_LEN)?).ok()?;
    let mut h = [0u8; HEADER_LEN];
    h[..LEN_LEN].copy_from_slice(&length.to_ne_bytes());
    h[LEN_LEN..].copy_from_slice(&ty.to_ne_bytes());
    Some(h)
}

/// Appends one whole frame to `out`. `None` (and `out` untouched) when the payload cannot
/// be framed.
pub fn encode_into(out: &mut Vec<u8>, ty: u32, payload: &[u8]) -> Option<()> {
    let h = encode_header(ty, payload.len())?;
    out.reserve(HEADER_LEN + payload.len());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    Some(())
}

/// One step of decoding.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// A complete frame; `consumed` bytes of the input (everything up to and including
    /// this frame, plus any ignored or discarded bytes before it) are done with.
    Frame {
        ty: u32,
        payload: &'a [u8],
        consumed: usize,
    },
    /// The input holds no complete frame. `consumed` bytes (ignored or discarded ones) are
    /// done with; the next frame needs `need` bytes counted from `consumed` (0 while
    /// discarding or waiting for a header).
    More { consumed: usize, need: usize },
    /// The next frame announces `length` (> `max`): the stream is unusable.
    TooLong { length: u32 },
}

/// Incremental decoder. Its only state is the number of bytes still to discard after a
/// length of 1..=3, which may span reads.
#[derive(Debug, Clone)]
pub struct Decoder {
    discard: usize,
    max: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_MESSAGE)
    }
}

impl Decoder {
    /// A decoder accepting `length` fields up to `max`.
    pub fn new(max: usize) -> Self {
        Decoder { discard: 0, max }
    }

    /// The largest accepted `length` field.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Changes the largest accepted `length` field for frames not yet started.
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// Bytes still to be discarded before the next header.
    pub fn discarding(&self) -> usize {
        self.discard
    }

    /// Decodes the next frame from `input`, the bytes received and not yet consumed.
    #[inline]
    pub fn next<'a>(&mut self, input: &'a [u8]) -> Step<'a> {
        // The common case, a whole valid frame at the start of `input`, without the loop
        // (this runs for every frame received); the rest in `next_general`.
        if self.discard == 0 {
            if let Some((len_bytes, rest)) = input.split_first_chunk::<LEN_LEN>() {
                let n = u32::from_ne_bytes(*len_bytes) as usize;
                if (TYPE_LEN..=self.max).contains(&n) {
                    if let Some((ty_bytes, _)) = rest.split_first_chunk::<TYPE_LEN>() {
                        if let Some(payload) = rest.get(TYPE_LEN..n) {
                            return Step::Frame {
                                ty: u32::from_ne_bytes(*ty_bytes),
                                payload,
                                consumed: LEN_LEN + n,
                            };
                        }
                    }
                }
            }
        }
        self.next_general(input)
    }

    fn next_general<'a>(&mut self, input: &'a [u8]) -> Step<'a> {
        let mut pos = 0;
        loop {
            if self.discard > 0 {
                let n = self.discard.min(input.len() - pos);
                self.discard -= n;
                pos += n;
                if self.discard > 0 {
                    return Step::More {
                        consumed: pos,
                        need: 0,
                    };
                }
            }
            let rest = &input[pos..];
            let Some(len_bytes) = rest.first_chunk::<LEN_LEN>() else {
                return Step::More {
                    consumed: pos,
                    need: 0,
                };
            };
            let length = u32::from_ne_bytes(*len_bytes);
            match length as usize {
                0 => pos += LEN_LEN,
                n @ 1..=3 => {
                    pos += LEN_LEN;
                    self.discard = n;
                }
                n if n > self.max => return Step::TooLong { length },
                n => {
                    let total = LEN_LEN + n;
                    if rest.len() < total {
                        return Step::More {
                            consumed: pos,
                            need: total,
                        };
                    }
                    let ty_bytes = rest[LEN_LEN..HEADER_LEN].first_chunk::<TYPE_LEN>();
                    let ty = u32::from_ne_bytes(*ty_bytes.unwrap_or(&[0; TYPE_LEN]));
                    return Step::Frame {
                        ty,
                        payload: &rest[HEADER_LEN..total],
                        consumed: pos + total,
                    };
                }
            }
        }
    }
}

/// Counts whole frames in `bytes`, which must start at a frame boundary of a stream we
/// produced ourselves (no invalid lengths). Returns (complete frames, whether a partial
/// frame follows).
pub fn count_frames(bytes: &[u8]) -> (usize, bool) {
    let mut pos = 0;
    let mut n = 0;
    while let Some(h) = bytes[pos..].first_chunk::<LEN_LEN>() {
        let total = LEN_LEN + u32::from_ne_bytes(*h) as usize;
        if bytes.len() - pos < total {
            return (n, true);
        }
        pos += total;
        n += 1;
    }
    (n, pos < bytes.len())
}

/// The offset of the last frame boundary at or before `limit` in `bytes` (a stream of our
/// own frames starting at a boundary).
pub fn boundary_before(bytes: &[u8], limit: usize) -> usize {
    let mut pos = 0;
    while let Some(h) = bytes[pos..].first_chunk::<LEN_LEN>() {
        let next = pos + LEN_LEN + u32::from_ne_bytes(*h) as usize;
        if next > limit {
            break;
        }
        pos = next;
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ty: u32, p: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode_into(&mut v, ty, p).unwrap();
        v
    }

    #[test]
    fn header_layout_is_length_then_type_host_order() {
        let h = encode_header(1, 11).unwrap();
        assert_eq!(h, [15, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(
            encode_header(0, u32::MAX as usize - 4).map(|h| h[..4].to_vec()),
            Some(vec![255; 4])
        );
        assert_eq!(encode_header(0, u32::MAX as usize - 3), None);
        assert_eq!(encode_header(0, usize::MAX), None);
    }

    #[test]
    fn decodes_frame_and_reports_consumed() {
        let mut d = Decoder::default();
        let f = frame(7, b"abc");
        assert_eq!(
            d.next(&f),
            Step::Frame {
                ty: 7,
                payload: b"abc",
                consumed: 11
            }
        );
        assert_eq!(
            d.next(&f[..10]),
            Step::More {
                consumed: 0,
                need: 11
            }
        );
        assert_eq!(
            d.next(&f[..3]),
            Step::More {
                consumed: 0,
                need: 0
            }
        );
    }

    #[test]
    fn zero_length_ignored_and_short_lengths_discard() {
        let mut d = Decoder::default();
        let mut s = vec![0, 0, 0, 0, 2, 0, 0, 0, 0xAA, 0xBB];
        s.extend(frame(9, b""));
        assert_eq!(
            d.next(&s),
            Step::Frame {
                ty: 9,
                payload: b"",
                consumed: s.len()
            }
        );
        // Discard spanning reads: header 3 then only 1 byte.
        let mut d = Decoder::default();
        assert_eq!(
            d.next(&[3, 0, 0, 0, 1]),
            Step::More {
                consumed: 5,
                need: 0
            }
        );
        assert_eq!(d.discarding(), 2);
        assert_eq!(
            d.next(&[1, 1]),
            Step::More {
                consumed: 2,
                need: 0
            }
        );
        assert_eq!(d.discarding(), 0);
    }

    #[test]
    fn too_long_is_an_error_before_any_payload() {
        let mut d = Decoder::new(100);
        assert_eq!(d.next(&[101, 0, 0, 0]), Step::TooLong { length: 101 });
        assert!(matches!(d.next(&frame(1, &[0; 96])), Step::Frame { .. }));
        assert_eq!(d.next(&frame(1, &[0; 97])), Step::TooLong { length: 101 });
    }

    #[test]
    fn counting_our_own_frames() {
        let mut s = frame(1, b"xy");
        s.extend(frame(2, b""));
        let whole = s.len();
        s.extend(&frame(3, b"abcdef")[..5]);
        assert_eq!(count_frames(&s), (2, true));
        assert_eq!(count_frames(&s[..whole]), (2, false));
        assert_eq!(boundary_before(&s, 11), 10);
        assert_eq!(boundary_before(&s, whole + 2), whole);
        assert_eq!(boundary_before(&s, 3), 0);
    }
}
