//! A streaming RESP2/RESP3 scanner: it finds where each top-level frame ends without buffering
//! it. Bulk payloads are skipped by count, so a 512 MB value or an absurd declared length costs
//! no memory; header lines are kept up to [`MAX_LINE`] bytes and nesting up to [`MAX_DEPTH`]
//! levels. On the client side it also reads inline commands and keeps the first few words of
//! each command (name and arguments, at most [`WORD_MAX`] bytes each) so the relay can pair
//! replies with commands. It never allocates per frame and never panics on any input.

/// Longest header line kept (Redis's own limit for inline commands is 64 KiB).
pub const MAX_LINE: usize = 64 * 1024;
/// Deepest nesting of aggregates accepted. Redis's own replies nest a handful of levels, but
/// a script may return tables nested as deep as Lua allows, and a valid reply must pass: the
/// bound is on memory (one 16-byte level each: at most 1 MiB per direction, within what a
/// connection may hold anyway), not on what is plausible.
pub const MAX_DEPTH: usize = 1 << 16;
/// Command words kept per command: name and two arguments (`CLIENT REPLY OFF`).
pub const WORDS: usize = 3;
/// Bytes kept of each word; longer words are marked as such and match nothing.
pub const WORD_MAX: usize = 16;

/// Why a byte stream is not RESP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A frame started with a byte that is no RESP type.
    #[error("unknown RESP type byte 0x{0:02x}")]
    BadType(u8),
    /// A length or count header did not hold a number.
    #[error("bad length or count in a RESP header")]
    BadLength,
    /// A header line went on past [`MAX_LINE`].
    #[error("RESP header line longer than {MAX_LINE} bytes")]
    LineTooLong,
    /// Aggregates nested deeper than [`MAX_DEPTH`].
    #[error("RESP aggregates nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// A bulk payload was not followed by CRLF.
    #[error("RESP bulk payload not followed by CRLF")]
    BadTerminator,
    /// A streamed (`$?`/`*?`) aggregate, which Redis never sends.
    #[error("streamed RESP3 types are not supported")]
    Streamed,
}

/// Which side of the conversation a scanner reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Commands: RESP arrays or inline command lines.
    Client,
    /// Replies: any RESP2/RESP3 frame.
    Server,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Reading a header line (or an inline command).
    Line,
    /// Skipping the bytes left of a bulk payload.
    Payload(u64),
    /// Expecting the CR, then the LF, after a payload.
    Cr,
    Lf,
}

#[derive(Debug, Clone, Copy)]
struct Level {
    /// Elements still to come.
    left: u64,
    /// An attribute (`|`): it does not count as an element of its parent.
    attr: bool,
}

/// One kept command word.
#[derive(Debug, Clone, Copy, Default)]
struct Word {
    len: usize,
    bytes: [u8; WORD_MAX],
}

/// Tracks frame boundaries in one direction of a connection.
#[derive(Debug)]
pub struct Scanner {
    side: Side,
    state: State,
    /// The header line so far, when it spans reads (at most [`MAX_LINE`] bytes).
    line: Vec<u8>,
    /// The part of the line beyond [`MAX_LINE`] was dropped.
    overflow: bool,
    stack: Vec<Level>,
    /// Type byte of the current top-level frame (0 for an inline command).
    top: u8,
    /// Words of the current command (client side).
    words: [Word; WORDS],
    /// How many words are set.
    n_words: usize,
    /// How many arguments the command has in all, name included (client side).
    n_args: u64,
    /// Index of the top-level array element being read (client side).
    element: u64,
    /// Turns of the state machine so far: the work a feed did, for tests that bound it.
    #[cfg(test)]
    steps: u64,
    /// Tests compare results with and without [`Scanner::whole`].
    #[cfg(test)]
    no_shortcut: bool,
}

impl Scanner {
    /// A scanner at the start of a stream.
    pub fn new(side: Side) -> Scanner {
        Scanner {
            side,
            state: State::Line,
            line: Vec::new(),
            overflow: false,
            stack: Vec::new(),
            top: 0,
            words: [Word::default(); WORDS],
            n_words: 0,
            n_args: 0,
            element: 0,
            #[cfg(test)]
            steps: 0,
            #[cfg(test)]
            no_shortcut: false,
        }
    }

    /// Whether the next byte starts a new top-level frame.
    pub fn at_frame_start(&self) -> bool {
        matches!(self.state, State::Line) && self.line.is_empty() && !self.overflow && self.stack.is_empty()
    }

