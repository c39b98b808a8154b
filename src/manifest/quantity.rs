//! Kubernetes resource quantities (`500m`, `1Gi`, `1e3`) parsed into an exact decimal, and the
//! by-value equality of JSON scalars that equivalence uses (`1000m` = `"1"`, `1` = `1.0`).

use serde_json::Value;
use std::fmt;

/// How a quantity was written; it decides the canonical form the API server prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// No suffix or a decimal SI suffix: `1`, `500m`, `2k`, `1G`.
    DecimalSi,
    /// A binary suffix: `1Ki`, `512Mi`, `1Gi`.
    BinarySi,
    /// An exponent: `1e3`, `5E-3`.
    DecimalExponent,
}

/// An exact quantity: `mantissa × 10^scale`, kept with no trailing zeros in the mantissa (zero is
/// `0 × 10^0`), so two quantities are equal by value exactly when their parts are equal.
/// Equality ignores [`Format`], which only decides how the value prints.
#[derive(Clone, Copy, Debug)]
pub struct Quantity {
    mantissa: i128,
    scale: i32,
    format: Format,
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        (self.mantissa, self.scale) == (other.mantissa, other.scale)
    }
}

impl Eq for Quantity {}

const DECIMAL_SUFFIXES: [(&str, i32); 10] = [
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("", 0),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];
const BINARY_SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
/// The API server keeps nine decimal places and rounds anything finer up (away from zero).
const NANO: i32 = -9;

/// Parses a quantity the way `resource.ParseQuantity` does: an optional sign, digits with at most
/// one decimal point, then nothing, a decimal SI suffix, a binary suffix or an exponent (`e3`,
/// `E-3`). Values finer than `1n` are rounded up to the next nano, as the API server stores them.
/// Garbage, and values too large for the exact form, are `None`; nothing panics.
pub fn parse(text: &str) -> Option<Quantity> {
    let (mantissa, scale, format) = parse_parts(text)?;
    let (mantissa, scale) = round_up_to_nano(mantissa, scale)?;
    Some(Quantity {
        mantissa,
        scale,
        format,
    })
}

impl Quantity {
    pub fn format(&self) -> Format {
        self.format
    }

    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    /// The form the API server prints for this quantity (`1000m` → `1`, `1024Mi` → `1Gi`,
    /// `0.5` → `500m`, `1e3` → `1e3`), or `None` when it has no suffix for it.
    pub fn canonical(&self) -> Option<String> {
        if self.mantissa == 0 {
            return Some("0".to_string());
        }
        if self.format == Format::BinarySi
            && let Some(binary) = self.canonical_binary()
        {
            return Some(binary);
        }
        // Lower the exponent to a multiple of three, moving the difference into the mantissa.
        let shift = self.scale.rem_euclid(3);
        let mantissa = self
            .mantissa
            .checked_mul(10i128.checked_pow(shift.unsigned_abs())?)?;
        let exponent = self.scale - shift;
        let suffix = match self.format {
            Format::DecimalExponent if exponent == 0 => String::new(),
            Format::DecimalExponent => format!("e{exponent}"),
            // A binary quantity below 1024 or with a fraction prints as decimal SI.
            Format::DecimalSi | Format::BinarySi => DECIMAL_SUFFIXES
                .iter()
                .find(|(_, e)| *e == exponent)
                .map(|(s, _)| (*s).to_string())?,
        };
        Some(format!("{mantissa}{suffix}"))
    }

    /// Whole multiples of 1024 at or above 1024 print with the largest binary suffix that keeps
    /// the number whole (`1536Mi`, `1Gi`).
    fn canonical_binary(&self) -> Option<String> {
        if self.scale < 0 {
            return None;
        }
        let mut value = self
            .mantissa
            .checked_mul(10i128.checked_pow(self.scale.unsigned_abs())?)?;
        if value.unsigned_abs() < 1024 {
            return None;
        }
        let mut power = 0;
        while value % 1024 == 0 {
            value /= 1024;
            power += 1;
        }
        BINARY_SUFFIXES
            .get(power)
            .map(|suffix| format!("{value}{suffix}"))
    }
}

