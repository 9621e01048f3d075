use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResourceExt;
use serde_json::{Value, json};

use super::*;
use crate::{
    port::Protocol,
    test_support::{
        Enforcement, assert_schema_rejects, cel_failures, openapi_schema, rules_at, schema_at,
    },
};

/// The docs/design.md example, as a `spec`.
const FRONTEND_PATHS: &str = r#"
from:
  podSelector: {matchLabels: {app: frontend}}
to:
  - podSelector: {matchLabels: {app: api}}
    ports: [{port: 8080, protocol: TCP}, {port: http}]
  - namespaceSelector: {matchLabels: {team: payments}}
    podSelector: {matchLabels: {app: gateway}}
    ports: [{port: 8443}]
  - dns: api.shop.svc.cluster.local
  - ip: 192.0.2.10
    ports: [{port: 443}]
expect: Allow
interval: 30s
timeout: 2s
maxPairs: 50
"#;

fn parse_spec(yaml: &str) -> ProbeSpecSpec {
    serde_yaml_ng::from_str(yaml)
        .unwrap_or_else(|error| panic!("spec does not parse: {error}\n{yaml}"))
}

/// A whole ProbeSpec object as JSON, the way the apiserver's CEL rules see it.
fn object(spec_yaml: &str) -> Value {
    let spec: Value = serde_yaml_ng::from_str(spec_yaml).expect("spec YAML");
    json!({
        "apiVersion": "netreach.dev/v1alpha1",
        "kind": "ProbeSpec",
        "metadata": {"name": "test", "namespace": "shop"},
        "spec": spec,
    })
}

