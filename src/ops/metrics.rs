//! Prometheus metrics of the agent: events by decision, reconcile and push latency, watches, and
//! per-worker commits, pushes, queues and windows read from the workers' atomics at scrape time.

use crate::git::url::RepoKey;
use crate::git::worker::WorkerHandle;
use crate::manifest::equivalence::Equivalence;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The prefix of every metric name.
pub const PREFIX: &str = "gitops_reverser";

/// What the agent did with one event for one destination: the `decision` label of
/// `gitops_reverser_events_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventDecision {
    /// The file was written (new object, or it differs from Git).
    Written,
    /// Nothing written: the file already has exactly this content.
    Exact,
    /// Nothing written: the object carries the hash annotation of the file's content.
    HashAnnotation,
    /// Nothing written: the object is the file plus fields the server filled in.
    Near,
    /// Never written (Secrets, derived and runtime objects...).
    Excluded,
    /// Nothing written: only `status` (or other ignored fields) changed; the content hash is equal.
    StatusOnly,
    /// The file was removed: the object is gone.
    Deleted,
    /// Nothing written: a delete of an object that has no file.
    NoFile,
    /// Nothing written: no rule and destination selects the object (any more).
    NoRoute,
}

impl EventDecision {
    /// Every decision, in label order.
    pub const ALL: [EventDecision; 9] = [
        EventDecision::Written,
        EventDecision::Exact,
        EventDecision::HashAnnotation,
        EventDecision::Near,
        EventDecision::Excluded,
        EventDecision::StatusOnly,
        EventDecision::Deleted,
        EventDecision::NoFile,
        EventDecision::NoRoute,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            EventDecision::Written => "written",
            EventDecision::Exact => "exact",
            EventDecision::HashAnnotation => "hash-annotation",
            EventDecision::Near => "near",
            EventDecision::Excluded => "excluded",
            EventDecision::StatusOnly => "status-only",
            EventDecision::Deleted => "deleted",
            EventDecision::NoFile => "no-file",
            EventDecision::NoRoute => "no-route",
        }
    }
}

impl fmt::Display for EventDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&Equivalence> for EventDecision {
    fn from(how: &Equivalence) -> Self {
        match how {
            Equivalence::Exact => EventDecision::Exact,
            Equivalence::HashAnnotation => EventDecision::HashAnnotation,
            Equivalence::Near { .. } => EventDecision::Near,
        }
    }
}

