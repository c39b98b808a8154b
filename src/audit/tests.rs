//! Tests of reading and classifying the real-world audit captures in tests/data/audit/ (see its
//! SOURCES.md), plus hand-made edge cases and a no-panic property test on garbage input.

use super::*;
use crate::identity::{AuthorMapping, impersonation_trailer};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/audit");
/// Stands in for the mutationlab's `<ts>` placeholder where a test needs a real time.
const LAB_TIME: &str = "2026-06-25T10:00:00Z";

fn path(rel: &str) -> PathBuf {
    Path::new(DATA).join(rel)
}

fn read_file(rel: &str) -> AuditInput {
    let file = std::fs::File::open(path(rel)).unwrap();
    read_events(file, rel).unwrap_or_else(|e| panic!("{e}"))
}

/// A mutationlab capture with `<ts>` replaced by a fixed time.
fn read_lab(name: &str) -> Vec<AuditEvent> {
    let rel = format!("gitops-reverser-mutationlab/{name}");
    let text = std::fs::read_to_string(path(&rel))
        .unwrap()
        .replace("<ts>", LAB_TIME);
    read_events(text.as_bytes(), &rel).unwrap().events
}

fn one(events: Vec<AuditEvent>) -> AuditEvent {
    assert_eq!(events.len(), 1);
    events.into_iter().next().unwrap()
}

fn only_event(rel: &str) -> AuditEvent {
    let input = read_file(rel);
    assert!(input.malformed.is_empty(), "{:?}", input.malformed);
    one(input.events)
}

fn change_of(event: &AuditEvent) -> AuditChange {
    match classify(event) {
        Classified::Change(c) => c,
        other => panic!("expected a change, got {other:?}"),
    }
}

fn skip_of(event: &AuditEvent) -> SkipReason {
    match classify(event) {
        Classified::Skipped(r) => r,
        other => panic!("expected a skip, got {other:?}"),
    }
}

/// Counts per outcome: `change`, `changes` (members), `scale`, or the skip label.
fn summary<'a>(events: impl IntoIterator<Item = &'a AuditEvent>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in events {
        let (key, n) = match classify(e) {
            Classified::Change(_) => ("change".to_string(), 1),
            Classified::Changes(c) => ("changes".to_string(), c.len()),
            Classified::Scale(_) => ("scale".to_string(), 1),
            Classified::Skipped(r) => (r.label(), 1),
        };
        *out.entry(key).or_default() += n;
    }
    out
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn audit_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    files_under(Path::new(DATA), &mut files);
    files.retain(|p| {
        !p.ends_with("SOURCES.md") && !p.starts_with(Path::new(DATA).join("admission"))
    });
    files.sort();
    files
}

#[test]
fn every_copied_file_reads_without_error_or_malformed_entry() {
    let files = audit_files();
    assert_eq!(files.len(), 79);
    let mut per_dir: BTreeMap<String, usize> = BTreeMap::new();
    for file in &files {
        let rel = file
            .strip_prefix(DATA)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let input = read_file(&rel);
        assert!(input.malformed.is_empty(), "{rel}: {:?}", input.malformed);
        assert!(!input.events.is_empty(), "{rel}");
        let dir = rel.split('/').next().unwrap_or_default().to_string();
        *per_dir.entry(dir).or_default() += input.events.len();
        // Classifying never panics, placeholders included.
        for e in &input.events {
            let _ = classify(e);
        }
    }
    assert_eq!(
        per_dir,
        counts(&[
            ("audit2rbac-demo-raw-v1beta1.log", 757),
            ("audit2rbac-demo-v1.log", 37),
            ("falco-k8s_audit", 51),
            ("gitops-reverser", 11),
            ("gitops-reverser-mutationlab", 20),
        ])
    );
}

#[test]
fn admission_reviews_are_not_audit_data() {
    let rel = "admission/kube-audit-rest-rancher-desktop.jsonl";
    let err = read_events(std::fs::File::open(path(rel)).unwrap(), rel).unwrap_err();
    assert!(
        matches!(err, AuditError::NotAuditData { count: 59, .. }),
        "{err}"
    );
    assert!(
        err.to_string().starts_with(
            "admission/kube-audit-rest-rancher-desktop.jsonl: not audit data: none of 59 entries \
             is an audit event (first: line 1: not an audit event: kind \"AdmissionReview\")"
        ),
        "{err}"
    );
}

