//! Fuzz target: the channel record codecs (the store record, the JSON format, NATS headers
//! and payload). Whatever decodes must encode and decode back to the same event.
#![no_main]

use herald_channels::event::{json, record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = record::decode(data) {
        let again = record::encode(&event).expect("a decoded record encodes");
        assert_eq!(
            record::decode(&again).expect("re-encoded record decodes"),
            event
        );
    }
    if let Ok(event) = json::from_slice(data) {
        let again = json::to_vec(&event);
        assert_eq!(
            json::from_slice(&again).expect("re-encoded JSON decodes"),
            event
        );
        let (headers, payload) = herald_channels::nats::encode(&event);
        let back = herald_channels::nats::decode(Some(&headers), &payload)
            .expect("a NATS message of a valid event decodes");
        assert_eq!(back.id(), event.id());
    }
    // NATS: the first line is a header block (name: value pairs split by ';').
    let (head, payload) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let headers = async_nats_headers(head);
    if let Ok(event) =
        herald_channels::nats::decode(headers.as_ref(), &bytes::Bytes::copy_from_slice(payload))
    {
        let (h, p) = herald_channels::nats::encode(&event);
        let back = herald_channels::nats::decode(Some(&h), &p).expect("re-encoded NATS decodes");
        assert_eq!(back.id(), event.id());
    }
});

fn async_nats_headers(head: &[u8]) -> Option<async_nats::HeaderMap> {
    let text = std::str::from_utf8(head).ok()?;
    let mut map = async_nats::HeaderMap::new();
    for pair in text.split(';') {
        let (k, v) = pair.split_once(':')?;
        map.insert(k.trim(), v.trim());
    }
    Some(map)
}