impl EncodeLabelValue for EventDecision {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DecisionLabels {
    decision: EventDecision,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RepositoryLabels {
    repository: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DestinationLabels {
    destination: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ExclusionLabels {
    destination: String,
    /// The built-in rule id, or the user's exclusion entry (`GitDestination ns/name
    /// spec.exclusions.fields[0] …`).
    rule: String,
    /// `object` or `field`.
    what: &'static str,
}

/// One worker's numbers at scrape time. `repository` is the normalized URL and branch
/// ([`RepoKey`]'s `Display`), which never holds credentials.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerSample {
    pub repository: String,
    /// Commands waiting in the worker's queue.
    pub queued: u64,
    /// Changes in open windows and in closed, unpushed commits.
    pub waiting_changes: u64,
    /// Open commit windows; `None` while the worker does not report it (no series then).
    pub open_windows: Option<u64>,
    pub commits: u64,
    pub pushes: u64,
    pub push_failures: u64,
    pub push_conflicts: u64,
    pub unchanged: u64,
    pub refused: u64,
}

impl WorkerSample {
    /// Reads a worker's counters (relaxed loads; each number is current, together they are
    /// not one atomic snapshot).
    pub fn of(handle: &WorkerHandle) -> Self {
        let stats = handle.stats();
        Self {
            repository: handle.key().to_string(),
            queued: handle.queued() as u64,
            waiting_changes: stats.waiting_changes.load(Ordering::Relaxed),
            open_windows: Some(stats.open_windows.load(Ordering::Relaxed)),
            commits: stats.commits.load(Ordering::Relaxed),
            pushes: stats.pushes.load(Ordering::Relaxed),
            push_failures: stats.push_failures.load(Ordering::Relaxed),
            push_conflicts: stats.push_conflicts.load(Ordering::Relaxed),
            unchanged: stats.unchanged.load(Ordering::Relaxed),
            refused: stats.refused.load(Ordering::Relaxed),
        }
    }
}

/// Where the collector gets the workers from on each scrape.
type WorkerSource = Box<dyn Fn() -> Vec<WorkerSample> + Send + Sync>;

/// Exports the per-worker families from [`WorkerSample`]s taken at scrape time.
struct WorkerCollector {
    source: WorkerSource,
}

impl fmt::Debug for WorkerCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerCollector").finish_non_exhaustive()
    }
}

/// A counter or gauge family over the workers; `value` gives a worker's value, or `None` for
/// no series.
fn worker_family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    samples: &[WorkerSample],
    (name, help, metric_type): (&str, &str, MetricType),
    value: impl Fn(&WorkerSample) -> Option<M>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
    for sample in samples {
        if let Some(metric) = value(sample) {
            let labels = RepositoryLabels {
                repository: sample.repository.clone(),
            };
            metric.encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

fn counter(v: u64) -> Option<ConstCounter> {
    Some(ConstCounter::new(v))
}

fn gauge(v: u64) -> Option<ConstGauge> {
    Some(ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)))
}

impl Collector for WorkerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let mut samples = (self.source)();
        samples.sort_by(|a, b| a.repository.cmp(&b.repository));
        samples.dedup_by(|a, b| a.repository == b.repository);
        let e = &mut encoder;
        let s = samples.as_slice();
        let workers = ConstGauge::new(i64::try_from(s.len()).unwrap_or(i64::MAX));
        workers.encode(e.encode_descriptor(
            "workers",
            "Running Git workers (one per repository and branch).",
            None,
            MetricType::Gauge,
        )?)?;
        let c = MetricType::Counter;
        let g = MetricType::Gauge;
        worker_family(e, s, ("commits", "Commits pushed by the worker.", c), |w| {
            counter(w.commits)
        })?;
        worker_family(e, s, ("pushes", "Successful pushes.", c), |w| {
            counter(w.pushes)
        })?;
        let help =
            "Push rounds that failed to reach the remote (the changes are kept and retried).";
        worker_family(e, s, ("push_failures", help, c), |w| {
            counter(w.push_failures)
        })?;
        let help =
            "Pushes refused because another writer moved the branch (followed by a rebuild).";
        worker_family(e, s, ("push_conflicts", help, c), |w| {
            counter(w.push_conflicts)
        })?;
        let help = "Changes dropped because the file already had that content.";
        worker_family(e, s, ("unchanged_changes", help, c), |w| {
            counter(w.unchanged)
        })?;
        let help = "Changes not written because another owner's fresh marker holds the folder.";
        worker_family(e, s, ("refused_changes", help, c), |w| counter(w.refused))?;
        let help = "Commands waiting in the worker's queue.";
        worker_family(e, s, ("queue_depth", help, g), |w| gauge(w.queued))?;
        let help = "Changes in open commit windows or in closed commits not yet pushed.";
        worker_family(e, s, ("waiting_changes", help, g), |w| {
            gauge(w.waiting_changes)
        })?;
        let help = "Open commit windows.";
        worker_family(e, s, ("open_windows", help, g), |w| {
            w.open_windows.and_then(gauge)
        })?;
        Ok(())
    }
}

/// The attribution pipeline's numbers, read at scrape time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttributionSample {
    pub webhook: crate::attribution::WebhookCounters,
    pub facts: crate::attribution::FactStats,
    pub resolver: crate::attribution::ResolverStats,
}

type AttributionSource = Box<dyn Fn() -> AttributionSample + Send + Sync>;

/// Exports the attribution families once a source is set (nothing before: no webhooks).
struct AttributionCollector {
    source: Arc<std::sync::OnceLock<AttributionSource>>,
}

impl fmt::Debug for AttributionCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttributionCollector")
            .finish_non_exhaustive()
    }
}