#[test]
fn audit2rbac_v1beta1_summary() {
    let input = read_file("audit2rbac-demo-raw-v1beta1.log");
    assert_eq!(
        summary(&input.events),
        counts(&[
            ("change", 74),
            ("failed: 403", 11),
            ("failed: 404", 90),
            ("no responseObject", 140),
            ("read-only verb get", 119),
            ("read-only verb list", 3),
            ("stage:RequestReceived", 320),
        ])
    );
    // The deletes are Metadata level: identified by objectRef, timed by the v1beta1 timestamp.
    let delete = input
        .events
        .iter()
        .find_map(|e| match classify(e) {
            Classified::Change(c) => Some(c),
            _ => None,
        })
        .unwrap();
    assert_eq!(delete.verb, Verb::Delete);
    assert_eq!(delete.kind, ChangeKind::Delete);
    assert_eq!(delete.object, None);
    assert_eq!(delete.target.group, "rbac.authorization.k8s.io");
    assert_eq!(delete.target.resource.as_str(), "roles");
    assert_eq!(delete.target.kind, None);
    assert!(
        delete
            .request_received
            .to_string()
            .starts_with("2017-09-11T")
    );
}

#[test]
fn audit2rbac_v1_impersonation() {
    let input = read_file("audit2rbac-demo-v1.log");
    assert_eq!(
        summary(&input.events),
        counts(&[
            ("failed: 403", 11),
            ("read-only verb get", 23),
            ("read-only verb list", 3),
        ])
    );
    let first = &input.events[0];
    assert_eq!(skip_of(first), SkipReason::Failed(403));
    assert_eq!(first.author_user().username, "bob");
    assert_eq!(first.impersonator().unwrap().username, "system:admin");
    let mapping = AuthorMapping::default();
    assert_eq!(mapping.author(first.author_user()).name, "bob");
    assert_eq!(
        impersonation_trailer(first.impersonator().unwrap()),
        "Impersonated-by: system:admin"
    );
}

#[test]
fn falco_summary_and_configmap_create() {
    let mut events = Vec::new();
    let mut files = 0;
    for file in audit_files()
        .into_iter()
        .filter(|p| p.starts_with(path("falco-k8s_audit")))
    {
        files += 1;
        let rel = file
            .strip_prefix(DATA)
            .unwrap()
            .to_string_lossy()
            .to_string();
        events.extend(read_file(&rel).events);
    }
    assert_eq!(files, 46);
    assert_eq!(
        summary(&events),
        counts(&[
            ("change", 35),
            ("no responseObject", 13),
            ("read-only verb get", 1),
            ("stage:ResponseStarted", 2),
        ])
    );

    let event = only_event("falco-k8s_audit/create_configmap.json");
    let c = change_of(&event);
    assert_eq!((c.verb, c.kind), (Verb::Create, ChangeKind::Upsert));
    assert_eq!(c.target.to_string(), "v1 ConfigMap default/my-config");
    assert_eq!(c.target.resource, "configmaps");
    // The response's uid, not the request's: the response is authoritative.
    assert_eq!(
        c.target.uid.as_deref(),
        Some("ded3abb9-d920-11e8-a2e6-080027728ac4")
    );
    assert_eq!(c.resource_version.as_deref(), Some("265142"));
    assert_eq!(c.object.as_ref(), event.response_object.as_ref());
    assert_eq!(c.request_received.to_string(), "2018-10-26T13:13:03.53918Z");
    assert_eq!(c.author_user().username, "minikube-user");
    assert!(c.impersonator().is_none());
    assert_eq!(
        c.audit_id.as_deref(),
        Some("155b887c-c27c-4fdb-9667-999f74512d0a")
    );
    assert_eq!(
        c.target.object_id().unwrap().to_string(),
        "v1/ConfigMap default/my-config"
    );

    let six = read_file("falco-k8s_audit/create_configmap_sensitive_values.json");
    assert_eq!(six.events.len(), 6);
    assert_eq!(summary(&six.events), counts(&[("change", 6)]));
    for e in &six.events {
        assert_eq!(change_of(e).target.kind.as_deref(), Some("ConfigMap"));
    }

    // A delete answered with a Status: the uid comes from the Status details.
    let c = change_of(&only_event("falco-k8s_audit/delete_configmap.json"));
    assert_eq!((c.verb, c.kind), (Verb::Delete, ChangeKind::Delete));
    assert_eq!(c.object, None);
    assert_eq!(
        c.target.uid.as_deref(),
        Some("ded3abb9-d920-11e8-a2e6-080027728ac4")
    );
    // extensions/v1beta1 Deployment delete at Request level: objectRef only.
    let c = change_of(&only_event("falco-k8s_audit/delete_deployment.json"));
    assert_eq!(
        c.target.to_string(),
        "extensions/v1beta1 deployments default/nginx-deployment"
    );
    assert_eq!(
        skip_of(&only_event("falco-k8s_audit/attach_pod.json")),
        SkipReason::Stage("ResponseStarted".into())
    );
}

