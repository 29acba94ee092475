//! The streaming RESP scanner, both sides: any bytes, cut anywhere, give the same frames (end
//! offsets, type, command words) as the same bytes in one piece, up to the first error; every
//! call makes progress and stops only at a frame end. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use retunnel::redis::resp::{MAX_LINE, Scanner, Side, WORDS};

/// One completed frame as the relay sees it.
#[derive(Debug, PartialEq)]
struct Frame {
    end: usize,
    kind: u8,
    words: Vec<Option<Vec<u8>>>,
    args: u64,
}

/// Feeds `data` in the chunks `cuts` gives; returns the frames and whether it ended in an error.
fn scan(side: Side, data: &[u8], cuts: &[usize]) -> (Vec<Frame>, bool) {
    let mut s = Scanner::new(side);
    let mut frames = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&data.len())) {
        let chunk = &data[start..end];
        let mut i = 0;
        while i < chunk.len() {
            let Ok((used, done)) = s.feed(&chunk[i..]) else {
                return (frames, true);
            };
            assert!(used <= chunk.len() - i, "used past the data");
            assert!(used > 0, "no progress");
            assert!(
                done || i + used == chunk.len(),
                "stopped before the end without a frame"
            );
            i += used;
            if done {
                assert!(s.at_frame_start(), "a frame ended but the next one does not start");
                let words = (0..WORDS).map(|w| s.word(w).map(<[u8]>::to_vec)).collect();
                assert!(s.words() <= WORDS);
                assert!(s.args() >= s.words() as u64 || side == Side::Server);
                frames.push(Frame {
                    end: start + i,
                    kind: s.frame_type(),
                    words,
                    args: s.args(),
                });
            }
        }
        start = end;
    }
    (frames, false)
}

fuzz_target!(|input: &[u8]| {
    // The first byte picks the side and the cut step; the rest is the stream.
    let Some((&ctl, data)) = input.split_first() else {
        return;
    };
    let side = if ctl & 1 == 0 { Side::Server } else { Side::Client };
    let step = usize::from(ctl >> 1) + 1;
    let cuts: Vec<usize> = (step..data.len()).step_by(step).collect();
    let whole = scan(side, data, &[]);
    let split = scan(side, data, &cuts);
    // A header line longer than MAX_LINE is refused only when it spans reads; inputs that
    // long are beyond what libFuzzer generates with the max_len bench/fuzz.sh gives.
    if data.len() < MAX_LINE {
        assert_eq!(whole, split, "step {step}");
    }
});
