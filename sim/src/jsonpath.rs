//! The JSONPath subset of CRD printer columns (`additionalPrinterColumns[].jsonPath`), evaluated
//! as the real server's table convertor does: fields (`.a.b`, `['a.b']`), indexes (`[0]`, `[-1]`),
//! wildcards (`[*]`) and filters (`[?(@.type=="Ready")]`, `==`, `!=`, or a bare `@.field`). Pure.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    All,
    Filter {
        path: Vec<String>,
        op: Option<(bool, Value)>,
    },
}

fn parse(path: &str) -> Option<Vec<Step>> {
    let p = path.trim();
    let p = p
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .unwrap_or(p);
    let chars: Vec<char> = p.chars().collect();
    let mut i = 0;
    let mut steps = Vec::new();
    while i < chars.len() {
        match chars[i] {
            '.' => {
                i += 1;
                let start = i;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                if !name.is_empty() {
                    steps.push(Step::Field(name));
                }
            }
            '[' => {
                let end = chars[i..].iter().position(|c| *c == ']')? + i;
                // A filter may hold `]` inside quotes; find the `)]` that closes it.
                let (inner, next) = if chars.get(i + 1) == Some(&'?') {
                    let close = (i..chars.len().saturating_sub(1))
                        .find(|&j| chars[j] == ')' && chars[j + 1] == ']')?;
                    (chars[i + 1..=close].iter().collect::<String>(), close + 2)
                } else {
                    (chars[i + 1..end].iter().collect::<String>(), end + 1)
                };
                steps.push(bracket(inner.trim())?);
                i = next;
            }
            _ => {
                let start = i;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    i += 1;
                }
                steps.push(Step::Field(chars[start..i].iter().collect()));
            }
        }
    }
    Some(steps)
}

fn unquote(s: &str) -> Option<String> {
    let s = s.trim();
    for q in ['\'', '"'] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return Some(inner.to_string());
        }
    }
    None
}

fn bracket(inner: &str) -> Option<Step> {
    if inner == "*" {
        return Some(Step::All);
    }
    if let Some(name) = unquote(inner) {
        return Some(Step::Field(name));
    }
    if let Ok(n) = inner.parse::<i64>() {
        return Some(Step::Index(n));
    }
    let expr = inner
        .strip_prefix("?(")
        .and_then(|r| r.strip_suffix(')'))?
        .trim();
    let (lhs, op) = if let Some((l, r)) = expr.split_once("==") {
        (l, Some((true, literal(r)?)))
    } else if let Some((l, r)) = expr.split_once("!=") {
        (l, Some((false, literal(r)?)))
    } else {
        (expr, None)
    };
    let path = lhs
        .trim()
        .strip_prefix('@')?
        .split('.')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    Some(Step::Filter { path, op })
}

fn literal(s: &str) -> Option<Value> {
    let s = s.trim();
    if let Some(q) = unquote(s) {
        return Some(Value::String(q));
    }
    serde_json::from_str(s).ok()
}

fn get<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, f| v.get(f))
}

/// Every value the path selects, in order.
pub fn find<'a>(obj: &'a Value, path: &str) -> Vec<&'a Value> {
    let Some(steps) = parse(path) else {
        return vec![];
    };
    let mut current = vec![obj];
    for step in &steps {
        let mut next = Vec::new();
        for v in current {
            match step {
                Step::Field(f) => next.extend(v.get(f.as_str())),
                Step::Index(n) => {
                    if let Some(a) = v.as_array() {
                        let i = if *n < 0 { a.len() as i64 + n } else { *n };
                        next.extend(usize::try_from(i).ok().and_then(|i| a.get(i)));
                    }
                }
                Step::All => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Filter { path, op } => {
                    if let Some(a) = v.as_array() {
                        next.extend(a.iter().filter(|item| {
                            let got = get(item, path);
                            match op {
                                None => got.is_some(),
                                Some((true, want)) => got == Some(want),
                                Some((false, want)) => got.is_some_and(|g| g != want),
                            }
                        }));
                    }
                }
            }
        }
        current = next;
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn printer_column_paths_select_like_the_server() {
        let o = json!({"metadata": {"annotations": {"a.b/c": "x"}},
            "status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True", "reason": "Done"}],
                "replicas": 3}});
        assert_eq!(find(&o, ".status.replicas"), vec![&json!(3)]);
        assert_eq!(
            find(&o, r#".status.conditions[?(@.type=="Ready")].status"#),
            vec![&json!("True")]
        );
        assert_eq!(
            find(&o, ".status.conditions[?(@.type!='Ready')].type"),
            vec![&json!("Synced")]
        );
        assert_eq!(
            find(&o, ".status.conditions[-1].reason"),
            vec![&json!("Done")]
        );
        assert_eq!(find(&o, ".status.conditions[*].type").len(), 2);
        assert_eq!(
            find(&o, ".metadata.annotations['a.b/c']"),
            vec![&json!("x")]
        );
        assert!(find(&o, ".spec.missing").is_empty());
    }
}