/// The canonical form where there is one, else the exact value as `<mantissa>e<scale>`.
impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.canonical() {
            Some(text) => f.write_str(&text),
            None => write!(f, "{}e{}", self.mantissa, self.scale),
        }
    }
}

/// True when two JSON scalars mean the same value:
/// - identical values;
/// - two numbers with the same exact decimal value (`1` = `1.0`, `1e3` = `1000`);
/// - a string and a string or number that parse as quantities of the same value, when at least one
///   of the strings is in the canonical form the API server prints (`"1000m"` = `"1"`,
///   `"1024Mi"` = `"1Gi"`, `0.5` = `"500m"`, `1` = `"1"`). The API server rewrites a quantity
///   field into that form, so one side of a real quantity pair is canonical; two strings that are
///   both non-canonical (`"7.10"` and `"7.1"`, version strings) were never rewritten by it and are
///   compared as text.
///
/// Where strings are opaque (labels, ConfigMap data) the caller must not ask.
pub fn equal_by_value(a: &Value, b: &Value) -> bool {
    if a == b {
        return true;
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (exact_number(&x.to_string()), exact_number(&y.to_string())) {
                (Some(x), Some(y)) => x == y,
                _ => false,
            }
        }
        (Value::String(_) | Value::Number(_), Value::String(_) | Value::Number(_)) => {
            match (scalar_quantity(a), scalar_quantity(b)) {
                (Some(x), Some(y)) => x == y && (is_canonical(a) || is_canonical(b)),
                _ => false,
            }
        }
        _ => false,
    }
}

fn scalar_quantity(value: &Value) -> Option<Quantity> {
    match value {
        Value::String(text) => parse(text),
        Value::Number(number) => parse(&number.to_string()),
        _ => None,
    }
}

fn is_canonical(value: &Value) -> bool {
    match value {
        Value::String(text) => {
            parse(text).and_then(|q| q.canonical()).as_deref() == Some(text.as_str())
        }
        _ => false,
    }
}

/// A JSON number's exact decimal value, without the nano rounding quantities get.
fn exact_number(text: &str) -> Option<(i128, i32)> {
    parse_parts(text).map(|(mantissa, scale, _)| (mantissa, scale))
}

/// Splits and reads `[sign]digits[.digits][suffix]` into a normalized `(mantissa, scale)`.
fn parse_parts(text: &str) -> Option<(i128, i32, Format)> {
    let (negative, unsigned) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let number_end = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if fraction.contains('.') || (whole.is_empty() && fraction.is_empty()) {
        return None;
    }
    let (exponent, binary_power, format) = read_suffix(suffix)?;

    // Leading zeros say nothing; trailing zeros move into the exponent so that long round
    // numbers (`1000000…`) do not overflow the mantissa.
    let digits = format!("{whole}{fraction}");
    let significant = digits.trim_start_matches('0');
    let trimmed = significant.trim_end_matches('0');
    let trailing_zeros = i32::try_from(significant.len() - trimmed.len()).ok()?;
    let fraction_len = i32::try_from(fraction.len()).ok()?;
    let mut mantissa: i128 = 0;
    for digit in trimmed.bytes() {
        mantissa = mantissa
            .checked_mul(10)?
            .checked_add(i128::from(digit - b'0'))?;
    }
    let scale = exponent
        .checked_add(trailing_zeros)?
        .checked_sub(fraction_len)?;
    let mantissa = mantissa.checked_mul(1i128 << (10 * binary_power))?;
    let mantissa = if negative { -mantissa } else { mantissa };
    normalize(mantissa, scale).map(|(m, s)| (m, s, format))
}