#[test]
fn dry_runs_are_skipped() {
    let lab = one(read_lab("configmap__dry-run-create__audit.create.yaml"));
    assert_eq!(skip_of(&lab), SkipReason::DryRun);
    let flux = only_event("gitops-reverser/flux-secret-dryrun-patch-eventlist.yaml");
    assert_eq!(skip_of(&flux), SkipReason::DryRun);
    assert_eq!(skip_of(&flux).label(), "dry run");
}

#[test]
fn deletecollection_expanded_only_when_the_response_lists_objects() {
    for hollow in [
        "gitops-reverser/audit-deletecollection-official-raw-hollow.json",
        "gitops-reverser/audit-deletecollection-official-teardown-hollow.json",
        "gitops-reverser/audit-deletecollection-proxy-teardown-deleteoptions.json",
    ] {
        assert_eq!(
            skip_of(&only_event(hollow)),
            SkipReason::DeleteCollectionWithoutObjects,
            "{hollow}"
        );
    }
    assert_eq!(
        SkipReason::DeleteCollectionWithoutObjects.label(),
        "deletecollection without the deleted objects in the response"
    );

    let event = only_event("gitops-reverser/audit-deletecollection-proxy-raw-listbody.json");
    let Classified::Changes(changes) = classify(&event) else {
        panic!("expected changes");
    };
    let got: Vec<_> = changes
        .iter()
        .map(|c| (c.target.to_string(), c.target.uid.clone().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "wardle.example.com/v1alpha1 Flunder example-raw/member-0".to_string(),
                "e1b076ff-f430-4b82-ad7b-c170c4095fe3".to_string()
            ),
            (
                "wardle.example.com/v1alpha1 Flunder example-raw/member-1".to_string(),
                "5ce03312-bab3-4e72-af37-e0ff893a7b76".to_string()
            ),
        ]
    );
    for c in &changes {
        assert_eq!(
            (c.verb, c.kind),
            (Verb::DeleteCollection, ChangeKind::Delete)
        );
        let object = c.object.as_ref().unwrap();
        assert_eq!(object["kind"], "Flunder");
        assert_eq!(object["apiVersion"], "wardle.example.com/v1alpha1");
        assert_eq!(c.author_user().username, "system:admin");
        assert_eq!(
            c.request_received.to_string(),
            "2026-06-02T11:16:29.162706Z"
        );
    }
    assert_eq!(changes[1].resource_version.as_deref(), Some("50"));

    let config = only_event("gitops-reverser/config-deletecollection.yaml");
    let Classified::Changes(changes) = classify(&config) else {
        panic!("expected changes");
    };
    let names: Vec<_> = changes.iter().map(|c| c.target.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "kube-root-ca.crt",
            "test-map-1",
            "test-map-2",
            "test-map-3",
            "test-map-4",
            "test-map-5"
        ]
    );
    assert!(
        changes
            .iter()
            .all(|c| c.target.kind.as_deref() == Some("ConfigMap")
                && c.target.namespace.as_deref() == Some("new-config-ns"))
    );

    let lab = one(read_lab(
        "configmap__deletecollection__audit.deletecollection.yaml",
    ));
    assert!(matches!(classify(&lab), Classified::Changes(c) if c.len() == 3));
    let aggregated = one(read_lab(
        "flunder__aggregated-api-deletecollection__audit.deletecollection.yaml",
    ));
    assert_eq!(
        skip_of(&aggregated),
        SkipReason::DeleteCollectionWithoutObjects
    );
}

