//! Limits on a request's headers, for ingress and the admin API alike: how many header
//! fields, and how many bytes of names and values. Over either, `431 Request Header Fields Too
//! Large` with a message naming the limit and its flag.
//!
//! The exact limits are checked here, on the parsed request, so the answer can say which
//! limit was passed; the listener gives hyper looser ones ([`HeaderLimits::hyper_max_headers`],
//! [`HeaderLimits::hyper_max_buf`]) so that a request far over them is still refused (a bare
//! 431) before it is buffered whole.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Clone, Copy, Debug)]
pub struct HeaderLimits {
    /// Header fields per request at most (each repetition of a name counts).
    pub max_count: usize,
    /// Bytes of header names and values per request at most.
    pub max_bytes: usize,
}

impl Default for HeaderLimits {
    fn default() -> Self {
        Self {
            max_count: 100,
            max_bytes: 64 * 1024,
        }
    }
}

impl HeaderLimits {
    /// The header count hyper itself refuses above: room for one over the exact limit (and
    /// more), so the exact check here answers with a message.
    pub fn hyper_max_headers(&self) -> usize {
        self.max_count.saturating_mul(2).saturating_add(16)
    }

    /// hyper's HTTP/1 read buffer: the request line and head at the backstop size (hyper
    /// wants at least 8 KiB).
    pub fn hyper_max_buf(&self) -> usize {
        self.max_bytes
            .saturating_mul(2)
            .saturating_add(self.hyper_max_headers().saturating_mul(4))
            .saturating_add(16 * 1024)
            .max(8192)
    }

    /// HTTP/2's `SETTINGS_MAX_HEADER_LIST_SIZE` (which counts 32 bytes per field on top).
    pub fn hyper_max_header_list(&self) -> u32 {
        let bytes = self
            .max_bytes
            .saturating_mul(2)
            .saturating_add(self.hyper_max_headers().saturating_mul(32));
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }

    /// Why `headers` is over a limit, if it is.
    pub fn check(&self, headers: &http::HeaderMap) -> Result<(), String> {
        let count = headers.len();
        if count > self.max_count {
            return Err(format!(
                "request has {count} header fields, more than the limit of {} (--max-header-count)",
                self.max_count
            ));
        }
        let bytes: usize = headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.as_bytes().len())
            .sum();
        if bytes > self.max_bytes {
            return Err(format!(
                "request headers hold {bytes} bytes of names and values, more than the limit of {} (--max-header-bytes)",
                self.max_bytes
            ));
        }
        Ok(())
    }

    /// The 431 answer for `headers`, when they are over a limit; the listener checks every
    /// request with it before any handler runs (a check in the listener's service, not an
    /// axum middleware layer, which boxed every request's future twice more).
    pub fn refusal(&self, headers: &http::HeaderMap) -> Option<Response> {
        let message = self.check(headers).err()?;
        tracing::debug!(%message, "request refused");
        Some(
            (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!("{message}\n"),
            )
                .into_response(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderName, HeaderValue};

    fn headers(n: usize, value_len: usize) -> HeaderMap {
        let mut h = HeaderMap::new();
        for i in 0..n {
            h.append(
                HeaderName::try_from(format!("x-{i:03}")).unwrap(),
                HeaderValue::from_str(&"v".repeat(value_len)).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_count_limit_is_inclusive_and_named() {
        let limits = HeaderLimits {
            max_count: 10,
            max_bytes: 1 << 20,
        };
        assert!(limits.check(&headers(10, 1)).is_ok());
        let e = limits.check(&headers(11, 1)).unwrap_err();
        assert!(
            e.contains("11 header fields") && e.contains("--max-header-count"),
            "{e}"
        );
    }

    #[test]
    fn the_byte_limit_counts_names_and_values() {
        // "x-000" is 5 bytes; 2 headers of 5 + 45 bytes = 100.
        let limits = HeaderLimits {
            max_count: 100,
            max_bytes: 100,
        };
        assert!(limits.check(&headers(2, 45)).is_ok());
        let e = limits.check(&headers(2, 46)).unwrap_err();
        assert!(
            e.contains("102 bytes") && e.contains("--max-header-bytes"),
            "{e}"
        );
    }

    #[test]
    fn the_hyper_backstop_leaves_room_above_the_limits() {
        let limits = HeaderLimits {
            max_count: 1,
            max_bytes: 1,
        };
        assert!(limits.hyper_max_headers() > 1);
        assert!(limits.hyper_max_buf() >= 8192);
    }
}
