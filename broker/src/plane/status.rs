//! Health of the data plane as a whole, for `/readyz`: whether every backend in use is
//! reachable, and which resources are not ready and why.

use super::DataPlane;
use herald_core::status::READY;
use herald_core::Kind;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotReady {
    pub kind: Kind,
    pub name: String,
    pub reason: String,
    pub message: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// False while a backend in use is down or the plane is shutting down.
    pub ready: bool,
    pub backends: Vec<crate::backends::BackendHealth>,
    pub not_ready: Vec<NotReady>,
}

impl DataPlane {
    pub async fn health(&self) -> Health {
        let state = self.state.lock().await;
        let backends = state.backends.health().await;
        let mut not_ready = Vec::new();
        for kind in Kind::ALL {
            for v in state.views(kind) {
                if v.ready {
                    continue;
                }
                let ready = &v.object["status"]["conditions"];
                let cond = ready
                    .as_array()
                    .and_then(|cs| cs.iter().find(|c| c["type"] == READY));
                let text = |f: &str| {
                    cond.and_then(|c| c[f].as_str())
                        .unwrap_or_default()
                        .to_string()
                };
                not_ready.push(NotReady {
                    kind,
                    name: v.key.to_string(),
                    reason: text("reason"),
                    message: text("message"),
                });
            }
        }
        Health {
            ready: !state.closed && backends.iter().all(|b| b.up),
            backends,
            not_ready,
        }
    }
}
