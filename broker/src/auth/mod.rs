//! Ingress authentication and authorization, Knative's way (its `authentication-oidc` and
//! EventPolicy features). On only when a token source is configured (`--ingress-tokens`,
//! `HERALD_INGRESS_TOKENS`, `--oidc-jwks`); otherwise ingress accepts anyone, as before.
//!
//! A request's identity (a subject) comes from its `Authorization: Bearer` token: a static
//! token, a JWT verified against the JWKS for the target's audience, or the token Herald
//! gives its own senders (see [`internal`]). The identity is then checked against the
//! EventPolicies that apply to the target (published by the data plane on every apply), or
//! the default authorization mode when none does.

mod internal;
mod jwt;
pub mod reload;
mod tokens;

pub use internal::{InternalTokens, OwnSenders, ShortKey};
pub use jwt::{JwksError, JwtVerifier};
pub use tokens::{StaticTokens, TokensError};

use arc_swap::{ArcSwap, ArcSwapOption};
use herald_core::{AuthorizationMode, Kind, ResourceKey};
use herald_dispatcher::Filter;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Clone, Debug, Default)]
pub struct AuthConfig {
    /// `<token> <subject>` lines; reloaded when it changes.
    pub tokens_file: Option<PathBuf>,
    /// The same pairs given inline (newlines or commas between them).
    pub tokens_env: Option<String>,
    /// A JWKS document whose keys sign accepted JWTs; reloaded when it changes.
    pub jwks_file: Option<PathBuf>,
    /// The `iss` a JWT must carry.
    pub issuer: Option<String>,
    /// What applies to a Broker or Channel no EventPolicy applies to.
    pub default_mode: AuthorizationMode,
    /// The key of own-sender tokens, shared by replicas; unset, each process makes one.
    pub sender_key_file: Option<PathBuf>,
}

impl AuthConfig {
    /// Whether any token source is configured (else ingress checks nothing).
    pub fn enabled(&self) -> bool {
        self.tokens_file.is_some() || self.tokens_env.is_some() || self.jwks_file.is_some()
    }