/// Reads a suffix into (decimal exponent, power of 1024, format).
fn read_suffix(suffix: &str) -> Option<(i32, u32, Format)> {
    if let Some((_, exponent)) = DECIMAL_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
        return Some((*exponent, 0, Format::DecimalSi));
    }
    if let Some(power) = BINARY_SUFFIXES.iter().skip(1).position(|s| *s == suffix) {
        return Some((0, u32::try_from(power + 1).ok()?, Format::BinarySi));
    }
    let digits = suffix.strip_prefix(['e', 'E'])?;
    // `parse::<i32>` accepts a leading sign and nothing else but digits.
    digits
        .parse::<i32>()
        .ok()
        .map(|exponent| (exponent, 0, Format::DecimalExponent))
}

fn normalize(mut mantissa: i128, mut scale: i32) -> Option<(i128, i32)> {
    if mantissa == 0 {
        return Some((0, 0));
    }
    while mantissa % 10 == 0 {
        mantissa /= 10;
        scale = scale.checked_add(1)?;
    }
    Some((mantissa, scale))
}

/// Rounds values finer than `1n` up to the next nano, away from zero, as `ParseQuantity` does.
fn round_up_to_nano(mantissa: i128, scale: i32) -> Option<(i128, i32)> {
    if scale >= NANO || mantissa == 0 {
        return Some((mantissa, scale));
    }
    let digits_dropped = i64::from(NANO) - i64::from(scale);
    let divisor = u32::try_from(digits_dropped)
        .ok()
        .and_then(|d| 10i128.checked_pow(d));
    let rounded = match divisor {
        Some(divisor) => {
            let quotient = mantissa / divisor;
            if mantissa % divisor == 0 {
                quotient
            } else {
                quotient + mantissa.signum()
            }
        }
        // More than 38 digits below a nano: the whole value is a sliver, which rounds to 1n.
        None => mantissa.signum(),
    };
    normalize(rounded, NANO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn q(text: &str) -> Quantity {
        match parse(text) {
            Some(quantity) => quantity,
            None => panic!("{text:?} should parse"),
        }
    }

    #[test]
    fn equal_by_value_across_suffixes_and_forms() {
        let equal = [
            ("1000m", "1"),
            ("1", "1.0"),
            ("1Gi", "1024Mi"),
            ("1Ki", "1024"),
            ("1.5Gi", "1536Mi"),
            ("0.5", "500m"),
            (".5", "0.5"),
            ("1.", "1"),
            ("+1", "1"),
            ("-1", "-1000m"),
            ("0", "-0"),
            ("0", "0Mi"),
            ("1e3", "1k"),
            ("1E3", "1000"),
            ("1E", "1e18"),
            ("2.5e-3", "2500u"),
            ("100Mi", "104857600"),
            ("007", "7"),
            ("1e400", "10e399"),
            // Finer than a nano rounds up, as the API server stores it.
            ("1e-10", "1n"),
            ("0.0000000011", "2n"),
            ("-1e-400", "-1n"),
        ];
        for (a, b) in equal {
            assert_eq!(q(a), q(b), "{a} = {b}");
        }
        let unequal = [
            ("100m", "1"),
            ("1Gi", "1G"),
            ("1Ki", "1k"),
            ("1", "-1"),
            ("1n", "2n"),
            ("1e400", "1e401"),
            ("0.1", "0.01"),
            ("1Ei", "1E"),
        ];
        for (a, b) in unequal {
            assert_ne!(q(a), q(b), "{a} != {b}");
        }
    }

    #[test]
    fn garbage_and_overflow_are_none_without_panicking() {
        let rejected = [
            "",
            "abc",
            "1.2.3",
            "Mi",
            "e3",
            ".",
            "-",
            "1e",
            "1 ",
            " 1",
            "1ki",
            "1KI",
            "0x10",
            "--1",
            "1e3.5",
            "1.5.Gi",
            "1e99999999999",
            "1e2147483647k",
            "99999999999999999999999999999999Ei",
            "9999999999999999999999999999999999999999",
            "1000e2147483647",
            "0.001e-2147483648",
        ];
        for text in rejected {
            assert_eq!(parse(text), None, "{text:?}");
        }
        // Large but exact: kept, compared, printed.
        assert_eq!(q("1e400").to_string(), "10e399");
        assert_eq!(
            q("99999999999999999999999999999999").to_string(),
            "99999999999999999999999999999999"
        );
    }

    #[test]
    fn canonical_form_is_what_the_api_server_prints() {
        let cases = [
            ("1000m", "1"),
            ("1", "1"),
            ("1.0", "1"),
            ("0.5", "500m"),
            ("1.5", "1500m"),
            ("1000", "1k"),
            ("2048", "2048"),
            ("12e6", "12e6"),
            ("12000000", "12M"),
            ("1e3", "1e3"),
            ("1.5e3", "1500"),
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("1.5Gi", "1536Mi"),
            ("0.5Gi", "512Mi"),
            ("0.1Ki", "102400m"),
            ("1Ki", "1Ki"),
            ("100Mi", "100Mi"),
            ("0", "0"),
            ("0Gi", "0"),
            ("-1000m", "-1"),
            ("-2Gi", "-2Gi"),
            ("1e-10", "1e-9"),
            ("0.0000000001", "1n"),
        ];
        for (input, canonical) in cases {
            assert_eq!(q(input).canonical().as_deref(), Some(canonical), "{input}");
        }
        assert_eq!(
            q("1000E").canonical(),
            None,
            "beyond the largest decimal suffix"
        );
    }

    #[test]
    fn json_scalars_equal_by_value() {
        let equal = [
            (json!("1000m"), json!("1")),
            (json!("1"), json!("1000m")),
            (json!(1), json!("1")),
            (json!(1), json!(1.0)),
            (json!(1000), json!(1e3)),
            (json!(0.5), json!("500m")),
            (json!("1024Mi"), json!("1Gi")),
            (json!("1Gi"), json!("1024Mi")),
            (json!("1.0"), json!("1")),
            (json!(0.1), json!("100m")),
            (json!("x"), json!("x")),
            (json!(true), json!(true)),
        ];
        for (a, b) in equal {
            assert!(equal_by_value(&a, &b), "{a} = {b}");
        }
        let unequal = [
            (json!("100m"), json!("1")),
            (json!("7.10"), json!("7.1")),
            (json!("1.50"), json!("1.5")),
            (json!(1), json!("1000m")),
            (json!(1), json!(2)),
            (json!(1e-10), json!(2e-10)),
            (json!("abc"), json!("abd")),
            (json!(true), json!("true")),
            (json!(null), json!(0)),
            (json!("1e400"), json!("1e401")),
            (
                json!("99999999999999999999999999999999Ei"),
                json!("99999999999999999999999999999999Ei "),
            ),
        ];
        for (a, b) in unequal {
            assert!(!equal_by_value(&a, &b), "{a} != {b}");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in "\\PC{0,24}") {
            let _ = parse(&text);
        }

        #[test]
        fn canonical_form_reads_back_as_the_same_value(
            mantissa in -10_000_000i64..10_000_000,
            exponent in -12i32..20,
            suffix in prop::sample::select(vec!["", "m", "k", "Mi", "Gi", "Ki", "n", "E"]),
        ) {
            let text = format!("{mantissa}e{exponent}");
            let with_suffix = format!("{mantissa}{suffix}");
            for input in [text, with_suffix] {
                if let Some(quantity) = parse(&input)
                    && let Some(canonical) = quantity.canonical()
                {
                    prop_assert_eq!(parse(&canonical), Some(quantity), "{} -> {}", input, canonical);
                    prop_assert_eq!(parse(&canonical).and_then(|q| q.canonical()), Some(canonical));
                }
            }
        }
    }
}
