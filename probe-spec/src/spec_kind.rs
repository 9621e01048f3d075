//! What the two kinds over [`crate::ProbeSpecSpec`] (ProbeSpec, ClusterProbeSpec) share in their
//! `#[kube(...)]` attribute: group, version, status type, category and printer columns, so
//! `kubectl get nrps` and `kubectl get nrcps` print the same columns.

/// Emits `$item` behind its outer attributes (`derive(CustomResource, ...)` among them) and a
/// `#[kube(...)]` attribute of the shared arguments plus the kind's own (`kind`, `shortname`,
/// `namespaced`, `doc`).
macro_rules! probe_spec_kind {
    ($(#[$outer:meta])* kube($($own:tt)*) $item:item) => {
        $(#[$outer])*
        // clippy takes the repeated `type_ = ...` keys of the printcolumn(...) entries for
        // duplicated attributes.
        #[allow(clippy::duplicated_attributes)]
        #[kube(
            group = "netreach.dev",
            version = "v1alpha1",
            status = "ProbeSpecStatus",
            derive = "PartialEq",
            category = "netreach",
            $($own)*,
            printcolumn(name = "Expect", type_ = "string", json_path = ".spec.expect"),
            printcolumn(name = "Interval", type_ = "string", json_path = ".spec.interval"),
            printcolumn(
                name = "Satisfied",
                type_ = "string",
                json_path = ".status.conditions[?(@.type==\"Satisfied\")].status"
            ),
            printcolumn(name = "OK", type_ = "integer", json_path = ".status.counts.ok"),
            printcolumn(
                name = "Blocked",
                type_ = "integer",
                json_path = ".status.counts.blockedByPolicy"
            ),
            printcolumn(
                name = "NotEnforced",
                type_ = "integer",
                json_path = ".status.counts.policyNotEnforced",
                priority = 1
            ),
            printcolumn(
                name = "Unexpected",
                type_ = "integer",
                json_path = ".status.counts.unexpectedBlock",
                priority = 1
            ),
            printcolumn(
                name = "Age",
                type_ = "date",
                json_path = ".metadata.creationTimestamp"
            )
        )]
        $item
    };
}