    /// The own-sender token key: `sender_key_file`'s, else a fresh one.
    pub fn internal_tokens(&self) -> Result<InternalTokens, AuthError> {
        let Some(path) = &self.sender_key_file else {
            return Ok(InternalTokens::new());
        };
        let secret = std::fs::read(path).map_err(|source| AuthError::Read {
            path: path.clone(),
            source,
        })?;
        InternalTokens::shared(&secret).map_err(|source| AuthError::SenderKey {
            path: path.clone(),
            source,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Tokens {
        path: String,
        #[source]
        source: TokensError,
    },
    #[error("{path}: {source}")]
    Jwks {
        path: PathBuf,
        #[source]
        source: JwksError,
    },
    #[error("--oidc-jwks needs --oidc-issuer (the `iss` accepted tokens carry)")]
    NoIssuer,
    #[error("--sender-key-file {path}: {source}")]
    SenderKey {
        path: PathBuf,
        #[source]
        source: ShortKey,
    },
}

/// A compiled EventPolicy, as the ingress checks it.
#[derive(Debug)]
pub struct CompiledPolicy {
    pub name: String,
    /// Subject patterns (a trailing `*` is a prefix wildcard).
    pub subjects: Vec<String>,
    /// Its `filters`, all of which an event must match; `None` without any.
    pub filter: Option<Filter>,
}

impl CompiledPolicy {
    pub fn allows(&self, subject: &str) -> bool {
        self.subjects
            .iter()
            .any(|p| herald_core::policy::subject_matches(p, subject))
    }
}

/// What ingress needs to check a request to one Broker or Channel.
#[derive(Debug, Default)]
pub struct TargetAuth {
    /// The audience a JWT sent to it must carry (`eventing.knative.dev/broker/ns/name`).
    pub audience: String,
    /// The EventPolicies applying to it; empty: the default mode decides.
    pub policies: Vec<Arc<CompiledPolicy>>,
    /// Subjects always allowed (the Subscriptions of the flow owning a channel, between its
    /// steps).
    pub trusted: Vec<String>,
}

/// Every Broker's and Channel's [`TargetAuth`], by `(Kind::Broker | Kind::Channel, key)`;
/// swapped whole by the data plane on every apply.
pub type Authorizations = Arc<ArcSwap<HashMap<(Kind, ResourceKey), Arc<TargetAuth>>>>;

/// Why a request was refused: 401 (no or bad credentials) or 403 (not allowed).
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    Unauthenticated(String),
    Forbidden(String),
}

/// How a request was allowed.
pub enum Allowed {
    /// By the default mode (no policy applies): no filters.
    ByDefault,
    /// By these policies (the applying ones whose `from` holds the subject): each event must
    /// match the filters of one of them.
    ByPolicies(Vec<Arc<CompiledPolicy>>),
}

impl Allowed {
    /// Whether `event` must be refused: no allowing policy's filters match it.
    pub fn refuses(&self, event: &herald_channels::WireEvent) -> bool {
        match self {
            Allowed::ByDefault => false,
            Allowed::ByPolicies(ps) => !ps
                .iter()
                .any(|p| p.filter.as_ref().is_none_or(|f| f.matches(event))),
        }
    }
}

pub struct IngressAuth {
    config: AuthConfig,
    tokens: ArcSwap<StaticTokens>,
    jwt: ArcSwapOption<JwtVerifier>,
    internal: InternalTokens,
}

impl IngressAuth {
    /// Reads the token file and JWKS; a problem with either is an error naming it (at start;
    /// on a reload the last good one stays, see [`reload`]).
    pub fn load(config: AuthConfig, internal: InternalTokens) -> Result<Arc<Self>, AuthError> {
        if config.jwks_file.is_some() && config.issuer.is_none() {
            return Err(AuthError::NoIssuer);
        }
        let auth = Self {
            tokens: ArcSwap::from_pointee(StaticTokens::default()),
            jwt: ArcSwapOption::empty(),
            internal,
            config,
        };
        auth.reload_tokens()?;
        auth.reload_jwks()?;
        Ok(Arc::new(auth))
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Reads the token file (and the inline tokens) again; on error nothing changes.
    pub fn reload_tokens(&self) -> Result<usize, AuthError> {
        let mut tokens = match &self.config.tokens_env {
            Some(text) => StaticTokens::parse(text, true).map_err(|source| AuthError::Tokens {
                path: "HERALD_INGRESS_TOKENS".into(),
                source,
            })?,
            None => StaticTokens::default(),
        };
        if let Some(path) = &self.config.tokens_file {
            let text = read(path)?;
            let from_file =
                StaticTokens::parse(&text, false).map_err(|source| AuthError::Tokens {
                    path: path.display().to_string(),
                    source,
                })?;
            tokens.extend(from_file);
        }
        let n = tokens.len();
        self.tokens.store(Arc::new(tokens));
        Ok(n)
    }

    /// Reads the JWKS again; on error nothing changes.
    pub fn reload_jwks(&self) -> Result<usize, AuthError> {
        let (Some(path), Some(issuer)) = (&self.config.jwks_file, &self.config.issuer) else {
            return Ok(0);
        };
        let verifier =
            JwtVerifier::parse(&read(path)?, issuer).map_err(|source| AuthError::Jwks {
                path: path.clone(),
                source,
            })?;
        let n = verifier.len();
        self.jwt.store(Some(Arc::new(verifier)));
        Ok(n)
    }

    /// The subject of the request's bearer token, for a target of `audience`.
    pub fn authenticate(
        &self,
        headers: &axum::http::HeaderMap,
        audience: &str,
    ) -> Result<String, Denied> {
        let header = headers
            .get(axum::http::header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or_default());
        let Some(header) = header else {
            return Err(Denied::Unauthenticated(
                "this ingress requires `Authorization: Bearer <token>`".into(),
            ));
        };
        let Some(token) = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            return Err(Denied::Unauthenticated(
                "the Authorization header is not `Bearer <token>`".into(),
            ));
        };
        if let Some(subject) = self.tokens.load().subject(token) {
            return Ok(subject.to_string());
        }
        if let Some(subject) = self.internal.subject(token) {
            return Ok(subject);
        }
        let looks_like_jwt = token.split('.').count() == 3;
        match (looks_like_jwt, self.jwt.load_full()) {
            (true, Some(verifier)) => verifier.verify(token, audience).map_err(|why| {
                Denied::Unauthenticated(format!("the bearer token is not valid: {why}"))
            }),
            _ => Err(Denied::Unauthenticated(
                "the bearer token is not valid".into(),
            )),
        }
    }

    /// Whether `subject` may send to `what` (`Broker ns/name`) under its policies.
    pub fn authorize(
        &self,
        subject: &str,
        what: &str,
        key: &ResourceKey,
        target: Option<&TargetAuth>,
    ) -> Result<Allowed, Denied> {
        let policies = target.map(|t| t.policies.as_slice()).unwrap_or_default();
        if target.is_some_and(|t| t.trusted.iter().any(|s| s == subject)) {
            return Ok(Allowed::ByDefault);
        }
        if policies.is_empty() {
            let mode = self.config.default_mode;
            return if mode.allows(subject, &key.namespace) {
                Ok(Allowed::ByDefault)
            } else {
                Err(Denied::Forbidden(format!(
                    "subject {subject:?} may not send to {what}: no EventPolicy applies to it and the default authorization mode is {mode}"
                )))
            };
        }
        let allowing: Vec<_> = policies
            .iter()
            .filter(|p| p.allows(subject))
            .cloned()
            .collect();
        if allowing.is_empty() {
            let names: Vec<&str> = policies.iter().map(|p| p.name.as_str()).collect();
            return Err(Denied::Forbidden(format!(
                "subject {subject:?} may not send to {what}: none of the EventPolicies applying to it ({}) allows it",
                names.join(", ")
            )));
        }
        Ok(Allowed::ByPolicies(allowing))
    }
}

fn read(path: &Path) -> Result<String, AuthError> {
    std::fs::read_to_string(path).map_err(|source| AuthError::Read {
        path: path.to_path_buf(),
        source,
    })
}
