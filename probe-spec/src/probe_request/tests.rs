use kube::CustomResourceExt;
use serde_json::{Value, json};

use super::*;
use crate::{
    test_support::{Enforcement, assert_schema_rejects, cel_failures, openapi_schema, schema_at},
    verdict::Direction,
};

fn parse_spec(yaml: &str) -> ProbeRequestSpec {
    serde_yaml_ng::from_str(yaml)
        .unwrap_or_else(|error| panic!("spec does not parse: {error}\n{yaml}"))
}

/// A whole ProbeRequest object as JSON, the way the apiserver's CEL rules see it.
fn object(spec_yaml: &str) -> Value {
    let spec: Value = serde_yaml_ng::from_str(spec_yaml).expect("spec YAML");
    json!({
        "apiVersion": "netreach.dev/v1alpha1",
        "kind": "ProbeRequest",
        "metadata": {"name": "test", "namespace": "shop"},
        "spec": spec,
    })
}

fn field_errors(spec: &ProbeRequestSpec) -> Vec<String> {
    match spec.validate() {
        Ok(()) => Vec::new(),
        Err(errors) => errors.errors().iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn valid_requests_pass_validate_and_the_cel_rules() {
    let cases = [
        (
            "pod by number",
            "{from: {pod: frontend}, to: {pod: {namespace: payments, name: gateway}, port: 8443}}",
        ),
        (
            "pod by port name, same namespace",
            "{from: {pod: frontend}, to: {pod: {name: api}, port: http}}",
        ),
        (
            "ip over UDP",
            "{from: {pod: frontend}, to: {ip: 10.96.0.10, port: 53, protocol: UDP}, count: 10}",
        ),
        (
            "dns",
            "{from: {pod: frontend}, to: {dns: api.shop.svc.cluster.local}, timeout: 500ms}",
        ),
        (
            "longest timeout, most probes",
            "{from: {pod: web-0}, to: {ip: 'fd00::1', port: 80}, timeout: 1m, count: 100}",
        ),
    ];
    for (name, yaml) in cases {
        assert_eq!(
            field_errors(&parse_spec(yaml)),
            Vec::<String>::new(),
            "{name}: validate()"
        );
        assert_eq!(
            cel_failures::<ProbeRequest>(&object(yaml), None),
            Vec::<String>::new(),
            "{name}: CEL"
        );
    }
}

#[test]
fn omitted_fields_take_their_defaults_and_kinds_are_typed() {
    let spec = parse_spec("{from: {pod: frontend}, to: {ip: 192.0.2.10, port: 443}}");
    assert_eq!(spec.timeout(), Ok(Duration::from_secs(2)));
    assert_eq!(spec.count, 1);
    assert_eq!(spec.ttl_seconds_after_finished, 3600);
    assert_eq!(spec.ttl_after_finished(), Duration::from_secs(3600));
    assert_eq!(
        spec.to.kind(),
        Some(RequestTargetKind::Ip {
            ip: "192.0.2.10".parse().expect("ip"),
            port: 443,
            protocol: Protocol::Tcp
        })
    );

    let spec =
        parse_spec("{from: {pod: frontend}, to: {pod: {name: api}, port: http, protocol: UDP}}");
    let Some(RequestTargetKind::Pod {
        pod,
        port,
        protocol,
    }) = spec.to.kind()
    else {
        panic!("a pod target: {:?}", spec.to);
    };
    assert_eq!((pod.namespace.as_deref(), pod.name.as_str()), (None, "api"));
    assert_eq!(
        (port, protocol),
        (&IntOrString::String("http".into()), Protocol::Udp)
    );

    let spec = parse_spec("{from: {pod: frontend}, to: {dns: example.com}}");
    assert_eq!(spec.to.kind(), Some(RequestTargetKind::Dns("example.com")));
}

#[test]
fn invalid_requests_are_rejected_by_validate_and_the_schema() {
    use Enforcement::*;
    let cases: &[(&str, &str, &str, Enforcement)] = &[
        (
            "no target",
            "{from: {pod: frontend}, to: {port: 80}}",
            "spec.to: set one of pod, service, ip or dns",
            Cel("exactly one of: pod, service, ip, dns"),
        ),
        (
            "two targets",
            "{from: {pod: frontend}, to: {pod: {name: api}, ip: 192.0.2.1, port: 80}}",
            "spec.to: sets pod and ip; to is exactly one of them",
            Cel("exactly one of: pod, service, ip, dns"),
        ),
        (
            "a pod target without a port",
            "{from: {pod: frontend}, to: {pod: {name: api}}}",
            "spec.to.port: pod, service and ip targets need a port",
            Cel("need a port"),
        ),
        (
            "a dns target with a port",
            "{from: {pod: frontend}, to: {dns: example.com, port: 53}}",
            "spec.to.port: a dns target takes no port",
            Cel("a dns target takes none"),
        ),
        (
            "a port above 65535",
            "{from: {pod: frontend}, to: {ip: 192.0.2.1, port: 70000}}",
            "spec.to.port: 70000 is out of range 1..65535",
            OpenApi("spec.to.port", "maximum"),
        ),
        (
            "a named port on an ip target",
            "{from: {pod: frontend}, to: {ip: 192.0.2.1, port: https}}",
            "spec.to.port: named port \"https\" needs a pod target",
            CelWithType("spec.to", "a named port needs a pod or service target"),
        ),
        (
            "an invalid ip",
            "{from: {pod: frontend}, to: {ip: 192.0.2, port: 80}}",
            "spec.to.ip: \"192.0.2\" is not an IPv4 or IPv6 address",
            Cel("ip must be an IPv4 or IPv6 address"),
        ),
        (
            "an invalid source pod name",
            "{from: {pod: Frontend}, to: {dns: example.com}}",
            "spec.from.pod: \"Frontend\" is not a valid object name",
            OpenApi("spec.from.pod", "pattern"),
        ),
        (
            "an invalid destination namespace",
            "{from: {pod: frontend}, to: {pod: {namespace: team.payments, name: api}, port: 80}}",
            "spec.to.pod.namespace: \"team.payments\" is not a valid namespace name",
            OpenApi("spec.to.pod.namespace", "pattern"),
        ),
        (
            "a timeout of 0s",
            "{from: {pod: frontend}, to: {dns: example.com}, timeout: 0ms}",
            "spec.timeout: must be longer than 0s",
            Cel("timeout must be longer than 0s and at most 1m"),
        ),
        (
            "a timeout over 1m",
            "{from: {pod: frontend}, to: {dns: example.com}, timeout: 1m1s}",
            "spec.timeout: \"1m1s\" is longer than the maximum 1m",
            Cel("timeout must be longer than 0s and at most 1m"),
        ),
        (
            "a timeout without a unit",
            "{from: {pod: frontend}, to: {dns: example.com}, timeout: '5'}",
            "spec.timeout: \"5\": the number 5 has no unit",
            OpenApi("spec.timeout", "pattern"),
        ),
        (
            "count of 0",
            "{from: {pod: frontend}, to: {dns: example.com}, count: 0}",
            "spec.count: 0 is out of range 1..100",
            OpenApi("spec.count", "minimum"),
        ),
        (
            "count above 100",
            "{from: {pod: frontend}, to: {dns: example.com}, count: 101}",
            "spec.count: 101 is out of range 1..100",
            OpenApi("spec.count", "maximum"),
        ),
        (
            "TTL above a week",
            "{from: {pod: frontend}, to: {dns: example.com}, ttlSecondsAfterFinished: 604801}",
            "spec.ttlSecondsAfterFinished: 604801 is longer than the maximum",
            OpenApi("spec.ttlSecondsAfterFinished", "maximum"),
        ),
    ];
    for (name, yaml, want_error, enforcement) in cases {
        let errors = field_errors(&parse_spec(yaml));
        assert!(
            errors.iter().any(|error| error.starts_with(want_error)),
            "{name}: validate() should report {want_error:?}, got {errors:?}"
        );
        assert_schema_rejects::<ProbeRequest>(name, &object(yaml), enforcement);
    }
}

#[test]
fn the_spec_is_immutable() {
    let old = object("{from: {pod: frontend}, to: {dns: example.com}}");
    let changed = object("{from: {pod: frontend}, to: {dns: example.org}}");
    assert_eq!(
        cel_failures::<ProbeRequest>(&old, Some(&old)),
        Vec::<String>::new()
    );
    let failures = cel_failures::<ProbeRequest>(&changed, Some(&old));
    assert!(
        failures
            .iter()
            .any(|failure| failure.contains("spec is immutable")),
        "{failures:?}"
    );
}

#[test]
fn status_round_trips_in_camel_case() {
    let status: ProbeRequestStatus = serde_yaml_ng::from_str(
        r#"
phase: Succeeded
node: node-1
target: payments/gateway:8443/TCP
outcome: timeout
verdict: blocked_by_policy
reason: default_deny
direction: ingress
policies: [payments/default-deny]
summary: blocked by payments/default-deny (ingress, default_deny)
latencySeconds: 2.0
startedAt: "2025-01-01T00:00:00Z"
completedAt: "2025-01-01T00:00:02Z"
"#,
    )
    .expect("status parses");
    assert_eq!(status.phase, ProbeRequestPhase::Succeeded);
    assert_eq!(status.direction, Some(Direction::Ingress));
    let json = serde_json::to_value(&status).expect("serializes");
    assert_eq!(json["verdict"], "blocked_by_policy");
    assert_eq!(json["latencySeconds"], 2.0);
    assert!(json.get("outcomes").is_none(), "empty fields are left out");
    assert_eq!(
        ProbeRequestStatus::default().phase,
        ProbeRequestPhase::Pending
    );
}

#[test]
fn schema_and_crd_names() {
    let schema = openapi_schema::<ProbeRequest>();
    assert_eq!(schema_at(&schema, "spec.count")["minimum"], 1.0);
    assert_eq!(
        schema_at(&schema, "spec.count")["maximum"],
        f64::from(MAX_REQUEST_COUNT)
    );
    assert_eq!(
        schema_at(&schema, "spec.to.port")["x-kubernetes-int-or-string"],
        true
    );
    assert_eq!(schema_at(&schema, "spec.to.port")["nullable"], true);
    assert_eq!(schema_at(&schema, "spec.from")["required"], json!(["pod"]));
    assert_eq!(
        schema_at(&schema, "status.verdict")["description"],
        "ok, blocked_by_policy, policy_not_enforced or unexpected_block."
    );

    let crd = ProbeRequest::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("proberequests.netreach.dev")
    );
    assert_eq!(crd.spec.names.short_names, Some(vec!["nrpr".to_string()]));
    assert_eq!(
        crd.spec.names.categories,
        Some(vec!["netreach".to_string()])
    );
    let columns: Vec<&str> = crd.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|column| column.name.as_str())
        .collect();
    assert_eq!(
        columns,
        ["From", "Target", "Phase", "Verdict", "Reason", "Age"]
    );
}

/// Loopback, link-local (cloud metadata), multicast, broadcast and unspecified addresses are
/// never probe targets: `validate()` (which the agent runs on every request) names why.
#[test]
fn refused_addresses_are_invalid_targets() {
    for (ip, why) in [
        ("127.0.0.1", "a loopback address"),
        ("'::1'", "a loopback address"),
        ("169.254.169.254", "a link-local address"),
        ("'fe80::1'", "a link-local address"),
        ("224.0.0.251", "a multicast address"),
        ("255.255.255.255", "the broadcast address"),
        ("0.0.0.0", "the unspecified address"),
    ] {
        let yaml = format!("{{from: {{pod: frontend}}, to: {{ip: {ip}, port: 80}}}}");
        let errors = field_errors(&parse_spec(&yaml));
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("spec.to.ip: ") && e.contains(why)),
            "{ip}: {errors:?}"
        );
    }
}
