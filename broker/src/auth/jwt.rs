//! JWT verification against a JWKS file (`--oidc-jwks`), as Knative's OIDC mode verifies the
//! tokens of its senders: signature (RS256 or ES256) by a key of the set, `exp` and `nbf`,
//! `iss` equal to `--oidc-issuer`, and `aud` holding the target's audience
//! (`eventing.knative.dev/broker/<ns>/<name>`). The identity is the `sub` claim.

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// The accepted signature algorithms: what Kubernetes service account tokens use, and ES256.
const ALGORITHMS: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];

pub struct JwtVerifier {
    keys: Vec<(Option<String>, DecodingKey)>,
    issuer: String,
}

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("not a JWKS (a JSON object with `keys`): {0}")]
    Parse(#[source] serde_json::Error),
    #[error("key {index} (kid {kid:?}): {source}")]
    Key {
        index: usize,
        kid: Option<String>,
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    #[error("the set holds no keys")]
    Empty,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

impl JwtVerifier {
    /// Reads a JWKS document; every key must be usable (a typo must not go unnoticed).
    pub fn parse(jwks: &str, issuer: &str) -> Result<Self, JwksError> {
        let set: JwkSet = serde_json::from_str(jwks).map_err(JwksError::Parse)?;
        let keys = set
            .keys
            .iter()
            .enumerate()
            .map(|(index, jwk): (usize, &Jwk)| {
                let kid = jwk.common.key_id.clone();
                DecodingKey::from_jwk(jwk)
                    .map(|k| (kid.clone(), k))
                    .map_err(|source| JwksError::Key { index, kid, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(JwksError::Empty);
        }
        Ok(Self {
            keys,
            issuer: issuer.to_string(),
        })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The `sub` of `token` if it verifies for `audience`; else why not.
    pub fn verify(&self, token: &str, audience: &str) -> Result<String, String> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| format!("not a valid JWT: {e}"))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(format!(
                "JWT algorithm {:?} is not accepted (RS256, ES256)",
                header.alg
            ));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[audience]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        // Only the key the token names; a token without `kid` may be signed by any of them.
        let candidates = self
            .keys
            .iter()
            .filter(|(kid, _)| header.kid.is_none() || kid == &header.kid);
        let mut last = format!("no key in the JWKS has kid {:?}", header.kid);
        for (_, key) in candidates {
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => return Ok(data.claims.sub),
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind;
                    last = match e.kind() {
                        ErrorKind::InvalidAudience => {
                            format!("JWT audience is not {audience:?}")
                        }
                        ErrorKind::InvalidIssuer => {
                            format!("JWT issuer is not {:?}", self.issuer)
                        }
                        ErrorKind::ExpiredSignature => "JWT has expired".to_string(),
                        ErrorKind::ImmatureSignature => "JWT is not valid yet (nbf)".to_string(),
                        _ => format!("JWT does not verify: {e}"),
                    };
                    // A claim failed after the signature verified: another key won't help.
                    if !matches!(
                        e.kind(),
                        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm
                    ) {
                        break;
                    }
                }
            }
        }
        Err(last)
    }
}