/// One family with a single label and a value per label value.
fn labelled<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    (name, help, metric_type): (&str, &str, MetricType),
    label: &'static str,
    values: &[(&'static str, M)],
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (value, metric) in values {
        metric.encode(family.encode_family(&[(label, *value)])?)?;
    }
    Ok(())
}

impl Collector for AttributionCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let Some(source) = self.source.get() else {
            return Ok(());
        };
        let AttributionSample {
            webhook: w,
            facts: f,
            resolver: r,
        } = source();
        let e = &mut encoder;
        let c = |v: u64| ConstCounter::new(v);
        labelled(
            e,
            (
                "audit_events",
                "Audit events received by the audit webhook, by what became of them.",
                MetricType::Counter,
            ),
            "outcome",
            &[
                ("accepted", c(w.audit_events_accepted)),
                ("used", c(w.audit_events_used)),
                ("skipped", c(w.audit_events_skipped)),
                ("shed", c(w.audit_events_shed)),
            ],
        )?;
        labelled(
            e,
            (
                "admission_requests",
                "AdmissionReviews received, by what became of them.",
                MetricType::Counter,
            ),
            "outcome",
            &[
                ("fact", c(w.admission_facts)),
                ("ignored", c(w.admission_ignored)),
            ],
        )?;
        labelled(
            e,
            (
                "webhook_rejected_requests",
                "Webhook requests refused as malformed or unauthenticated.",
                MetricType::Counter,
            ),
            "endpoint",
            &[("any", c(w.rejected))],
        )?;
        labelled(
            e,
            (
                "facts",
                "Attribution facts recorded, by source.",
                MetricType::Counter,
            ),
            "source",
            &[
                ("audit", c(f.audit_facts)),
                ("admission", c(f.admission_facts)),
            ],
        )?;
        labelled(
            e,
            (
                "fact_evictions",
                "Facts evicted from the bounded index, by bound.",
                MetricType::Counter,
            ),
            "bound",
            &[("size", c(f.evicted_size)), ("age", c(f.evicted_age))],
        )?;
        labelled(
            e,
            (
                "attributions",
                "Changes resolved to an author, by how.",
                MetricType::Counter,
            ),
            "result",
            &[
                ("immediate", c(r.immediate)),
                ("waited", c(r.waited)),
                ("unknown", c(r.unknown)),
            ],
        )?;
        Ok(())
    }
}

fn push_histogram() -> Histogram {
    // 50 ms … 51.2 s
    Histogram::new(exponential_buckets(0.05, 2.0, 11))
}

/// The exposition format of a scrape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text (what Prometheus asks for first).
    OpenMetrics,
    /// The Prometheus text format 0.0.4 (curl, older scrapers).
    Prometheus,
}

