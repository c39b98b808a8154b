//! The ownership marker: a small file in each destination folder naming the cluster and the
//! destination that write it (and the replica that wrote it last), so two agents never write
//! the same folder unknowingly.

use jiff::Timestamp;
use std::time::Duration;

/// The marker's file name inside the destination folder. Not `*.yaml`/`*.yml`/`*.json`, so
/// neither Flux's generated kustomization nor an Argo CD directory application applies it.
pub const MARKER_FILE: &str = ".gitops-reverser-owner";

/// Who writes a folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The cluster's identity (configured, or the uid of its `kube-system` namespace).
    pub cluster: String,
    /// The destination, as `namespace/name`.
    pub destination: String,
}

/// A parsed marker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    pub owner: Owner,
    /// The replica (pod name) that wrote it; replicas of one cluster share the ownership.
    pub holder: Option<String>,
    pub updated: Timestamp,
}

/// What a writer may do with a folder, given the marker it found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// No marker (or an unreadable one): the folder is free; write and claim it.
    Free,
    /// Our own marker.
    Ours,
    /// Someone else's marker, older than the stale limit: take the folder over.
    TakeOver { previous: Owner },
    /// Someone else's fresh marker: do not write.
    Refused { owner: Owner, updated: Timestamp },
}

/// Renders a marker for `owner`, written by replica `holder` at `now`.
pub fn render(owner: &Owner, holder: Option<&str>, now: Timestamp) -> String {
    let holder = holder.map_or(String::new(), |h| format!("holder: {}\n", one_line(h)));
    format!(
        "# Written by gitops-reverser. While this is fresh, no other agent writes this folder.\n\
         cluster: {}\ndestination: {}\n{holder}updated: {}\n",
        one_line(&owner.cluster),
        one_line(&owner.destination),
        now
    )
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Reads a marker; `None` when the bytes are not one.
pub fn parse(bytes: &[u8]) -> Option<Marker> {
    let text = std::str::from_utf8(bytes).ok()?;
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(": ")))
            .map(str::trim)
    };
    Some(Marker {
        owner: Owner {
            cluster: field("cluster")?.to_string(),
            destination: field("destination")?.to_string(),
        },
        holder: field("holder").map(str::to_string),
        updated: field("updated")?.parse().ok()?,
    })
}

/// Decides whether `us` may write a folder whose marker is `existing`.
pub fn check(existing: Option<&[u8]>, us: &Owner, now: Timestamp, stale_after: Duration) -> Claim {
    let Some(marker) = existing.and_then(parse) else {
        return Claim::Free;
    };
    if marker.owner == *us {
        return Claim::Ours;
    }
    let age = now.duration_since(marker.updated);
    if age.is_positive() && age.unsigned_abs() >= stale_after {
        Claim::TakeOver {
            previous: marker.owner,
        }
    } else {
        Claim::Refused {
            owner: marker.owner,
            updated: marker.updated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(cluster: &str) -> Owner {
        Owner {
            cluster: cluster.into(),
            destination: "shop/web".into(),
        }
    }

    #[test]
    fn fresh_markers_of_others_refuse_and_stale_ones_are_taken_over() {
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        let hour = Duration::from_secs(3600);
        let theirs = render(&owner("east"), Some("agent-0"), t0);
        let later = |s: i64| Timestamp::from_second(1_800_000_000 + s).unwrap();
        assert_eq!(check(None, &owner("west"), t0, hour), Claim::Free);
        assert_eq!(
            check(Some(b"garbage"), &owner("west"), t0, hour),
            Claim::Free
        );
        // Another replica of the same cluster writing the same destination: ours.
        assert_eq!(
            check(Some(theirs.as_bytes()), &owner("east"), later(10), hour),
            Claim::Ours
        );
        assert_eq!(
            parse(theirs.as_bytes()).unwrap().holder.as_deref(),
            Some("agent-0")
        );
        assert_eq!(
            check(Some(theirs.as_bytes()), &owner("west"), later(10), hour),
            Claim::Refused {
                owner: owner("east"),
                updated: t0
            }
        );
        assert_eq!(
            check(Some(theirs.as_bytes()), &owner("west"), later(3600), hour),
            Claim::TakeOver {
                previous: owner("east")
            }
        );
        // Another destination of the same cluster is someone else too.
        let other = Owner {
            cluster: "east".into(),
            destination: "shop/other".into(),
        };
        assert!(matches!(
            check(Some(theirs.as_bytes()), &other, later(1), hour),
            Claim::Refused { .. }
        ));
    }

    #[test]
    fn render_parse_round_trip_and_hostile_values_stay_on_one_line() {
        let t = Timestamp::from_second(1_800_000_000).unwrap();
        let o = Owner {
            cluster: "a\nupdated: 1970-01-01T00:00:00Z".into(),
            destination: "ns/d".into(),
        };
        let text = render(&o, Some("pod\nupdated: 1970-01-01T00:00:00Z"), t);
        assert_eq!(text.lines().count(), 5, "{text}");
        let parsed = parse(text.as_bytes()).unwrap();
        assert_eq!(parsed.updated, t);
    }
}
