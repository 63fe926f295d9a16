//! Filter evaluation speed over a realistic event: each filter kind alone, and a broker with
//! 1,000 Triggers (the per-event cost of routing). Criterion prints evaluations/s as
//! `thrpt` (elements per second).

use cloudevents::{Event, EventBuilder, EventBuilderV10};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use herald_core::{SubscriptionsApiFilter, TriggerFilter, TriggerSpec};
use herald_dispatcher::Filter;

fn event() -> Event {
    EventBuilderV10::new()
        .id("5c8d2c3e-1b6f-4e8a-9d0c-8f2f6a1b7c3d")
        .source("/shop/eu-west/checkout")
        .ty("com.example.order.created")
        .subject("orders/12345")
        .time(chrono::Utc::now())
        .extension("region", "eu")
        .extension("amount", 1500i64)
        .extension("tenant", "acme")
        .extension(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .data(
            "application/json",
            serde_json::json!({"order": 12345, "items": 3}),
        )
        .build()
        .expect("valid event")
}

fn dialect(yaml: &str) -> Filter {
    let filters: Vec<SubscriptionsApiFilter> = serde_yaml::from_str(yaml).expect("valid yaml");
    Filter::compile(&TriggerSpec {
        filters,
        ..Default::default()
    })
    .expect("valid filter")
}

fn kinds(c: &mut Criterion) {
    let e: herald_channels::WireEvent = event().into();
    let legacy = Filter::compile(&TriggerSpec {
        filter: Some(TriggerFilter {
            attributes: [
                ("type".to_string(), "com.example.order.created".to_string()),
                ("region".to_string(), "eu".to_string()),
            ]
            .into(),
        }),
        ..Default::default()
    })
    .expect("valid filter");
    let cases = [
        ("legacy attributes (2)", legacy),
        ("exact", dialect("- exact: {type: com.example.order.created}")),
        ("prefix", dialect("- prefix: {type: com.example.}")),
        ("suffix", dialect("- suffix: {source: /checkout}")),
        ("all (3)", dialect("- all: [{prefix: {type: com.}}, {exact: {region: eu}}, {suffix: {source: checkout}}]")),
        ("any (3, last matches)", dialect("- any: [{exact: {region: us}}, {exact: {region: ap}}, {exact: {region: eu}}]")),
        ("not", dialect("- not: {exact: {tenant: test}}")),
        ("cesql simple", dialect("- cesql: \"type = 'com.example.order.created'\"")),
        (
            "cesql sample",
            dialect("- cesql: \"INT(amount) > 1000 AND region IN ('eu', 'us') AND type LIKE 'com.example.%'\""),
        ),
    ];
    let mut group = c.benchmark_group("filter");
    group.throughput(Throughput::Elements(1));
    for (name, filter) in &cases {
        group.bench_function(*name, |b| {
            b.iter(|| black_box(filter.matches(black_box(&e))))
        });
    }
    group.finish();
}

/// 1,000 Triggers on one broker, a realistic mix of kinds; 10 match the event.
fn thousand_triggers(c: &mut Criterion) {
    let e: herald_channels::WireEvent = event().into();
    let filters: Vec<Filter> = (0..1000)
        .map(|i| match i % 4 {
            0 if i < 40 => dialect("- exact: {type: com.example.order.created}"),
            0 => dialect(&format!("- exact: {{type: com.example.t{i}}}")),
            1 => dialect(&format!("- prefix: {{type: com.example.p{i}.}}")),
            2 => dialect(&format!(
                "- all: [{{exact: {{region: r{i}}}}}, {{prefix: {{type: com.}}}}]"
            )),
            _ => dialect(&format!("- cesql: \"tenant = 't{i}' AND amount > 10\"")),
        })
        .collect();
    let mut group = c.benchmark_group("broker");
    group.throughput(Throughput::Elements(filters.len() as u64));
    group.bench_function("1000 triggers, one event", |b| {
        b.iter(|| filters.iter().filter(|f| f.matches(black_box(&e))).count())
    });
    group.finish();
}

criterion_group!(benches, kinds, thousand_triggers);
criterion_main!(benches);
