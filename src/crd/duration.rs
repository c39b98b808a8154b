//! Go-style duration strings (`3s`, `1m30s`, `500ms`) as used in the custom resources' specs.
//! One pure parser and the schema pattern that admits exactly what it accepts.

use std::time::Duration;

/// The OpenAPI `pattern` for a duration field: one or more `<digits><unit>` parts, unit one of
/// `h`, `m`, `s`, `ms`. It admits exactly the strings [`parse_duration`] accepts, except for
/// values too large to represent.
pub const DURATION_PATTERN: &str = "^([0-9]+(ms|h|m|s))+$";

/// A duration string could not be read; the message names the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (expected e.g. \"3s\", \"1m30s\", \"500ms\")")]
pub struct DurationError {
    /// The string as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Parses a Go-style duration made of `<digits><unit>` parts, units `h`, `m`, `s` and `ms`,
/// in any order (`1m30s`, `90s`, `1h`, `250ms`, `0s`). A bare number, a sign, a fraction or
/// whitespace is rejected.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let fail = |reason| DurationError {
        input: input.to_string(),
        reason,
    };
    if input.is_empty() {
        return Err(fail("empty"));
    }
    let bytes = input.as_bytes();
    let mut total = Duration::ZERO;
    let mut at = 0;
    while at < bytes.len() {
        let digits_start = at;
        while at < bytes.len() && bytes[at].is_ascii_digit() {
            at += 1;
        }
        if at == digits_start {
            return Err(fail("expected a number"));
        }
        let number: u64 = input[digits_start..at]
            .parse()
            .map_err(|_| fail("number too large"))?;
        let unit_start = at;
        while at < bytes.len() && bytes[at].is_ascii_alphabetic() {
            at += 1;
        }
        let part = match &input[unit_start..at] {
            "h" => number.checked_mul(3600).map(Duration::from_secs),
            "m" => number.checked_mul(60).map(Duration::from_secs),
            "s" => Some(Duration::from_secs(number)),
            "ms" => Some(Duration::from_millis(number)),
            "" => return Err(fail("missing unit (one of h, m, s, ms)")),
            _ => return Err(fail("unknown unit (expected one of h, m, s, ms)")),
        };
        total = part
            .and_then(|p| total.checked_add(p))
            .ok_or_else(|| fail("too large"))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_style_durations() {
        let table: &[(&str, Duration)] = &[
            ("0s", Duration::ZERO),
            ("3s", Duration::from_secs(3)),
            ("60s", Duration::from_secs(60)),
            ("500ms", Duration::from_millis(500)),
            ("1m30s", Duration::from_secs(90)),
            ("1h", Duration::from_secs(3600)),
            (
                "2h5m10s250ms",
                Duration::from_millis(((2 * 3600 + 5 * 60 + 10) * 1000) + 250),
            ),
            ("30s1m", Duration::from_secs(90)),
        ];
        for (input, want) in table {
            assert_eq!(parse_duration(input), Ok(*want), "{input}");
        }
    }

    #[test]
    fn rejects_malformed_durations_naming_the_input() {
        let table: &[(&str, &str)] = &[
            ("", "empty"),
            ("3", "missing unit"),
            ("s", "expected a number"),
            ("-3s", "expected a number"),
            ("1.5s", "missing unit"),
            ("3 s", "missing unit"),
            ("3sec", "unknown unit"),
            ("3d", "unknown unit"),
            ("3S", "unknown unit"),
            ("99999999999999999999s", "number too large"),
            ("18446744073709551615h", "too large"),
        ];
        for (input, reason) in table {
            let err = parse_duration(input).expect_err(input);
            assert!(err.reason.starts_with(reason), "{input}: {}", err.reason);
            assert!(err.to_string().contains(&format!("{input:?}")), "{err}");
        }
    }
}
