//! WebSocket echo load for `benches/proxy`: CONNS connections each send a SIZE-byte binary
//! message and wait for its echo, over and over, for SECS seconds. Prints one line:
//! `RESULT conns=.. msgs=.. msgs_per_s=.. p50_us=.. p99_us=..` (round trips).
//!
//! `ws-bench URL CONNS SECS SIZE [AUTH_TOKEN]`

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn one(
    url: String,
    token: Option<String>,
    until: Instant,
    size: usize,
) -> Result<Vec<u32>, String> {
    let mut req = url.into_client_request().map_err(|e| e.to_string())?;
    if let Some(t) = token {
        let v = format!("Bearer {t}").parse().map_err(|e| format!("{e}"))?;
        req.headers_mut().insert("authorization", v);
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .map_err(|e| e.to_string())?;
    let payload = bytes::Bytes::from(vec![7u8; size]);
    let mut lat = Vec::new();
    while Instant::now() < until {
        let t = Instant::now();
        ws.send(Message::Binary(payload.clone()))
            .await
            .map_err(|e| e.to_string())?;
        match ws.next().await {
            Some(Ok(Message::Binary(b))) if b.len() == size => {}
            other => return Err(format!("unexpected {other:?}")),
        }
        lat.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    let _ = ws.close(None).await;
    Ok(lat)
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        return Err("usage: ws-bench URL CONNS SECS SIZE [AUTH_TOKEN]".into());
    }
    let url = args[1].clone();
    let conns: usize = args[2].parse().map_err(|e| format!("CONNS: {e}"))?;
    let secs: u64 = args[3].parse().map_err(|e| format!("SECS: {e}"))?;
    let size: usize = args[4].parse().map_err(|e| format!("SIZE: {e}"))?;
    let token = args.get(5).cloned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut lat: Vec<u32> = rt.block_on(async {
        let until = Instant::now() + Duration::from_secs(secs);
        let tasks: Vec<_> = (0..conns)
            .map(|_| tokio::spawn(one(url.clone(), token.clone(), until, size)))
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.map_err(|e| e.to_string())??);
        }
        Ok::<_, String>(all)
    })?;
    lat.sort_unstable();
    let p = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "RESULT conns={conns} size={size} msgs={} msgs_per_s={:.0} p50_us={} p99_us={}",
        lat.len(),
        lat.len() as f64 / secs as f64,
        p(0.50),
        p(0.99)
    );
    Ok(())
}