    /// Type byte of the frame just completed (`b'*'`, `b'-'`, `b'>'`…; 0 for an inline command).
    pub fn frame_type(&self) -> u8 {
        self.top
    }

    /// How many words the command just completed has, up to [`WORDS`] (0: an empty command,
    /// which Redis skips without a reply).
    pub fn words(&self) -> usize {
        self.n_words
    }

    /// How many arguments the command just completed has in all, its name included: the
    /// words kept are only the first [`WORDS`], and `CLIENT REPLY ON x` is no `CLIENT REPLY ON`.
    pub fn args(&self) -> u64 {
        self.n_args
    }

    /// Word `i` of the command just completed (client side), if it was short enough to keep.
    pub fn word(&self, i: usize) -> Option<&[u8]> {
        let w = self.words.get(i).filter(|_| i < self.n_words)?;
        (w.len <= WORD_MAX).then(|| &w.bytes[..w.len])
    }

    /// Scans `data` up to the end of the current top-level frame. Returns how many bytes were
    /// used and whether a frame ended there; call again with the rest.
    pub fn feed(&mut self, data: &[u8]) -> Result<(usize, bool), ProtocolError> {
        #[cfg(test)]
        let shortcut = !self.no_shortcut;
        #[cfg(not(test))]
        let shortcut = true;
        if shortcut
            && self.at_frame_start()
            && let Some(used) = self.whole(data)
        {
            #[cfg(test)]
            {
                self.steps += 1;
            }
            return Ok((used, true));
        }
        let mut i = 0;
        while i < data.len() {
            #[cfg(test)]
            {
                self.steps += 1;
            }
            match self.state {
                State::Payload(left) => {
                    let take = left.min((data.len() - i) as u64) as usize;
                    self.keep_word_bytes(&data[i..i + take]);
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 { State::Cr } else { State::Payload(left) };
                }
                State::Cr | State::Lf => {
                    let want = if matches!(self.state, State::Cr) { b'\r' } else { b'\n' };
                    if data[i] != want {
                        return Err(ProtocolError::BadTerminator);
                    }
                    i += 1;
                    if want == b'\r' {
                        self.state = State::Lf;
                        continue;
                    }
                    self.state = State::Line;
                    if self.element_done() {
                        return Ok((i, true));
                    }
                }
                State::Line => {
                    let rest = &data[i..];
                    let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                        self.keep_line(rest);
                        return Ok((data.len(), false));
                    };
                    let done = if self.line.is_empty() && !self.overflow {
                        self.header(strip_cr(&rest[..nl]))?
                    } else {
                        self.keep_line(&rest[..nl]);
                        let line = std::mem::take(&mut self.line);
                        let r = self.header(strip_cr(&line));
                        self.line = line;
                        self.line.clear();
                        self.overflow = false;
                        r?
                    };
                    i += nl + 1;
                    if done {
                        return Ok((i, true));
                    }
                }
            }
        }
        Ok((i, false))
    }

    /// The frames nearly all traffic is made of, when one is whole at the start of `data`,
    /// read in one pass instead of a turn of the state machine per line: a command of bulk
    /// strings (`*N`, then N `$len` strings) on the client side; a simple line (`+`, `-`, `:`)
    /// or a bulk string on the server side. Returns the frame's length. `None` for anything
    /// else (inline commands, nulls, RESP3 types, a frame cut by the end of `data`, anything
    /// malformed): the state machine then reads it from its start, and what it finds is what
    /// this would have found (a proptest compares the two). Words written here before a
    /// `None` are rewritten by the state machine before anyone reads them.
    fn whole(&mut self, data: &[u8]) -> Option<usize> {
        match (self.side, *data.first()?) {
            (Side::Client, b'*') => {
                let (n, mut at) = number(data, 1)?;
                if n == 0 {
                    return None;
                }
                for k in 0..n {
                    if *data.get(at)? != b'$' {
                        return None;
                    }
                    let (len, start) = number(data, at + 1)?;
                    let end = bulk_end(data, start, len)?;
                    if let Some(w) = self.words.get_mut(k as usize) {
                        let keep = (end - start).min(WORD_MAX);
                        w.bytes[..keep].copy_from_slice(&data[start..start + keep]);
                        w.len = end - start;
                    }
                    at = end + 2;
                }
                self.n_args = n;
                self.n_words = (n as usize).min(WORDS);
                self.element = n;
                self.top = b'*';
                Some(at)
            }
            (Side::Server, kind @ (b'+' | b'-' | b':')) => {
                let nl = data.iter().position(|&b| b == b'\n')?;
                self.top = kind;
                Some(nl + 1)
            }
            (Side::Server, b'$') => {
                let (len, start) = number(data, 1)?;
                let end = bulk_end(data, start, len)?;
                self.top = b'$';
                Some(end + 2)
            }
            _ => None,
        }
    }

    fn keep_line(&mut self, part: &[u8]) {
        let room = MAX_LINE - self.line.len();
        if part.len() > room {
            self.overflow = true;
        }
        self.line.extend_from_slice(&part[..part.len().min(room)]);
    }

    /// Handles one whole header line; true when it completes a top-level frame.
    fn header(&mut self, line: &[u8]) -> Result<bool, ProtocolError> {
        let at_top = self.stack.is_empty();
        if at_top {
            self.n_words = 0;
            self.n_args = 0;
            self.element = 0;
        }
        let Some((&kind, rest)) = line.split_first() else {
            if at_top && self.side == Side::Client {
                self.top = 0; // an empty inline line: Redis skips it
                return Ok(true);
            }
            return Err(ProtocolError::BadType(b'\n'));
        };
        if at_top {
            self.top = kind;
            if self.side == Side::Client && kind != b'*' {
                self.top = 0;
                self.inline_words(line);
                return Ok(true);
            }
        }
        let numeric = matches!(kind, b'$' | b'!' | b'=' | b'*' | b'~' | b'>' | b'%' | b'|');
        if numeric && self.overflow {
            return Err(ProtocolError::LineTooLong);
        }
        match kind {
            b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Ok(self.element_done()),
            b'$' | b'!' | b'=' => match length(rest)? {
                None => Ok(self.element_done()),
                Some(n) => {
                    self.start_word();
                    self.state = State::Payload(n);
                    if n == 0 {
                        self.state = State::Cr;
                    }
                    Ok(false)
                }
            },
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let Some(n) = length(rest)? else {
                    return Ok(self.element_done());
                };
                if at_top && self.side == Side::Client {
                    self.n_args = n;
                }
                let pairs = matches!(kind, b'%' | b'|');
                let n = if pairs {
                    n.checked_mul(2).ok_or(ProtocolError::BadLength)?
                } else {
                    n
                };
                if n == 0 && kind == b'|' {
                    return Ok(at_top); // an empty attribute annotates nothing
                }
                if n == 0 {
                    return Ok(self.element_done());
                }
                if self.stack.len() >= MAX_DEPTH {
                    return Err(ProtocolError::TooDeep);
                }
                self.stack.push(Level {
                    left: n,
                    attr: kind == b'|',
                });
                Ok(false)
            }
            other => Err(ProtocolError::BadType(other)),
        }
    }

    /// One element is complete: count it against its parents. True at the end of a top-level frame.
    fn element_done(&mut self) -> bool {
        if self.stack.len() == 1 {
            self.element += 1;
        }
        while let Some(level) = self.stack.last_mut() {
            level.left -= 1;
            if level.left > 0 {
                return false;
            }
            let attr = level.attr;
            self.stack.pop();
            if attr {
                // An attribute annotates the element after it; it is no element itself, except
                // at the top, where the relay sees it as a frame of its own.
                return self.stack.is_empty();
            }
            if self.stack.len() == 1 {
                self.element += 1;
            }
        }
        true
    }

    /// A bulk string starts: keep it if it is one of the first words of a command.
    fn start_word(&mut self) {
        if self.side == Side::Client && self.stack.len() == 1 && (self.element as usize) < WORDS {
            let i = self.element as usize;
            self.words[i].len = 0;
            self.n_words = i + 1;
        }
    }

    fn keep_word_bytes(&mut self, part: &[u8]) {
        if self.side != Side::Client || self.stack.len() != 1 || (self.element as usize) >= WORDS {
            return;
        }
        // Only the first WORD_MAX bytes are kept; the rest is counted, not walked: a 512 MB
        // value as first argument costs one copy of at most WORD_MAX bytes per read.
        let w = &mut self.words[self.element as usize];
        let kept = w.len.min(WORD_MAX);
        let take = part.len().min(WORD_MAX - kept);
        w.bytes[kept..kept + take].copy_from_slice(&part[..take]);
        w.len = w.len.saturating_add(part.len());
    }

    fn inline_words(&mut self, line: &[u8]) {
        let words = line.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty());
        self.n_args = words.clone().count() as u64;
        for (i, word) in words.take(WORDS).enumerate() {
            let w = &mut self.words[i];
            w.len = word.len();
            let n = word.len().min(WORD_MAX);
            w.bytes[..n].copy_from_slice(&word[..n]);
            self.n_words = i + 1;
        }
    }
}

