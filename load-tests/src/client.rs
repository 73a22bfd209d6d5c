//! One keep-alive HTTP/1.1 connection to the gateway, and the reading of its
//! answers.
//!
//! The client is a plain socket: the request is written in one `write`, the
//! answer read into a buffer kept for the connection and its head parsed
//! with `httparse`. A load generator shares the machine with what it
//! measures, so every microsecond it spends is taken from the gateway; hyper's
//! client (a connection task, a channel and a wake-up each way per request)
//! cost ~22 µs of CPU per single-event request, this ~3× less
//! (docs/adr/0040-load-generator-and-bench.md). One request at a time per
//! connection, no pipelining, no chunked answers (the gateway sends none).

use std::io::Write as _;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use prost::Message as _;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

/// A path and the type of what is sent to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub path: &'static str,
    pub content_type: &'static str,
}

impl Endpoint {
    pub const EVENTS: Self = Self {
        path: "/v1/events",
        content_type: "application/json",
    };
    pub const BATCH: Self = Self {
        path: "/v1/events/batch",
        content_type: "application/json",
    };
    /// OTLP/HTTP logs, protobuf.
    pub const LOGS: Self = Self {
        path: "/v1/logs",
        content_type: "application/x-protobuf",
    };
}

/// Where requests go and how they authenticate.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port`
    pub authority: String,
    /// `Bearer <key>`, when the gateway requires a key.
    pub authorization: Option<String>,
}

impl Target {
    /// From `http://host:port` (https is not supported: measure the gateway,
    /// not TLS).
    pub fn parse(url: &str, api_key: Option<&str>) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("target {url:?} must start with http://"))?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(format!(
                "target {url:?} must be http://host:port with no path"
            ));
        }
        Ok(Self {
            authority: authority.to_owned(),
            authorization: api_key.map(|k| format!("Bearer {}", k.trim())),
        })
    }

    /// The request head up to (not including) the `Content-Length` value.
    fn head(&self, endpoint: Endpoint) -> Vec<u8> {
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: {}\r\n",
            endpoint.path, self.authority, endpoint.content_type
        );
        if let Some(auth) = &self.authorization {
            head.push_str("Authorization: ");
            head.push_str(auth);
            head.push_str("\r\n");
        }
        head.push_str("Content-Length: ");
        head.into_bytes()
    }
}

/// Why a request got no answer. Either way the connection is unusable.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("the gateway closed the connection before answering")]
    Closed,
    #[error("unreadable answer: {0}")]
    Protocol(String),
}

pub struct Connection {
    stream: TcpStream,
    /// The head of the last endpoint's requests, without the length.
    head: (Option<Endpoint>, Vec<u8>),
    /// The request being written.
    out: Vec<u8>,
    /// What was read and not yet consumed.
    buf: Vec<u8>,
    /// The gateway said `Connection: close`: open a new one.
    closing: bool,
}

/// The answer to one request.
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Bytes,
}

/// Largest answer head accepted.
const MAX_HEAD: usize = 16 * 1024;

impl Connection {
    pub async fn open(target: &Target) -> std::io::Result<Self> {
        let stream = TcpStream::connect(&target.authority).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            head: (None, Vec::new()),
            out: Vec::with_capacity(1024),
            buf: Vec::with_capacity(4096),
            closing: false,
        })
    }

    /// Whether the gateway asked to close this connection after its answer.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    pub async fn send(
        &mut self,
        target: &Target,
        endpoint: Endpoint,
        body: &[u8],
    ) -> Result<Answer, SendError> {
        if self.head.0 != Some(endpoint) {
            self.head = (Some(endpoint), target.head(endpoint));
        }
        self.out.clear();
        self.out.extend_from_slice(&self.head.1);
        // Writing into a Vec cannot fail.
        let _ = write!(self.out, "{}\r\n\r\n", body.len());
        self.out.extend_from_slice(body);
        self.stream.write_all(&self.out).await?;
        self.read_answer().await
    }

    async fn read_answer(&mut self) -> Result<Answer, SendError> {
        loop {
            if let Some(head) = parse_head(&self.buf)? {
                let total = head.len + head.content_length;
                while self.buf.len() < total {
                    self.fill().await?;
                }
                let body = Bytes::copy_from_slice(&self.buf[head.len..total]);
                self.buf.drain(..total);
                self.closing = head.close;
                return Ok(Answer {
                    status: head.status,
                    retry_after: head.retry_after,
                    body,
                });
            }
            if self.buf.len() > MAX_HEAD {
                return Err(SendError::Protocol("answer head too large".into()));
            }
            self.fill().await?;
        }
    }

    /// Reads more bytes onto `buf`.
    async fn fill(&mut self) -> Result<(), SendError> {
        self.buf.reserve(4096);
        match self.stream.read_buf(&mut self.buf).await? {
            0 => Err(SendError::Closed),
            _ => Ok(()),
        }
    }
}

/// What the driver needs of an answer's head.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    /// Bytes of the head, blank line included.
    len: usize,
    status: u16,
    content_length: usize,
    retry_after: Option<Duration>,
    close: bool,
}

