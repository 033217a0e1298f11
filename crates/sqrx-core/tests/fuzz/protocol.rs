//! The init protocol decoder (`read_frame`, `finish_frame`, the async `read_frame`, and the
//! JSON of `Request`, `Failure` and `Startup`): arbitrary bytes give frames or an error,
//! never a panic, and no frame is larger than `MAX_FRAME`.

use proptest::prelude::*;
use sqrx_core::protocol::{self, ExecSpec, Failure, Kind, MAX_FRAME, Request, Startup};
use sqrx_testkit::fuzz;

/// Read frames from `bytes` until the end or an error; each frame is decoded as the JSON its
/// kind carries (an error is fine, a panic is not). The frames read.
fn read_all(bytes: &[u8]) -> Vec<(Kind, Vec<u8>)> {
    let mut r = bytes;
    let mut frames = Vec::new();
    while let Ok(Some((kind, payload))) = protocol::read_frame(&mut r) {
        assert!(payload.len() <= MAX_FRAME as usize);
        decode_json(kind, &payload);
        frames.push((kind, payload));
    }
    frames
}

fn decode_json(kind: Kind, payload: &[u8]) {
    match kind {
        Kind::Request => drop(serde_json::from_slice::<Request>(payload)),
        Kind::Error => drop(serde_json::from_slice::<Failure>(payload)),
        Kind::Started => drop(serde_json::from_slice::<protocol::Started>(payload)),
        Kind::Exit => drop(serde_json::from_slice::<protocol::Exit>(payload)),
        Kind::Resize => drop(serde_json::from_slice::<protocol::PtySize>(payload)),
        _ => {}
    }
}

/// A stream of valid frames to mutate.
fn sample_stream() -> Vec<u8> {
    let mut out = Vec::new();
    let spec = ExecSpec {
        argv: vec!["sh".into(), "-c".into(), "echo hi".into()],
        env: vec![("PATH".into(), "/bin".into())],
        cwd: "/".into(),
        timeout_ms: Some(1000),
        output_cap: 1 << 20,
        stdin: true,
        pty: Some(protocol::PtySize { cols: 80, rows: 24 }),
        user: Some("user".into()),
    };
    protocol::write_json(&mut out, Kind::Request, &Request::Exec(spec)).expect("write");
    protocol::write_frame(&mut out, Kind::Stdin, b"input\n").expect("write");
    protocol::write_frame(&mut out, Kind::StdinEof, b"").expect("write");
    protocol::write_json(
        &mut out,
        Kind::Exit,
        &protocol::Exit {
            code: Some(0),
            ..protocol::Exit::default()
        },
    )
    .expect("write");
    out
}

/// JSON texts shaped like requests, with values of every JSON type in their fields.
fn request_json() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        Just("null".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        any::<bool>().prop_map(|b| b.to_string()),
        ".{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
        Just("[]".to_string()),
        Just(r#"[["A","b"]]"#.to_string()),
        Just(r#"{"cols":1,"rows":65536}"#.to_string()),
    ];
    let op = prop_oneof![
        Just("ping"),
        Just("exec"),
        Just("spawn"),
        Just("wait"),
        Just("signal"),
        Just("connect"),
        Just("nope"),
    ];
    let field = prop_oneof![
        Just("argv"),
        Just("env"),
        Just("cwd"),
        Just("timeout_ms"),
        Just("output_cap"),
        Just("stdin"),
        Just("pty"),
        Just("pid"),
        Just("signal"),
        Just("group"),
        Just("port"),
    ];
    (op, prop::collection::vec((field, value), 0..8)).prop_map(|(op, fields)| {
        let mut s = format!(r#"{{"op":"{op}""#);
        for (f, v) in fields {
            s.push_str(&format!(r#","{f}":{v}"#));
        }
        s.push('}');
        s
    })
}

proptest! {
    #![proptest_config(fuzz::config(20_000))]

    /// Arbitrary bytes, alone and behind a valid head.
    #[test]
    fn random_bytes(body in prop::collection::vec(any::<u8>(), 0..512), kind in 0u8..12) {
        fuzz::limit_memory();
        fuzz::watch("protocol random bytes", || {
            read_all(&body);
            let mut framed = vec![kind];
            framed.extend_from_slice(&u32::try_from(body.len()).unwrap_or(0).to_be_bytes());
            framed.extend_from_slice(&body);
            read_all(&framed);
            let split = body.len() / 2;
            let _ = protocol::finish_frame(&framed[..split.min(framed.len())], &mut &framed[split.min(framed.len())..]);
        });
    }

    /// Edits of a stream of valid frames; the async reader agrees with the blocking one.
    #[test]
    fn edited_streams(edits in fuzz::edits()) {
        fuzz::limit_memory();
        let mut bytes = sample_stream();
        fuzz::apply(&mut bytes, &edits);
        let blocking = fuzz::watch("protocol edited stream", || read_all(&bytes));
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let mut r = &bytes[..];
        let mut async_frames = Vec::new();
        rt.block_on(async {
            while let Ok(Some(frame)) = protocol::tokio_io::read_frame(&mut r).await {
                async_frames.push(frame);
            }
        });
        prop_assert_eq!(blocking, async_frames);
    }

    /// Request-shaped JSON with fields of any type: decoded or refused, and what decodes
    /// encodes back to an equal request.
    #[test]
    fn request_json_decodes_or_is_refused(json in request_json()) {
        if let Ok(req) = serde_json::from_str::<Request>(&json) {
            let again = serde_json::to_vec(&req).expect("encode");
            prop_assert_eq!(serde_json::from_slice::<Request>(&again).expect("decode"), req);
        }
        let _ = Startup::parse(&json);
        let _ = serde_json::from_str::<Failure>(&json);
    }
}
