//! Attribution: the audit endpoint's work (parse an EventList of 400 events, classify, insert
//! facts) in events/s on one core, and the resolver's latency when the fact is already there.
//! Run: `cargo bench --bench attribution`.

use gitops_reverser::attribution::{FactIndex, Lookup, Resolver, ingest_events, parse_event_list};
use gitops_reverser::audit::read::read_events;
use gitops_reverser::audit::{AuditEvent, Classified, classify};
use gitops_reverser::identity::AuthorMapping;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const BATCH: usize = 400;

/// The real events of the copied test data that are persisted changes (the realistic part of
/// a batch) and some that are not (reads, failures), placeholders made concrete.
fn templates() -> Vec<AuditEvent> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/audit");
    let mut out = Vec::new();
    for dir in [
        "falco-k8s_audit",
        "gitops-reverser",
        "gitops-reverser-mutationlab",
    ] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let text = text.replace("<ts>", "2026-06-02T11:16:29.174537Z");
            if let Ok(input) = read_events(text.as_bytes(), &path.display().to_string()) {
                out.extend(input.events);
            }
        }
    }
    out
}

/// 400 events, each write made unique (uid and resourceVersion) so every change is a new fact.
fn batch(templates: &[AuditEvent], round: usize) -> Vec<AuditEvent> {
    (0..BATCH)
        .map(|i| {
            let mut event = templates[i % templates.len()].clone();
            let n = round * BATCH + i;
            event.audit_id = Some(format!("bench-{n}"));
            if let Some(Value::Object(obj)) = event.response_object.as_mut()
                && let Some(Value::Object(meta)) = obj.get_mut("metadata")
            {
                meta.insert("uid".into(), json!(format!("uid-{n}")));
                meta.insert(
                    "resourceVersion".into(),
                    json!(format!("{}", n + 1_000_000)),
                );
            }
            event
        })
        .collect()
}

fn body(events: &[AuditEvent]) -> Vec<u8> {
    json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": events})
        .to_string()
        .into_bytes()
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (`cargo test --benches`) runs a quick pass.
    let quick = !std::env::args().any(|a| a == "--bench");
    let templates = templates();
    assert!(!templates.is_empty(), "no audit test data");
    let rounds = if quick { 2 } else { 100 };
    let bodies: Vec<Vec<u8>> = (0..rounds).map(|r| body(&batch(&templates, r))).collect();
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    let changes = batch(&templates, 0)
        .iter()
        .filter(|e| !matches!(classify(e), Classified::Skipped(_)))
        .count();

    // Ingest: parse + classify + insert, one thread.
    let index = Arc::new(FactIndex::default());
    let start = Instant::now();
    let mut used = 0;
    for b in &bodies {
        let events = parse_event_list(b).expect("bench batch parses");
        used += ingest_events(&index, &events).used;
    }
    let took = start.elapsed();
    let events = (rounds * BATCH) as f64;
    println!(
        "audit ingest: {rounds} EventLists of {BATCH} events ({} KiB each, {changes} changes per batch): {:.0} events/s ({:.1} ms per batch, {used} changes stored, {} facts held)",
        bytes / rounds / 1024,
        events / took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / rounds as f64,
        index.len(),
    );

    // Resolver: lookups whose fact is present (by uid and rv), one at a time.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let resolver = Resolver::new(
        index.clone(),
        Duration::from_secs(3),
        AuthorMapping::default(),
    );
    let lookups: Vec<Lookup> = (0..rounds)
        .flat_map(|r| batch(&templates, r))
        .filter_map(|e| match classify(&e) {
            Classified::Change(c) => Some(Lookup {
                uid: c.target.uid.clone().or_else(|| {
                    c.object
                        .as_ref()?
                        .pointer("/metadata/uid")?
                        .as_str()
                        .map(str::to_string)
                }),
                resource_version: c.resource_version.clone(),
                deleted: c.kind.removes_object(),
                group: c.target.group.clone(),
                resource: c.target.resource.clone(),
                namespace: c.target.namespace.clone(),
                name: c.target.name.clone(),
                observed_at: jiff::Timestamp::now(),
                ..Lookup::default()
            }),
            _ => None,
        })
        .collect();
    let mut latencies = Vec::with_capacity(lookups.len());
    let mut unknown = 0;
    runtime.block_on(async {
        for lookup in lookups {
            let start = Instant::now();
            let a = resolver.resolve(lookup).await;
            latencies.push(start.elapsed());
            unknown += usize::from(a.author.is_unknown());
        }
    });
    latencies.sort();
    let n = latencies.len().max(1);
    let mean = latencies.iter().sum::<Duration>() / n as u32;
    let p99 = latencies.get(n * 99 / 100).copied().unwrap_or_default();
    println!(
        "resolver, fact present: {n} lookups, mean {:.2} µs, p99 {:.2} µs, {unknown} unknown",
        mean.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6,
    );
}
