//! A minimal HTTP/1.1 client for tests: one request per connection
//! (`Connection: close`), the raw bytes on the wire under the test's control
//! (a header a real client would fix up, a body sent slowly, a source
//! address), and the whole response read back; or, with [`Streaming`], read
//! as it arrives (Server-Sent Events).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for a whole response.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`request_whole_body_first`] may take to write its request.
const WRITE_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Response {
    pub status: u16,
    /// Names in lower case.
    pub headers: HashMap<String, String>,
    /// De-chunked when sent chunked.
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}), status {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// `error.code` of a JSON error body.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// `error.field` of a JSON error body.
    pub fn error_field(&self) -> String {
        self.json()["error"]["field"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// The request line and headers, `Connection: close` and `Content-Length`
/// included.
pub fn head(method: &str, path: &str, headers: &[(&str, &str)], body_len: usize) -> String {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {body_len}\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// Sends one request on a fresh connection and reads the whole response.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    request_from(None, addr, method, path, headers, body).await
}

/// `GET path`.
pub async fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, &[], b"").await
}

/// `GET path`: the status and the body as text.
pub async fn get_text(addr: SocketAddr, path: &str) -> (u16, String) {
    let res = get(addr, path).await;
    (res.status, res.text())
}

/// [`request`] from a given local address (any of 127.0.0.0/8 works on
/// loopback), to look like another client to per-address limits.
pub async fn request_from(
    source: Option<IpAddr>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = match source {
        Some(ip) => {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .bind(SocketAddr::new(ip, 0))
                .expect("bind the source");
            socket.connect(addr).await.expect("connect")
        }
        None => TcpStream::connect(addr).await.expect("connect"),
    };
    stream
        .write_all(head(method, path, headers, body.len()).as_bytes())
        .await
        .expect("write head");
    stream.write_all(body).await.expect("write body");
    read_response(&mut stream).await.expect("a response")
}

/// Sends `head` and `body` the way Python's `urllib` and `requests` and the
/// OpenTelemetry exporters do: every byte written before a byte of the
/// response is read. A server that answers early and then closes while the
/// body is still coming makes this an error (broken pipe, connection reset)
/// instead of its answer; one that stops reading without closing makes the
/// write time out instead of hanging the test.
pub async fn request_whole_body_first(
    addr: SocketAddr,
    head: &str,
    body: &[u8],
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(addr).await?;
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        stream.flush().await
    };
    tokio::time::timeout(WRITE_TIMEOUT, write)
        .await
        .map_err(|_| std::io::Error::other("the server stopped reading the request"))??;
    let mut raw = Vec::new();
    tokio::time::timeout(READ_TIMEOUT, stream.read_to_end(&mut raw))
        .await
        .map_err(|_| std::io::Error::other("the response did not end"))??;
    parse_response(&raw).ok_or_else(|| std::io::Error::other("no complete response"))
}

/// An open `GET` whose response is read as it arrives (Server-Sent Events:
/// the query-api's `GET /v1/tail`). The raw bytes, head included, pile up
/// in `received`.
pub struct Streaming {
    pub stream: TcpStream,
    pub received: String,
}

impl Streaming {
    /// Sends `GET path` with `Accept: text/event-stream` and `headers`.
    pub async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Self {
        let mut all = vec![("Accept", "text/event-stream")];
        all.extend_from_slice(headers);
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(head("GET", path, &all, 0).as_bytes())
            .await
            .expect("write the request");
        Streaming {
            stream,
            received: String::new(),
        }
    }

    /// Reads until `needle` has arrived (true) or `timeout` passes or the
    /// server closes (false).
    pub async fn wait_for(&mut self, needle: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut buf = [0u8; 8192];
        while !self.received.contains(needle) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => self.received.push_str(&String::from_utf8_lossy(&buf[..n])),
                _ => return false,
            }
        }
        true
    }
}

/// Reads a response until the server closes the connection; `None` when it
/// closed without sending anything (or sent no complete head).
pub async fn read_response(stream: &mut TcpStream) -> Option<Response> {
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(READ_TIMEOUT, stream.read_to_end(&mut raw)).await;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body);
    }
    Some(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&data[..eol])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let plain = parse_response(b"HTTP/1.1 202 Accepted\r\nX-Id: a\r\n\r\n{}").unwrap();
        assert_eq!(plain.status, 202);
        assert_eq!(plain.header("x-id"), Some("a"));
        assert_eq!(plain.body, b"{}");
        let chunked = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(chunked.text(), "abcde");
        assert!(parse_response(b"").is_none());
        assert!(parse_response(b"HTTP/1.1 200").is_none());
    }
}
