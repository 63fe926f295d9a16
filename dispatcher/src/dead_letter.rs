//! Building the event sent to a dead-letter sink: the original event plus Knative's error
//! extensions naming where delivery failed, with what status and response.

use crate::delivery::Failure;
use base64::Engine;
use herald_channels::WireEvent;
use url::Url;

pub const ERROR_DEST: &str = "knativeerrordest";
pub const ERROR_CODE: &str = "knativeerrorcode";
pub const ERROR_DATA: &str = "knativeerrordata";
/// Knative truncates the failed response body it carries along.
pub const ERROR_DATA_MAX: usize = 1024;

pub fn dead_letter_event(original: &WireEvent, destination: &Url, failure: &Failure) -> WireEvent {
    let mut event = original.clone();
    // Without credentials: the sink (and whoever reads it) has no business with them.
    event.set_extension(ERROR_DEST, crate::redact::without_credentials(destination));
    if let Some(code) = failure.status {
        event.set_extension(ERROR_CODE, code.to_string());
    }
    let body = &failure.body[..failure.body.len().min(ERROR_DATA_MAX)];
    let data = if body.is_empty() {
        // No response body (a timeout or refused connection): carry the reason instead.
        failure.reason.as_bytes()
    } else {
        body
    };
    event.set_extension(
        ERROR_DATA,
        base64::engine::general_purpose::STANDARD.encode(data),
    );
    event
}