#[test]
fn scale_subresource() {
    let mut event = only_event("gitops-reverser/deployment-scale-subresource.json");
    // The capture was trimmed of its timestamps: without a time it is not usable.
    assert_eq!(skip_of(&event), SkipReason::NoTimestamp);
    event.request_received_timestamp = Some("2026-06-08T04:40:00.123456Z".into());
    let Classified::Scale(scale) = classify(&event) else {
        panic!("expected a scale");
    };
    assert_eq!(scale.replicas, 3);
    assert_eq!(scale.verb, Verb::Patch);
    assert_eq!(
        scale.parent.to_string(),
        "apps/v1 deployments scale-audit-capture/scale-audit-target"
    );
    assert_eq!(scale.parent.kind, None);
    assert_eq!(
        scale.parent.uid.as_deref(),
        Some("251415e8-3e88-4fd3-93e0-a07f99d0a890")
    );
    assert_eq!(scale.resource_version.as_deref(), Some("6977"));
    assert_eq!(scale.author_user().username, "system:admin");

    let lab = one(read_lab("deployment__scale-patch__audit.patch.yaml"));
    assert!(
        matches!(classify(&lab), Classified::Scale(s) if s.replicas == 2 && s.parent.name == "d1")
    );

    // Scale to zero: autoscaling/v1 omits the field.
    let mut zero = event.clone();
    zero.response_object = Some(json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": "scale-audit-target"}, "spec": {}}));
    assert!(matches!(classify(&zero), Classified::Scale(s) if s.replicas == 0));
    let mut not_scale = event.clone();
    not_scale.response_object = Some(json!({"kind": "Deployment"}));
    assert_eq!(
        skip_of(&not_scale).label(),
        "responseObject is not the object"
    );
    let mut status = event;
    status.object_ref.as_mut().unwrap().subresource = Some("status".into());
    assert_eq!(skip_of(&status).label(), "subresource status");
}

#[test]
fn impersonated_write_is_authored_by_the_impersonated_user() {
    let event = one(read_lab(
        "configmap__deletion-intent-actor__audit.delete.yaml",
    ));
    let c = change_of(&event);
    // A delete whose response still has a finalizer: pending, the object is still stored.
    assert_eq!((c.verb, c.kind), (Verb::Delete, ChangeKind::DeletePending));
    assert!(c.object.is_some());
    assert_eq!(c.author_user().username, "alice@example.com");
    assert_eq!(c.impersonator().unwrap().username, "system:admin");
    let author = AuthorMapping::default().author(c.author_user());
    assert_eq!(
        (author.name.as_str(), author.email.as_str()),
        ("alice@example.com", "alice@example.com")
    );
    assert_eq!(
        c.request_received,
        LAB_TIME.parse::<jiff::Timestamp>().unwrap()
    );
}

#[test]
fn finalizers_and_cascades() {
    let pending = change_of(&one(read_lab(
        "configmap__finalizer-delete__audit.delete.yaml",
    )));
    assert_eq!(pending.kind, ChangeKind::DeletePending);
    assert!(!pending.kind.removes_object());
    let finalized = change_of(&one(read_lab(
        "configmap__finalizer-delete__audit.patch.yaml",
    )));
    assert_eq!(
        (finalized.verb, finalized.kind),
        (Verb::Patch, ChangeKind::DeleteFinalized)
    );
    assert!(finalized.kind.removes_object());
    assert_eq!(finalized.target.uid, pending.target.uid);
    let by_sa = change_of(&one(read_lab(
        "configmap__deletion-intent-actor__audit.patch.yaml",
    )));
    assert_eq!(by_sa.kind, ChangeKind::DeleteFinalized);
    assert_eq!(
        by_sa.author_user().username,
        "system:serviceaccount:lab-actors:finalizer-controller"
    );
    let child = change_of(&one(read_lab(
        "configmap__owner-ref-cascade__audit.delete.cm-child.yaml",
    )));
    assert_eq!(
        (child.kind, child.object.as_ref()),
        (ChangeKind::Delete, None)
    );
    assert_eq!(child.target.uid.as_deref(), Some("<uid-1>"));
    assert_eq!(
        child.author_user().username,
        "system:serviceaccount:kube-system:generic-garbage-collector"
    );
}

#[test]
fn mutationlab_outcomes() {
    let outcome = |name: &str| {
        let e = one(read_lab(name));
        match classify(&e) {
            Classified::Change(c) => format!("{} {:?} {}", c.verb, c.kind, c.target),
            Classified::Changes(c) => format!("{} changes", c.len()),
            Classified::Scale(s) => format!("scale {} {}", s.parent, s.replicas),
            Classified::Skipped(r) => format!("skipped: {}", r.label()),
        }
    };
    let expected = [
        (
            "configmap__conflict-update__audit.update.yaml",
            "skipped: failed: 409",
        ),
        (
            "configmap__create-succeeds__audit.create.yaml",
            "create Upsert v1 ConfigMap <ns-1>/cm-a",
        ),
        (
            "configmap__generate-name-create__audit.create.yaml",
            "create Upsert v1 ConfigMap <ns-1>/cm-gen-<rand-1>",
        ),
        (
            "configmap__no-op-apply__audit.patch.yaml",
            "patch Upsert v1 ConfigMap <ns-1>/cm-a",
        ),
        (
            "configmap__owner-ref-cascade__audit.delete.cm-parent.yaml",
            "delete Delete v1 configmaps <ns-1>/cm-parent",
        ),
        (
            "configmap__record-and-reject__audit.create.yaml",
            "skipped: failed: 403",
        ),
        (
            "configmap__server-side-apply__audit.patch.yaml",
            "patch Upsert v1 ConfigMap <ns-1>/cm-a",
        ),
        (
            "configmap__update__audit.update.yaml",
            "update Upsert v1 ConfigMap <ns-1>/cm-a",
        ),
        (
            "flunder__aggregated-api-delete__audit.delete.yaml",
            "delete Delete wardle.example.com/v1alpha1 flunders <ns-1>/fl-del",
        ),
        (
            "flunder__aggregated-api-write__audit.create.yaml",
            "skipped: no responseObject",
        ),
        (
            "widget__crd-conversion__audit.create.yaml",
            "create Upsert mutationlab.configbutler.ai/v1 Widget <ns-1>/w1",
        ),
    ];
    for (name, want) in expected {
        assert_eq!(outcome(name), want, "{name}");
    }
    // Without the time substituted, usable changes say they have no timestamp.
    let raw = only_event("gitops-reverser-mutationlab/configmap__update__audit.update.yaml");
    assert_eq!(skip_of(&raw), SkipReason::NoTimestamp);
}

#[test]
fn gitops_reverser_captures() {
    // Hand-trimmed without timestamps: unusable as is, a change once it has a time.
    let mut flunder = only_event("gitops-reverser/aggregated-flunder-create-eventlist.yaml");
    assert_eq!(skip_of(&flunder), SkipReason::NoTimestamp);
    flunder.stage_timestamp = Some("2026-06-16T08:54:01.227077Z".into());
    let c = change_of(&flunder);
    assert_eq!(c.author_user().username, "jane@acme.com");
    assert_eq!(
        c.target.to_string(),
        "wardle.example.com/v1alpha1 Flunder default/aggregated-shallow-flunder"
    );
    assert_eq!(
        c.request_received.to_string(),
        "2026-06-16T08:54:01.227077Z"
    );
    let addon = only_event("gitops-reverser/k3s-addon-unchanged-rv-update-eventlist.yaml");
    assert_eq!(skip_of(&addon), SkipReason::NoOp);
    let patch = only_event("gitops-reverser/config-update.yaml");
    let c = change_of(&patch);
    assert_eq!(
        c.target.to_string(),
        "v1 ConfigMap new-config-ns/test-config3"
    );
    assert_eq!(c.resource_version.as_deref(), Some("13772844"));
    assert!(c.impersonator().is_none());
    let persisted = only_event("gitops-reverser/flux-secret-persisted-patch-eventlist.yaml");
    assert_eq!(skip_of(&persisted), SkipReason::NoTimestamp);
}

#[test]
fn gzip_input_is_detected() {
    let plain = std::fs::read(path("audit2rbac-demo-raw-v1beta1.log")).unwrap();
    let gzip = |bytes: &[u8]| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    };
    let one_member = gzip(&plain);
    let got = read_events(one_member.as_slice(), "demo.log.gz").unwrap();
    assert_eq!(got.events.len(), 757);
    assert_eq!(got, read_events(plain.as_slice(), "demo.log").unwrap());
    // Rotated logs concatenated: several gzip members.
    let mut two = one_member.clone();
    two.extend(gzip(b"\n"));
    two.extend(&one_member);
    assert_eq!(read_events(two.as_slice(), "x").unwrap().events.len(), 1514);
    // A YAML EventList, gzipped.
    let yaml = std::fs::read(path("gitops-reverser/config-deletecollection.yaml")).unwrap();
    assert_eq!(
        read_events(gzip(&yaml).as_slice(), "y")
            .unwrap()
            .events
            .len(),
        1
    );
    // A truncated gzip stream is an error naming the input.
    let cut = &one_member[..one_member.len() / 2];
    let err = read_events(cut, "cut.gz").unwrap_err();
    assert!(err.to_string().starts_with("cut.gz: cannot read"), "{err}");
}

