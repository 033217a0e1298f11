//! Where an HTTP/1.1 message body ends (RFC 9112 §6), for relaying it byte for byte: a
//! length, the chunked transfer coding (scanned for its end, never decoded: the bytes pass
//! as they came), or the end of the connection.

/// How much of a body is left to relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// No body (or what is left of one: none).
    Empty,
    /// This many bytes.
    Length(u64),
    /// Chunked transfer coding, scanned as it passes.
    Chunked(Chunks),
    /// Everything until the sender closes the connection (a response without a length).
    UntilClose,
}

/// A chunked body that breaks the coding's grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunked body: {0}")]
pub struct BadChunk(&'static str);

impl Framing {
    /// Is the body over?
    pub fn done(&self) -> bool {
        match self {
            Framing::Empty | Framing::Length(0) => true,
            Framing::Chunked(c) => c.state == State::Done,
            Framing::Length(_) | Framing::UntilClose => false,
        }
    }

    /// Of `bytes`, the next bytes of the connection, how many belong to the body (the body
    /// ended there if [`done`](Self::done) now says so).
    pub fn take(&mut self, bytes: &[u8]) -> Result<usize, BadChunk> {
        match self {
            Framing::Empty => Ok(0),
            Framing::Length(left) => {
                let n = bytes
                    .len()
                    .min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= n as u64;
                Ok(n)
            }
            Framing::Chunked(c) => c.scan(bytes),
            Framing::UntilClose => Ok(bytes.len()),
        }
    }
}

/// Where a chunked body's scan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In a chunk-size line's hex digits (how many so far, and their value).
    Size {
        digits: u8,
        value: u64,
    },
    /// In a chunk extension (`;name=value`) of a chunk this long, until the line's CR.
    Extension(u64),
    /// After a size line's CR.
    SizeLf {
        last: bool,
        size: u64,
    },
    /// In chunk data: this many bytes left.
    Data(u64),
    /// After chunk data: its CR, then its LF.
    DataCr,
    DataLf,
    /// In a trailer line (after the last chunk), this long so far.
    Trailer(usize),
    /// After a trailer line's CR; `empty` if the line was the terminating empty line.
    TrailerLf {
        empty: bool,
    },
    /// The body ended.
    Done,
}

/// Scanner of a chunked body: finds its end, and refuses what the grammar does not allow
/// (bare LFs, sizes past 2^64, junk), so a body cannot smuggle a second message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunks {
    state: State,
}

impl Default for Chunks {
    fn default() -> Self {
        Chunks {
            state: State::Size {
                digits: 0,
                value: 0,
            },
        }
    }
}

/// Longest chunk-size hex run: 16 digits hold any u64.
const MAX_SIZE_DIGITS: u8 = 16;
/// Longest trailer line taken.
const MAX_TRAILER_LINE: usize = 8 * 1024;

impl Chunks {
    /// Scan `bytes`; the count of them that belong to the body.
    fn scan(&mut self, bytes: &[u8]) -> Result<usize, BadChunk> {
        let mut i = 0;
        while i < bytes.len() {
            if self.state == State::Done {
                break;
            }
            if let State::Data(left) = self.state {
                let n = (bytes.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                i += n;
                let left = left - n as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data(left)
                };
                continue;
            }
            self.state = step(self.state, bytes[i])?;
            i += 1;
        }
        Ok(i)
    }
}

