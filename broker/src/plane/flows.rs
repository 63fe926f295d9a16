//! Sequences and Parallels, built the way Knative builds them: from Channels and
//! Subscriptions the flow owns (created, changed and removed with it), which then run like
//! any other. A Sequence's step `i` reads channel `i` and replies into channel `i + 1`, the last
//! step into `spec.reply`. A Parallel's branches each filter the ingress channel into a branch
//! channel (a branch without a filter passes everything), whose subscriber replies to the
//! branch's `reply`, else the Parallel's.

use super::{DataPlane, Owner, State};
use herald_core::messaging::{
    parallel_branch_channel, parallel_filter_subscription, parallel_ingress_channel,
    sequence_channel, ChannelFlavor, ChannelSpec, ChannelTemplate, SubscriptionSpec,
};
use herald_core::status::Addressable;
use herald_core::{
    Channel, Check, DeliverySpec, Destination, KReference, Kind, ObjectMeta, Parallel, Resolver,
    Resource, ResourceKey, Sequence, Status, Subscription,
};
use serde_json::json;

/// Annotation naming the flow a derived Channel or Subscription belongs to.
pub const OWNED_BY_ANNOTATION: &str = "herald.dev/owned-by";

const CHANNELS_READY: &str = "ChannelsReady";
const SUBSCRIPTIONS_READY: &str = "SubscriptionsReady";
const ADDRESSABLE: &str = "Addressable";

fn meta(key: &ResourceKey, owner: &str) -> ObjectMeta {
    let mut m = ObjectMeta {
        name: key.name.clone(),
        namespace: Some(key.namespace.clone()),
        ..Default::default()
    };
    m.annotations
        .insert(OWNED_BY_ANNOTATION.into(), owner.to_string());
    m
}

fn channel(key: &ResourceKey, owner: &str, template: &Option<ChannelTemplate>) -> Resource {
    Resource::Channel(Channel {
        metadata: meta(key, owner),
        spec: ChannelSpec {
            channel_template: template.clone(),
            ..Default::default()
        },
        flavor: ChannelFlavor::Channel,
    })
}

fn channel_ref(key: &ResourceKey) -> Destination {
    Destination {
        reference: Some(KReference {
            api_version: Some(herald_core::messaging::MESSAGING_API_VERSION.into()),
            kind: "Channel".into(),
            name: key.name.clone(),
            namespace: Some(key.namespace.clone()),
            group: None,
        }),
        ..Default::default()
    }
}

fn subscription(
    key: &ResourceKey,
    owner: &str,
    channel: &ResourceKey,
    subscriber: Option<Destination>,
    reply: Option<Destination>,
    delivery: Option<DeliverySpec>,
) -> Resource {
    Resource::Subscription(Subscription {
        metadata: meta(key, owner),
        spec: SubscriptionSpec {
            channel: KReference {
                api_version: Some(herald_core::messaging::MESSAGING_API_VERSION.into()),
                kind: "Channel".into(),
                name: channel.name.clone(),
                namespace: None,
                group: None,
            },
            subscriber,
            reply,
            delivery,
        },
    })
}

/// The Channels and Subscriptions a Sequence is made of.
pub(super) fn sequence_parts(seq: &Sequence) -> Vec<Resource> {
    let key = seq.key();
    let owner = format!("Sequence {key}");
    let steps = &seq.spec.steps;
    let mut parts = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let ch = sequence_channel(&key, i);
        parts.push(channel(&ch, &owner, &seq.spec.channel_template));
        let reply = if i + 1 < steps.len() {
            Some(channel_ref(&sequence_channel(&key, i + 1)))
        } else {
            seq.spec.reply.clone()
        };
        parts.push(subscription(
            &ch,
            &owner,
            &ch,
            Some(step.destination()),
            reply,
            step.delivery.clone(),
        ));
    }
    parts
}

/// The Channels and Subscriptions a Parallel is made of.
pub(super) fn parallel_parts(par: &Parallel) -> Vec<Resource> {
    let key = par.key();
    let owner = format!("Parallel {key}");
    let ingress = parallel_ingress_channel(&key);
    let mut parts = vec![channel(&ingress, &owner, &par.spec.channel_template)];
    for (i, branch) in par.spec.branches.iter().enumerate() {
        let ch = parallel_branch_channel(&key, i);
        parts.push(channel(&ch, &owner, &par.spec.channel_template));
        // The filter replies with the events it passes; without one, events go straight on.
        parts.push(subscription(
            &parallel_filter_subscription(&key, i),
            &owner,
            &ingress,
            branch.filter.clone(),
            Some(channel_ref(&ch)),
            branch.delivery.clone(),
        ));
        parts.push(subscription(
            &ch,
            &owner,
            &ch,
            Some(branch.subscriber.clone()),
            branch.reply.clone().or_else(|| par.spec.reply.clone()),
            branch.delivery.clone(),
        ));
    }
    parts
}

