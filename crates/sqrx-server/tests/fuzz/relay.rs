//! The HTTP relay's request head parser (`proxy::relay::parse`) and body framing
//! (`proxy::framing::Framing`): any bytes give a decision, never a panic or a hang, and the
//! body's end does not depend on how the bytes were split into reads.

use std::net::{IpAddr, SocketAddr};

use proptest::prelude::*;
use sqrx_server::hosts::AllowedHosts;
use sqrx_server::proxy::framing::{Chunks, Framing};
use sqrx_server::proxy::relay::{Parsed, parse};
use sqrx_testkit::fuzz;

const CLIENT: ([u8; 4], u16) = ([10, 1, 2, 3], 5555);
const LOCAL: [u8; 4] = [127, 0, 0, 1];

fn parse_head(buf: &[u8], token: Option<&str>) -> Parsed {
    parse(
        buf,
        token,
        false,
        &AllowedHosts::default(),
        SocketAddr::from(CLIENT),
        IpAddr::from(LOCAL),
    )
}

fn relayed(p: &Parsed) -> bool {
    matches!(p, Parsed::Relay(_))
}

/// Heads built from the pieces the parser looks at, in any order and spelling.
fn head() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![
        Just("GET"),
        Just("POST"),
        Just("CONNECT"),
        Just("PUT"),
        Just("G\u{e9}T"),
        Just("")
    ];
    let target = prop_oneof![
        Just("/proxy/web/8080/".to_string()),
        Just("/proxy/web/8080".to_string()),
        Just("/proxy/a/65536/x".to_string()),
        Just("/proxy//1/".to_string()),
        Just("/proxy/web/80/a/../b?x=1&y".to_string()),
        Just("/v1/health".to_string()),
        "/proxy/[a-z]{1,4}/[0-9]{1,6}/[ -~]{0,16}",
    ];
    let version = prop_oneof![Just("HTTP/1.1"), Just("HTTP/1.0"), Just("HTTP/2"), Just("")];
    let name = prop_oneof![
        Just("Content-Length".to_string()),
        Just("content-length".to_string()),
        Just("Transfer-Encoding".to_string()),
        Just("Connection".to_string()),
        Just("Host".to_string()),
        Just("Upgrade".to_string()),
        Just("Expect".to_string()),
        Just("Authorization".to_string()),
        Just("X-Forwarded-For".to_string()),
        Just("Keep-Alive".to_string()),
        Just("TE".to_string()),
        "[A-Za-z-]{1,12}",
    ];
    let value = prop_oneof![
        Just("chunked".to_string()),
        Just(" chunked ".to_string()),
        Just("gzip, chunked".to_string()),
        Just("close, Content-Length, Host".to_string()),
        Just("Bearer tok".to_string()),
        Just("18446744073709551616".to_string()),
        Just("-1".to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        "[ -~]{0,24}",
        prop::collection::vec(any::<u8>(), 0..16)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ];
    let eol = prop_oneof![Just("\r\n"), Just("\n"), Just("\r")];
    (
        method,
        target,
        version,
        prop::collection::vec((name, value, eol.clone()), 0..10),
        eol,
        prop::collection::vec(any::<u8>(), 0..32),
    )
        .prop_map(|(m, t, v, headers, end, body)| {
            let mut out = format!("{m} {t} {v}\r\n").into_bytes();
            for (n, value, eol) in headers {
                out.extend_from_slice(format!("{n}: {value}{eol}").as_bytes());
            }
            out.extend_from_slice(end.as_bytes());
            out.extend_from_slice(&body);
            out
        })
}

/// Chunked bodies: well-formed chunks and trailers with damage mixed in.
fn chunked_body() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        (1usize..40).prop_map(|n| {
            let mut c = format!("{n:x}\r\n").into_bytes();
            c.extend(std::iter::repeat_n(b'z', n));
            c.extend_from_slice(b"\r\n");
            c
        }),
        Just(b"0\r\n\r\n".to_vec()),
        Just(b"0\r\nX-Trailer: 1\r\n\r\n".to_vec()),
        Just(b"5;ext=1\r\nhello\r\n".to_vec()),
        Just(b"ffffffffffffffff\r\n".to_vec()),
        Just(b"10000000000000000\r\n".to_vec()),
        Just(b"\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..8),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|p| p.concat())
}

