//! The `netreach` binary's contracts: exit codes, JSON fields, table output, error messages.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn netreach(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netreach"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("run netreach")
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const SHOP: &str = "examples/shop";

#[test]
fn explain_denied_flow_names_policy_rule_and_selector() {
    let out = netreach(&[
        "explain",
        "-f",
        SHOP,
        "--from",
        "shop/frontend",
        "--to",
        "payments/gateway",
        "--port",
        "8443",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("DENIED (ingress, reason: namespace_selector_mismatch)"),
        "{text}"
    );
    assert!(
        text.contains("payments/default-deny: has no ingress rules (default deny)"),
        "{text}"
    );
    assert!(
        text.contains("namespaceSelector {team: frontend} does not match namespace shop {"),
        "{text}"
    );
}

#[test]
fn explain_exit_code_flag() {
    let denied = [
        "explain",
        "-f",
        SHOP,
        "--from",
        "shop/frontend",
        "--to",
        "payments/gateway",
        "--port",
        "8443",
        "--exit-code",
    ];
    assert_eq!(netreach(&denied).status.code(), Some(1));
    let allowed = [
        "explain",
        "-f",
        SHOP,
        "--from",
        "shop/frontend",
        "--to",
        "shop/api",
        "--port",
        "http",
        "--exit-code",
    ];
    let out = netreach(&allowed);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("8080/TCP: ALLOWED"));
}

