//! `resource.Quantity` as the real server returns it: parsed and written back in canonical form
//! (`2000m` → `2`, `1024Mi` → `1Gi`, `0.5` → `500m`, `1000` → `1k`), the form k8s.io/apimachinery's
//! `Quantity.String()` produces. Pure logic.

use serde_json::Value;

use crate::schema::Slot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    DecimalSi,
    BinarySi,
    DecimalExponent,
}

/// A quantity as `mantissa × 10^exponent` (exact), with the format it was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parsed {
    mantissa: i128,
    exponent: i32,
    format: Format,
}

fn parse(s: &str) -> Option<Parsed> {
    let s = s.trim();
    let (negative, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let num_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(num_len);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return None;
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let digits = format!("{int_part}{frac_part}");
    if digits.len() > 30 {
        return None;
    }
    let mut mantissa: i128 = digits.parse().ok()?;
    let mut exponent = -(frac_part.len() as i32);
    let format = match suffix {
        "" => Format::DecimalSi,
        "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" => {
            exponent += match suffix {
                "n" => -9,
                "u" => -6,
                "m" => -3,
                "k" => 3,
                "M" => 6,
                "G" => 9,
                "T" => 12,
                "P" => 15,
                _ => 18,
            };
            Format::DecimalSi
        }
        "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => {
            let power = match suffix {
                "Ki" => 1,
                "Mi" => 2,
                "Gi" => 3,
                "Ti" => 4,
                "Pi" => 5,
                _ => 6,
            };
            mantissa = mantissa.checked_mul(1_i128 << (10 * power))?;
            Format::BinarySi
        }
        e if e.starts_with(['e', 'E']) => {
            exponent += e[1..].parse::<i32>().ok()?;
            Format::DecimalExponent
        }
        _ => return None,
    };
    if negative {
        mantissa = -mantissa;
    }
    Some(Parsed {
        mantissa,
        exponent,
        format,
    })
}

/// `m × 10^e` with trailing zeros of `m` moved into `e`, rounded up to nano units as the real
/// server rounds quantities below 1n.
fn normalize(mut m: i128, mut e: i32) -> (i128, i32) {
    if m == 0 {
        return (0, 0);
    }
    while m % 10 == 0 {
        m /= 10;
        e += 1;
    }
    while e < -9 {
        // Round away from zero to the next representable nano value.
        let down = m / 10;
        m = if m % 10 != 0 { down + m.signum() } else { down };
        e += 1;
    }
    (m, e)
}

fn decimal(m: i128, e: i32, exponent_form: bool) -> String {
    let (m, e) = normalize(m, e);
    if m == 0 {
        return "0".into();
    }
    // The largest multiple of three not above the exponent, within the SI suffixes.
    let mut s = e.div_euclid(3) * 3;
    if !exponent_form {
        s = s.clamp(-9, 18);
    }
    let mantissa = m * 10_i128.pow((e - s) as u32);
    if exponent_form {
        return if s == 0 {
            mantissa.to_string()
        } else {
            format!("{mantissa}e{s}")
        };
    }
    let suffix = match s {
        -9 => "n",
        -6 => "u",
        -3 => "m",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        18 => "E",
        _ => "",
    };
    format!("{mantissa}{suffix}")
}

/// The canonical form of a quantity, or `None` when `s` is not one.
pub fn canonical(s: &str) -> Option<String> {
    let p = parse(s)?;
    match p.format {
        Format::DecimalSi => Some(decimal(p.mantissa, p.exponent, false)),
        Format::DecimalExponent => Some(decimal(p.mantissa, p.exponent, true)),
        Format::BinarySi => {
            // Whole bytes of at least 1Ki stay binary; anything else is written decimally.
            let (m, e) = normalize(p.mantissa, p.exponent);
            if e < 0 || m == 0 {
                return Some(decimal(m, e, false));
            }
            let bytes = m.checked_mul(10_i128.checked_pow(e as u32)?)?;
            if bytes.abs() < 1024 {
                return Some(decimal(bytes, 0, false));
            }
            let mut power = 0;
            let mut v = bytes;
            while power < 6 && v % 1024 == 0 {
                v /= 1024;
                power += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][power];
            Some(format!("{v}{suffix}"))
        }
    }
}

/// Write every quantity of a built-in object (resources, quotas, limit ranges, capacities, HPA
/// targets, ...) in canonical form, numbers as strings, as the real server returns them.
pub fn canonicalize(obj: &mut Value, slot: &Slot) {
    if slot.is_quantity() {
        let text = match &*obj {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        if let Some(c) = text.as_deref().and_then(canonical) {
            *obj = Value::String(c);
        }
        return;
    }
    match obj {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                canonicalize(v, &slot.field(k));
            }
        }
        Value::Array(items) if slot.is_list() => {
            let item = slot.item();
            for v in items {
                canonicalize(v, &item);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities_take_the_servers_canonical_form() {
        for (given, want) in [
            ("2000m", "2"),
            ("2", "2"),
            ("0.5", "500m"),
            ("1.5", "1500m"),
            ("100m", "100m"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("1.5Gi", "1536Mi"),
            ("0.5Gi", "512Mi"),
            ("2048Ki", "2Mi"),
            ("1000Mi", "1000Mi"),
            ("128974848", "128974848"),
            ("129e6", "129e6"),
            ("1e3", "1e3"),
            ("8Gi", "8Gi"),
            ("1G", "1G"),
            ("1000000000", "1G"),
            ("0", "0"),
            ("0.1n", "1n"),
            ("-2000m", "-2"),
            ("512", "512"),
        ] {
            assert_eq!(canonical(given).as_deref(), Some(want), "{given}");
        }
        assert_eq!(canonical("abc"), None);
        assert_eq!(canonical("1.2.3"), None);
    }

    #[test]
    fn resources_of_a_deployment_are_canonicalized_and_numbers_become_strings() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "a",
            "resources": {"requests": {"cpu": "2000m", "memory": "1024Mi"}, "limits": {"cpu": 2}}}]}}}});
        canonicalize(&mut d, &Slot::root("apps/v1", "Deployment", true));
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["resources"],
            json!({"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"cpu": "2"}})
        );
        let mut sts = json!({"spec": {"volumeClaimTemplates": [{"spec": {"resources": {"requests": {"storage": "1024Mi"}}}}]}});
        canonicalize(&mut sts, &Slot::root("apps/v1", "StatefulSet", true));
        assert_eq!(
            sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
            "1Gi"
        );
        let mut cm = json!({"data": {"cpu": "2000m"}});
        canonicalize(&mut cm, &Slot::root("v1", "ConfigMap", true));
        assert_eq!(cm["data"]["cpu"], "2000m", "not a quantity");
    }
}