impl State {
    /// Applies the parts of every flow (owned by it) and removes parts whose flow is gone or
    /// no longer has them.
    pub(super) async fn expand_flows(&mut self) {
        let mut wanted: Vec<(Resource, Owner)> = Vec::new();
        for (key, e) in &self.sequences {
            let owner = Owner::Flow(Kind::Sequence, key.clone());
            wanted.extend(
                sequence_parts(&e.resource)
                    .into_iter()
                    .map(|r| (r, owner.clone())),
            );
        }
        for (key, e) in &self.parallels {
            let owner = Owner::Flow(Kind::Parallel, key.clone());
            wanted.extend(
                parallel_parts(&e.resource)
                    .into_iter()
                    .map(|r| (r, owner.clone())),
            );
        }
        let keep: Vec<(Kind, ResourceKey)> =
            wanted.iter().map(|(r, _)| (r.kind(), r.key())).collect();
        for (resource, owner) in wanted {
            self.upsert(resource, owner);
        }
        let flows: Vec<Owner> = self
            .channels
            .values()
            .map(|e| e.owner.clone())
            .chain(self.subscriptions.values().map(|e| e.owner.clone()))
            .filter(|o| matches!(o, Owner::Flow(..)))
            .collect();
        for owner in flows {
            for (kind, key) in self.owned_by(&owner) {
                if !keep.contains(&(kind, key.clone())) {
                    self.remove(kind, &key).await;
                }
            }
        }
    }

    /// Whether any resource is not ready (worth reconciling again later).
    pub(super) fn anything_not_ready(&self) -> bool {
        fn any<T>(m: &std::collections::BTreeMap<ResourceKey, super::Entry<T>>) -> bool {
            m.values().any(|e| !e.status.is_ready())
        }
        any(&self.brokers)
            || any(&self.triggers)
            || any(&self.channels)
            || any(&self.subscriptions)
            || any(&self.sequences)
            || any(&self.parallels)
            || any(&self.transforms)
            || self.sources.values().any(any)
    }

    /// A flow's status from its parts: Ready when every Channel and Subscription it owns is.
    fn parts_status(
        &self,
        resolver: &Resolver,
        kind: Kind,
        key: &ResourceKey,
        status: &mut Status,
        generation: i64,
    ) {
        let owner = Owner::Flow(kind, key.clone());
        let part = |ready: bool, name: &ResourceKey| (ready, name.name.clone());
        let channels: Vec<_> = self
            .channels
            .iter()
            .filter(|(_, e)| e.owner == owner)
            .map(|(k, e)| part(e.status.is_ready(), k))
            .collect();
        let subscriptions: Vec<_> = self
            .subscriptions
            .iter()
            .filter(|(_, e)| e.owner == owner)
            .map(|(k, e)| part(e.status.is_ready(), k))
            .collect();
        let check = |parts: &[(bool, String)], what: &str| match parts.iter().find(|(r, _)| !r) {
            None => Check::Ok,
            Some((_, name)) => Check::failed(
                format!("{what}NotReady"),
                format!("{what} {name} is not ready; its status says why"),
            ),
        };
        let listing = |parts: &[(bool, String)], api: &str, what: &str| {
            parts
                .iter()
                .map(|(ready, name)| {
                    json!({"ref": {"apiVersion": api, "kind": what, "name": name}, "ready": ready})
                })
                .collect::<Vec<_>>()
        };
        status.observed_generation = generation;
        status.address = resolver.address(kind, key).map(|url| Addressable {
            url: url.to_string(),
        });
        status.extra.insert(
            "channelStatuses".into(),
            listing(
                &channels,
                herald_core::messaging::MESSAGING_API_VERSION,
                "Channel",
            )
            .into(),
        );
        status.extra.insert(
            "subscriptionStatuses".into(),
            listing(
                &subscriptions,
                herald_core::messaging::MESSAGING_API_VERSION,
                "Subscription",
            )
            .into(),
        );
        status.set_all(&[
            (CHANNELS_READY, check(&channels, "Channel")),
            (SUBSCRIPTIONS_READY, check(&subscriptions, "Subscription")),
            (ADDRESSABLE, Check::Ok),
        ]);
    }
}

impl DataPlane {
    pub(super) fn flow_status(&self, state: &mut State) {
        for kind in [Kind::Sequence, Kind::Parallel] {
            let keys: Vec<ResourceKey> = match kind {
                Kind::Sequence => state.sequences.keys().cloned().collect(),
                _ => state.parallels.keys().cloned().collect(),
            };
            for key in keys {
                let (mut status, generation) = match kind {
                    Kind::Sequence => {
                        let e = &state.sequences[&key];
                        (e.status.clone(), e.generation)
                    }
                    _ => {
                        let e = &state.parallels[&key];
                        (e.status.clone(), e.generation)
                    }
                };
                state.parts_status(&self.resolver, kind, &key, &mut status, generation);
                match kind {
                    Kind::Sequence => {
                        state.sequences.get_mut(&key).expect("listed").status = status
                    }
                    _ => state.parallels.get_mut(&key).expect("listed").status = status,
                }
            }
        }
    }
}