#[test]
fn explain_json_has_the_contract_fields() {
    let out = netreach(&[
        "explain",
        "-f",
        SHOP,
        "--from",
        "shop/frontend",
        "--to",
        "shop/api",
        "--port",
        "9090",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["from"], "shop/frontend");
    assert_eq!(v["to"], "shop/api");
    assert_eq!(v["port"], 9090);
    assert_eq!(v["protocol"], "TCP");
    assert_eq!(v["allowed"], false);
    assert_eq!(v["reason"], "port_not_allowed");
    assert_eq!(v["direction"], "ingress");
    assert_eq!(v["policies"], serde_json::json!(["shop/api-from-frontend"]));
    assert_eq!(v["verdict"]["ingress"]["decision"], "denied");
    assert_eq!(v["verdict"]["egress"]["decision"], "not_isolated");
    assert_eq!(v["incomplete"], false, "every document parsed");
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "explain",
                "-f",
                "does/not/exist.yaml",
                "--from",
                "a/b",
                "--to",
                "a/c",
                "--port",
                "80",
            ],
            "does/not/exist.yaml",
        ),
        (
            &[
                "explain",
                "-f",
                SHOP,
                "--from",
                "shop/frontnd",
                "--to",
                "shop/api",
                "--port",
                "80",
            ],
            "shop/frontnd is not in the loaded objects",
        ),
        (
            &[
                "explain",
                "-f",
                SHOP,
                "--from",
                "shop/frontend",
                "--to",
                "shop/api",
                "--port",
                "70000",
            ],
            "out of range",
        ),
        (
            &[
                "explain",
                "-f",
                SHOP,
                "--from",
                "shop/frontend",
                "--to",
                "shop/api",
                "--port",
                "grpc",
            ],
            "declares no TCP port named \"grpc\"",
        ),
        (
            &["matrix", "-f", SHOP, "--port", "http"],
            "only allowed with explain",
        ),
        (
            &[
                "explain",
                "-f",
                "agent/tests/data/cli/invalid-policy.yaml",
                "--strict",
                "--from",
                "shop/client",
                "--to",
                "shop/web",
                "--port",
                "80",
            ],
            "matchExpressions[0].operator",
        ),
    ];
    for (args, needle) in cases {
        let out = netreach(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(needle),
            "{args:?}: stderr lacks {needle:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn invalid_policy_fails_closed_without_strict() {
    let out = netreach(&[
        "explain",
        "-f",
        "agent/tests/data/cli/invalid-policy.yaml",
        "--from",
        "shop/client",
        "--to",
        "shop/web",
        "--port",
        "80",
        "--exit-code",
    ]);
    // The broken peer matches nothing: the flow is denied, and the problem is reported.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("shop/broken"), "{}", stderr(&out));
    assert!(stdout(&out).contains("invalid_rule"), "{}", stdout(&out));
}

#[test]
fn matrix_json_lists_every_ordered_pair_including_self() {
    let out = netreach(&[
        "matrix", "-f", SHOP, "--port", "8080/TCP", "--format", "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["incomplete"], false, "every document parsed");
    let pairs = v["pairs"].as_array().expect("pairs");
    assert_eq!(pairs.len(), 16, "4 pods x 4 pods");
    let self_pairs = pairs.iter().filter(|p| p["self"] == true).count();
    assert_eq!(self_pairs, 4);
    assert!(
        pairs
            .iter()
            .all(|p| p["port"] == 8080 && p["protocol"] == "TCP" && p["allowed"].is_boolean())
    );
    let denied = pairs
        .iter()
        .find(|p| p["from"] == "payments/gateway" && p["to"] == "shop/api")
        .expect("pair");
    assert_eq!(denied["allowed"], false);
    assert_eq!(denied["reason"], "namespace_selector_mismatch");
    let denied = pairs
        .iter()
        .find(|p| p["from"] == "kube-system/coredns" && p["to"] == "shop/api")
        .expect("pair");
    assert_eq!(denied["allowed"], false);
}

#[test]
fn matrix_table_prints_a_grid_per_port() {
    let out = netreach(&["matrix", "-f", SHOP, "--port", "8080", "--port", "8443/TCP"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("8080/TCP: "), "{text}");
    assert!(text.contains("8443/TCP: "), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("shop/frontend") && l.contains('S')),
        "{text}"
    );
}

#[test]
fn crd_command_prints_the_committed_crds() {
    let out = netreach(&["crd"]);
    assert_eq!(out.status.code(), Some(0));
    let committed =
        std::fs::read_to_string(repo_root().join("charts/netreach/crds/netreach.dev_crds.yaml"))
            .unwrap();
    assert_eq!(stdout(&out), committed);
}

#[test]
fn help_explains_every_subcommand() {
    let out = netreach(&["--help"]);
    let text = stdout(&out);
    for sub in ["explain", "matrix", "whatif", "ui", "crd"] {
        assert!(text.contains(sub), "{text}");
    }
    for sub in ["explain", "matrix"] {
        let text = stdout(&netreach(&[sub, "--help"]));
        assert!(
            text.contains("--keep-going") && text.contains("\"incomplete\": true"),
            "{sub}: {text}"
        );
    }
}

// === Input that does not parse: fail closed ===

const SHOP_DENY: &str = "agent/tests/data/cli/shop-deny.yaml";
const UNPARSABLE: &str = "agent/tests/data/cli/unparsable.yaml";

fn explain_client_to_web(extra: &[&str]) -> Output {
    let mut args = vec![
        "explain",
        "-f",
        SHOP_DENY,
        "--from",
        "shop/client",
        "--to",
        "shop/web",
        "--port",
        "80",
    ];
    args.extend_from_slice(extra);
    netreach(&args)
}

#[test]
fn unparsable_input_exits_2_naming_file_and_document() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-unparsable");
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n";
    // (file, contents, what stderr must say about it)
    let generated: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "latin1.yaml",
            b"apiVersion: v1\nkind: Namespace\nmetadata: {name: caf\xe9}\n".to_vec(),
            "(document 1, line 3): not UTF-8 text",
        ),
        (
            "laughs.yaml",
            laughs.as_bytes().to_vec(),
            "(document 1, line 1): invalid YAML: aliases expand",
        ),
        (
            "deep.yaml",
            format!("{}x\n", "- ".repeat(10_000)).into_bytes(),
            "(document 1, line 1): invalid YAML: nested too deep",
        ),
        (
            "deep.json",
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
            "(document 1, line 1): invalid JSON: nested too deep",
        ),
        (
            "invalid.json",
            b"{\"apiVersion\": \"v1\",}".to_vec(),
            "(document 1, line 1): invalid JSON",
        ),
    ];
    let mut cases: Vec<(String, String)> = vec![(
        UNPARSABLE.to_string(),
        format!("{UNPARSABLE} (document 2, line 12): invalid YAML"),
    )];
    for (name, contents, needle) in generated {
        let path = dir.join(name);
        std::fs::write(&path, contents).expect("write input");
        let path = path.display().to_string();
        cases.push((path.clone(), format!("{path} {needle}")));
    }
    for (path, needle) in &cases {
        let runs = [
            explain_client_to_web(&["-f", path]),
            explain_client_to_web(&["-f", path, "--format", "json", "-q"]),
            netreach(&["matrix", "-f", SHOP_DENY, "-f", path, "--port", "80"]),
        ];
        for out in runs {
            assert_eq!(out.status.code(), Some(2), "{path}: {}", stderr(&out));
            assert!(
                stderr(&out).contains(&format!("error: {needle}")),
                "{path}: stderr lacks {needle:?}: {}",
                stderr(&out)
            );
            assert!(
                stderr(&out).contains("--keep-going"),
                "{path}: {}",
                stderr(&out)
            );
            assert_eq!(stdout(&out), "", "{path}: no result at all");
        }
    }
}

