//! Reading a request body safely: the content type and encoding are checked
//! first (415), the body is read within a time limit (408) and a size limit
//! (413), and a gzip body is inflated with the same size limit applied to the
//! inflated bytes, so a gzip bomb costs at most `MAX_BODY_BYTES` of memory.

use std::io::Read;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::error::ApiError;

/// How a batch body lists its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Ndjson,
}

fn media_type(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::UnsupportedMedia("Content-Type is not ASCII".into()))?;
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    Ok(Some(essence))
}

fn is_json(media: &str) -> bool {
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// The single-event endpoint takes JSON; a missing Content-Type is read as JSON.
pub fn check_single(headers: &HeaderMap) -> Result<(), ApiError> {
    match media_type(headers)? {
        None => Ok(()),
        Some(m) if is_json(&m) => Ok(()),
        Some(m) => Err(ApiError::UnsupportedMedia(format!(
            "Content-Type {m:?} is not supported here; send application/json"
        ))),
    }
}

/// The batch endpoint takes JSON (an array or `{"events":[…]}`) or NDJSON.
pub fn check_batch(headers: &HeaderMap) -> Result<Format, ApiError> {
    match media_type(headers)? {
        None => Ok(Format::Json),
        Some(m) if is_json(&m) => Ok(Format::Json),
        Some(m)
            if matches!(
                m.as_str(),
                "application/x-ndjson"
                    | "application/ndjson"
                    | "application/jsonl"
                    | "application/x-jsonlines"
            ) =>
        {
            Ok(Format::Ndjson)
        }
        Some(m) => Err(ApiError::UnsupportedMedia(format!(
            "Content-Type {m:?} is not supported here; send application/json or application/x-ndjson"
        ))),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
}

/// The body's coding. Every `Content-Encoding` header counts, and each may
/// list codings (`gzip, gzip` means twice): after dropping `identity`, one
/// `gzip` at most; anything else, or a value that is not text, is a 415.
fn encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let mut gzip = 0;
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let value = value.to_str().map_err(|_| {
            ApiError::UnsupportedMedia("Content-Encoding is not readable text".into())
        })?;
        for coding in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            match coding.to_ascii_lowercase().as_str() {
                "identity" => {}
                "gzip" | "x-gzip" => gzip += 1,
                other => {
                    return Err(ApiError::UnsupportedMedia(format!(
                        "Content-Encoding {other:?} is not supported; send gzip or no encoding"
                    )));
                }
            }
        }
    }
    match gzip {
        0 => Ok(Encoding::Identity),
        1 => Ok(Encoding::Gzip),
        _ => Err(ApiError::UnsupportedMedia(
            "a body gzipped more than once is not supported; send it gzipped once".into(),
        )),
    }
}

/// Reads the whole body, inflating gzip, within `limit` bytes and `timeout`.
pub async fn read(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let encoding = encoding(headers)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::TooLarge { limit });
    }
    let collected = tokio::time::timeout(timeout, Limited::new(body, limit).collect())
        .await
        .map_err(|_| ApiError::BodyTimeout)?;
    let raw = match collected {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(ApiError::TooLarge { limit });
        }
        Err(e) => {
            return Err(ApiError::BadRequest {
                code: "body_read_failed",
                message: format!("could not read the request body: {e}"),
                field: None,
            });
        }
    };
    match encoding {
        Encoding::Identity => Ok(raw),
        Encoding::Gzip => gunzip(&raw, limit),
    }
}

/// Inflates `raw`, refusing to produce more than `limit` bytes.
pub fn gunzip(raw: &[u8], limit: usize) -> Result<Bytes, ApiError> {
    let mut out = Vec::with_capacity((raw.len() * 4).min(limit + 1));
    let mut decoder = flate2::read::MultiGzDecoder::new(raw).take(limit as u64 + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(|e| ApiError::BadRequest {
            code: "invalid_gzip",
            message: format!("the body is not valid gzip: {e}"),
            field: None,
        })?;
    if out.len() > limit {
        return Err(ApiError::TooLarge { limit });
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn gunzip_enforces_the_limit_on_inflated_bytes() {
        let small = gzip(b"{\"a\":1}");
        assert_eq!(&gunzip(&small, 100).unwrap()[..], b"{\"a\":1}");
        // 64 MiB of zeros compress to ~64 KiB: refused after 1 MiB of output.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 1 << 20);
        assert!(matches!(
            gunzip(&bomb, 1 << 20),
            Err(ApiError::TooLarge { .. })
        ));
        assert!(matches!(
            gunzip(b"not gzip", 100),
            Err(ApiError::BadRequest { .. })
        ));
    }

    #[test]
    fn content_encodings() {
        let with = |values: &[&[u8]]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(
                    header::CONTENT_ENCODING,
                    axum::http::HeaderValue::from_bytes(v).unwrap(),
                );
            }
            encoding(&h)
        };
        assert_eq!(with(&[]).unwrap(), Encoding::Identity);
        assert_eq!(with(&[b"identity"]).unwrap(), Encoding::Identity);
        assert_eq!(with(&[b" GZIP "]).unwrap(), Encoding::Gzip);
        assert_eq!(with(&[b"identity, x-gzip"]).unwrap(), Encoding::Gzip);
        let refused = |values: &[&[u8]]| matches!(with(values), Err(ApiError::UnsupportedMedia(_)));
        assert!(refused(&[b"br"]));
        assert!(refused(&[b"gzip, br"]));
        // Twice gzipped, in one header or two.
        assert!(refused(&[b"gzip, gzip"]));
        assert!(refused(&[b"gzip", b"gzip"]));
        // Not text: refused, not read as "no encoding".
        assert!(refused(&[b"gzip\xff"]));
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert!(check_single(&h).is_ok());
        h.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert!(check_single(&h).is_ok());
        assert_eq!(check_batch(&h).unwrap(), Format::Json);
        h.insert(
            header::CONTENT_TYPE,
            "application/x-ndjson".parse().unwrap(),
        );
        assert!(check_single(&h).is_err());
        assert_eq!(check_batch(&h).unwrap(), Format::Ndjson);
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(matches!(
            check_batch(&h),
            Err(ApiError::UnsupportedMedia(_))
        ));
    }
}
