//! Label selectors with the exact semantics of `k8s.io/apimachinery/pkg/labels` (E11–E13).
//!
//! A `Selector` is built once from a `LabelSelector` (validating operators, values and label
//! syntax) and then matched many times. `matchLabels` and `matchExpressions` are ANDed; an
//! empty selector matches everything; `NotIn` and `DoesNotExist` match objects lacking the key.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use std::collections::BTreeMap;

/// Labels of a pod or namespace, ordered so explanations print them stably. Defined with the
/// selectors that match them, so `model` uses `selector` and never the other way round.
pub type Labels = BTreeMap<String, String>;

/// A validated label selector.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

/// One requirement; `matchLabels` entries become `In` with a single value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// Sorted and deduplicated.
    pub values: Vec<String>,
    /// Came from `matchLabels` (rendered as `key: value`).
    from_match_labels: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// Why a selector could not be built; `field` is relative to the selector.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SelectorError {
    pub field: String,
    pub message: String,
}

impl Selector {
    /// The empty selector: matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// A selector from `matchLabels` pairs only (handy in tests and fixtures).
    pub fn from_labels<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut requirements: Vec<Requirement> = pairs
            .into_iter()
            .map(|(k, v)| Requirement {
                key: k.to_string(),
                operator: Operator::In,
                values: vec![v.to_string()],
                from_match_labels: true,
            })
            .collect();
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Self { requirements }
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// The selector in the API's `labelSelector=` syntax (`app=web,tier in (a,b),!canary`);
    /// the empty selector is `""` (every object).
    pub fn to_query(&self) -> String {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| match r.operator {
                Operator::In if r.values.len() == 1 => format!("{}={}", r.key, r.values[0]),
                Operator::In => format!("{} in ({})", r.key, r.values.join(",")),
                Operator::NotIn => format!("{} notin ({})", r.key, r.values.join(",")),
                Operator::Exists => r.key.clone(),
                Operator::DoesNotExist => format!("!{}", r.key),
            })
            .collect();
        parts.join(",")
    }

    /// The first requirement the labels fail, for explanations.
    pub fn first_unmet(&self, labels: &Labels) -> Option<&Requirement> {
        self.requirements.iter().find(|r| !r.matches(labels))
    }
}

impl Requirement {
    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.iter().any(|w| w == v)),
            // apimachinery: NotIn matches when the key is absent (E12).
            Operator::NotIn => value.is_none_or(|v| !self.values.iter().any(|w| w == v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.operator {
            Operator::In if self.from_match_labels => write!(f, "{}: {}", self.key, self.values[0]),
            Operator::In => write!(f, "{} in ({})", self.key, self.values.join(", ")),
            Operator::NotIn => write!(f, "{} notin ({})", self.key, self.values.join(", ")),
            Operator::Exists => write!(f, "{} exists", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
        }
    }
}

impl fmt::Display for Selector {
    /// `{team: frontend, tier in (a, b)}`; the empty selector is `{}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{r}")?;
        }
        f.write_str("}")
    }
}

/// Renders labels the way selectors render: `{team: shop}`.
pub fn display_labels(labels: &Labels) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("{{{}}}", inner.join(", "))
}

impl TryFrom<&LabelSelector> for Selector {
    type Error = SelectorError;

    fn try_from(sel: &LabelSelector) -> Result<Self, Self::Error> {
        let mut requirements = Vec::new();
        for (key, value) in sel.match_labels.iter().flatten() {
            let field = format!("matchLabels.{key}");
            validate_key(key).map_err(|message| SelectorError {
                field: field.clone(),
                message,
            })?;
            validate_value(value).map_err(|message| SelectorError { field, message })?;
            requirements.push(Requirement {
                key: key.clone(),
                operator: Operator::In,
                values: vec![value.clone()],
                from_match_labels: true,
            });
        }
        for (i, expr) in sel.match_expressions.iter().flatten().enumerate() {
            let err = |sub: &str, message: String| SelectorError {
                field: format!("matchExpressions[{i}]{sub}"),
                message,
            };
            validate_key(&expr.key).map_err(|m| err(".key", m))?;
            let operator = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(err(
                        ".operator",
                        format!(
                            "{other:?} is not a valid operator (In, NotIn, Exists, DoesNotExist)"
                        ),
                    ));
                }
            };
            let mut values = expr.values.clone().unwrap_or_default();
            match operator {
                Operator::In | Operator::NotIn if values.is_empty() => {
                    return Err(err(
                        ".values",
                        format!("must be non-empty for operator {}", expr.operator),
                    ));
                }
                Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                    return Err(err(
                        ".values",
                        format!("must be empty for operator {}", expr.operator),
                    ));
                }
                _ => {}
            }
            for (j, v) in values.iter().enumerate() {
                validate_value(v).map_err(|m| err(&format!(".values[{j}]"), m))?;
            }
            values.sort();
            values.dedup();
            requirements.push(Requirement {
                key: expr.key.clone(),
                operator,
                values,
                from_match_labels: false,
            });
        }
        // Stable order: matchLabels by key first (BTreeMap order), then expressions as written.
        Ok(Self { requirements })
    }
}

/// A label key: optional DNS-subdomain prefix and `/`, then a name of at most 63 characters.
fn validate_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let ok = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|part| {
                !part.is_empty()
                    && part.len() <= 63
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            });
        if !ok {
            return Err(format!(
                "label key {key:?} has an invalid prefix (must be a DNS subdomain)"
            ));
        }
    }
    if name.is_empty() {
        return Err(format!("label key {key:?} has an empty name"));
    }
    validate_name_part(name).map_err(|why| format!("label key {key:?} is invalid: {why}"))
}

/// A label value: empty, or at most 63 characters of `[A-Za-z0-9_.-]` starting and ending alphanumeric.
fn validate_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    validate_name_part(value).map_err(|why| format!("label value {value:?} is invalid: {why}"))
}

fn validate_name_part(s: &str) -> Result<(), &'static str> {
    if s.len() > 63 {
        return Err("longer than 63 characters");
    }
    let bytes = s.as_bytes();
    let edge_ok = |b: u8| b.is_ascii_alphanumeric();
    if !edge_ok(bytes[0]) || !edge_ok(bytes[bytes.len() - 1]) {
        return Err("must start and end with an alphanumeric character");
    }
    if !bytes
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err("may contain only alphanumerics, '-', '_' and '.'");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