#[test]
fn keep_going_skips_unparsable_documents_and_marks_the_result_incomplete() {
    const INCOMPLETE: &str =
        "incomplete: 1 document(s) could not be parsed; results may miss policies";
    let warning = format!("warning: {UNPARSABLE} (document 2, line 12): invalid YAML");

    // Exit codes as usual: the default-deny from the good file still applies.
    let out = explain_client_to_web(&["-f", UNPARSABLE, "--keep-going", "--exit-code"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains(&warning), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().next(), Some(INCOMPLETE), "{text}");
    assert!(text.contains("shop/web-default-deny"), "{text}");
    let out = explain_client_to_web(&["-f", UNPARSABLE, "--keep-going"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let out = explain_client_to_web(&["-f", UNPARSABLE, "--keep-going", "--format", "json", "-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&warning),
        "-q still warns: {}",
        stderr(&out)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["incomplete"], true);
    assert_eq!(v["allowed"], false);
    assert_eq!(v["policies"], serde_json::json!(["shop/web-default-deny"]));

    let out = netreach(&[
        "matrix",
        "-f",
        SHOP_DENY,
        "-f",
        UNPARSABLE,
        "--port",
        "80",
        "--keep-going",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains(&warning), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["incomplete"], true);
    let pair = v["pairs"]
        .as_array()
        .expect("pairs")
        .iter()
        .find(|p| p["from"] == "shop/client" && p["to"] == "shop/web")
        .expect("pair");
    assert_eq!(pair["allowed"], false);
    assert_eq!(
        pair["policies"],
        serde_json::json!(["shop/web-default-deny"])
    );

    let out = netreach(&[
        "matrix",
        "-f",
        SHOP_DENY,
        "-f",
        UNPARSABLE,
        "--port",
        "80",
        "--keep-going",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().next(), Some(INCOMPLETE), "{text}");
    assert!(text.contains("80/TCP: "), "{text}");
}

#[test]
fn unloadable_policy_warns_on_every_verdict_in_its_namespace() {
    let out = netreach(&[
        "explain",
        "-f",
        "agent/tests/data/cli/invalid-subject-selector.yaml",
        "--from",
        "shop/client",
        "--to",
        "shop/web",
        "--port",
        "80",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("policy shop/broken could not be loaded"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("this verdict may be wrong"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn explain_a_service_evaluates_each_ready_endpoint() {
    let explain = |to: &str, port: &str, format: &str| {
        netreach(&[
            "explain",
            "-f",
            "examples/services",
            "--from",
            "shop/frontend",
            "--to",
            to,
            "--port",
            port,
            "--format",
            format,
            "--exit-code",
        ])
    };
    let out = explain("svc/shop/api", "80", "text");
    assert_eq!(
        out.status.code(),
        Some(1),
        "partially denied fails --exit-code"
    );
    let text = stdout(&out);
    for line in [
        "shop/frontend -> svc shop/api 80/TCP (web, targetPort http; ClusterIP 10.244.255.10): PARTIALLY DENIED (1 of 3 endpoints denied; policies: shop/api-default-deny)",
        "  endpoint shop/api-1 10.244.1.11:8080: allowed",
        "  endpoint shop/api-canary 10.244.2.13:8081: denied (ingress, default_deny)",
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }
    let json: Value =
        serde_json::from_str(&stdout(&explain("svc/shop/api", "web", "json"))).unwrap();
    assert_eq!(json["service"], "shop/api");
    assert_eq!(json["port"], 80);
    assert_eq!(json["verdict"], "partially_denied");
    assert_eq!(
        json["policies"],
        serde_json::json!(["shop/api-default-deny"])
    );
    let endpoints = json["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 3);
    assert_eq!(endpoints[2]["pod"], "shop/api-canary");
    assert_eq!(endpoints[2]["port"], 8081, "the canary's own targetPort");
    assert_eq!(endpoints[2]["allowed"], false);
    // What does not resolve is named.
    let out = explain("svc/shop/api", "8080", "text");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("Service shop/api has no TCP port 8080 (ports: web=80/TCP->http)"),
        "{}",
        stderr(&out)
    );
    let out = explain("svc/shop/nope", "80", "text");
    assert!(
        stderr(&out).contains("Services in shop: api"),
        "{}",
        stderr(&out)
    );
}

/// The binary is also the kubectl plugin: started as `kubectl-netreach` (the link `make
/// install` creates), it runs the same commands and its usage says `kubectl netreach`.
#[test]
fn answers_as_the_kubectl_plugin() {
    let dir = std::env::temp_dir().join(format!("netreach-plugin-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let plugin = dir.join("kubectl-netreach");
    let _ = std::fs::remove_file(&plugin);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_netreach"), &plugin).expect("symlink");
    let run = |args: &[&str]| {
        Command::new(&plugin)
            .args(args)
            .current_dir(repo_root())
            .output()
            .expect("run kubectl-netreach")
    };
    let help = run(&["--help"]);
    assert!(help.status.success());
    assert!(
        stdout(&help).contains("Usage: kubectl netreach <COMMAND>"),
        "{}",
        stdout(&help)
    );
    let explain = run(&[
        "explain",
        "-f",
        "examples/services",
        "--from",
        "shop/frontend",
        "--to",
        "svc/shop/api",
        "--port",
        "80",
    ]);
    assert!(
        stdout(&explain).contains("PARTIALLY DENIED"),
        "{}",
        stdout(&explain)
    );
    let whatif = run(&[
        "whatif",
        "-f",
        "examples/shop",
        "--delete",
        "netpol/shop/api-from-frontend",
        "-q",
    ]);
    assert!(
        stdout(&whatif).starts_with("5 pairs flip"),
        "{}",
        stdout(&whatif)
    );
    let ui = run(&["ui", "--help"]);
    assert!(
        stdout(&ui).contains("Usage: kubectl netreach ui"),
        "{}",
        stdout(&ui)
    );
    let bad = run(&["explain", "--bogus"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("Usage: kubectl netreach explain"),
        "{}",
        stderr(&bad)
    );
    // The plain name keeps its own usage.
    let plain = netreach(&["--help"]);
    assert!(stdout(&plain).contains("Usage: netreach <COMMAND>"));
    std::fs::remove_dir_all(&dir).expect("clean up");
}

// === whatif ===

/// `whatif` on the shop example plus its ProbeSpec, with `change` and --exit-code.
fn whatif(change: &[&str], format: &str) -> (Output, Value) {
    let mut args = vec![
        "whatif",
        "-f",
        SHOP,
        "-f",
        "examples/probespecs/frontend-paths.yaml",
        "--format",
        format,
        "--exit-code",
    ];
    args.extend_from_slice(change);
    let out = netreach(&args);
    let json = if format == "json" {
        serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
    } else {
        Value::Null
    };
    (out, json)
}

/// `from -> to port before->after` of each change in the JSON.
fn flips(json: &Value) -> Vec<String> {
    json["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            format!(
                "{} -> {} {}/{} {}->{}",
                c["from"].as_str().expect("from"),
                c["to"].as_str().expect("to"),
                c["port"],
                c["protocol"].as_str().expect("protocol"),
                c["before"],
                c["after"]
            )
        })
        .collect()
}

#[test]
fn whatif_lists_exactly_the_pairs_a_change_flips() {
    type Case<'a> = (&'a str, &'a [&'a str], &'a [&'a str], Option<i32>);
    let cases: &[Case] = &[
        (
            "a deleted policy opens shop/api to everyone",
            &["--delete", "networkpolicy/shop/api-from-frontend"],
            &[
                "kube-system/coredns -> shop/api 8080/TCP false->true",
                "payments/gateway -> shop/api 8080/TCP false->true",
                "kube-system/coredns -> shop/api 9090/TCP false->true",
                "payments/gateway -> shop/api 9090/TCP false->true",
                "shop/frontend -> shop/api 9090/TCP false->true",
            ],
            Some(0),
        ),
        (
            "an edited rule moves the frontend from http to metrics",
            &["--apply", "examples/whatif/api-metrics-only.yaml"],
            &[
                "shop/frontend -> shop/api 8080/TCP true->false",
                "shop/frontend -> shop/api 9090/TCP false->true",
            ],
            Some(1),
        ),
        (
            "a relabelled pod loses the access its old labels had",
            &["--apply", "examples/whatif/frontend-relabelled.yaml"],
            &["shop/frontend -> shop/api 8080/TCP true->false"],
            Some(1),
        ),
        (
            "re-applying today's objects flips nothing",
            &["--apply", "examples/shop/cluster.yaml"],
            &[],
            Some(0),
        ),
    ];
    for (name, change, want, code) in cases {
        let (out, json) = whatif(change, "json");
        assert_eq!(out.status.code(), *code, "{name}: {}", stderr(&out));
        assert_eq!(flips(&json), *want, "{name}");
        assert_eq!(json["compared"], 18, "{name}");
        assert!(stderr(&out).contains("whatif: 18 pairs compared"), "{name}");
    }
}

#[test]
fn whatif_json_names_reason_direction_and_policies_of_the_new_verdict() {
    let (_, json) = whatif(
        &["--apply", "examples/whatif/api-metrics-only.yaml"],
        "json",
    );
    let closed = &json["changes"][0];
    assert_eq!(closed["reason"], "port_not_allowed");
    assert_eq!(closed["direction"], "ingress");
    assert_eq!(
        closed["policies"],
        serde_json::json!(["shop/api-from-frontend"])
    );
    let opened = &json["changes"][1];
    assert_eq!(opened["reason"], Value::Null);
    assert_eq!(
        opened["policies"],
        serde_json::json!(["shop/api-from-frontend"])
    );
    assert_eq!(opened["previous"]["reason"], "port_not_allowed");
    // The ProbeSpec pair the change breaks.
    let spec = &json["probespecs"]["changes"][0];
    assert_eq!(spec["spec"], "ProbeSpec shop/frontend-paths");
    assert_eq!(spec["to"], "shop/api:8080/TCP");
    assert_eq!(
        (spec["before"].as_str(), spec["after"].as_str()),
        (Some("allowed"), Some("denied"))
    );
}

#[test]
fn whatif_text_explains_the_new_verdict_closed_paths_first() {
    let (out, _) = whatif(
        &["--apply", "examples/whatif/api-metrics-only.yaml"],
        "text",
    );
    let text = stdout(&out);
    let closed = text
        .find("ALLOWED -> DENIED  shop/frontend -> shop/api 8080/TCP: DENIED")
        .unwrap_or_else(|| panic!("{text}"));
    let opened = text
        .find("DENIED -> ALLOWED  shop/frontend -> shop/api 9090/TCP: ALLOWED")
        .unwrap_or_else(|| panic!("{text}"));
    assert!(closed < opened, "{text}");
    assert!(
        text.contains("port 8080/TCP is not in [metrics/TCP (= 9090)]"),
        "{text}"
    );
    assert!(
        text.contains(
            "ProbeSpec shop/frontend-paths  shop/frontend -> shop/api:8080/TCP  allowed -> denied"
        ),
        "{text}"
    );
}

#[test]
fn whatif_refuses_what_it_cannot_answer() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--delete", "pod/shop/nope"],
            "--delete Pod/shop/nope: no such object",
        ),
        (
            &["--delete", "deployment/shop/api"],
            "not a kind whatif can delete",
        ),
        (
            &["--apply", "agent/tests/data/cli/unparsable.yaml"],
            "could not be parsed",
        ),
        (&[], "nothing to change"),
    ];
    for (change, message) in cases {
        let (out, _) = whatif(change, "text");
        assert_eq!(out.status.code(), Some(2), "{change:?}");
        assert!(
            stderr(&out).contains(message),
            "{change:?}: {}",
            stderr(&out)
        );
    }
}
