//! Trigger filters end to end: the legacy exact-match `filter.attributes`, the Subscriptions API
//! `filters` dialect, and several Triggers with different filters on one Broker.
//!
//! Every server runs with `max_in_flight: 1`, so a Trigger handles its Broker's events one at a
//! time in log order. Each test ends with a "tail" event that every Trigger under test matches:
//! once a subscriber has the tail, every earlier event has been filtered by its Trigger, so the
//! list it holds is final and can be compared exactly (no sleeping).

mod common;

use cloudevents::{Event, EventBuilder, EventBuilderV10};
use common::*;

/// An event with the attributes the filters look at.
fn ev(id: &str, ty: &str, source: &str, region: Option<&str>) -> Event {
    let mut b = EventBuilderV10::new().id(id).ty(ty).source(source);
    if let Some(r) = region {
        b = b.extension("region", r);
    }
    b.build().unwrap()
}

#[tokio::test]
async fn legacy_attribute_filter_exact_match_extensions_and_empty_filters() {
    let by_type = Subscriber::start().await;
    let by_type_and_ext = Subscriber::start().await;
    let any_region = Subscriber::start().await;
    let by_int_ext = Subscriber::start().await;
    let empty_filter = Subscriber::start().await;
    let empty_attributes = Subscriber::start().await;
    let no_filter = Subscriber::start().await;
    let yaml = format!(
        r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: b, namespace: ns}}
spec:
  delivery: {{retry: 0}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: by-type, namespace: ns}}
spec:
  broker: b
  filter:
    attributes:
      type: com.example.order.created
  subscriber: {{uri: "{}"}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: by-type-and-ext, namespace: ns}}
spec:
  broker: b
  filter:
    attributes:
      type: com.example.order.created
      region: eu
  subscriber: {{uri: "{}"}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: any-region, namespace: ns}}
spec:
  broker: b
  filter:
    attributes:
      region: ""
  subscriber: {{uri: "{}"}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: by-int-ext, namespace: ns}}
spec:
  broker: b
  filter:
    attributes:
      amount: "1500"
  subscriber: {{uri: "{}"}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: empty-filter, namespace: ns}}
spec:
  broker: b
  filter: {{}}
  subscriber: {{uri: "{}"}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: empty-attributes, namespace: ns}}
spec:
  broker: b
  filter: {{attributes: {{}}}}
  subscriber: {{uri: "{}"}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: no-filter, namespace: ns}}
spec:
  broker: b
  subscriber: {{uri: "{}"}}
