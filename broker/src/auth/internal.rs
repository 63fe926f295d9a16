//! The tokens Herald's own senders present to its ingress (sources emitting into a Broker,
//! Triggers and Subscriptions delivering to a Broker or Channel), so turning authentication
//! on does not lock them out. Each sender has its Knative OIDC identity
//! (`system:serviceaccount:<ns>:<name>-oidc-<group>-<kind>`, see
//! [`herald_core::policy::oidc_subject`]) and is allowed or refused by EventPolicies like
//! anyone else. A token is `herald.<subject, base64url>.<HMAC-SHA256 of it, base64url>` under
//! a key made at start, so only this process can mint one, or read from `--sender-key-file`,
//! so that replicas behind one `--ingress-url` accept each other's senders (a Trigger of one
//! replica may reach another's ingress). A token is sent only to this server's own ingress
//! address, never to a subscriber.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use herald_core::policy::oidc_subject;
use herald_core::Kind;
use herald_dispatcher::{Credentials, RouteId};
use ring::hmac;
use std::sync::Arc;
use url::Url;

const PREFIX: &str = "herald.";
/// A shared key shorter than HMAC-SHA256's output would weaken it.
pub const MIN_KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
#[error("the sender key has {0} bytes; at least {MIN_KEY_BYTES} are needed (e.g. `openssl rand -hex 32`)")]
pub struct ShortKey(usize);

#[derive(Clone)]
pub struct InternalTokens {
    key: Arc<hmac::Key>,
}

/// Never shows the key.
impl std::fmt::Debug for InternalTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InternalTokens(..)")
    }
}

impl Default for InternalTokens {
    fn default() -> Self {
        Self::new()
    }
}

impl InternalTokens {
    /// A fresh random key.
    pub fn new() -> Self {
        let rng = ring::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).expect("the system RNG works");
        Self { key: Arc::new(key) }
    }

    /// Tokens under a key shared by the replicas (the file's content, surrounding whitespace
    /// trimmed, so a trailing newline does not count).
    pub fn shared(secret: &[u8]) -> Result<Self, ShortKey> {
        let secret = secret.trim_ascii();
        if secret.len() < MIN_KEY_BYTES {
            return Err(ShortKey(secret.len()));
        }
        Ok(Self {
            key: Arc::new(hmac::Key::new(hmac::HMAC_SHA256, secret)),
        })
    }

    /// The token of `subject`.
    pub fn token(&self, subject: &str) -> String {
        let tag = hmac::sign(&self.key, subject.as_bytes());
        format!(
            "{PREFIX}{}.{}",
            URL_SAFE_NO_PAD.encode(subject),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }

    /// The subject of `token` when this process minted it (checked in constant time).
    pub fn subject(&self, token: &str) -> Option<String> {
        let (subject, tag) = token.strip_prefix(PREFIX)?.split_once('.')?;
        let subject = URL_SAFE_NO_PAD.decode(subject).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        hmac::verify(&self.key, &subject, &tag).ok()?;
        String::from_utf8(subject).ok()
    }
}

/// Gives every sender of this server (Trigger, Subscription, source) its token on requests
/// to this server's own ingress.
pub struct OwnSenders {
    ingress: Url,
    tokens: InternalTokens,
}

impl OwnSenders {
    pub fn new(ingress: Url, tokens: InternalTokens) -> Self {
        Self { ingress, tokens }
    }
}

impl Credentials for OwnSenders {
    fn authorization(&self, sender: &RouteId, url: &Url) -> Option<String> {
        if url.origin() != self.ingress.origin() {
            return None;
        }
        let kind = Kind::ALL.into_iter().find(|k| k.name() == sender.kind)?;
        let subject = oidc_subject(
            kind.api_version(),
            kind.name(),
            &sender.key.namespace,
            &sender.key.name,
        );
        Some(format!("Bearer {}", self.tokens.token(&subject)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_key_mints_tokens() {
        let ours = InternalTokens::new();
        let token =
            ours.token("system:serviceaccount:shop:tick-oidc-sources.knative.dev-pingsource");
        assert_eq!(
            ours.subject(&token).as_deref(),
            Some("system:serviceaccount:shop:tick-oidc-sources.knative.dev-pingsource")
        );
        assert_eq!(InternalTokens::new().subject(&token), None);
        let forged = token.replacen("herald.c3", "herald.c4", 1);
        assert_eq!(ours.subject(&forged), None);
        assert_eq!(ours.subject("herald.x"), None);
    }

    #[test]
    fn replicas_sharing_a_key_accept_each_others_tokens() {
        let secret = b"0123456789abcdef0123456789abcdef\n";
        let (a, b) = (
            InternalTokens::shared(secret).unwrap(),
            InternalTokens::shared(secret.trim_ascii()).unwrap(),
        );
        let token = a.token("system:serviceaccount:shop:t-oidc-eventing.knative.dev-trigger");
        assert!(b.subject(&token).is_some());
        assert_eq!(InternalTokens::new().subject(&token), None);
        let other = InternalTokens::shared(b"another key of thirty-two bytes!").unwrap();
        assert_eq!(other.subject(&token), None);
        let short = InternalTokens::shared(b"  short\n").err().unwrap();
        assert_eq!(
            short.to_string(),
            "the sender key has 5 bytes; at least 32 are needed (e.g. `openssl rand -hex 32`)"
        );
    }

    #[test]
    fn own_senders_present_tokens_to_this_ingress_only() {
        let tokens = InternalTokens::new();
        let own = OwnSenders::new("http://127.0.0.1:8080".parse().unwrap(), tokens.clone());
        let trigger = RouteId::trigger(herald_core::ResourceKey::new("shop", "t"));
        let here = own
            .authorization(&trigger, &"http://127.0.0.1:8080/shop/b".parse().unwrap())
            .unwrap();
        let token = here.strip_prefix("Bearer ").unwrap();
        assert_eq!(
            tokens.subject(token).as_deref(),
            Some("system:serviceaccount:shop:t-oidc-eventing.knative.dev-trigger")
        );
        let elsewhere = "http://127.0.0.1:9090/hook".parse().unwrap();
        assert_eq!(own.authorization(&trigger, &elsewhere), None);
    }
}
