//! What Herald may write to its logs about a URL and an event: a URL without its userinfo and
//! query (where credentials and tokens live), and an event's id rather than its payload unless
//! an operator opts in (`HERALD_LOG_PAYLOADS=1`), then capped.

use herald_channels::WireEvent;
use std::fmt;
use std::sync::OnceLock;
use url::Url;

/// A URL as logged: `user:password@` becomes `***@` and a query becomes `?***`; scheme,
/// host, port and path stay, so the log still says where.
pub struct Redacted<'a>(pub &'a Url);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.0;
        if url.cannot_be_a_base() {
            // mailto:, data: and the like carry no userinfo; their query may still be secret.
            let s = url.as_str();
            return match s.split_once('?') {
                Some((head, _)) => write!(f, "{head}?***"),
                None => f.write_str(s),
            };
        }
        write!(f, "{}://", url.scheme())?;
        if !url.username().is_empty() || url.password().is_some() {
            f.write_str("***@")?;
        }
        if let Some(host) = url.host_str() {
            f.write_str(host)?;
        }
        if let Some(port) = url.port() {
            write!(f, ":{port}")?;
        }
        f.write_str(url.path())?;
        if url.query().is_some() {
            f.write_str("?***")?;
        }
        Ok(())
    }
}

/// [`Redacted`] as a string.
pub fn url(url: &Url) -> String {
    Redacted(url).to_string()
}

/// The URL without `user:password@`, query kept: what a dead-letter event names as the
/// failed destination (Knative carries the full URL; credentials have no business there).
pub fn without_credentials(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

/// Redacts every `scheme://...` URL inside free text (an error message from the HTTP client).
pub fn urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // The scheme: letters, digits, + - . before "://".
        let start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
            .map_or(0, |i| i + 1);
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || ")\"'>,".contains(c))
            .map_or(rest.len(), |i| at + i);
        out.push_str(&rest[..start]);
        match Url::parse(&rest[start..end]) {
            Ok(u) if start < at => out.push_str(&url(&u)),
            _ => out.push_str(&rest[start..end]),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Most bytes of an event logged with `HERALD_LOG_PAYLOADS=1`.
pub const PAYLOAD_LOG_MAX: usize = 4096;

/// Whether payloads are logged (env `HERALD_LOG_PAYLOADS=1`), read once.
pub fn log_payloads() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("HERALD_LOG_PAYLOADS").is_ok_and(|v| v == "1" || v == "true"))
}

/// The event as JSON, cut at [`PAYLOAD_LOG_MAX`] bytes (on a character boundary).
pub fn capped_json(event: &WireEvent) -> String {
    let json = herald_channels::event::json::to_string(event);
    if json.len() <= PAYLOAD_LOG_MAX {
        return json;
    }
    let mut cut = PAYLOAD_LOG_MAX;
    while !json.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}... ({} bytes in all)", &json[..cut], json.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        url(&Url::parse(s).unwrap())
    }

    #[test]
    fn credentials_and_queries_are_redacted() {
        assert_eq!(
            r("https://user:s3cret@hooks.example.com:8443/in?token=abc&x=1"),
            "https://***@hooks.example.com:8443/in?***"
        );
        assert_eq!(r("http://user@h/p"), "http://***@h/p");
        assert_eq!(r("http://:pw@h/"), "http://***@h/");
        assert_eq!(r("http://h/p#frag"), "http://h/p");
        assert_eq!(r("http://127.0.0.1:9/a/b"), "http://127.0.0.1:9/a/b");
        assert_eq!(r("http://[::1]:9/"), "http://[::1]:9/");
        assert_eq!(r("mailto:a@b?subject=token"), "mailto:a@b?***");
        for s in ["http://u:pw@h/?token=t", "https://h/x?token=t"] {
            let out = r(s);
            assert!(!out.contains("pw") && !out.contains("token"), "{out}");
        }
    }

    #[test]
    fn dead_letter_destinations_lose_only_credentials() {
        let u = Url::parse("http://u:pw@h:1/p?q=1").unwrap();
        assert_eq!(without_credentials(&u), "http://h:1/p?q=1");
    }

    #[test]
    fn urls_inside_error_messages_are_redacted() {
        let msg = "error sending request for url (http://u:pw@127.0.0.1:1/x?token=t): refused";
        assert_eq!(
            urls_in(msg),
            "error sending request for url (http://***@127.0.0.1:1/x?***): refused"
        );
        assert_eq!(urls_in("no url here"), "no url here");
        assert_eq!(urls_in("a://"), "a://");
    }

    #[test]
    fn logged_payloads_are_capped() {
        use cloudevents::{EventBuilder, EventBuilderV10};
        let event = EventBuilderV10::new()
            .id("1")
            .source("/s")
            .ty("t")
            .data("text/plain", "é".repeat(10_000))
            .build()
            .unwrap();
        let logged = capped_json(&event.into());
        assert!(logged.len() < PAYLOAD_LOG_MAX + 40, "{}", logged.len());
        assert!(logged.ends_with("bytes in all)"));
    }
}