"#,
        by_type.url(),
        by_type_and_ext.url(),
        any_region.url(),
        by_int_ext.url(),
        empty_filter.url(),
        empty_attributes.url(),
        no_filter.url()
    );
    let server = start_with(&yaml, sequential()).await;
    let url = server.broker_url("ns", "b");

    const CREATED: &str = "com.example.order.created";
    accept(&url, &ev("eu", CREATED, "/shop", Some("eu"))).await;
    accept(&url, &ev("us", CREATED, "/shop", Some("us"))).await;
    accept(&url, &ev("no-region", CREATED, "/shop", None)).await;
    // Exact match only: neither a longer nor a shorter type matches.
    accept(
        &url,
        &ev(
            "longer-type",
            "com.example.order.created.v2",
            "/shop",
            Some("eu"),
        ),
    )
    .await;
    accept(
        &url,
        &ev("shorter-type", "com.example.order", "/shop", None),
    )
    .await;
    // An integer extension (structured mode) compares by its canonical string form.
    let mut amount = ev("amount", "com.example.payment", "/shop", None);
    amount.set_extension("amount", 1500i64);
    assert_eq!(send_structured(&url, &amount).await.status, 202);
    let mut other_amount = ev("other-amount", "com.example.payment", "/shop", None);
    other_amount.set_extension("amount", 15000i64);
    assert_eq!(send_structured(&url, &other_amount).await.status, 202);
    // Matched by every Trigger.
    let mut tail = ev("tail", CREATED, "/shop", Some("eu"));
    tail.set_extension("amount", "1500");
    accept(&url, &tail).await;

    let subs = [
        ("by-type", &by_type, vec!["eu", "us", "no-region", "tail"]),
        ("by-type-and-ext", &by_type_and_ext, vec!["eu", "tail"]),
        (
            "any-region",
            &any_region,
            vec!["eu", "us", "longer-type", "tail"],
        ),
        ("by-int-ext", &by_int_ext, vec!["amount", "tail"]),
        (
            "empty-filter",
            &empty_filter,
            vec![
                "eu",
                "us",
                "no-region",
                "longer-type",
                "shorter-type",
                "amount",
                "other-amount",
                "tail",
            ],
        ),
        (
            "empty-attributes",
            &empty_attributes,
            vec![
                "eu",
                "us",
                "no-region",
                "longer-type",
                "shorter-type",
                "amount",
                "other-amount",
                "tail",
            ],
        ),
        (
            "no-filter",
            &no_filter,
            vec![
                "eu",
                "us",
                "no-region",
                "longer-type",
                "shorter-type",
                "amount",
                "other-amount",
                "tail",
            ],
        ),
    ];
    for (name, sub, want) in subs {
        sub.wait_for_id("tail", DEADLINE).await;
        assert_eq!(sub.ids(), want, "Trigger {name}");
    }
    // Matching events arrive whole: the filter reads, never rewrites.
    let got = by_type_and_ext.received();
    assert_same_event(got[0].event(), &ev("eu", CREATED, "/shop", Some("eu")));
    let got = by_int_ext.received();
    assert_eq!(ext(got[0].event(), "amount").as_deref(), Some("1500"));
}

/// One `filters` case: the YAML of the Trigger's filter fields, the events of the shared
/// sequence it must receive, and a tail event it matches.
struct Case {
    name: &'static str,
    spec: &'static str,
    want: &'static [&'static str],
    tail: (&'static str, &'static str, Option<&'static str>),
}

const CASES: &[Case] = &[
    Case {
        name: "exact",
        spec: "filters: [{exact: {type: com.example.order.created}}]",
        want: &["a", "c"],
        tail: ("com.example.order.created", "/t", None),
    },
    Case {
        name: "prefix",
        spec: "filters: [{prefix: {type: com.example.order.}}]",
        want: &["a", "b", "c"],
        tail: ("com.example.order.tail", "/t", None),
    },
    Case {
        name: "suffix",
        spec: "filters: [{suffix: {source: /checkout}}]",
        want: &["a", "d"],
        tail: ("t", "/tail/checkout", None),
    },
    Case {
        name: "all",
        spec: "filters: [{all: [{exact: {region: eu}}, {prefix: {type: com.example.}}]}]",
        want: &["a"],
        tail: ("com.example.tail", "/t", Some("eu")),
    },
    Case {
        name: "any",
        spec: "filters: [{any: [{exact: {region: us}}, {suffix: {type: .refunded}}]}]",
        want: &["b", "e"],
        tail: ("t", "/t", Some("us")),
    },
    Case {
        // A missing attribute does not match `exact`, so `not` of it matches.
        name: "not",
        spec: "filters: [{not: {exact: {region: eu}}}]",
        want: &["b", "c", "e"],
        tail: ("t", "/t", Some("ap")),
    },
    Case {
        name: "nested",
        spec: "filters: [{all: [{not: {exact: {region: us}}}, \
               {any: [{suffix: {source: /cart}}, {prefix: {type: org.}}]}]}]",
        want: &["c", "d"],
        tail: ("t", "/tail/cart", Some("ap")),
    },
    Case {
        // Several entries must all match.
        name: "several-entries",
        spec: "filters: [{prefix: {type: com.}}, {exact: {region: eu}}]",
        want: &["a"],
        tail: ("com.tail", "/t", Some("eu")),
    },
    Case {
        // As in Knative, `filters` wins over the legacy `filter` when both are set.
        name: "filters-over-filter",
        spec: "filter: {attributes: {type: nope}}\n  filters: [{exact: {region: us}}]",
        want: &["b", "e"],
        tail: ("t", "/t", Some("us")),
    },
];