/// Feed `bytes` to `framing` in pieces cut at `cuts`; what was taken and whether the body
/// ended, or the error.
fn feed(mut framing: Framing, bytes: &[u8], cuts: &[usize]) -> Result<(usize, bool), String> {
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    bounds.push(bytes.len());
    bounds.sort_unstable();
    let (mut at, mut taken) = (0, 0);
    for end in bounds {
        if framing.done() {
            break;
        }
        let piece = &bytes[at..end];
        let n = framing.take(piece).map_err(|e| e.to_string())?;
        assert!(n <= piece.len(), "took {n} of {} bytes", piece.len());
        taken += n;
        if n < piece.len() {
            // The body ended inside this piece: the rest is the next message.
            assert!(framing.done(), "stopped early without ending the body");
            break;
        }
        at = end;
    }
    Ok((taken, framing.done()))
}

proptest! {
    #![proptest_config(fuzz::config(20_000))]

    /// Arbitrary bytes: a decision, and the same decision with more bytes after a whole head.
    #[test]
    fn random_heads(bytes in prop::collection::vec(any::<u8>(), 0..600), token in any::<bool>()) {
        fuzz::limit_memory();
        fuzz::watch("relay random head", || {
            let token = token.then_some("tok");
            let _ = parse_head(&bytes, token);
        });
    }

    /// Structured heads: what the relay takes stays taken when more bytes follow, and a head
    /// it takes is not cut short (every strict prefix of its first line is partial).
    #[test]
    fn structured_heads(h in head(), more in prop::collection::vec(any::<u8>(), 0..64)) {
        fuzz::limit_memory();
        let first = fuzz::watch("relay structured head", || parse_head(&h, None));
        if relayed(&first) {
            let mut longer = h.clone();
            longer.extend_from_slice(&more);
            prop_assert!(relayed(&parse_head(&longer, None)));
            let line_end = h.iter().position(|&b| b == b'\n').unwrap_or(h.len());
            for cut in 0..line_end {
                prop_assert!(matches!(parse_head(&h[..cut], None), Parsed::Partial), "prefix of {cut} bytes");
            }
        }
    }

    /// Chunked bodies end at the same byte, or fail, however the reads split them.
    #[test]
    fn chunked_framing_does_not_depend_on_reads(
        body in chunked_body(),
        cuts in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        fuzz::limit_memory();
        let whole = fuzz::watch("chunked framing", || feed(Framing::Chunked(Chunks::default()), &body, &[]));
        let split = feed(Framing::Chunked(Chunks::default()), &body, &cuts);
        match (&whole, &split) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "whole {:?}, split {:?}", whole, split),
        }
        if let Ok((taken, true)) = whole {
            // Once ended, the framing takes nothing more.
            let mut f = Framing::Chunked(Chunks::default());
            prop_assert_eq!(f.take(&body[..taken]).ok(), Some(taken));
            prop_assert_eq!(f.take(b"GET / HTTP/1.1\r\n\r\n").ok(), Some(0));
        }
    }

    /// Random bytes through every framing, in random reads.
    #[test]
    fn random_framing(
        body in prop::collection::vec(any::<u8>(), 0..512),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        length in any::<u64>(),
    ) {
        fuzz::limit_memory();
        for framing in [Framing::Empty, Framing::Length(length), Framing::UntilClose, Framing::Chunked(Chunks::default())] {
            let _ = fuzz::watch("framing random bytes", || feed(framing, &body, &cuts));
        }
        if let Ok((taken, _)) = feed(Framing::Length(length), &body, &cuts) {
            prop_assert_eq!(taken as u64, length.min(body.len() as u64));
        }
    }
}
