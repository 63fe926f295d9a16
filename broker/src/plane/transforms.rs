//! EventTransforms in the data plane: each is compiled once per change and published for the
//! `/transforms/{ns}/{name}` endpoint (see `crate::transform_endpoint`); its status says
//! whether its sink resolves.

use super::{DataPlane, State};
use arc_swap::ArcSwap;
use herald_core::status::Addressable;
use herald_core::{Check, EventTransform, Kind, ResourceKey};
use herald_dispatcher::transform::{Transform, TransformError};
use std::collections::HashMap;
use std::sync::Arc;
use url::Url;

/// An EventTransform ready to run.
#[derive(Clone, Debug)]
pub struct CompiledTransform {
    pub transform: Transform,
    /// Where the transformed event goes; without one it is the reply.
    pub sink: Option<Url>,
    /// Applied to the sink's reply.
    pub reply: Option<Transform>,
    /// Drop the sink's reply.
    pub discard_reply: bool,
}

/// The served EventTransforms, swapped whole on every change.
pub type Transforms = Arc<ArcSwap<HashMap<ResourceKey, Arc<CompiledTransform>>>>;

const SINK_RESOLVED: &str = "SinkResolved";
const TRANSFORMATION_READY: &str = "TransformationReady";

/// Compiles both expressions; an error names the field.
pub(super) fn compile(
    t: &EventTransform,
) -> Result<(Transform, Option<Transform>), (&'static str, TransformError)> {
    let expression = t
        .spec
        .jsonata
        .as_ref()
        .map(|j| j.expression.as_str())
        .unwrap_or_default();
    let transform = Transform::compile(expression).map_err(|e| ("spec.jsonata.expression", e))?;
    let reply = match t.spec.reply.as_ref().and_then(|r| r.jsonata.as_ref()) {
        Some(j) => Some(
            Transform::compile(&j.expression).map_err(|e| ("spec.reply.jsonata.expression", e))?,
        ),
        None => None,
    };
    Ok((transform, reply))
}

impl DataPlane {
    pub(super) fn reconcile_transforms(&self, state: &mut State) {
        let mut served = HashMap::new();
        let keys: Vec<_> = state.transforms.keys().cloned().collect();
        for key in keys {
            let t = state.transforms[&key].resource.clone();
            let namespace = t.metadata.namespace().to_string();
            let sink_check = match &t.spec.sink {
                Some(d) => self.destination_check(state, d, &namespace),
                None => Check::Ok,
            };
            let compiled = compile(&t);
            let transformation = match &compiled {
                Ok(_) => Check::Ok,
                Err((field, e)) => Check::failed("InvalidExpression", format!("{field}: {e}")),
            };
            if let (Ok((transform, reply)), true) = (compiled, sink_check.is_ok()) {
                let sink = t
                    .spec
                    .sink
                    .as_ref()
                    .and_then(|d| self.resolver.resolve(d, &namespace).ok());
                served.insert(
                    key.clone(),
                    Arc::new(CompiledTransform {
                        transform,
                        sink,
                        reply,
                        discard_reply: t
                            .spec
                            .reply
                            .as_ref()
                            .and_then(|r| r.discard)
                            .unwrap_or(false),
                    }),
                );
            }
            let entry = state.transforms.get_mut(&key).expect("listed above");
            entry.status.observed_generation = entry.generation;
            entry.status.address = self
                .resolver
                .address(Kind::EventTransform, &key)
                .map(|u| Addressable { url: u.to_string() });
            entry.status.set_all(&[
                (TRANSFORMATION_READY, transformation),
                (SINK_RESOLVED, sink_check),
            ]);
        }
        self.transform_map.store(Arc::new(served));
    }
}