/// Parses the head at the start of `buf`; `None` while it is incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, SendError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(SendError::Protocol(e.to_string())),
    };
    let status = response.code.unwrap_or(0);
    let mut head = Head {
        len,
        status,
        content_length: 0,
        retry_after: None,
        close: response.version == Some(0),
    };
    let mut has_length = false;
    for header in response.headers.iter() {
        let value = std::str::from_utf8(header.value).unwrap_or("").trim();
        if header.name.eq_ignore_ascii_case("content-length") {
            head.content_length = value
                .parse()
                .map_err(|_| SendError::Protocol(format!("Content-Length {value:?}")))?;
            has_length = true;
        } else if header.name.eq_ignore_ascii_case("retry-after") {
            head.retry_after = value.parse::<u64>().ok().map(Duration::from_secs);
        } else if header.name.eq_ignore_ascii_case("connection") {
            head.close = value.eq_ignore_ascii_case("close");
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(SendError::Protocol(format!(
                "Transfer-Encoding {value:?} is not supported"
            )));
        }
    }
    // Only 1xx, 204 and 304 may go without a length (RFC 9112 §6.3); 1xx
    // never comes, as no request asks to continue.
    if !has_length && !matches!(status, 204 | 304) {
        return Err(SendError::Protocol(format!(
            "status {status} without Content-Length"
        )));
    }
    Ok(Some(head))
}

#[derive(Debug, Deserialize)]
struct AcceptedBody {
    ids: Vec<Uuid>,
    #[serde(default)]
    rejected: Vec<RejectedIndex>,
}

#[derive(Debug, Deserialize)]
struct RejectedIndex {
    index: usize,
}

/// The ids of a 202 matched to the request's events: `ids` lists the
/// accepted events in order, skipping the `rejected` indexes. Returns
/// (event index, id) pairs and the number rejected.
pub fn accepted_ids(body: &[u8], events: usize) -> Result<(Vec<(usize, Uuid)>, u64), String> {
    let parsed: AcceptedBody =
        serde_json::from_slice(body).map_err(|e| format!("unreadable 202 body: {e}"))?;
    let mut rejected: Vec<usize> = parsed.rejected.iter().map(|r| r.index).collect();
    rejected.sort_unstable();
    let accepted_indexes = (0..events).filter(|i| rejected.binary_search(i).is_err());
    let pairs: Vec<(usize, Uuid)> = accepted_indexes.zip(parsed.ids.iter().copied()).collect();
    if pairs.len() != parsed.ids.len() || pairs.len() + rejected.len() != events {
        return Err(format!(
            "202 lists {} ids and {} rejections for {events} events",
            parsed.ids.len(),
            rejected.len()
        ));
    }
    Ok((pairs, rejected.len() as u64))
}

/// What a 200 to an OTLP export says: the records refused
/// (`partial_success.rejected_log_records`) and the reason given.
pub fn otlp_rejected(body: &[u8]) -> Result<(u64, String), String> {
    let response = ExportLogsServiceResponse::decode(body)
        .map_err(|e| format!("unreadable OTLP export answer: {e}"))?;
    Ok(response.partial_success.map_or((0, String::new()), |p| {
        (
            u64::try_from(p.rejected_log_records).unwrap_or(0),
            p.error_message,
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("http://127.0.0.1:8080/", Some("k\n")).expect("valid");
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.authorization.as_deref(), Some("Bearer k"));
        assert!(Target::parse("https://x:1", None).is_err());
        assert!(Target::parse("http://x:1/v1", None).is_err());
    }

    #[test]
    fn heads() {
        let ok = b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 5\r\n\r\n{\"a\"}";
        let head = parse_head(ok).expect("valid").expect("complete");
        assert_eq!(
            (head.status, head.content_length, head.close),
            (202, 5, false)
        );
        assert_eq!(head.len, ok.len() - 5);
        assert!(parse_head(&ok[..20]).expect("valid so far").is_none());

        let busy = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 2\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        let head = parse_head(busy).expect("valid").expect("complete");
        assert_eq!(head.retry_after, Some(Duration::from_secs(2)));
        assert!(head.close);

        for bad in [
            &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
            b"garbage\r\n\r\n",
        ] {
            assert!(parse_head(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn otlp_answers_count_the_rejected_records() {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess;
        assert_eq!(otlp_rejected(b""), Ok((0, String::new())));
        let partial = ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: 2,
                error_message: "too long".into(),
            }),
        }
        .encode_to_vec();
        assert_eq!(otlp_rejected(&partial), Ok((2, "too long".into())));
        assert!(otlp_rejected(b"\xff\xff").is_err());
    }

    #[test]
    fn heads_carry_the_endpoints_type() {
        let t = Target::parse("http://h:1", None).expect("valid");
        let head = String::from_utf8(t.head(Endpoint::LOGS)).expect("text");
        assert!(
            head.starts_with("POST /v1/logs HTTP/1.1\r\n")
                && head.contains("Content-Type: application/x-protobuf\r\n"),
            "{head}"
        );
    }

    #[test]
    fn ids_skip_rejected_events() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let body = format!(
            r#"{{"accepted":2,"ids":["{a}","{b}"],"rejected":[{{"index":1,"error":"x","code":"y"}}]}}"#
        );
        let (pairs, rejected) = accepted_ids(body.as_bytes(), 3).expect("matches");
        assert_eq!(pairs, vec![(0, a), (2, b)]);
        assert_eq!(rejected, 1);
        let single = format!(r#"{{"accepted":1,"ids":["{a}"]}}"#);
        assert_eq!(
            accepted_ids(single.as_bytes(), 1).expect("single").0,
            vec![(0, a)]
        );
        assert!(
            accepted_ids(single.as_bytes(), 2).is_err(),
            "a miscount is an error"
        );
    }
}