/// The scan's next state after byte `b` (any state but `Data` and `Done`).
fn step(state: State, b: u8) -> Result<State, BadChunk> {
    Ok(match state {
        State::Size { digits, value } => match b {
            b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                if digits == MAX_SIZE_DIGITS {
                    return Err(BadChunk("chunk size too large"));
                }
                let d = (b as char).to_digit(16).unwrap_or(0);
                State::Size {
                    digits: digits + 1,
                    value: value << 4 | u64::from(d),
                }
            }
            _ if digits == 0 => return Err(BadChunk("no chunk size")),
            b';' | b' ' | b'\t' => State::Extension(value),
            b'\r' => State::SizeLf {
                last: value == 0,
                size: value,
            },
            _ => return Err(BadChunk("invalid chunk size")),
        },
        State::Extension(size) => match b {
            b'\r' => State::SizeLf {
                last: size == 0,
                size,
            },
            b'\n' => return Err(BadChunk("bare LF in a chunk extension")),
            _ => State::Extension(size),
        },
        State::SizeLf { last, size } => match (b, last) {
            (b'\n', true) => State::Trailer(0),
            (b'\n', false) => State::Data(size),
            _ => return Err(BadChunk("CR without LF after a chunk size")),
        },
        State::DataCr => match b {
            b'\r' => State::DataLf,
            _ => return Err(BadChunk("chunk data longer than its size")),
        },
        State::DataLf => match b {
            b'\n' => State::Size {
                digits: 0,
                value: 0,
            },
            _ => return Err(BadChunk("CR without LF after chunk data")),
        },
        State::Trailer(len) => match b {
            b'\r' => State::TrailerLf { empty: len == 0 },
            b'\n' => return Err(BadChunk("bare LF in a trailer")),
            _ if len >= MAX_TRAILER_LINE => return Err(BadChunk("trailer line too long")),
            _ => State::Trailer(len + 1),
        },
        State::TrailerLf { empty } => match (b, empty) {
            (b'\n', true) => State::Done,
            (b'\n', false) => State::Trailer(0),
            _ => return Err(BadChunk("CR without LF in a trailer")),
        },
        State::Data(_) | State::Done => state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `body` in pieces of `piece` bytes; the count taken and whether it ended.
    fn feed(mut f: Framing, body: &[u8], piece: usize) -> Result<(usize, bool), BadChunk> {
        let mut taken = 0;
        for part in body.chunks(piece) {
            let n = f.take(part)?;
            taken += n;
            if n < part.len() {
                break;
            }
        }
        Ok((taken, f.done()))
    }

    fn chunked() -> Framing {
        Framing::Chunked(Chunks::default())
    }

    #[test]
    fn lengths_stop_at_their_end() {
        let mut f = Framing::Length(5);
        assert_eq!(f.take(b"abc"), Ok(3));
        assert!(!f.done());
        assert_eq!(f.take(b"defGET /"), Ok(2));
        assert!(f.done());
        assert_eq!(f.take(b"x"), Ok(0));
        assert!(Framing::Empty.done() && Framing::Length(0).done());
        let mut close = Framing::UntilClose;
        assert_eq!(close.take(b"anything"), Ok(8));
        assert!(!close.done());
    }

    #[test]
    fn chunked_bodies_end_after_the_last_chunk_and_trailers() {
        let body: &[u8] = b"5\r\nhello\r\nA;ext=1\r\n0123456789\r\n0\r\nX-Sum: 1\r\n\r\n";
        for piece in [1, 2, 3, 7, body.len()] {
            assert_eq!(
                feed(chunked(), body, piece),
                Ok((body.len(), true)),
                "piece {piece}"
            );
        }
        // Whatever follows (a pipelined request) is not the body's.
        let mut next = body.to_vec();
        next.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(feed(chunked(), &next, next.len()), Ok((body.len(), true)));
        let bare: &[u8] = b"0\r\n\r\n";
        assert_eq!(feed(chunked(), bare, 1), Ok((5, true)));
        let big: &[u8] = b"ffffffffffffffff\r\n";
        assert_eq!(feed(chunked(), big, 4), Ok((big.len(), false)));
        let unfinished: &[u8] = b"3\r\nab";
        assert_eq!(feed(chunked(), unfinished, 1), Ok((5, false)));
    }

    #[test]
    fn malformed_chunks_are_refused() {
        for bad in [
            &b"\r\n"[..],
            b"g\r\n",
            b"10000000000000000\r\n",
            b"5\nhello\r\n",
            b"5\r\nhello!\r\n",
            b"5\r\nhello\n",
            b"5;x\n",
            b"0\r\nX: 1\n",
            b"0\r\n\rx",
        ] {
            assert!(
                feed(chunked(), bad, 1).is_err(),
                "{:?} taken",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