impl Format {
    /// OpenMetrics when the `Accept` header lists it, else the Prometheus text format.
    pub fn negotiate(accept: Option<&str>) -> Self {
        match accept {
            Some(accept)
                if accept
                    .split(',')
                    .any(|range| range.trim().starts_with("application/openmetrics-text")) =>
            {
                Format::OpenMetrics
            }
            _ => Format::Prometheus,
        }
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

/// Every metric of the agent, registered in one registry (`register` adds the final period to
/// a help text; the collector's help texts carry their own). Share it behind an `Arc`; recording
/// takes `&self`.
pub struct Metrics {
    registry: Registry,
    events: Family<DecisionLabels, Counter>,
    unattributed: Counter,
    git_reads: Counter,
    push_duration: Family<RepositoryLabels, Histogram, fn() -> Histogram>,
    reconcile_duration: Histogram,
    watches: Gauge,
    attribution: Arc<std::sync::OnceLock<AttributionSource>>,
    destination_queue: Family<DestinationLabels, Gauge>,
    destination_held: Family<DestinationLabels, Gauge>,
    destination_overflows: Family<DestinationLabels, Counter>,
    exclusions: Family<ExclusionLabels, Counter>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Registers every metric. `workers` is called on each scrape and returns the running
    /// workers' numbers (for example `registry.handles().iter().map(WorkerSample::of)`).
    pub fn new(workers: impl Fn() -> Vec<WorkerSample> + Send + Sync + 'static) -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let events = Family::<DecisionLabels, Counter>::default();
        // Every decision has a series from the start, so rates work from the first event.
        for decision in EventDecision::ALL {
            let _ = events.get_or_create(&DecisionLabels { decision });
        }
        registry.register(
            "events",
            "Events handled per destination, by what was decided",
            events.clone(),
        );
        let unattributed = Counter::default();
        registry.register(
            "unattributed_changes",
            "Changes committed without knowing who made them (authored by the agent)",
            unattributed.clone(),
        );
        let git_reads = Counter::default();
        registry.register(
            "git_file_reads",
            "Files read from the Git cache to decide on a live object (objects whose hash \
             annotation matches their content need none)",
            git_reads.clone(),
        );
        let push_duration =
            Family::<RepositoryLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                push_histogram,
            );
        registry.register_with_unit(
            "push_duration",
            "Time of one push round: replaying the pending commits, pushing, and rebuilding on \
             another writer's commits",
            Unit::Seconds,
            push_duration.clone(),
        );
        // 100 ms … 204.8 s
        let reconcile_duration = Histogram::new(exponential_buckets(0.1, 2.0, 12));
        registry.register_with_unit(
            "reconcile_duration",
            "Time of one reconcile of a destination: listing, rendering and the snapshot commit \
             pushed",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let watches = Gauge::default();
        registry.register(
            "watches",
            "Open watches (one per selected resource and scope)",
            watches.clone(),
        );
        let destination_queue = Family::<DestinationLabels, Gauge>::default();
        registry.register(
            "destination_queue_depth",
            "Events waiting in a destination's queue (the task that decides and hands changes to \
             its worker)",
            destination_queue.clone(),
        );
        let destination_held = Family::<DestinationLabels, Gauge>::default();
        registry.register(
            "destination_held_events",
            "Events held for a destination while its reconcile runs",
            destination_held.clone(),
        );
        let destination_overflows = Family::<DestinationLabels, Counter>::default();
        registry.register(
            "destination_queue_overflows",
            "Events a full destination queue could not take; each overflow makes the destination \
             reconcile again from complete listings, so the state is not lost (its authors are)",
            destination_overflows.clone(),
        );
        let exclusions = Family::<ExclusionLabels, Counter>::default();
        registry.register(
            "exclusions",
            "Objects and fields left out of Git per event, by destination and rule (a built-in \
             rule id, or the entry of the spec.exclusions of the destination or of a rule \
             selecting the object)",
            exclusions.clone(),
        );
        registry.register_collector(Box::new(WorkerCollector {
            source: Box::new(workers),
        }));
        let attribution = Arc::new(std::sync::OnceLock::new());
        registry.register_collector(Box::new(AttributionCollector {
            source: attribution.clone(),
        }));
        Self {
            registry,
            events,
            unattributed,
            git_reads,
            push_duration,
            reconcile_duration,
            watches,
            attribution,
            destination_queue,
            destination_held,
            destination_overflows,
            exclusions,
        }
    }

    /// Counts an object (`what`: `object`) or a field (`field`) an exclusion rule left out.
    pub fn record_exclusion(&self, destination: &str, rule: &str, what: &'static str) {
        self.exclusions
            .get_or_create(&ExclusionLabels {
                destination: destination.to_string(),
                rule: rule.to_string(),
                what,
            })
            .inc();
    }

    /// Sets the number of events waiting in a destination's queue.
    pub fn set_destination_queue(&self, destination: &str, queued: usize) {
        let labels = DestinationLabels {
            destination: destination.to_string(),
        };
        let n = i64::try_from(queued).unwrap_or(i64::MAX);
        self.destination_queue.get_or_create(&labels).set(n);
    }

    /// Sets the number of events held for a destination while its reconcile runs.
    pub fn set_destination_held(&self, destination: &str, held: usize) {
        let labels = DestinationLabels {
            destination: destination.to_string(),
        };
        let n = i64::try_from(held).unwrap_or(i64::MAX);
        self.destination_held.get_or_create(&labels).set(n);
    }

    /// Counts an event a destination's full queue could not take.
    pub fn record_destination_overflow(&self, destination: &str) {
        self.destination_overflows
            .get_or_create(&DestinationLabels {
                destination: destination.to_string(),
            })
            .inc();
    }

    /// Drops the series of a destination that is gone.
    pub fn forget_destination(&self, destination: &str) {
        let labels = DestinationLabels {
            destination: destination.to_string(),
        };
        self.destination_queue.remove(&labels);
        self.destination_held.remove(&labels);
        self.destination_overflows.remove(&labels);
    }

    /// Events the destination's full queue could not take so far.
    pub fn destination_overflows(&self, destination: &str) -> u64 {
        self.destination_overflows
            .get_or_create(&DestinationLabels {
                destination: destination.to_string(),
            })
            .get()
    }

    /// Exports the attribution numbers from now on (`source` is called on each scrape). Only the
    /// first call counts.
    pub fn set_attribution(&self, source: impl Fn() -> AttributionSample + Send + Sync + 'static) {
        let _ = self.attribution.set(Box::new(source));
    }

    /// Counts one event's decision.
    pub fn record_event(&self, decision: EventDecision) {
        self.events
            .get_or_create(&DecisionLabels { decision })
            .inc();
    }

    /// Counts one change committed without a known author.
    pub fn record_unattributed(&self) {
        self.unattributed.inc();
    }

    /// Counts one read of a file from the Git cache to decide on a live object.
    pub fn record_git_read(&self) {
        self.git_reads.inc();
    }

    /// Files read from the Git cache so far.
    pub fn git_reads(&self) -> u64 {
        self.git_reads.get()
    }

    /// Observes one push round of `repository`'s worker.
    pub fn observe_push(&self, repository: &RepoKey, took: Duration) {
        let labels = RepositoryLabels {
            repository: repository.to_string(),
        };
        self.push_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Forgets the push latency series of a repository whose worker stopped.
    pub fn forget_repository(&self, repository: &RepoKey) {
        self.push_duration.remove(&RepositoryLabels {
            repository: repository.to_string(),
        });
    }

    /// Observes one reconcile of a destination.
    pub fn observe_reconcile(&self, took: Duration) {
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    /// Sets the number of open watches.
    pub fn set_watches(&self, watches: usize) {
        self.watches.set(i64::try_from(watches).unwrap_or(i64::MAX));
    }

    /// The current events count of one decision (for tests and the status of a run).
    pub fn events(&self, decision: EventDecision) -> u64 {
        self.events
            .get_or_create(&DecisionLabels { decision })
            .get()
    }

    /// Renders every metric in `format`.
    pub fn encode(&self, format: Format) -> Result<String, fmt::Error> {
        let mut text = String::new();
        match format {
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut text, &self.registry)?
            }
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?
            }
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::url::NormalizedUrl;

    fn key(url: &str, branch: &str) -> RepoKey {
        RepoKey {
            url: NormalizedUrl::parse(url).unwrap(),
            branch: branch.into(),
        }
    }

    fn sample(repository: &str) -> WorkerSample {
        WorkerSample {
            repository: repository.into(),
            queued: 3,
            waiting_changes: 7,
            open_windows: Some(2),
            commits: 11,
            pushes: 5,
            push_failures: 1,
            push_conflicts: 2,
            unchanged: 4,
            refused: 0,
        }
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn decision_labels_are_kebab_case_and_distinct() {
        let labels: Vec<&str> = EventDecision::ALL.iter().map(|d| d.as_str()).collect();
        assert_eq!(
            labels,
            [
                "written",
                "exact",
                "hash-annotation",
                "near",
                "excluded",
                "status-only",
                "deleted",
                "no-file",
                "no-route"
            ]
        );
        let mut unique = labels.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), labels.len());
        assert_eq!(EventDecision::StatusOnly.to_string(), "status-only");
    }

    #[test]
    fn every_decision_has_a_series_from_the_start() {
        let metrics = Metrics::new(Vec::new);
        let text = metrics.encode(Format::OpenMetrics).unwrap();
        for decision in EventDecision::ALL {
            let line = format!("gitops_reverser_events_total{{decision=\"{decision}\"}} 0");
            assert!(lines(&text).contains(&line.as_str()), "{line} in\n{text}");
        }
        assert!(text.contains("# TYPE gitops_reverser_events counter\n"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn recording_counts_and_observes() {
        let metrics = Metrics::new(Vec::new);
        metrics.record_event(EventDecision::Written);
        metrics.record_event(EventDecision::Written);
        metrics.record_event(EventDecision::StatusOnly);
        metrics.record_unattributed();
        metrics.set_watches(4);
        let repo = key("https://git.example.com/org/repo.git", "main");
        metrics.observe_push(&repo, Duration::from_millis(120));
        metrics.observe_reconcile(Duration::from_secs(3));
        assert_eq!(metrics.events(EventDecision::Written), 2);
        assert_eq!(metrics.events(EventDecision::Exact), 0);
        let text = metrics.encode(Format::OpenMetrics).unwrap();
        let l = lines(&text);
        for expected in [
            "gitops_reverser_events_total{decision=\"written\"} 2",
            "gitops_reverser_events_total{decision=\"status-only\"} 1",
            "gitops_reverser_unattributed_changes_total 1",
            "gitops_reverser_watches 4",
            "# TYPE gitops_reverser_push_duration_seconds histogram",
            "# UNIT gitops_reverser_push_duration_seconds seconds",
            "gitops_reverser_push_duration_seconds_count{repository=\"https://git.example.com/org/repo#main\"} 1",
            "gitops_reverser_push_duration_seconds_bucket{le=\"0.2\",repository=\"https://git.example.com/org/repo#main\"} 1",
            "gitops_reverser_push_duration_seconds_bucket{le=\"0.1\",repository=\"https://git.example.com/org/repo#main\"} 0",
            "gitops_reverser_reconcile_duration_seconds_count 1",
            "gitops_reverser_reconcile_duration_seconds_sum 3.0",
        ] {
            assert!(l.contains(&expected), "{expected} in\n{text}");
        }
        metrics.forget_repository(&repo);
        let text = metrics.encode(Format::OpenMetrics).unwrap();
        assert!(!text.contains("push_duration_seconds_count{"), "{text}");
    }

    #[test]
    fn attribution_numbers_appear_once_a_source_is_set() {
        let metrics = Metrics::new(Vec::new);
        let before = metrics.encode(Format::OpenMetrics).unwrap();
        assert!(!before.contains("attributions"), "{before}");
        metrics.set_attribution(|| AttributionSample {
            webhook: crate::attribution::WebhookCounters {
                audit_events_accepted: 400,
                audit_events_shed: 2,
                ..Default::default()
            },
            facts: crate::attribution::FactStats {
                audit_facts: 263,
                evicted_age: 5,
                ..Default::default()
            },
            resolver: crate::attribution::ResolverStats {
                immediate: 10,
                unknown: 3,
                ..Default::default()
            },
        });
        let text = metrics.encode(Format::OpenMetrics).unwrap();
        let l = lines(&text);
        for expected in [
            "gitops_reverser_audit_events_total{outcome=\"accepted\"} 400",
            "gitops_reverser_audit_events_total{outcome=\"shed\"} 2",
            "gitops_reverser_facts_total{source=\"audit\"} 263",
            "gitops_reverser_fact_evictions_total{bound=\"age\"} 5",
            "gitops_reverser_attributions_total{result=\"immediate\"} 10",
            "gitops_reverser_attributions_total{result=\"unknown\"} 3",
        ] {
            assert!(l.contains(&expected), "{expected} in\n{text}");
        }
    }

    #[test]
    fn workers_are_read_at_scrape_time() {
        let metrics = Metrics::new(|| vec![sample("ssh://git@host/b#main"), sample("file:///a#x")]);
        let text = metrics.encode(Format::OpenMetrics).unwrap();
        let l = lines(&text);
        for expected in [
            "gitops_reverser_workers 2",
            "# TYPE gitops_reverser_commits counter",
            "gitops_reverser_commits_total{repository=\"file:///a#x\"} 11",
            "gitops_reverser_commits_total{repository=\"ssh://git@host/b#main\"} 11",
            "gitops_reverser_pushes_total{repository=\"file:///a#x\"} 5",
            "gitops_reverser_push_failures_total{repository=\"file:///a#x\"} 1",
            "gitops_reverser_push_conflicts_total{repository=\"file:///a#x\"} 2",
            "gitops_reverser_unchanged_changes_total{repository=\"file:///a#x\"} 4",
            "gitops_reverser_refused_changes_total{repository=\"file:///a#x\"} 0",
            "# TYPE gitops_reverser_queue_depth gauge",
            "gitops_reverser_queue_depth{repository=\"file:///a#x\"} 3",
            "gitops_reverser_waiting_changes{repository=\"file:///a#x\"} 7",
            "gitops_reverser_open_windows{repository=\"file:///a#x\"} 2",
        ] {
            assert!(l.contains(&expected), "{expected} in\n{text}");
        }
        // Sorted by repository: a scrape is stable.
        let a = text
            .find("commits_total{repository=\"file:///a#x\"}")
            .unwrap();
        let b = text.find("commits_total{repository=\"ssh://").unwrap();
        assert!(a < b);
    }

    #[test]
    fn a_worker_without_window_numbers_has_no_open_windows_series() {
        let metrics = Metrics::new(|| {
            vec![WorkerSample {
                open_windows: None,
                ..sample("file:///a#x")
            }]
        });
        let text = metrics.encode(Format::OpenMetrics).unwrap();
        assert!(text.contains("# TYPE gitops_reverser_open_windows gauge"));
        assert!(!text.contains("gitops_reverser_open_windows{"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let metrics = Metrics::new(|| vec![sample("file:///a\"b\\c#x")]);
        let text = metrics.encode(Format::Prometheus).unwrap();
        assert!(
            text.contains("gitops_reverser_queue_depth{repository=\"file:///a\\\"b\\\\c#x\"} 3"),
            "{text}"
        );
    }

    #[test]
    fn the_prometheus_text_format_has_no_eof_marker() {
        let metrics = Metrics::new(|| vec![sample("file:///a#x")]);
        let text = metrics.encode(Format::Prometheus).unwrap();
        assert!(!text.contains("# EOF"));
        assert!(text.contains("gitops_reverser_commits_total{repository=\"file:///a#x\"} 11"));
        assert!(text.contains("gitops_reverser_events_total{decision=\"near\"} 0"));
    }

    #[test]
    fn the_repository_label_never_carries_credentials() {
        let repo = key("https://user:s3cret@git.example.com/org/repo.git", "main");
        let metrics = Metrics::new(Vec::new);
        metrics.observe_push(&repo, Duration::from_secs(1));
        let text = metrics.encode(Format::OpenMetrics).unwrap();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(!text.contains("user"), "{text}");
    }

    #[test]
    fn format_follows_the_accept_header() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                          version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Prometheus);
        assert_eq!(Format::negotiate(None), Format::Prometheus);
        assert_eq!(
            Format::negotiate(Some("text/plain, application/openmetrics-text")),
            Format::OpenMetrics
        );
        assert!(
            Format::OpenMetrics
                .content_type()
                .starts_with("application/openmetrics-text")
        );
        assert!(
            Format::Prometheus
                .content_type()
                .starts_with("text/plain; version=0.0.4")
        );
    }

    /// docs/operations.md names every metric the agent can expose (all sources set, a worker,
    /// a destination), under the name a scraper sees (`_total` for counters).
    #[test]
    fn operations_md_names_every_metric() {
        let docs = include_str!("../../docs/operations.md");
        let metrics = Metrics::new(|| vec![sample("file:///a#main")]);
        metrics.set_attribution(|| AttributionSample {
            webhook: crate::attribution::WebhookCounters::default(),
            facts: crate::attribution::FactStats::default(),
            resolver: crate::attribution::ResolverStats::default(),
        });
        metrics.set_destination_queue("shop/dev", 1);
        metrics.set_destination_held("shop/dev", 1);
        metrics.record_destination_overflow("shop/dev");
        metrics.observe_push(
            &key("https://git.example.com/org/repo.git", "main"),
            Duration::from_millis(1),
        );
        let text = metrics.encode(Format::OpenMetrics).unwrap();
        let mut names = Vec::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("# TYPE ") else {
                continue;
            };
            let (name, kind) = rest.split_once(' ').expect("name and type");
            names.push(match kind {
                "counter" => format!("{name}_total"),
                _ => name.to_string(),
            });
        }
        assert!(names.len() >= 25, "{names:?}");
        for name in names {
            assert!(
                docs.contains(&format!("`{name}`")),
                "docs/operations.md lacks `{name}`"
            );
        }
    }
}
