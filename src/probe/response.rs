//! Just enough HTTP/1.1 response parsing for probes: status, headers, a body delimited by
//! `Content-Length`, chunked encoding, or the end of the connection.
//!
//! The parser is incremental ([`parse`] says whether more bytes are needed) so a probe can stop
//! reading as soon as the response is complete, instead of waiting for a TLS close that a server
//! may never send cleanly.

/// A complete response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The result of looking at the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The response is complete.
    Done(Response),
    /// More bytes are needed; `at_eof` parsing will say whether what is there suffices.
    Incomplete,
    /// The bytes are not an HTTP/1.x response.
    Invalid(String),
}

const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Parses `buf`; `at_eof` says the peer closed, so a body without a length ends here.
pub fn parse(buf: &[u8], at_eof: bool) -> Parsed {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        if !buf.is_empty() && !b"HTTP/".starts_with(&buf[..buf.len().min(5)]) {
            return Parsed::Invalid(describe_garbage(buf));
        }
        if buf.len() > MAX_HEADER_BYTES {
            return Parsed::Invalid("response headers exceed 64 KiB".into());
        }
        return if at_eof && !buf.is_empty() {
            Parsed::Invalid(format!(
                "connection closed inside the headers ({} bytes)",
                buf.len()
            ))
        } else {
            Parsed::Incomplete
        };
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Parsed::Invalid(describe_garbage(buf));
    }
    let Some(status) = parts.next().and_then(|s| s.parse::<u16>().ok()) else {
        return Parsed::Invalid(format!("bad status line {status_line:?}"));
    };
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let rest = &buf[head_end + 4..];
    let no_body = status / 100 == 1 || status == 204 || status == 304;
    let body = if no_body {
        Some(Vec::new())
    } else if header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        match dechunk(rest) {
            Ok(body) => body,
            Err(e) => return Parsed::Invalid(e),
        }
    } else if let Some(len) = header("content-length") {
        let Ok(len) = len.parse::<usize>() else {
            return Parsed::Invalid(format!("bad content-length {len:?}"));
        };
        (rest.len() >= len).then(|| rest[..len].to_vec())
    } else if at_eof {
        Some(rest.to_vec())
    } else {
        None
    };
    match body {
        Some(body) => Parsed::Done(Response {
            status,
            headers,
            body,
        }),
        None if at_eof => Parsed::Invalid("connection closed before the body was complete".into()),
        None => Parsed::Incomplete,
    }
}

/// The decoded body once the terminating chunk has arrived, `None` before.
fn dechunk(mut rest: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = find(rest, b"\r\n") else {
            return Ok(None);
        };
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("bad chunk size {size_hex:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(Some(body));
        }
        // checked: a hostile size line must not overflow the arithmetic.
        if size.checked_add(2).is_none_or(|needed| rest.len() < needed) {
            return Ok(None);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Names a non-HTTP reply by its first bytes (e.g. a TLS record), without quoting much of it.
fn describe_garbage(buf: &[u8]) -> String {
    let shown: Vec<String> = buf.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let kind = match buf.first() {
        Some(0x15) => " (a TLS alert record)",
        Some(0x16) => " (a TLS handshake record)",
        _ => "",
    };
    format!(
        "not an HTTP response: {} byte(s) starting {}{kind}",
        buf.len(),
        shown.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_bodies_complete_without_eof() {
        let full = b"HTTP/1.1 403 Forbidden\r\ncontent-length: 19\r\n\r\nRBAC: access denied";
        match parse(full, false) {
            Parsed::Done(r) => {
                assert_eq!(r.status, 403);
                assert_eq!(r.body, b"RBAC: access denied");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(parse(&full[..40], false), Parsed::Incomplete);
        assert!(matches!(parse(&full[..50], true), Parsed::Invalid(_)));
    }

    #[test]
    fn chunked_and_eof_delimited_bodies() {
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        match parse(chunked, false) {
            Parsed::Done(r) => assert_eq!(r.body, b"abcde"),
            other => panic!("{other:?}"),
        }
        let open = b"HTTP/1.0 200 OK\r\n\r\nxyz";
        assert_eq!(parse(open, false), Parsed::Incomplete);
        match parse(open, true) {
            Parsed::Done(r) => assert_eq!(r.body, b"xyz"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn absurd_chunk_sizes_do_not_overflow() {
        let huge = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nab";
        assert_eq!(parse(huge, false), Parsed::Incomplete);
    }

    #[test]
    fn tls_bytes_are_not_http() {
        match parse(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32], true) {
            Parsed::Invalid(why) => assert!(why.contains("TLS alert"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
