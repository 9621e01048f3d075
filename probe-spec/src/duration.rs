//! Duration strings as written in ProbeSpec and ProbeRequest objects: `500ms`, `30s`, `1m30s`.
//!
//! The grammar is one or more `<digits><unit>` terms with the units `ms`, `s`, `m` and `h`; the
//! terms add up (`1m30s` is 90 s). It is the integer subset of Go's `time.ParseDuration`, so the
//! apiserver's CEL `duration()` reads every string this module accepts the same way, and
//! [`DURATION_PATTERN`] lets the CRD schema reject anything else before CEL runs.

use std::time::Duration;

/// The CRD schema pattern for duration fields; it accepts exactly what [`parse_duration`] accepts
/// (apart from values too large to represent).
pub const DURATION_PATTERN: &str = "^([0-9]+(ms|s|m|h))+$";

/// The longest duration string the CRD schema accepts; it bounds the cost of CEL rules on it.
pub const DURATION_MAX_LENGTH: u32 = 32;

/// Why a duration string was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string is empty.
    #[error("empty duration; write a number and a unit, e.g. \"30s\"")]
    Empty,
    /// A term does not start with digits (a sign, a space, a decimal point, or a bare unit).
    #[error(
        "{input:?}: expected a number at byte {at}; durations look like \"500ms\", \"30s\" or \"1m30s\""
    )]
    ExpectedNumber {
        /// The whole input.
        input: String,
        /// Byte offset of the offending character.
        at: usize,
    },
    /// A number is not followed by a unit.
    #[error("{input:?}: the number {number} has no unit; use ms, s, m or h (e.g. \"{number}s\")")]
    MissingUnit {
        /// The whole input.
        input: String,
        /// The digits that lack a unit.
        number: String,
    },
    /// A number is followed by a character that cannot start a unit, such as the `.` of `1.5s`.
    #[error(
        "{input:?}: unexpected {found:?} at byte {at}; durations are whole numbers with units (write 1500ms, not 1.5s)"
    )]
    UnexpectedCharacter {
        /// The whole input.
        input: String,
        /// Byte offset of the offending character.
        at: usize,
        /// The offending character.
        found: char,
    },
    /// A number is followed by something other than `ms`, `s`, `m` or `h`.
    #[error("{input:?}: unknown unit {unit:?}; use ms, s, m or h")]
    UnknownUnit {
        /// The whole input.
        input: String,
        /// The letters where a unit was expected.
        unit: String,
    },
    /// The total does not fit in a `Duration` of whole milliseconds.
    #[error("{input:?}: duration is too large")]
    Overflow {
        /// The whole input.
        input: String,
    },
}

/// Parses a duration string such as `500ms`, `30s`, `2m`, `1h` or `1m30s`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(probe_spec::parse_duration("1m30s"), Ok(Duration::from_secs(90)));
/// assert!(probe_spec::parse_duration("1.5s").is_err());
/// ```
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    if input.is_empty() {
        return Err(DurationError::Empty);
    }
    let overflow = || DurationError::Overflow {
        input: input.to_owned(),
    };
    let bytes = input.as_bytes();
    let mut total_millis: u64 = 0;
    let mut at = 0;
    while at < bytes.len() {
        let digits_end = at
            + bytes[at..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
        if digits_end == at {
            return Err(DurationError::ExpectedNumber {
                input: input.to_owned(),
                at,
            });
        }
        let number = &input[at..digits_end];
        let value: u64 = number.parse().map_err(|_| overflow())?;

        let unit_end = digits_end
            + bytes[digits_end..]
                .iter()
                .take_while(|b| b.is_ascii_alphabetic())
                .count();
        let unit = &input[digits_end..unit_end];
        let millis_per_unit: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => {
                return Err(match input[digits_end..].chars().next() {
                    None => DurationError::MissingUnit {
                        input: input.to_owned(),
                        number: number.to_owned(),
                    },
                    Some(found) => DurationError::UnexpectedCharacter {
                        input: input.to_owned(),
                        at: digits_end,
                        found,
                    },
                });
            }
            _ => {
                return Err(DurationError::UnknownUnit {
                    input: input.to_owned(),
                    unit: unit.to_owned(),
                });
            }
        };
        total_millis = value
            .checked_mul(millis_per_unit)
            .and_then(|millis| total_millis.checked_add(millis))
            .ok_or_else(overflow)?;
        at = unit_end;
    }
    Ok(Duration::from_millis(total_millis))
}

/// Formats a duration the way the CRDs write them: `1m30s`, `500ms`, `2h`, `0s`.
///
/// The output parses back to the same value with [`parse_duration`] (sub-millisecond parts are
/// dropped).
pub fn format_duration(duration: Duration) -> String {
    let mut millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        if millis >= size {
            out.push_str(&format!("{}{unit}", millis / size));
            millis %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests;
