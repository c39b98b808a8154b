//! Conversion between the served versions of a built-in kind stored in another version: the
//! `autoscaling/v1` view of HorizontalPodAutoscalers, which are stored as `autoscaling/v2` (as the
//! real server stores them). Pure.

use serde_json::{Value, json};

/// Whether objects of `group`/`kind` read or written at `version` need converting.
fn converted(group: &str, kind: &str, version: &str) -> bool {
    group == "autoscaling" && kind == "HorizontalPodAutoscaler" && version == "v1"
}

/// The version objects written at `version` are stored in.
pub fn storage_version<'a>(group: &str, kind: &str, version: &'a str) -> &'a str {
    if converted(group, kind, version) {
        "v2"
    } else {
        version
    }
}

/// An object written at `version`, in its storage version.
pub fn to_storage(group: &str, kind: &str, version: &str, obj: &Value) -> Value {
    if !converted(group, kind, version) {
        return obj.clone();
    }
    let mut o = obj.clone();
    if let Some(spec) = o.get_mut("spec").and_then(Value::as_object_mut)
        && let Some(cpu) = spec.remove("targetCPUUtilizationPercentage")
        && !cpu.is_null()
    {
        spec.insert(
            "metrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu}}}]),
        );
    }
    if let Some(status) = o.get_mut("status").and_then(Value::as_object_mut)
        && let Some(cpu) = status.remove("currentCPUUtilizationPercentage")
        && !cpu.is_null()
    {
        status.insert(
            "currentMetrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": cpu}}}]),
        );
    }
    if o.get("apiVersion").is_some() {
        o["apiVersion"] = json!(format!("{group}/v2"));
    }
    o
}

/// A stored object as a client of `version` sees it.
pub fn from_storage(group: &str, kind: &str, version: &str, obj: &Value) -> Value {
    if !converted(group, kind, version) {
        return obj.clone();
    }
    let mut o = obj.clone();
    let cpu_target = |metrics: &Value| {
        metrics.as_array().and_then(|ms| {
            ms.iter().find_map(|m| {
                (m["type"] == "Resource" && m["resource"]["name"] == "cpu")
                    .then(|| m["resource"]["target"]["averageUtilization"].clone())
                    .filter(|v| !v.is_null())
            })
        })
    };
    if let Some(spec) = o.get_mut("spec").and_then(Value::as_object_mut) {
        let metrics = spec.remove("metrics").unwrap_or(Value::Null);
        spec.remove("behavior");
        if let Some(cpu) = cpu_target(&metrics) {
            spec.insert("targetCPUUtilizationPercentage".into(), cpu);
        }
    }
    if let Some(status) = o.get_mut("status").and_then(Value::as_object_mut) {
        let current = status.remove("currentMetrics").unwrap_or(Value::Null);
        status.remove("conditions");
        if let Some(cpu) = current.as_array().and_then(|ms| {
            ms.iter().find_map(|m| {
                (m["type"] == "Resource" && m["resource"]["name"] == "cpu")
                    .then(|| m["resource"]["current"]["averageUtilization"].clone())
                    .filter(|v| !v.is_null())
            })
        }) {
            status.insert("currentCPUUtilizationPercentage".into(), cpu);
        }
    }
    if o.get("apiVersion").is_some() {
        o["apiVersion"] = json!(format!("{group}/v1"));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hpa_v1_round_trips_through_v2() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 2, "maxReplicas": 5, "targetCPUUtilizationPercentage": 70}});
        let v2 = to_storage("autoscaling", "HorizontalPodAutoscaler", "v1", &v1);
        assert_eq!(v2["apiVersion"], "autoscaling/v2");
        assert_eq!(
            v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            70
        );
        assert_eq!(
            from_storage("autoscaling", "HorizontalPodAutoscaler", "v1", &v2),
            v1
        );
        let d = json!({"spec": {"replicas": 1}});
        assert_eq!(to_storage("apps", "Deployment", "v1", &d), d);
    }
}