#[test]
fn hand_made_edge_cases() {
    let base = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": "x", "stage": "ResponseComplete",
        "verb": "update", "requestURI": "/api/v1/namespaces/a/configmaps/c",
        "user": {"username": "u"},
        "objectRef": {"resource": "configmaps", "namespace": "a", "name": "c", "apiVersion": "v1",
            "resourceVersion": "5"},
        "responseStatus": {"code": 200},
        "responseObject": {"kind": "ConfigMap", "apiVersion": "v1",
            "metadata": {"name": "c", "namespace": "a", "resourceVersion": "6"}},
        "requestReceivedTimestamp": "2026-01-01T00:00:00Z"
    });
    let with = |patch: serde_json::Value| {
        let mut v = base.clone();
        json_patch::merge(&mut v, &patch);
        serde_json::from_value::<AuditEvent>(v).unwrap()
    };
    let label = |patch: serde_json::Value| match classify(&with(patch)) {
        Classified::Skipped(r) => r.label(),
        Classified::Change(c) => format!("change {:?}", c.kind),
        other => format!("{other:?}"),
    };
    assert_eq!(label(json!({})), "change Upsert");
    assert_eq!(label(json!({"stage": null})), "no stage");
    assert_eq!(label(json!({"stage": "Bogus"})), "stage:other");
    assert_eq!(label(json!({"stage": "Panic"})), "stage:Panic");
    assert_eq!(label(json!({"responseStatus": null})), "no responseStatus");
    assert_eq!(
        label(json!({"responseStatus": {"code": 500}})),
        "failed: 500"
    );
    assert_eq!(
        label(json!({"responseStatus": {"code": 99999}})),
        "failed: other"
    );
    assert_eq!(label(json!({"verb": "watch"})), "read-only verb watch");
    assert_eq!(label(json!({"verb": "escalate"})), "unsupported verb");
    assert_eq!(label(json!({"objectRef": null})), "no objectRef");
    assert_eq!(
        label(json!({"objectRef": {"subresource": "Weird/Thing"}})),
        "subresource other"
    );
    assert_eq!(
        label(json!({"requestURI": "/api/v1/x?dryRun=All"})),
        "dry run"
    );
    assert_eq!(label(json!({"responseObject": null})), "no responseObject");
    assert_eq!(
        label(json!({"responseObject": {"kind": "Status", "status": "Success"}})),
        "responseObject is a Status"
    );
    assert_eq!(
        label(json!({"responseObject": {"metadata": {"name": "other"}}})),
        "responseObject is not the object"
    );
    assert_eq!(
        label(json!({"responseObject": {"metadata": {"namespace": "b"}}})),
        "responseObject is not the object"
    );
    assert_eq!(
        label(json!({"responseObject": {"metadata": {"resourceVersion": "5"}}})),
        "no-op"
    );
    assert_eq!(
        label(json!({"requestReceivedTimestamp": "<ts>"})),
        "no timestamp"
    );
    // An update removing the last finalizer of an object being deleted deletes it.
    assert_eq!(
        label(
            json!({"responseObject": {"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}})
        ),
        "change DeleteFinalized"
    );
    // ... unless a grace period still holds it (pods).
    assert_eq!(
        label(
            json!({"responseObject": {"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z",
            "deletionGracePeriodSeconds": 30}}})
        ),
        "change Upsert"
    );
    // Graceful pod delete: still stored, pending.
    assert_eq!(
        label(json!({"verb": "delete", "responseObject": {"metadata": {
            "deletionTimestamp": "2026-01-01T00:00:00Z", "deletionGracePeriodSeconds": 30}}})),
        "change DeletePending"
    );
    // A delete returning the deleted object (no finalizers): deleted, last state kept.
    let deleted = with(json!({"verb": "delete"}));
    let c = change_of(&deleted);
    assert_eq!(c.kind, ChangeKind::Delete);
    assert!(c.object.is_some());
    assert_eq!(
        label(json!({"verb": "delete", "objectRef": {"name": null}})),
        "no object name"
    );
    assert_eq!(
        label(
            json!({"verb": "deletecollection", "responseObject": {"kind": "ConfigMapList", "items": []}})
        ),
        "deletecollection deleted nothing"
    );
    assert_eq!(
        label(
            json!({"verb": "deletecollection", "responseObject": {"kind": "ConfigMapList",
            "apiVersion": "v1", "items": [{"metadata": {}}]}})
        ),
        "responseObject is not the object"
    );
    // Details of labels are in Display.
    assert_eq!(
        SkipReason::NoResponseObject.to_string(),
        "no responseObject (audit level below RequestResponse)"
    );
    assert_eq!(
        SkipReason::UnsupportedVerb("escalate".into()).to_string(),
        "unsupported verb \"escalate\""
    );
    let m = Malformed {
        input: "f".into(),
        position: Position::Line {
            line: 12,
            item: None,
        },
        message: "invalid JSON: x".into(),
    };
    let reason = SkipReason::from(&m);
    assert_eq!(reason.label(), "malformed");
    assert_eq!(reason.to_string(), "f: line 12: invalid JSON: x");
}

mod garbage {
    use super::*;
    use proptest::prelude::*;

    fn classify_all(bytes: &[u8]) {
        if let Ok(input) = read_events(bytes, "garbage") {
            for e in &input.events {
                let _ = classify(e);
            }
        }
    }

    /// Pieces of real input, so that random lines get past the first checks.
    fn fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(r#"{"kind":"Event","stage":"ResponseComplete","verb":"create"}"#.to_string()),
            Just(r#"{"kind":"EventList","items":[{"verb":"patch","stage":"ResponseComplete","objectRef":{"subresource":"scale"},"responseStatus":{"code":200},"responseObject":{"kind":"Scale","spec":{"replicas":"x"}}}]}"#.to_string()),
            Just(r#"{"verb":"delete","stage":"ResponseComplete","responseStatus":{"code":200},"objectRef":{"name":"a"},"responseObject":{"kind":"X","metadata":{"finalizers":[1]}}}"#.to_string()),
            Just("kind: EventList\nitems:\n- verb: get\n  stage: x".to_string()),
            Just("\u{1f}\u{8b}".to_string()),
            "[ -~]{0,40}",
            ".{0,20}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
            classify_all(&bytes);
            let mut gz = vec![0x1f, 0x8b];
            gz.extend(&bytes);
            classify_all(&gz);
        }

        #[test]
        fn random_lines_never_panic(lines in prop::collection::vec(fragment(), 0..12)) {
            classify_all(lines.join("\n").as_bytes());
            classify_all(lines.concat().as_bytes());
        }

        #[test]
        fn mutated_real_lines_never_panic(cut in 0usize..2000, byte in any::<u8>()) {
            let text = std::fs::read(path("falco-k8s_audit/create_configmap_sensitive_values.json")).unwrap();
            let mut bytes = text[..text.len().min(4000)].to_vec();
            let at = cut % bytes.len();
            bytes[at] = byte;
            classify_all(&bytes);
            classify_all(&bytes[..at]);
        }
    }
}

#[test]
fn deeply_nested_input_is_an_error_not_a_crash() {
    let json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(read_events(json.as_bytes(), "deep.json").is_err());
    let json_line = format!(
        "{{\"a\":{}1{}}}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(read_events(json_line.as_bytes(), "deep.jsonl").is_err());
    let yaml = format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    assert!(read_events(yaml.as_bytes(), "deep.yaml").is_err());
    let yaml_block: String = (0..5_000)
        .map(|i| format!("{}- \n", " ".repeat(i)))
        .collect();
    let _ = read_events(yaml_block.as_bytes(), "deep-block.yaml");
}
