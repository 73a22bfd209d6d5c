//! One keep-alive HTTP/1.1 connection to the gateway (hyper's low-level
//! client: no pool, no redirects, nothing between us and the socket), and
//! the reading of its answers.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, RETRY_AFTER};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;
use uuid::Uuid;

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
}

pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
}

/// The answer to one request.
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Bytes,
}

impl Connection {
    pub async fn open(target: &Target) -> std::io::Result<Self> {
        let stream = TcpStream::connect(&target.authority).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        // Ends when the connection closes or the sender is dropped.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self { sender })
    }

    pub async fn send(
        &mut self,
        target: &Target,
        path: &'static str,
        body: Bytes,
    ) -> Result<Answer, hyper::Error> {
        self.sender.ready().await?;
        let mut request = hyper::Request::post(path)
            .header(HOST, &target.authority)
            .header(CONTENT_TYPE, "application/json");
        if let Some(auth) = &target.authorization {
            request = request.header(AUTHORIZATION, auth);
        }
        let request = request
            .body(Full::new(body))
            .expect("static request parts are valid");
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }
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
