//! Early answers (413, 415, 401) reach a client that writes its whole
//! request before reading, as Python's `urllib` and `requests` and the
//! OpenTelemetry exporters do: the server reads and discards the rest of the
//! body before closing (lingering close), within its bounds; a connection cut
//! off for slow headers is not lingered on.

use std::time::{Duration, Instant};

use eventline_shared::testkit::http::{head, request_whole_body_first};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::helpers::*;

/// 4 MiB: 64 times `--max-body-bytes 65536`, 4 times the default limit.
const BIG: usize = 4 << 20;

fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 1000);
    for chunk in body.chunks(64 * 1024) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[tokio::test]
async fn linger_an_early_413_or_415_reaches_a_client_that_sends_the_whole_body_first() {
    let gw = open_gateway(&["--max-body-bytes", "65536"]).await;
    let body = vec![b'x'; BIG];
    let json = [("Content-Type", "application/json")];

    // Content-Length over the limit: answered before a byte of the body is read.
    let res = request_whole_body_first(gw.addr, &head("POST", "/v1/events", &json, BIG), &body)
        .await
        .expect("a 413, not a reset or a broken pipe");
    assert_eq!(res.status, 413);
    assert_eq!(res.error_code(), "payload_too_large");

    // Chunked: answered once the limit is read, the rest still coming.
    let chunked_head = "POST /v1/events/batch HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
                Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    let res = request_whole_body_first(gw.addr, chunked_head, &chunked(&body))
        .await
        .expect("a 413, not a reset or a broken pipe");
    assert_eq!(res.status, 413);
    assert_eq!(res.error_code(), "payload_too_large");

    // A type the endpoint does not take.
    let text = [("Content-Type", "text/plain")];
    let res = request_whole_body_first(gw.addr, &head("POST", "/v1/events", &text, BIG), &body)
        .await
        .expect("a 415, not a reset or a broken pipe");
    assert_eq!(res.status, 415);
    assert_eq!(res.error_code(), "unsupported_media_type");
}

#[tokio::test]
async fn linger_an_early_401_reaches_a_client_that_sends_the_whole_body_first() {
    let (gw, _db) = secured_gateway(&[]).await;
    // Four times the default MAX_BODY_BYTES, without a key.
    let body = vec![b'x'; BIG];
    let json = [("Content-Type", "application/json")];
    let res = request_whole_body_first(
        gw.addr,
        &head("POST", "/v1/events/batch", &json, BIG),
        &body,
    )
    .await
    .expect("a 401, not a reset or a broken pipe");
    assert_eq!(res.status, 401);
    assert_eq!(res.error_code(), "missing_api_key");
}

/// Writes `chunk` every `pause` without ever reading, until the server
/// closes; the bytes written and the time it took.
async fn send_until_cut_off(
    addr: std::net::SocketAddr,
    chunk: usize,
    pause: Duration,
) -> (usize, Duration) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let json = [("Content-Type", "application/json")];
    stream
        .write_all(head("POST", "/v1/events", &json, 1 << 40).as_bytes())
        .await
        .expect("write head");
    let started = Instant::now();
    let data = vec![b'x'; chunk];
    let mut sent = 0;
    let written = tokio::time::timeout(Duration::from_secs(20), async {
        while stream.write_all(&data).await.is_ok() {
            sent += chunk;
            tokio::time::sleep(pause).await;
        }
    })
    .await;
    assert!(written.is_ok(), "still lingering after 20 s");
    (sent, started.elapsed())
}

#[tokio::test]
async fn linger_stops_at_its_byte_and_time_bounds() {
    let gw = open_gateway(&["--max-body-bytes", "65536"]).await;
    let (fast, slow) = tokio::join!(
        // As fast as loopback goes: the byte bound (64 MiB) ends it.
        send_until_cut_off(gw.addr, 1 << 20, Duration::ZERO),
        // 640 KiB/s: the time bound (5 s) ends it.
        send_until_cut_off(gw.addr, 64 << 10, Duration::from_millis(100)),
    );
    // The bound, plus what the two sockets' buffers hold.
    assert!(fast.0 < 96 << 20, "{} bytes taken", fast.0);
    assert!(slow.0 < 64 << 20, "{} bytes taken", slow.0);
    assert!(
        slow.1 >= Duration::from_secs(4) && slow.1 < Duration::from_secs(10),
        "cut off after {:?}",
        slow.1
    );

    // The gateway serves on.
    assert_eq!(get_live(gw.addr).await, 200);
}

async fn get_live(addr: std::net::SocketAddr) -> u16 {
    request(addr, "GET", "/health/live", &[], b"").await.status
}

/// Slowloris: the header-read timeout closes the connection, and it is not
/// lingered on (that would hold its slot for seconds): with one connection
/// allowed, the next client is served while the slow one still holds its
/// socket open.
#[tokio::test]
async fn slow_headers_are_cut_off_without_lingering() {
    let gw = open_gateway(&["--header-read-timeout", "300", "--max-connections", "1"]).await;
    let (slow, answer, waited) = unfinished_headers(gw.addr).await;
    assert!(waited < Duration::from_secs(2));
    if let Some(res) = answer {
        assert_eq!(res.status, 408);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(get_live(gw.addr).await, 200);
    drop(slow);
}
