//! Client-side validation: the checks behind `ProbeSpecSpec::validate` and
//! `ProbeRequestSpec::validate`.
//!
//! The CRD schema (OpenAPI constraints plus CEL rules) rejects bad objects at the apiserver, but
//! objects can still reach the agent unchecked: an older CRD installed in the cluster, a snapshot
//! file in `netreach demo`, a test fixture. The agent runs `validate()` on every object before it
//! converts it, and each problem comes back as a [`FieldError`] naming the field, e.g.
//! `spec.to[1].ports[0].port: 70000 is out of range 1..65535`.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// One problem in an object, located by its field path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FieldError {
    /// Where the problem is, as a path from the object root: `spec.to[1].ports[0].port`.
    pub path: String,
    /// What is wrong, for a human: `70000 is out of range 1..65535`.
    pub message: String,
}

/// Every problem found in one object; never empty.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(Vec<FieldError>);

impl ValidationErrors {
    /// The problems, in field order.
    pub fn errors(&self) -> &[FieldError] {
        &self.0
    }

    /// Takes the problems out.
    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Collects problems while a `validate()` walks an object.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<FieldError>);

impl Problems {
    pub(crate) fn push(&mut self, path: impl fmt::Display, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.to_string(),
            message: message.into(),
        });
    }

    pub(crate) fn into_result(self) -> Result<(), ValidationErrors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(self.0))
        }
    }
}

// === Kubernetes name syntax ===

/// The CRD schema pattern for DNS names (`dns` and `host` targets): RFC 1123 labels of either
/// case joined by dots, with an optional trailing dot.
pub(crate) const DNS_NAME_PATTERN: &str = r"^[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*\.?$";

/// The longest DNS name: 253 characters plus an optional trailing dot.
pub(crate) const DNS_NAME_MAX_LENGTH: u32 = 254;

/// The CRD schema pattern for Kubernetes object names (RFC 1123 subdomains: pods).
pub(crate) const OBJECT_NAME_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// The CRD schema pattern for namespace names (RFC 1123 labels).
pub(crate) const NAMESPACE_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

fn is_dns_label(label: &str, allow_upper: bool) -> bool {
    let alnum = |c: char| {
        c.is_ascii_digit() || c.is_ascii_lowercase() || (allow_upper && c.is_ascii_uppercase())
    };
    (1..=63).contains(&label.len())
        && label.chars().all(|c| alnum(c) || c == '-')
        && label.starts_with(alnum)
        && label.ends_with(alnum)
}

/// Why `name` is not a DNS name we can resolve, or `None` when it is one.
pub(crate) fn dns_name_problem(name: &str) -> Option<String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return Some("must not be empty".into());
    }
    if trimmed.len() > 253 {
        return Some(format!("{name:?} is longer than 253 characters"));
    }
    if !trimmed.split('.').all(|label| is_dns_label(label, true)) {
        return Some(format!(
            "{name:?} is not a DNS name: dot-separated labels of 1 to 63 letters, digits and '-', \
             each starting and ending with a letter or digit"
        ));
    }
    None
}

/// Why `name` is not a valid pod name (an RFC 1123 subdomain), or `None` when it is one.
pub(crate) fn object_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.len() > 253 || !name.split('.').all(|label| is_dns_label(label, false)) {
        return Some(format!(
            "{name:?} is not a valid object name: at most 253 lowercase letters, digits, '-' and \
             '.', starting and ending with a letter or digit"
        ));
    }
    None
}

/// Why `name` is not a valid namespace name (an RFC 1123 label), or `None` when it is one.
pub(crate) fn namespace_problem(name: &str) -> Option<String> {
    if is_dns_label(name, false) {
        None
    } else {
        Some(format!(
            "{name:?} is not a valid namespace name: 1 to 63 lowercase letters, digits and '-', \
             starting and ending with a letter or digit"
        ))
    }
}

// === Label selectors ===

/// A label name (the part after an optional `prefix/`) or a non-empty label value.
fn is_label_name(name: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    (1..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
        && name.starts_with(alnum)
        && name.ends_with(alnum)
}

fn is_label_key(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => {
            prefix.len() <= 253
                && !prefix.is_empty()
                && prefix.split('.').all(|label| is_dns_label(label, false))
                && is_label_name(name)
        }
        None => is_label_name(key),
    }
}

fn is_label_value(value: &str) -> bool {
    value.is_empty() || is_label_name(value)
}

/// Checks what the apiserver does not check in a CRD's label selector: label syntax and
/// `matchExpressions` operators, so an invalid selector is reported instead of matching nothing.
pub(crate) fn check_label_selector(selector: &LabelSelector, path: &str, problems: &mut Problems) {
    for (key, value) in selector.match_labels.iter().flatten() {
        if !is_label_key(key) {
            problems.push(
                format!("{path}.matchLabels"),
                format!("{key:?} is not a valid label key"),
            );
        }
        if !is_label_value(value) {
            problems.push(
                format!("{path}.matchLabels.{key}"),
                format!("{value:?} is not a valid label value"),
            );
        }
    }
    for (index, requirement) in selector.match_expressions.iter().flatten().enumerate() {
        let path = format!("{path}.matchExpressions[{index}]");
        if !is_label_key(&requirement.key) {
            problems.push(
                format!("{path}.key"),
                format!("{:?} is not a valid label key", requirement.key),
            );
        }
        let values = requirement.values.as_deref().unwrap_or_default();
        match requirement.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => problems.push(
                format!("{path}.values"),
                format!("operator {} needs at least one value", requirement.operator),
            ),
            "In" | "NotIn" => {
                for (value_index, value) in values.iter().enumerate() {
                    if !is_label_value(value) {
                        problems.push(
                            format!("{path}.values[{value_index}]"),
                            format!("{value:?} is not a valid label value"),
                        );
                    }
                }
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => problems.push(
                format!("{path}.values"),
                format!("operator {} takes no values", requirement.operator),
            ),
            "Exists" | "DoesNotExist" => {}
            other => problems.push(
                format!("{path}.operator"),
                format!("{other:?} is not one of In, NotIn, Exists, DoesNotExist"),
            ),
        }
    }
}

#[cfg(test)]
mod tests;
