//! Kubernetes resource quantities ("100m", "128Mi", "1.5Gi", "1e3").
//!
//! Values are kept exactly, in billionths of a unit, so that comparisons and sums
//! (scheduling, cgroup limits) never lose precision.

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::fmt;

const NANO: i128 = 1_000_000_000;

/// A parsed quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Quantity {
    nanos: i128,
}

/// Why a string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {input:?}: {reason}")]
pub struct QuantityError {
    /// The text that failed to parse.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Parses a Kubernetes quantity.
pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
    let err = |reason| QuantityError {
        input: s.to_string(),
        reason,
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(err("empty"));
    }
    let (neg, body) = match t.as_bytes()[0] {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let num_end = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (num, suffix) = body.split_at(num_end);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return Err(err("expected a number such as 100m, 128Mi or 1.5"));
    }
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    // Scale of the suffix, as a (multiplier, divisor) pair in nano-units.
    let (mul, div): (i128, i128) = match suffix {
        "" => (NANO, 1),
        "n" => (1, 1),
        "u" => (1_000, 1),
        "m" => (1_000_000, 1),
        "k" => (NANO * 1_000, 1),
        "M" => (NANO * 1_000_000, 1),
        "G" => (NANO * 1_000_000_000, 1),
        "T" => (NANO * 1_000_000_000_000, 1),
        "P" => (NANO * 1_000_000_000_000_000, 1),
        "E" => (NANO * 1_000_000_000_000_000_000, 1),
        "Ki" => (NANO << 10, 1),
        "Mi" => (NANO << 20, 1),
        "Gi" => (NANO << 30, 1),
        "Ti" => (NANO << 40, 1),
        "Pi" => (NANO << 50, 1),
        "Ei" => (NANO << 60, 1),
        s if s.starts_with(['e', 'E']) => {
            let exp: i32 = s[1..].parse().map_err(|_| err("bad exponent"))?;
            if !(-9..=18).contains(&exp) {
                return Err(err("exponent out of range"));
            }
            if exp >= 0 {
                (NANO * 10i128.pow(exp as u32), 1)
            } else {
                (NANO, 10i128.pow((-exp) as u32))
            }
        }
        _ => {
            return Err(err(
                "unknown suffix (use n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi or Ei)",
            ))
        }
    };
    if int_part.len() > 20 || frac_part.len() > 18 {
        return Err(err("too many digits"));
    }
    let ip: i128 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().map_err(|_| err("bad number"))?
    };
    let fp: i128 = if frac_part.is_empty() {
        0
    } else {
        frac_part.parse().map_err(|_| err("bad number"))?
    };
    let fscale = 10i128.pow(frac_part.len() as u32);
    let total = ip
        .checked_mul(mul)
        .and_then(|v| v.checked_add(fp.checked_mul(mul)? / fscale))
        .ok_or_else(|| err("too large"))?
        / div;
    Ok(Quantity {
        nanos: if neg { -total } else { total },
    })
}

impl Quantity {
    /// The quantity in thousandths, rounded up (millicores for cpu).
    pub fn millis(&self) -> i128 {
        div_ceil(self.nanos, 1_000_000)
    }

    /// The quantity in whole units, rounded up (bytes for memory and storage).
    pub fn value(&self) -> i128 {
        div_ceil(self.nanos, NANO)
    }

    /// Builds a quantity of whole units.
    pub fn from_value(v: i128) -> Self {
        Quantity { nanos: v * NANO }
    }

    /// Builds a quantity of thousandths.
    pub fn from_millis(v: i128) -> Self {
        Quantity {
            nanos: v * 1_000_000,
        }
    }

    /// True when the quantity is below zero.
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }
}

impl std::ops::Add for Quantity {
    type Output = Quantity;
    fn add(self, o: Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos + o.nanos,
        }
    }
}

impl std::ops::Sub for Quantity {
    type Output = Quantity;
    fn sub(self, o: Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos - o.nanos,
        }
    }
}

fn div_ceil(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b > 0 {
        q + 1
    } else {
        q
    }
}

impl fmt::Display for Quantity {
    /// Canonical form: binary suffixes for whole multiples of 1024, `m` for fractions.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos % NANO != 0 {
            return write!(f, "{}m", self.millis());
        }
        let v = self.nanos / NANO;
        for (shift, suffix) in [
            (60, "Ei"),
            (50, "Pi"),
            (40, "Ti"),
            (30, "Gi"),
            (20, "Mi"),
            (10, "Ki"),
        ] {
            if v != 0 && v % (1i128 << shift) == 0 {
                return write!(f, "{}{suffix}", v >> shift);
            }
        }
        write!(f, "{v}")
    }
}

/// Deserializes a `{name: quantity}` map, accepting numbers as Kubernetes does
/// (`cpu: 1`). Whether each value is a valid quantity is [`crate::validate`]'s to
/// say, so a manifest and the same object sent over gRPC are refused alike.
pub fn deserialize_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        S(String),
        I(i64),
        F(f64),
    }
    let raw = BTreeMap::<String, Raw>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Raw::S(s) => s,
                Raw::I(i) => i.to_string(),
                Raw::F(x) => x.to_string(),
            };
            (k, text)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_forms() {
        assert_eq!(parse("100m").unwrap().millis(), 100);
        assert_eq!(parse("1").unwrap().millis(), 1000);
        assert_eq!(parse("1.5").unwrap().millis(), 1500);
        assert_eq!(parse("128Mi").unwrap().value(), 134_217_728);
        assert_eq!(parse("1Gi").unwrap().value(), 1 << 30);
        assert_eq!(parse("1G").unwrap().value(), 1_000_000_000);
        assert_eq!(parse("2k").unwrap().value(), 2000);
        assert_eq!(parse("1e3").unwrap().value(), 1000);
        assert_eq!(parse("0.5Gi").unwrap().value(), 1 << 29);
        assert_eq!(parse("250u").unwrap().millis(), 1);
        assert!(parse("-1").unwrap().is_negative());
    }

    #[test]
    fn refuses_garbage() {
        for bad in ["", "abc", "12x", "1..2", "Mi", ".", "1 Mi", "1mi", "1e99"] {
            assert!(parse(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn displays_canonically() {
        assert_eq!(parse("128Mi").unwrap().to_string(), "128Mi");
        assert_eq!(parse("100m").unwrap().to_string(), "100m");
        assert_eq!(parse("3").unwrap().to_string(), "3");
        assert_eq!(
            (parse("1Gi").unwrap() + parse("1Gi").unwrap()).to_string(),
            "2Gi"
        );
    }
}
