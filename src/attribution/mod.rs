//! Attribution: who made each change and when, from kube-apiserver audit batches and admission
//! requests (facts in a bounded index), joined to watch events by the resolver. DESIGN.md §5.

pub mod facts;
pub mod pki;
pub mod requests;
pub mod resolver;
pub mod self_managed;
pub mod tls;
pub mod webhook;

pub use facts::{Fact, FactIndex, FactKey, FactLimits, FactStats, NameKey, Source, audit_facts};
pub use resolver::{Attribution, DEFAULT_GRACE, Lookup, Resolver, ResolverStats};
pub use tls::{ReloadingCert, TlsError};
pub use webhook::{
    AdmissionIgnored, AdmissionReview, BadRequest, Ingested, WebhookConfig, WebhookCounters,
    WebhookError, WebhookServer, ingest_events, parse_admission_review, parse_event_list,
};