#[tokio::test]
async fn filters_dialect_exact_prefix_suffix_all_any_not() {
    // One Broker per case, so each case's tail proves its list final.
    let mut yaml = String::new();
    let mut subs = Vec::new();
    for case in CASES {
        let sub = Subscriber::start().await;
        yaml.push_str(&format!(
            r#"
---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: {name}, namespace: ns}}
spec:
  delivery: {{retry: 0}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: {name}, namespace: ns}}
spec:
  broker: {name}
  {spec}
  subscriber: {{uri: "{uri}"}}
"#,
            name = case.name,
            spec = case.spec,
            uri = sub.url()
        ));
        subs.push(sub);
    }
    let server = start_with(&yaml, sequential()).await;

    let shared = [
        ev(
            "a",
            "com.example.order.created",
            "/shop/checkout",
            Some("eu"),
        ),
        ev("b", "com.example.order.refunded", "/shop/cart", Some("us")),
        ev("c", "com.example.order.created", "/shop/cart", None),
        ev("d", "org.other.thing", "/x/checkout", Some("eu")),
        ev("e", "com.example.ordering", "/shop", Some("us")),
    ];
    for case in CASES {
        let url = server.broker_url("ns", case.name);
        for e in &shared {
            accept(&url, e).await;
        }
        let (ty, source, region) = case.tail;
        accept(&url, &ev("tail", ty, source, region)).await;
    }
    let mut failures = Vec::new();
    for (case, sub) in CASES.iter().zip(&subs) {
        sub.wait_for_id("tail", DEADLINE).await;
        let mut want: Vec<&str> = case.want.to_vec();
        want.push("tail");
        let got = sub.ids();
        if got != want {
            failures.push(format!("{}: want {want:?}, got {got:?}", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn two_triggers_on_one_broker_each_receive_only_their_events() {
    let europe = Subscriber::start().await;
    let shipping = Subscriber::start().await;
    let yaml = format!(
        r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: shop, namespace: ns}}
spec:
  delivery: {{retry: 0}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: europe, namespace: ns}}
spec:
  broker: shop
  filter:
    attributes:
      region: eu
  subscriber: {{uri: "{}"}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: shipping, namespace: ns}}
spec:
  broker: shop
  filters:
    - prefix: {{type: com.example.shipping.}}
  subscriber: {{uri: "{}"}}
"#,
        europe.url(),
        shipping.url()
    );
    let server = start_with(&yaml, sequential()).await;
    let url = server.broker_url("ns", "shop");
    let sent = [
        ev("eu-order", "com.example.order.created", "/shop", Some("eu")),
        ev(
            "us-shipping",
            "com.example.shipping.started",
            "/ship",
            Some("us"),
        ),
        ev(
            "eu-billing",
            "com.example.billing.paid",
            "/bill",
            Some("eu"),
        ),
        ev("us-other", "com.example.other", "/x", Some("us")),
        ev(
            "shipping-no-region",
            "com.example.shipping.delayed",
            "/ship",
            None,
        ),
        ev(
            "shipping-lookalike",
            "com.example.shippingx",
            "/ship",
            Some("ap"),
        ),
        // Both match the tail.
        ev("tail", "com.example.shipping.done", "/ship", Some("eu")),
    ];
    for e in &sent {
        accept(&url, e).await;
    }
    europe.wait_for_id("tail", DEADLINE).await;
    shipping.wait_for_id("tail", DEADLINE).await;
    assert_eq!(europe.ids(), ["eu-order", "eu-billing", "tail"]);
    assert_eq!(
        shipping.ids(),
        ["us-shipping", "shipping-no-region", "tail"]
    );
    for r in europe.received().iter().chain(shipping.received().iter()) {
        let want = sent
            .iter()
            .find(|e| r.id() == cloudevents::AttributesReader::id(*e));
        assert_same_event(r.event(), want.unwrap());
    }
}