/// The decimal number at `data[at..]` (1 to 19 digits, as [`length`] takes them) ending in
/// CRLF, and where what follows starts.
fn number(data: &[u8], at: usize) -> Option<(u64, usize)> {
    let rest = data.get(at..)?;
    let digits = rest.iter().position(|b| !b.is_ascii_digit())?;
    if rest.get(digits..digits + 2)? != b"\r\n" {
        return None;
    }
    let n = length(&rest[..digits]).ok()??;
    Some((n, at + digits + 2))
}

/// Where a bulk payload of `len` bytes starting at `start` ends, when it and its CRLF are
/// within `data`.
fn bulk_end(data: &[u8], start: usize, len: u64) -> Option<usize> {
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    (data.get(end..end.checked_add(2)?)? == b"\r\n").then_some(end)
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A length or count: `None` for the null `-1`.
fn length(digits: &[u8]) -> Result<Option<u64>, ProtocolError> {
    if digits == b"-1" {
        return Ok(None);
    }
    if digits == b"?" {
        return Err(ProtocolError::Streamed);
    }
    if digits.is_empty() || digits.len() > 19 {
        return Err(ProtocolError::BadLength);
    }
    // At most 19 digits: below 10^19, which a u64 holds. On every frame of both directions,
    // so by hand rather than through `str::parse`.
    digits
        .iter()
        .try_fold(0u64, |n, &d| match d {
            b'0'..=b'9' => Ok(n * 10 + u64::from(d - b'0')),
            _ => Err(ProtocolError::BadLength),
        })
        .map(Some)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Any RESP2/RESP3 frame Redis may send (attributes and streamed types aside).
    pub(crate) fn arb_frame() -> impl Strategy<Value = Vec<u8>> {
        let text = "[a-zA-Z0-9 .:-]{0,20}";
        let leaf = prop_oneof![
            text.prop_map(|t| format!("+{t}\r\n").into_bytes()),
            text.prop_map(|t| format!("-ERR {t}\r\n").into_bytes()),
            any::<i64>().prop_map(|n| format!(":{n}\r\n").into_bytes()),
            Just(b"_\r\n".to_vec()),
            Just(b"$-1\r\n".to_vec()),
            Just(b"*-1\r\n".to_vec()),
            Just(b",1.5\r\n".to_vec()),
            Just(b"#t\r\n".to_vec()),
            Just(b"(3492890328409238509324850943850943825024385\r\n".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| blob(b'$', &b)),
            text.prop_map(|t| blob(b'=', format!("txt:{t}").as_bytes())),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                (
                    prop::sample::select(&[b'*', b'~', b'>'][..]),
                    proptest::collection::vec(inner.clone(), 0..6)
                )
                    .prop_map(|(k, items)| aggregate(k, items.len(), items)),
                proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(|pairs| {
                    let n = pairs.len();
                    aggregate(b'%', n, pairs.into_iter().flat_map(|(k, v)| [k, v]).collect())
                }),
            ]
        })
    }

    pub(crate) fn blob(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend_from_slice(format!("{}\r\n", payload.len()).as_bytes());
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
        out
    }

    pub(crate) fn aggregate(kind: u8, n: usize, items: Vec<Vec<u8>>) -> Vec<u8> {
        let mut out = format!("{}{n}\r\n", kind as char).into_bytes();
        items.iter().for_each(|i| out.extend_from_slice(i));
        out
    }

    proptest! {
        /// However the stream is cut into reads, every frame ends exactly where it ends.
        #[test]
        fn frame_bounds_survive_any_split(frames_in in proptest::collection::vec(arb_frame(), 1..8), step in 1usize..64) {
            let mut data = Vec::new();
            let mut want = Vec::new();
            for f in &frames_in {
                data.extend_from_slice(f);
                want.push(data.len());
            }
            prop_assert_eq!(frames(Side::Server, &data, step).unwrap(), want);
        }

        /// Arbitrary bytes never panic, and what the scanner keeps stays bounded.
        #[test]
        fn garbage_never_panics_and_memory_stays_bounded(data in proptest::collection::vec(any::<u8>(), 0..4096), step in 1usize..512) {
            for side in [Side::Server, Side::Client] {
                let mut s = Scanner::new(side);
                'feed: for chunk in data.chunks(step) {
                    let mut i = 0;
                    while i < chunk.len() {
                        match s.feed(&chunk[i..]) {
                            Ok((used, _)) => i += used,
                            Err(_) => break 'feed,
                        }
                        prop_assert!(s.line.len() <= MAX_LINE && s.stack.len() <= MAX_DEPTH);
                    }
                }
            }
        }
    }

    /// Unusual commands: empty, null, with a non-bulk element, bare LF, cut short (left to
    /// the state machine), and counts with leading zeros (read by both).
    const ODD_COMMANDS: &[&[u8]] = &[
        b"*0\r\n",
        b"*1\r\n$-1\r\n",
        b"*-1\r\n",
        b"*2\r\n:1\r\n$1\r\nx\r\n",
        b"*1\n$1\nx\n",
        b"*01\r\n$03\r\nget\r\n",
        b"*1\r\n$3\r\ngetxx",
    ];

    /// A client stream: commands of bulk strings (some words longer than kept), inline
    /// commands, empty and null arrays, and stray bytes.
    fn arb_client_stream() -> impl Strategy<Value = Vec<u8>> {
        let word = proptest::collection::vec(any::<u8>(), 0..24);
        let part = prop_oneof![
            4 => proptest::collection::vec(word, 1..6).prop_map(|ws| {
                let items = ws.iter().map(|w| blob(b'$', w)).collect();
                aggregate(b'*', ws.len(), items)
            }),
            1 => "[a-zA-Z ]{0,30}".prop_map(|t| format!("{t}\r\n").into_bytes()),
            1 => prop::sample::select(ODD_COMMANDS).prop_map(<[u8]>::to_vec),
            1 => proptest::collection::vec(any::<u8>(), 0..8),
        ];
        proptest::collection::vec(part, 1..8).prop_map(|ps| ps.concat())
    }

    /// Every result of feeding `data` in `step`-byte reads, with what the scanner kept.
    fn trace(side: Side, data: &[u8], step: usize, shortcut: bool) -> Vec<String> {
        let mut s = Scanner::new(side);
        s.no_shortcut = !shortcut;
        let mut out = Vec::new();
        for chunk in data.chunks(step.max(1)) {
            let mut i = 0;
            while i < chunk.len() {
                match s.feed(&chunk[i..]) {
                    Ok((used, done)) => {
                        i += used;
                        let words: Vec<_> = (0..WORDS).map(|k| s.word(k)).collect();
                        out.push(format!("{used} {done} {} {} {} {words:?}", s.top, s.words(), s.args()));
                    }
                    Err(e) => {
                        out.push(format!("{e:?}"));
                        return out;
                    }
                }
            }
        }
        out
    }

    proptest! {
        /// Reading whole frames in one pass finds what the state machine finds, frame for frame.
        #[test]
        fn the_shortcut_agrees_with_the_state_machine(client in arb_client_stream(), server in proptest::collection::vec(arb_frame(), 1..8), step in 1usize..200) {
            prop_assert_eq!(trace(Side::Client, &client, step, true), trace(Side::Client, &client, step, false));
            let server = server.concat();
            prop_assert_eq!(trace(Side::Server, &server, step, true), trace(Side::Server, &server, step, false));
        }
    }

    /// Feeds `data` in pieces of `step` bytes; returns the end offset of every frame.
    pub(crate) fn frames(side: Side, data: &[u8], step: usize) -> Result<Vec<usize>, ProtocolError> {
        let mut s = Scanner::new(side);
        let mut ends = Vec::new();
        let mut pos = 0;
        for chunk in data.chunks(step.max(1)) {
            let mut i = 0;
            while i < chunk.len() {
                let (used, done) = s.feed(&chunk[i..])?;
                i += used;
                if done {
                    ends.push(pos + i);
                }
            }
            pos += chunk.len();
        }
        Ok(ends)
    }

    #[test]
    fn finds_frame_ends_whatever_the_split() {
        let data = b"+OK\r\n$5\r\nhello\r\n*2\r\n:1\r\n*1\r\n$-1\r\n%1\r\n+a\r\n,1.5\r\n|1\r\n+k\r\n+v\r\n>2\r\n+m\r\n_\r\n*0\r\n";
        let want = vec![5, 16, 33, 47, 59, 70, 74];
        for step in 1..data.len() {
            assert_eq!(frames(Side::Server, data, step).unwrap(), want, "step {step}");
        }
    }

    #[test]
    fn keeps_command_words_from_arrays_and_inline() {
        let mut s = Scanner::new(Side::Client);
        let cmd = b"*3\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n$30\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n";
        assert_eq!(s.feed(cmd).unwrap(), (cmd.len(), true));
        assert_eq!(s.word(0), Some(&b"CLUSTER"[..]));
        assert_eq!(s.word(1), Some(&b"SLOTS"[..]));
        assert_eq!(s.word(2), None, "too long to keep");
        assert_eq!(s.args(), 3);
        assert_eq!(s.feed(b"client  reply off\r\n").unwrap(), (19, true));
        assert_eq!(s.frame_type(), 0);
        assert_eq!(s.word(2), Some(&b"off"[..]));
        assert_eq!(s.args(), 3);
        assert_eq!(s.feed(b"client reply off x y\r\n").unwrap(), (22, true));
        assert_eq!((s.words(), s.args()), (3, 5));
        let cmd = b"*4\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$2\r\nON\r\n$1\r\nx\r\n";
        assert_eq!(s.feed(cmd).unwrap(), (cmd.len(), true));
        assert_eq!((s.words(), s.args()), (3, 4));
        assert_eq!(s.feed(b"\r\n").unwrap(), (2, true));
        assert_eq!(s.word(0), None);
        assert_eq!(s.args(), 0);
    }

    #[test]
    fn a_huge_first_argument_is_counted_not_walked() {
        // 4 GiB of `SET k <value>` in 1 MiB reads: each read of the value is one turn of the
        // state machine (counted, not walked byte by byte).
        let chunk = vec![b'v'; 1 << 20];
        let mut s = Scanner::new(Side::Client);
        let header = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", 4u64 << 30);
        assert_eq!(s.feed(header.as_bytes()).unwrap(), (header.len(), false));
        let before = s.steps;
        for _ in 0..4096 {
            assert_eq!(s.feed(&chunk).unwrap(), (chunk.len(), false));
        }
        assert_eq!(s.steps - before, 4096);
        assert_eq!(s.feed(b"\r\n").unwrap(), (2, true));
        assert_eq!(s.word(1), Some(&b"k"[..]));
        assert_eq!(s.word(2), None, "too long to keep");
        let mut s = Scanner::new(Side::Client);
        for part in [&b"*2\r\n$4\r\nec"[..], b"ho\r\n$20\r\n0123456789", b"abcdefghij\r\n"] {
            s.feed(part).unwrap();
        }
        assert_eq!(s.word(0), Some(&b"echo"[..]), "a word split across reads");
        assert_eq!(
            s.words[1].bytes, *b"0123456789abcdef",
            "the first WORD_MAX bytes are kept"
        );
    }

    #[test]
    fn huge_lengths_cost_nothing_and_garbage_is_an_error() {
        let mut s = Scanner::new(Side::Server);
        assert_eq!(s.feed(b"$536870912\r\n").unwrap(), (12, false));
        assert_eq!(s.feed(&[b'x'; 4096]).unwrap(), (4096, false));
        assert!(s.line.capacity() < 64);
        for bad in [&b"?x\r\n"[..], b"$abc\r\n", b"*-2\r\n", b"$1\r\nxyz", b"$?\r\n"] {
            assert!(Scanner::new(Side::Server).feed(bad).is_err(), "{bad:?}");
        }
        let deep = b"*1\r\n".repeat(MAX_DEPTH + 1);
        assert_eq!(Scanner::new(Side::Server).feed(&deep), Err(ProtocolError::TooDeep));
        // Issue 11 defect 4: 65 levels (a script's nested tables) are a valid reply.
        let mut nested = b"*1\r\n".repeat(65);
        nested.extend_from_slice(b":1\r\n");
        assert_eq!(Scanner::new(Side::Server).feed(&nested), Ok((nested.len(), true)));
        let long = vec![b'1'; MAX_LINE + 10];
        let mut s = Scanner::new(Side::Server);
        s.feed(b"$").unwrap();
        s.feed(&long).unwrap();
        assert_eq!(s.feed(b"\r\n"), Err(ProtocolError::LineTooLong));
    }
}