fn field_errors(spec: &ProbeSpecSpec) -> Vec<String> {
    match spec.validate() {
        Ok(()) => Vec::new(),
        Err(errors) => errors.errors().iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn design_example_parses_with_typed_targets() {
    let spec = parse_spec(FRONTEND_PATHS);
    assert_eq!(spec.validate(), Ok(()));
    assert_eq!(spec.interval(), Ok(Duration::from_secs(30)));
    assert_eq!(spec.timeout(), Ok(Duration::from_secs(2)));
    assert_eq!(spec.max_pairs, 50);

    let kinds: Vec<_> = spec
        .to
        .iter()
        .map(|target| target.kind().expect("one kind"))
        .collect();
    assert!(matches!(
        kinds[0],
        TargetKind::Pods { pod_selector: Some(_), namespace_selector: None, ports } if ports.len() == 2
    ));
    assert_eq!(spec.to[0].ports[1].port, IntOrString::String("http".into()));
    assert_eq!(
        spec.to[0].ports[1].protocol,
        Protocol::Tcp,
        "protocol defaults to TCP"
    );
    assert!(matches!(
        kinds[1],
        TargetKind::Pods {
            pod_selector: Some(_),
            namespace_selector: Some(_),
            ..
        }
    ));
    assert_eq!(kinds[2], TargetKind::Dns("api.shop.svc.cluster.local"));
    assert!(matches!(kinds[3], TargetKind::Ip { ip, .. } if ip.to_string() == "192.0.2.10"));
}

#[test]
fn omitted_fields_take_their_defaults() {
    let spec =
        parse_spec("{from: {podSelector: {}}, to: [{host: example.com, ports: [{port: 443}]}]}");
    assert_eq!(spec.expect, Expectation::Allow);
    assert_eq!(spec.interval, "30s");
    assert_eq!(spec.timeout, "2s");
    assert_eq!(spec.max_pairs, 100);
    assert_eq!(spec.from.namespace_selector, None);
    assert_eq!(spec.validate(), Ok(()));
}

#[test]
fn valid_specs_pass_validate_and_the_cel_rules() {
    let cases = [
        ("design example", FRONTEND_PATHS),
        (
            "defaults only",
            "{from: {podSelector: {}}, to: [{dns: kubernetes.default.svc.cluster.local.}]}",
        ),
        (
            "namespaceSelector alone, expect Deny",
            "{from: {podSelector: {}, namespaceSelector: {}}, expect: Deny, to: [{namespaceSelector: {matchLabels: {team: payments}}, ports: [{port: 5432}]}]}",
        ),
        (
            "host with UDP",
            "{from: {podSelector: {}}, to: [{host: ntp.example.org, ports: [{port: 123, protocol: UDP}]}]}",
        ),
        (
            "IPv6",
            "{from: {podSelector: {}}, to: [{ip: '2001:db8::1', ports: [{port: 443}]}]}",
        ),
        (
            "SCTP",
            "{from: {podSelector: {}}, to: [{podSelector: {}, ports: [{port: 3868, protocol: SCTP}]}]}",
        ),
        (
            "interval of exactly 1s",
            "{from: {podSelector: {}}, interval: 1s, timeout: 1s, to: [{dns: a.b}]}",
        ),
        (
            "combined durations",
            "{from: {podSelector: {}}, interval: 1m30s, timeout: 1500ms, to: [{dns: a.b}]}",
        ),
        (
            "selector expressions",
            "{from: {podSelector: {matchExpressions: [{key: app.kubernetes.io/name, operator: In, values: [web]}, {key: tier, operator: Exists}]}}, to: [{dns: a.b}]}",
        ),
    ];
    for (name, yaml) in cases {
        assert_eq!(
            field_errors(&parse_spec(yaml)),
            Vec::<String>::new(),
            "{name}: validate()"
        );
        assert_eq!(
            cel_failures::<ProbeSpec>(&object(yaml), None),
            Vec::<String>::new(),
            "{name}: CEL"
        );
    }
}

#[test]
fn invalid_specs_are_rejected_by_validate_and_the_schema() {
    use Enforcement::*;
    let base = "from: {podSelector: {matchLabels: {app: frontend}}}\n";
    let cases: &[(&str, &str, &str, Enforcement)] = &[
        (
            "empty to",
            "to: []",
            "spec.to: list at least one target",
            OpenApi("spec.to", "minItems"),
        ),
        (
            "a target with two kinds",
            "to: [{podSelector: {}, dns: api.shop, ports: [{port: 80}]}]",
            "spec.to[0]: sets podSelector/namespaceSelector and dns; a target is exactly one of them",
            Cel("exactly one of"),
        ),
        (
            "a target with ip and host",
            "to: [{ip: 192.0.2.1, host: example.com, ports: [{port: 80}]}]",
            "spec.to[0]: sets ip and host",
            Cel("exactly one of"),
        ),
        (
            "a target with no kind",
            "to: [{ports: [{port: 80}]}]",
            "spec.to[0]: set one of podSelector/namespaceSelector, service, dns, ip or host",
            Cel("exactly one of"),
        ),
        (
            "a port above 65535",
            "to: [{dns: a.b}, {podSelector: {}, ports: [{port: 70000}]}]",
            "spec.to[1].ports[0].port: 70000 is out of range 1..65535",
            OpenApi("spec.to[].ports[].port", "maximum"),
        ),
        (
            "port 0",
            "to: [{ip: 192.0.2.1, ports: [{port: 0}]}]",
            "spec.to[0].ports[0].port: 0 is out of range 1..65535",
            OpenApi("spec.to[].ports[].port", "minimum"),
        ),
        (
            "a quoted port number",
            "to: [{podSelector: {}, ports: [{port: '8080'}]}]",
            "spec.to[0].ports[0].port: \"8080\" is a quoted number",
            OpenApi("spec.to[].ports[].port", "pattern"),
        ),
        (
            "an invalid port name",
            "to: [{podSelector: {}, ports: [{port: HTTP}]}]",
            "spec.to[0].ports[0].port: port name \"HTTP\" is invalid",
            OpenApi("spec.to[].ports[].port", "pattern"),
        ),
        (
            "a named port on an ip target",
            "to: [{ip: 192.0.2.1, ports: [{port: https}]}]",
            "spec.to[0].ports[0].port: named port \"https\" needs a pod target",
            CelWithType("spec.to[]", "named ports need a pod or service target"),
        ),
        (
            "an ip target without ports",
            "to: [{ip: 192.0.2.1}]",
            "spec.to[0].ports: pod, service, ip and host targets need at least one port",
            Cel("need ports"),
        ),
        (
            "a pod target without ports",
            "to: [{podSelector: {}}]",
            "spec.to[0].ports: pod, service, ip and host targets need at least one port",
            Cel("need ports"),
        ),
        (
            "a dns target with ports",
            "to: [{dns: api.shop, ports: [{port: 53}]}]",
            "spec.to[0].ports: a dns target takes no ports",
            Cel("a dns target takes none"),
        ),
        (
            "an invalid ip",
            "to: [{ip: 300.1.1.1, ports: [{port: 80}]}]",
            "spec.to[0].ip: \"300.1.1.1\" is not an IPv4 or IPv6 address",
            Cel("ip must be an IPv4 or IPv6 address"),
        ),
        (
            "a service name that is not a DNS label",
            "to: [{service: {name: Api_1}, ports: [{port: 80}]}]",
            "spec.to[0].service.name: \"Api_1\" is not a DNS label",
            OpenApi("spec.to[].service.name", "pattern"),
        ),
        (
            "an invalid dns name",
            "to: [{dns: api_shop.local}]",
            "spec.to[0].dns: \"api_shop.local\" is not a DNS name",
            OpenApi("spec.to[].dns", "pattern"),
        ),
        (
            "an invalid host",
            "to: [{host: 'http://example.com', ports: [{port: 80}]}]",
            "spec.to[0].host: \"http://example.com\" is not a DNS name",
            OpenApi("spec.to[].host", "pattern"),
        ),
        (
            "an interval under 1s",
            "to: [{dns: a.b}]\ninterval: 500ms\ntimeout: 100ms",
            "spec.interval: \"500ms\" is shorter than the minimum 1s",
            Cel("interval must be at least 1s"),
        ),
        (
            "an interval of 0s",
            "to: [{dns: a.b}]\ninterval: 0s\ntimeout: 0s",
            "spec.interval: \"0s\" is shorter than the minimum 1s",
            Cel("interval must be at least 1s"),
        ),
        (
            "an interval without a unit",
            "to: [{dns: a.b}]\ninterval: '30'",
            "spec.interval: \"30\": the number 30 has no unit",
            OpenApi("spec.interval", "pattern"),
        ),
        (
            "a fractional interval",
            "to: [{dns: a.b}]\ninterval: 1.5s",
            "spec.interval: \"1.5s\": unexpected '.'",
            OpenApi("spec.interval", "pattern"),
        ),
        (
            "a timeout of 0s",
            "to: [{dns: a.b}]\ntimeout: 0s",
            "spec.timeout: must be longer than 0s",
            Cel("timeout must be longer than 0s"),
        ),
        (
            "a timeout longer than the interval",
            "to: [{dns: a.b}]\ninterval: 5s\ntimeout: 10s",
            "spec.timeout: \"10s\" is longer than interval \"5s\"",
            Cel("timeout must not be longer than interval"),
        ),
        (
            "maxPairs of 0",
            "to: [{dns: a.b}]\nmaxPairs: 0",
            "spec.maxPairs: 0 is out of range 1..10000",
            OpenApi("spec.maxPairs", "minimum"),
        ),
        (
            "maxPairs above the limit",
            "to: [{dns: a.b}]\nmaxPairs: 10001",
            "spec.maxPairs: 10001 is out of range 1..10000",
            OpenApi("spec.maxPairs", "maximum"),
        ),
        (
            "an unknown selector operator",
            "to: [{podSelector: {matchExpressions: [{key: app, operator: Equals, values: [api]}]}, ports: [{port: 80}]}]",
            "spec.to[0].podSelector.matchExpressions[0].operator: \"Equals\" is not one of In, NotIn, Exists, DoesNotExist",
            ClientOnly,
        ),
        (
            "In without values",
            "to: [{dns: a.b}]\nfrom: {podSelector: {matchExpressions: [{key: app, operator: In}]}}",
            "spec.from.podSelector.matchExpressions[0].values: operator In needs at least one value",
            ClientOnly,
        ),
        (
            "an invalid label value",
            "to: [{dns: a.b}]\nfrom: {podSelector: {matchLabels: {app: front end}}}",
            "spec.from.podSelector.matchLabels.app: \"front end\" is not a valid label value",
            ClientOnly,
        ),
    ];

    for (name, yaml, want_error, enforcement) in cases {
        // A later `from:` line in the case overrides the base one.
        let yaml = if yaml.contains("\nfrom:") {
            yaml.to_string()
        } else {
            format!("{base}{yaml}")
        };
        let errors = field_errors(&parse_spec(&yaml));
        assert!(
            errors.iter().any(|error| error.starts_with(want_error)),
            "{name}: validate() should report {want_error:?}, got {errors:?}"
        );
        assert_schema_rejects::<ProbeSpec>(name, &object(&yaml), enforcement);
    }
}

#[test]
fn validate_reports_every_problem_with_its_path() {
    let yaml = "from: {podSelector: {}}\nto: [{dns: a.b, ip: 192.0.2.1}, {ip: 192.0.2.2, ports: [{port: 70000}, {port: 80}, {port: 0}]}]\ninterval: 100ms\nmaxPairs: 0";
    assert_eq!(
        field_errors(&parse_spec(yaml)),
        [
            "spec.to[0]: sets dns and ip; a target is exactly one of them",
            "spec.to[1].ports[0].port: 70000 is out of range 1..65535",
            "spec.to[1].ports[2].port: 0 is out of range 1..65535",
            "spec.interval: \"100ms\" is shorter than the minimum 1s",
            "spec.timeout: \"2s\" is longer than interval \"100ms\"",
            "spec.maxPairs: 0 is out of range 1..10000",
        ]
    );
}

#[test]
fn kind_is_none_unless_exactly_one_kind_is_set() {
    let none_set = ProbeTarget::default();
    let two_set = ProbeTarget {
        dns: Some("a.b".into()),
        host: Some("c.d".into()),
        ..Default::default()
    };
    let bad_ip = ProbeTarget {
        ip: Some("not-an-ip".into()),
        ..Default::default()
    };
    for target in [none_set, two_set, bad_ip] {
        assert_eq!(target.kind(), None, "{target:?}");
    }
}

#[test]
fn expectation_is_met_by_reachability() {
    use PairVerdict::*;
    let cases = [
        (Expectation::Allow, Ok, Some(true)),
        (Expectation::Allow, PolicyNotEnforced, Some(true)),
        (Expectation::Allow, BlockedByPolicy, Some(false)),
        (Expectation::Allow, UnexpectedBlock, Some(false)),
        (Expectation::Allow, NotProbed, None),
        (Expectation::Allow, Inconclusive, None),
        (Expectation::Deny, Ok, Some(false)),
        (Expectation::Deny, PolicyNotEnforced, Some(false)),
        (Expectation::Deny, BlockedByPolicy, Some(true)),
        (Expectation::Deny, UnexpectedBlock, Some(true)),
        (Expectation::Deny, NotProbed, None),
        (Expectation::Deny, Inconclusive, None),
    ];
    for (expect, verdict, met) in cases {
        assert_eq!(expect.is_met_by(verdict), met, "{expect:?} {verdict:?}");
    }
}

#[test]
fn verdict_counts_add_up() {
    let mut counts = VerdictCounts::default();
    for verdict in [
        PairVerdict::Ok,
        PairVerdict::Ok,
        PairVerdict::UnexpectedBlock,
    ] {
        counts.add(verdict);
    }
    assert_eq!(counts.get(PairVerdict::Ok), 2);
    assert_eq!(counts.get(PairVerdict::UnexpectedBlock), 1);
    assert_eq!(counts.get(PairVerdict::BlockedByPolicy), 0);
}

#[test]
fn status_round_trips_in_camel_case() {
    let status: ProbeSpecStatus = serde_yaml_ng::from_str(
        r#"
observedGeneration: 3
conditions:
  - {type: Satisfied, status: "False", reason: PairsFailing, message: 1 pair blocked, lastTransitionTime: "2025-01-01T00:00:00Z"}
counts: {ok: 3, blockedByPolicy: 1}
lastFailingPairs:
  - {from: shop/frontend, to: payments/gateway, port: 8443, protocol: TCP, verdict: blocked_by_policy,
     reason: default_deny, policy: payments/default-deny, since: "2025-01-01T00:00:00Z"}
"#,
    )
    .expect("status parses");
    assert_eq!(status.counts.blocked_by_policy, 1);
    assert_eq!(status.counts.policy_not_enforced, 0);
    assert_eq!(
        status.last_failing_pairs[0].verdict,
        PairVerdict::BlockedByPolicy
    );
    let json = serde_json::to_value(&status).expect("serializes");
    assert_eq!(json["lastFailingPairs"][0]["verdict"], "blocked_by_policy");
    assert_eq!(json["counts"]["unexpectedBlock"], 0);
    assert_eq!(json["conditions"][0]["type"], CONDITION_SATISFIED);
}

#[test]
fn schema_carries_the_constraints() {
    let schema = openapi_schema::<ProbeSpec>();

    let to = schema_at(&schema, "spec.to");
    assert_eq!(to["minItems"], 1);
    assert_eq!(to["maxItems"], MAX_TARGETS);
    let target_rules = rules_at(&to["items"]);
    assert_eq!(target_rules.len(), 3, "{target_rules:?}");
    assert!(
        target_rules[0].contains("== 1"),
        "exactly-one rule: {}",
        target_rules[0]
    );

    let port = schema_at(&schema, "spec.to[].ports[].port");
    assert_eq!(port["x-kubernetes-int-or-string"], true);
    assert_eq!(port["minimum"], 1.0);
    assert_eq!(port["maximum"], 65535.0);
    assert_eq!(port["pattern"], crate::port::PORT_NAME_PATTERN);
    assert_eq!(
        schema_at(&schema, "spec.to[].ports")["maxItems"],
        MAX_PORTS_PER_TARGET
    );
    assert_eq!(
        schema_at(&schema, "spec.to[].ports[].protocol")["default"],
        "TCP"
    );

    let max_pairs = schema_at(&schema, "spec.maxPairs");
    assert_eq!(max_pairs["minimum"], 1.0);
    assert_eq!(max_pairs["maximum"], f64::from(MAX_PAIRS_LIMIT));
    assert_eq!(max_pairs["default"], 100);

    let interval = schema_at(&schema, "spec.interval");
    assert_eq!(interval["pattern"], DURATION_PATTERN);
    assert_eq!(interval["default"], "30s");
    assert!(rules_at(interval)[0].ends_with("duration(self) >= duration('1s')"));
    assert!(
        rules_at(schema_at(&schema, "spec.timeout"))[0]
            .ends_with("duration(self) > duration('0s')")
    );
    assert!(
        rules_at(schema_at(&schema, "spec"))[0]
            .ends_with("duration(self.timeout) <= duration(self.interval)")
    );
    assert_eq!(rules_at(schema_at(&schema, "spec.to[].ip")), ["isIP(self)"]);

    assert_eq!(
        schema_at(&schema, "spec.expect")["enum"],
        json!(["Allow", "Deny"])
    );
    assert_eq!(
        schema_at(&schema, "spec.from")["required"],
        json!(["podSelector"])
    );
    assert_eq!(
        schema_at(&schema, "spec")["required"],
        json!(["from", "to"])
    );
    assert_eq!(
        schema_at(&schema, "status.conditions")["x-kubernetes-list-type"],
        "map"
    );
    assert_eq!(
        schema_at(&schema, "status.lastFailingPairs")["maxItems"],
        MAX_LAST_FAILING_PAIRS
    );
}

#[test]
fn crd_names_and_printer_columns() {
    let crd = ProbeSpec::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("probespecs.netreach.dev")
    );
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.short_names, Some(vec!["nrps".to_string()]));
    assert_eq!(
        crd.spec.names.categories,
        Some(vec!["netreach".to_string()])
    );
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(
        version
            .subresources
            .as_ref()
            .is_some_and(|sub| sub.status.is_some())
    );
    let columns: Vec<&str> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .filter(|column| column.priority.unwrap_or(0) == 0)
        .map(|column| column.name.as_str())
        .collect();
    assert_eq!(
        columns,
        ["Expect", "Interval", "Satisfied", "OK", "Blocked", "Age"]
    );
}

/// An `ip` target that is loopback, link-local (cloud metadata), multicast, broadcast or
/// unspecified is invalid, with the path and why.
#[test]
fn refused_addresses_are_invalid_ip_targets() {
    for (ip, why) in [
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("'ff02::1'", "multicast"),
        ("255.255.255.255", "broadcast"),
    ] {
        let yaml = format!(
            "{{from: {{podSelector: {{}}}}, to: [{{dns: example.com}}, {{ip: {ip}, ports: [{{port: 80}}]}}]}}"
        );
        let errors = field_errors(&parse_spec(&yaml));
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("spec.to[1].ip: ") && e.contains(why)),
            "{ip}: {errors:?}"
        );
    }
}
