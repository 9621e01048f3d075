use std::net::IpAddr;
use std::path::PathBuf;

use super::*;
use crate::cluster::model::{
    NAMESPACE_NAME_LABEL, ObjectRef, Peer, PodPhase, PolicyPort, Protocol,
};

// === Fixtures ===

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/load")
        .join(name)
}

/// Loads fixture files; problem sources then start with the full path, so tests strip it.
fn load(names: &[&str]) -> Loaded {
    let paths: Vec<PathBuf> = names.iter().map(|n| data(n)).collect();
    let mut loaded = load_paths(&paths).unwrap_or_else(|e| panic!("{e}"));
    let prefix = format!("{}/", data("").display().to_string().trim_end_matches('/'));
    for problem in &mut loaded.problems {
        problem.source = problem.source.replace(&prefix, "");
    }
    for error in &mut loaded.parse_errors {
        error.file = error.file.replace(&prefix, "");
    }
    for (source, _) in &mut loaded.custom_objects {
        *source = source.replace(&prefix, "");
    }
    loaded
}

fn from_str(name: &str, text: &str) -> Loaded {
    let mut loaded = Loaded::new();
    load_str(name, text, &mut loaded);
    loaded
}

/// (source, object, field, loaded_degraded) of every problem.
fn problem_keys(loaded: &Loaded) -> Vec<(String, Option<String>, Option<String>, bool)> {
    loaded
        .problems
        .iter()
        .map(|p| {
            (
                p.source.clone(),
                p.object.clone(),
                p.field.clone(),
                p.loaded_degraded,
            )
        })
        .collect()
}

/// (file, document, line, kind) of every parse error.
fn parse_keys(loaded: &Loaded) -> Vec<(String, Option<usize>, Option<usize>, ParseErrorKind)> {
    loaded
        .parse_errors
        .iter()
        .map(|e| (e.file.clone(), e.document, e.line, e.kind))
        .collect()
}

fn key(
    source: &str,
    object: Option<&str>,
    field: Option<&str>,
    degraded: bool,
) -> (String, Option<String>, Option<String>, bool) {
    (
        source.to_string(),
        object.map(String::from),
        field.map(String::from),
        degraded,
    )
}

fn names<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    items.collect()
}

fn pod<'a>(loaded: &'a Loaded, ns: &str, name: &str) -> &'a Pod {
    loaded
        .index
        .pod(&ObjectRef::new(ns, name))
        .unwrap_or_else(|| panic!("pod {ns}/{name} not loaded"))
}

fn policy<'a>(loaded: &'a Loaded, ns: &str, name: &str) -> &'a NetworkPolicy {
    loaded
        .index
        .policy(&ObjectRef::new(ns, name))
        .unwrap_or_else(|| panic!("policy {ns}/{name} not loaded"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test IP")
}

// === Formats ===

#[test]
fn multi_document_yaml() {
    let loaded = load(&["multi-doc.yaml"]);
    assert_eq!(loaded.problems, []);
    let s = &loaded.summary;
    assert_eq!(
        (
            s.files,
            s.documents,
            s.namespaces,
            s.pods,
            s.nodes,
            s.policies
        ),
        (1, 7, 1, 2, 0, 1)
    );
    assert_eq!(s.services, 1, "Services are loaded (Service targets)");
    assert_eq!(
        s.ignored_by_kind,
        BTreeMap::from([("Deployment".to_string(), 1), ("ProbeSpec".to_string(), 1),])
    );
    let shop = loaded.index.namespace("shop").expect("namespace");
    assert_eq!(
        shop.labels.get(NAMESPACE_NAME_LABEL).map(String::as_str),
        Some("shop"),
        "E10 injected"
    );
    let frontend = pod(&loaded, "shop", "frontend");
    assert_eq!(frontend.ips, [ip("10.244.1.10")]);
    assert!(frontend.ready);
    assert_eq!(
        frontend.resolve_named_port("http", Protocol::Tcp),
        Some(8080)
    );
    assert!(!pod(&loaded, "shop", "api").ready);
    assert_eq!(policy(&loaded, "shop", "api-ingress").ingress.len(), 1);
    assert_eq!(loaded.custom_objects.len(), 1);
    let (source, value) = &loaded.custom_objects[0];
    assert_eq!(source, "multi-doc.yaml (document 7)");
    assert_eq!(
        value["spec"]["from"]["podSelector"]["matchLabels"]["app"],
        "frontend"
    );
}

#[test]
fn lists_nest_and_typed_lists_fill_in_kind() {
    let loaded = load(&["list.yaml"]);
    assert_eq!(loaded.problems, []);
    let s = &loaded.summary;
    assert_eq!(
        (s.documents, s.namespaces, s.pods, s.policies),
        (1, 1, 2, 1)
    );
    assert_eq!(
        s.ignored_by_kind,
        BTreeMap::from([("ConfigMap".to_string(), 1)])
    );
    let gateway = pod(&loaded, "payments", "gateway");
    assert_eq!(
        gateway.ips,
        [ip("10.244.2.20"), ip("fd00:10:244:2::20")],
        "dual stack, in order"
    );
    let worker = pod(&loaded, "payments", "worker");
    assert!(
        worker.ips.is_empty() && worker.phase == PodPhase::Pending && !worker.is_endpoint(),
        "E23"
    );
    let deny = policy(&loaded, "payments", "default-deny");
    assert!(
        deny.isolates_ingress
            && deny.isolates_egress
            && deny.ingress.is_empty()
            && deny.egress.is_empty()
    );
}

#[test]
fn kubectl_get_output_with_realistic_noise() {
    let loaded = load(&["kubectl-get.yaml"]);
    assert_eq!(loaded.problems, []);
    let s = &loaded.summary;
    assert_eq!(
        (s.documents, s.namespaces, s.pods, s.nodes, s.policies),
        (1, 2, 2, 1, 1)
    );
    assert!(s.ignored_by_kind.is_empty());

    let frontend = pod(&loaded, "shop", "frontend-7d9c6b5f8-x2x9q");
    assert_eq!(frontend.uid, "0b6c1e9a-5f7e-4d3c-8b2a-1c0d9e8f7a6b");
    assert_eq!(frontend.node_name.as_deref(), Some("node-1"));
    assert_eq!(
        (frontend.phase, frontend.ready, frontend.restarts),
        (PodPhase::Running, true, 1)
    );
    assert_eq!(
        frontend.resolve_named_port("http", Protocol::Tcp),
        Some(8080)
    );

    let kindnet = pod(&loaded, "kube-system", "kindnet-4m2xz");
    assert!(kindnet.host_network, "E22 hostNetwork pod");
    assert_eq!(
        (kindnet.ips.as_slice(), kindnet.restarts),
        ([ip("172.18.0.2")].as_slice(), 4)
    );

    let node = loaded.index.node("node-1").expect("node");
    assert_eq!(node.addresses, [ip("172.18.0.2")]);
    assert!(node.ready);
    assert_eq!(node.problems, ["DiskPressure"]);

    let egress = policy(&loaded, "shop", "frontend-egress");
    assert!(!egress.isolates_ingress && egress.isolates_egress);
    assert_eq!(
        egress.egress[0].ports,
        [PolicyPort::Port {
            protocol: Protocol::Udp,
            port: Some(crate::cluster::PortRef::Number(53)),
            end_port: None
        }]
    );
    assert_eq!(
        names(loaded.index.namespaces().map(|n| n.name.as_str())),
        ["kube-system", "shop"]
    );
}

#[test]
fn json_list_and_json_stream() {
    let loaded = load(&["objects.json"]);
    assert_eq!(loaded.problems, []);
    assert_eq!((loaded.summary.nodes, loaded.summary.pods), (1, 1));
    assert_eq!(
        pod(&loaded, "kube-system", "dns").resolve_named_port("dns", Protocol::Udp),
        Some(53)
    );

    // Concatenated JSON values; the last one is cut off: the first two still load.
    let loaded = load(&["broken.json"]);
    assert_eq!(
        names(loaded.index.namespaces().map(|n| n.name.as_str())),
        ["json-first", "json-second"]
    );
    assert_eq!(loaded.problems, []);
    assert_eq!(
        parse_keys(&loaded),
        [("broken.json".into(), Some(3), Some(4), ParseErrorKind::Json)]
    );
    let error = &loaded.parse_errors[0];
    assert!(
        error
            .message
            .starts_with("invalid JSON: EOF while parsing a value at line 4"),
        "{}",
        error.message
    );
    assert_eq!((loaded.summary.documents, loaded.summary.unparsed), (3, 1));
}

#[test]
fn malformed_documents_do_not_stop_the_others() {
    let loaded = load(&["malformed.yaml"]);
    // Document 2 does not parse: a parse error, kept apart from the invalid objects.
    assert_eq!(
        parse_keys(&loaded),
        [(
            "malformed.yaml".into(),
            Some(2),
            Some(9),
            ParseErrorKind::Yaml
        )]
    );
    assert_eq!(
        loaded.parse_errors[0].to_string(),
        "malformed.yaml (document 2, line 9): invalid YAML: mapping values are not allowed in \
         this context at line 9 column 10"
    );
    assert_eq!(
        problem_keys(&loaded),
        [
            key("malformed.yaml (document 3)", None, None, false),
            key("malformed.yaml (document 4)", None, Some("kind"), false),
            key(
                "malformed.yaml (document 5)",
                Some("Pod shop/typed-wrong"),
                Some("spec.containers[0].ports[0].containerPort"),
                false
            ),
        ]
    );
    let messages: Vec<&str> = loaded.problems.iter().map(|p| p.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "expected a Kubernetes object (a mapping with apiVersion and kind), found a string",
            "is missing or not a string",
            "invalid type: string \"http\", expected i32",
        ]
    );
    assert_eq!(
        names(loaded.index.namespaces().map(|n| n.name.as_str())),
        ["first", "last"]
    );
    assert_eq!(loaded.summary.documents, 6);
    assert_eq!((loaded.summary.problems, loaded.summary.unparsed), (3, 1));
    assert_eq!(
        loaded.problems[2].to_string(),
        "malformed.yaml (document 5): Pod shop/typed-wrong: spec.containers[0].ports[0].containerPort: \
         invalid type: string \"http\", expected i32"
    );
}

#[test]
fn invalid_policies_report_fields_and_load_fail_closed() {
    let loaded = load(&["invalid-policies.yaml"]);
    let src = |n: usize| format!("invalid-policies.yaml (document {n})");
    assert_eq!(
        problem_keys(&loaded),
        [
            key(
                &src(1),
                Some("NetworkPolicy shop/bad-operator"),
                Some("spec.ingress[0].from[1].namespaceSelector.matchExpressions[0].operator"),
                true
            ),
            key(
                &src(2),
                Some("NetworkPolicy shop/bad-cidr"),
                Some("spec.egress[0].to[0].ipBlock.cidr"),
                true
            ),
            key(
                &src(3),
                Some("NetworkPolicy shop/except-outside"),
                Some("spec.egress[0].to[0].ipBlock.except[1]"),
                true
            ),
            key(
                &src(4),
                Some("NetworkPolicy shop/endport-named"),
                Some("spec.ingress[0].ports[0].endPort"),
                true
            ),
            key(
                &src(5),
                Some("NetworkPolicy shop/endport-below"),
                Some("spec.ingress[0].ports[0].endPort"),
                true
            ),
            key(
                &src(6),
                Some("NetworkPolicy shop/empty-peer"),
                Some("spec.ingress[0].from[0]"),
                true
            ),
            key(
                &src(7),
                Some("NetworkPolicy shop/bad-pod-selector"),
                Some("spec.podSelector.matchExpressions[0].values"),
                false
            ),
        ]
    );
    assert_eq!(
        loaded.problems[5].to_string(),
        "invalid-policies.yaml (document 6): NetworkPolicy shop/empty-peer: spec.ingress[0].from[0]: \
         must specify a peer (podSelector, namespaceSelector or ipBlock)"
    );
    // Everything but the policy with an invalid podSelector loaded.
    let loaded_names = names(loaded.index.policies().map(|p| p.name.as_str()));
    assert_eq!(
        loaded_names,
        [
            "bad-cidr",
            "bad-operator",
            "empty-peer",
            "endport-below",
            "endport-named",
            "except-outside",
            "fine"
        ]
    );
    let bad_operator = policy(&loaded, "shop", "bad-operator");
    let peers = &bad_operator.ingress[0].peers;
    assert!(
        matches!(peers[0], Peer::Pods { .. }),
        "the valid peer still allows"
    );
    assert!(
        matches!(&peers[1], Peer::Invalid { reason } if reason.contains("Equals")),
        "{peers:?}"
    );
    assert!(matches!(
        &policy(&loaded, "shop", "endport-named").ingress[0].ports[0],
        PolicyPort::Invalid { .. }
    ));
    assert_eq!((loaded.summary.policies, loaded.summary.problems), (7, 7));
}

#[test]
fn folders_are_walked_recursively_in_order() {
    let loaded = load(&["folder"]);
    assert_eq!(loaded.problems, []);
    let s = &loaded.summary;
    assert_eq!(
        (
            s.files,
            s.documents,
            s.namespaces,
            s.pods,
            s.policies,
            s.duplicates
        ),
        (4, 6, 2, 2, 1, 1)
    );
    assert!(
        loaded.index.namespace("hidden-must-not-load").is_none(),
        "hidden files are skipped"
    );
    // nested/deeper/policy.yaml is read after 20-pods.yml, so its definition of alpha/one wins.
    assert_eq!(
        pod(&loaded, "alpha", "one")
            .labels
            .get("version")
            .map(String::as_str),
        Some("v2")
    );
    assert_eq!(pod(&loaded, "beta", "two").ips, [ip("10.244.3.2")]);
    assert_eq!(
        s.to_string(),
        "4 files, 6 documents: 2 namespaces, 2 pods, 0 nodes, 1 policy; 1 duplicate"
    );
}

#[test]
fn several_paths_accumulate() {
    let loaded = load(&[
        "multi-doc.yaml",
        "list.yaml",
        "kubectl-get.yaml",
        "objects.json",
    ]);
    assert_eq!(loaded.problems, []);
    let counts = loaded.index.counts();
    assert_eq!(
        (
            counts.namespaces,
            counts.pods,
            counts.nodes,
            counts.policies
        ),
        (3, 7, 1, 3)
    );
    // kubectl-get.yaml redefines namespace shop, objects.json node node-1.
    assert_eq!(loaded.summary.duplicates, 2);
    assert_eq!(loaded.summary.files, 4);
}

#[test]
fn explicit_files_are_read_whatever_their_extension() {
    let loaded = load(&["folder/README.md", "latin1.yaml"]);
    assert_eq!(
        problem_keys(&loaded),
        [key("folder/README.md", None, None, false)]
    );
    assert_eq!(
        loaded.problems[0].message,
        "expected a Kubernetes object (a mapping with apiVersion and kind), found a string"
    );
    assert_eq!(
        parse_keys(&loaded),
        [(
            "latin1.yaml".into(),
            Some(1),
            Some(3),
            ParseErrorKind::NotUtf8
        )]
    );
    assert_eq!(
        loaded.parse_errors[0].message,
        "not UTF-8 text: invalid byte 0xE9 at offset 51 of the file"
    );
    assert_eq!(loaded.summary.files, 2);
}

#[test]
fn missing_path_is_an_error_naming_it() {
    let missing = data("no-such-file.yaml");
    let err = load_paths(&[data("list.yaml"), missing.clone()]).expect_err("missing");
    assert!(
        matches!(&err, LoadError::NotFound { path } if *path == missing),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("{}: no such file or directory", missing.display())
    );
    assert_eq!(err.metric_label(), "not_found");
}

// === Parse errors: fail closed ===

/// The classic "billion laughs": ten to the sixth expansions of a few lines.
const LAUGHS: &str = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n";

/// One anchor of `n` values aliased `n` times: quadratic, and under serde_yaml_ng's own
/// repetition limit, so only the value budget stops it.
fn quadratic_aliases(n: usize) -> String {
    format!(
        "a: &a [{}]\nb: [{}]\n",
        vec!["x"; n].join(", "),
        vec!["*a"; n].join(", ")
    )
}

#[test]
fn parse_failures_name_file_and_document() {
    // Every case is a good document, then one that does not parse (document 2).
    let yaml = |bad: &[u8]| {
        let mut bytes = b"apiVersion: v1\nkind: Namespace\nmetadata: {name: good}\n---\n".to_vec();
        bytes.extend_from_slice(bad);
        bytes
    };
    let json = |bad: &str| {
        format!("{{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {{\"name\": \"good\"}}}}\n{bad}")
            .into_bytes()
    };
    let deep_block = format!("{}x\n", "- ".repeat(10_000));
    let deep_flow = format!("{}{}\n", "[".repeat(10_000), "]".repeat(10_000));
    let deep_json = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let cases: Vec<(&str, Vec<u8>, ParseErrorKind, usize, &str)> = vec![
        (
            "invalid.yaml",
            yaml(b"apiVersion: v1\nkind: [unclosed\nmetadata: {name: x}\n"),
            ParseErrorKind::Yaml,
            7,
            "invalid YAML: did not find expected ',' or ']' at line 7 column 9, while parsing a flow \
             sequence at line 6 column 7",
        ),
        (
            "latin1.yaml",
            yaml(b"apiVersion: v1\nkind: Namespace\nmetadata: {name: caf\xe9}\n"),
            ParseErrorKind::NotUtf8,
            7,
            "not UTF-8 text: invalid byte 0xE9 at offset 109 of the file",
        ),
        (
            "laughs.yaml",
            yaml(LAUGHS.as_bytes()),
            ParseErrorKind::AliasExpansion,
            5,
            "invalid YAML: aliases expand too far (an alias bomb?): repetition limit exceeded",
        ),
        (
            "quadratic.yaml",
            yaml(quadratic_aliases(1_000).as_bytes()),
            ParseErrorKind::AliasExpansion,
            5,
            "invalid YAML: aliases expand the document past 107011 values (an alias bomb?)",
        ),
        (
            "deep.yaml",
            yaml(deep_block.as_bytes()),
            ParseErrorKind::TooDeep,
            5,
            "invalid YAML: nested too deep: recursion limit exceeded at line 5 column 257",
        ),
        (
            "deep-flow.yaml",
            yaml(deep_flow.as_bytes()),
            ParseErrorKind::TooDeep,
            5,
            "invalid YAML: nested too deep: recursion limit exceeded at line 5 column 129",
        ),
        (
            "deep.json",
            json(&deep_json),
            ParseErrorKind::TooDeep,
            2,
            "invalid JSON: nested too deep: recursion limit exceeded at line 2 column 128 (the rest \
             of the file is not read)",
        ),
        (
            "invalid.json",
            json("{\"apiVersion\": }"),
            ParseErrorKind::Json,
            2,
            "invalid JSON: expected value at line 2 column 16 (the rest of the file is not read)",
        ),
    ];
    for (file, bytes, kind, line, message) in cases {
        let mut loaded = Loaded::new();
        loaded.load_bytes(file, bytes);
        assert_eq!(
            parse_keys(&loaded),
            [(file.to_string(), Some(2), Some(line), kind)],
            "{file}: {:?}",
            loaded.parse_errors
        );
        let error = &loaded.parse_errors[0];
        assert_eq!(error.message, message, "{file}");
        assert_eq!(
            error.to_string(),
            format!("{file} (document 2, line {line}): {message}")
        );
        assert_eq!(loaded.problems, [], "{file}: not an object problem");
        assert_eq!(
            names(loaded.index.namespaces().map(|n| n.name.as_str())),
            ["good"],
            "{file}: the good document still loads"
        );
        assert_eq!(
            (loaded.summary.documents, loaded.summary.unparsed),
            (2, 1),
            "{file}"
        );
    }
}

#[test]
fn only_documents_with_bytes_that_are_not_utf8_fail() {
    // A BOM, then good, bad, good, bad: the offsets and lines are those of the file.
    let mut bytes = "\u{feff}apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n"
        .as_bytes()
        .to_vec();
    bytes.extend_from_slice(b"apiVersion: v1\nkind: Namespace\nmetadata: {name: \xff}\n---\n");
    bytes.extend_from_slice(b"apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n---\n");
    bytes.extend_from_slice(b"# \xc3\n{apiVersion: v1, kind: Namespace, metadata: {name: c}}\n");
    let mut loaded = Loaded::new();
    loaded.load_bytes("mixed.yaml", bytes);
    assert_eq!(
        parse_keys(&loaded),
        [
            (
                "mixed.yaml".into(),
                Some(2),
                Some(7),
                ParseErrorKind::NotUtf8
            ),
            (
                "mixed.yaml".into(),
                Some(4),
                Some(13),
                ParseErrorKind::NotUtf8
            ),
        ]
    );
    assert_eq!(
        loaded.parse_errors[0].message,
        "not UTF-8 text: invalid byte 0xFF at offset 106 of the file"
    );
    assert_eq!(
        names(loaded.index.namespaces().map(|n| n.name.as_str())),
        ["a", "b"]
    );

    // Many bad documents cost linear time: no rescan of the file per document.
    let bad = b"apiVersion: v1\nkind: Namespace\nmetadata: {name: \xff}\n---\n".repeat(20_000);
    let mut loaded = Loaded::new();
    loaded.load_bytes("many.yaml", bad);
    assert_eq!(loaded.parse_errors.len(), 20_000);
    let last = &loaded.parse_errors[19_999];
    assert_eq!((last.document, last.line), (Some(20_000), Some(79_999)));
}

#[test]
fn an_unreadable_file_is_a_parse_error_a_missing_one_an_error() {
    // Reading a folder as a file fails like an unreadable file does, even as root.
    let folder = data("folder");
    let mut loaded = Loaded::new();
    loaded
        .load_file(&folder)
        .expect("an unreadable file is recorded, not returned");
    let file = folder.display().to_string();
    assert_eq!(
        parse_keys(&loaded),
        [(file.clone(), None, None, ParseErrorKind::Unreadable)]
    );
    let shown = loaded.parse_errors[0].to_string();
    assert!(
        shown.starts_with(&format!("{file}: cannot read: ")),
        "{shown}"
    );
    assert_eq!(loaded.summary.files, 1);

    let missing = data("no-such-file.yaml");
    assert!(matches!(
        loaded.load_file(&missing),
        Err(LoadError::NotFound { .. })
    ));
}

#[test]
fn modest_aliases_still_load() {
    let text = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: p, namespace: a, labels: &labels {app: web}}}\n- {apiVersion: v1, kind: Pod, metadata: {name: q, namespace: a, labels: *labels}}\n";
    let loaded = from_str("aliases.yaml", text);
    assert_eq!((loaded.problems.len(), loaded.parse_errors.len()), (0, 0));
    assert_eq!(
        pod(&loaded, "a", "q").labels.get("app").map(String::as_str),
        Some("web")
    );
    // Just under the bound: 200 x 200 values in a document of ~1.4 kB.
    let loaded = from_str("square.yaml", &quadratic_aliases(200));
    assert_eq!(loaded.parse_errors, []);
}

// === In-memory sources ===

#[test]
fn load_str_details() {
    // A BOM, CRLF line endings, content on the `---` line, and a `...` end marker.
    let text = "\u{feff}apiVersion: v1\r\nkind: Namespace\r\nmetadata: {name: a}\r\n--- {apiVersion: v1, kind: Namespace, metadata: {name: b}}\r\n...\r\n# trailing comment\r\n";
    let loaded = from_str("mem.yaml", text);
    assert_eq!(loaded.problems, []);
    assert_eq!(
        names(loaded.index.namespaces().map(|n| n.name.as_str())),
        ["a", "b"]
    );
    assert_eq!(loaded.summary.documents, 2);

    // A source name without extension: JSON is recognised by its first character.
    let loaded = from_str(
        "<stdin>",
        r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "c"}}"#,
    );
    assert_eq!(loaded.summary.namespaces, 1);

    // Old API versions of known kinds are ignored, and say so.
    let loaded = from_str(
        "x.yaml",
        "apiVersion: extensions/v1beta1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\n",
    );
    assert_eq!(
        loaded.summary.ignored_by_kind,
        BTreeMap::from([("NetworkPolicy (extensions/v1beta1)".to_string(), 1)])
    );
    assert!(loaded.problems.is_empty());
    // CNI-native policies are known by name (not evaluated), and counted.
    let loaded = from_str(
        "x.yaml",
        "apiVersion: crd.projectcalico.org/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\n---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: l7}\n",
    );
    assert!(loaded.summary.ignored_by_kind.is_empty());
    assert_eq!(loaded.summary.cni_policies, 1);
    let names: Vec<String> = loaded
        .index
        .cni_policies()
        .map(ToString::to_string)
        .collect();
    assert_eq!(names, ["Calico NetworkPolicy a/p"]);
    assert_eq!(
        loaded.problems.len(),
        1,
        "the CiliumNetworkPolicy without a namespace"
    );
    assert_eq!(
        loaded.problems[0].field.as_deref(),
        Some("metadata.namespace")
    );
    assert!(
        loaded
            .summary
            .to_string()
            .contains("1 CNI-native policy (not evaluated)")
    );

    // A single-document source is not numbered; Lists name the item.
    let loaded = from_str(
        "one.yaml",
        "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: p}, status: {podIP: nope}}\n",
    );
    assert_eq!(
        problem_keys(&loaded),
        [key(
            "one.yaml (items[0])",
            Some("Pod default/p"),
            Some("status.podIP"),
            false
        )]
    );
}

#[test]
fn yaml_errors_point_at_the_file_line() {
    let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n# comment\napiVersion: v1\nkind: [unclosed\n";
    let loaded = from_str("e.yaml", text);
    assert_eq!(loaded.problems, []);
    assert_eq!(loaded.parse_errors.len(), 1);
    let error = &loaded.parse_errors[0];
    assert_eq!((error.file.as_str(), error.document), ("e.yaml", Some(2)));
    assert!(error.line.is_some_and(|l| l >= 7), "{error:?}");
    assert!(
        error.message.contains("line 8") || error.message.contains("line 7"),
        "{}",
        error.message
    );
    assert_eq!(loaded.summary.namespaces, 1);
}

#[test]
fn shifting_line_numbers() {
    assert_eq!(
        shift_line_numbers(
            "bad at line 2 column 3, while parsing at line 1 column 1",
            10
        ),
        "bad at line 12 column 3, while parsing at line 11 column 1"
    );
    assert_eq!(
        shift_line_numbers("pipeline 5 column 2 and line x", 3),
        "pipeline 8 column 2 and line x"
    );
    assert_eq!(shift_line_numbers("line 7", 3), "line 7");
}

#[test]
fn summary_display() {
    let summary = LoadSummary {
        files: 1,
        documents: 9,
        namespaces: 2,
        pods: 4,
        nodes: 1,
        policies: 3,
        cluster_policies: 0,
        cni_policies: 0,
        services: 0,
        endpoint_slices: 0,
        ignored_by_kind: BTreeMap::from([
            ("Deployment".to_string(), 2),
            ("Service".to_string(), 1),
        ]),
        problems: 1,
        unparsed: 2,
        duplicates: 2,
    };
    assert_eq!(
        summary.to_string(),
        "1 file, 9 documents: 2 namespaces, 4 pods, 1 node, 3 policies; ignored 2 Deployment, 1 Service; 1 problem; 2 documents not parsed; 2 duplicates"
    );
}

// === Robustness ===

/// xorshift64: deterministic mutations without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n.max(1) as u64)).unwrap_or(0)
    }
}

const FIXTURES: &[&str] = &[
    "multi-doc.yaml",
    "list.yaml",
    "kubectl-get.yaml",
    "objects.json",
    "malformed.yaml",
    "invalid-policies.yaml",
];

/// Checks the bookkeeping that must hold whatever the input.
fn check_invariants(loaded: &Loaded, what: &str) {
    let counts = loaded.index.counts();
    let s = &loaded.summary;
    assert_eq!(s.problems, loaded.problems.len(), "{what}");
    assert_eq!(s.unparsed, loaded.parse_errors.len(), "{what}");
    assert_eq!(
        (
            counts.namespaces,
            counts.pods,
            counts.nodes,
            counts.policies
        ),
        (s.namespaces, s.pods, s.nodes, s.policies),
        "{what}"
    );
}

fn mutate_bytes(rng: &mut Rng, text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..=rng.below(8) {
        if bytes.is_empty() {
            break;
        }
        let at = rng.below(bytes.len());
        match rng.below(6) {
            0 => bytes[at] = (rng.next() & 0x7f) as u8,
            1 => {
                bytes.remove(at);
            }
            2 => {
                const YAML_SYNTAX: &[u8] = b"-:[]{}#&*!|>'\"%@` \n\t0";
                bytes.insert(at, YAML_SYNTAX[rng.below(YAML_SYNTAX.len())]);
            }
            3 => bytes.truncate(at),
            4 => {
                let len = rng.below(64).min(bytes.len() - at);
                let chunk: Vec<u8> = bytes[at..at + len].to_vec();
                let to = rng.below(bytes.len());
                bytes.splice(to..to, chunk);
            }
            _ => bytes.insert(at, (rng.next() & 0xff) as u8),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Replaces random nodes of a parsed fixture with values of the wrong type.
fn mutate_value(rng: &mut Rng, value: &mut Value, depth: usize) {
    if rng.below(12) == 0 {
        *value = match rng.below(7) {
            0 => Value::Null,
            1 => Value::from(rng.next() as i64),
            2 => Value::from("http"),
            3 => Value::Bool(true),
            4 => serde_json::json!([1, "x", null, {}]),
            5 => serde_json::json!({"kind": "List", "apiVersion": "v1", "items": [1, {}]}),
            _ => Value::from(-1.5),
        };
        return;
    }
    if depth > 40 {
        return;
    }
    match value {
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| mutate_value(rng, v, depth + 1)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|v| mutate_value(rng, v, depth + 1)),
        _ => {}
    }
}

#[test]
fn garbage_never_panics() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for name in FIXTURES {
        let text = fs::read_to_string(data(name)).expect("fixture");
        for i in 0..150 {
            let mutated = mutate_bytes(&mut rng, &text);
            for source in ["fuzz.yaml", "fuzz.json"] {
                let loaded = from_str(source, &mutated);
                check_invariants(&loaded, &format!("{name} byte mutation {i} as {source}"));
            }
        }
        let documents: Vec<Value> = if name.ends_with(".json") {
            vec![serde_json::from_str(&text).expect("fixture")]
        } else {
            yaml_documents(&text)
                .into_iter()
                .filter_map(|d| d.parse().ok())
                .collect()
        };
        for i in 0..100 {
            for document in &documents {
                let mut value = document.clone();
                mutate_value(&mut rng, &mut value, 0);
                let mut loaded = Loaded::new();
                loaded.load_value("fuzz", value.clone());
                check_invariants(&loaded, &format!("{name} value mutation {i}"));
                let yaml = serde_yaml_ng::to_string(&value).expect("serialize");
                check_invariants(
                    &from_str("fuzz.yaml", &yaml),
                    &format!("{name} value mutation {i} as YAML"),
                );
            }
        }
    }
}

#[test]
fn pathological_inputs_never_panic() {
    let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_yaml = format!("{}x", "- ".repeat(10_000));
    let deep_flow = "{a: ".repeat(10_000);
    let mut nested_lists = String::from("null");
    for _ in 0..40 {
        nested_lists =
            format!("{{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [{nested_lists}]}}");
    }
    let laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
    let wrong_types = "apiVersion: v1\nkind: Pod\nmetadata: {name: 5, namespace: [a], labels: {a: 1}}\nspec: 7\n---\napiVersion: 1\nkind: 2\n---\napiVersion: v1\nkind: Pod\nmetadata: []\n---\napiVersion: v1\nkind: PodList\nitems: 5\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\nspec: {podSelector: {matchLabels: {'': ''}}, ingress: [{from: [{ipBlock: {cidr: '::/129', except: [5]}}], ports: [{port: 99999999999999999999}]}]}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: y}\nspec: {podSelector: {matchLabels: {'a/': b}}, policyTypes: [1, 2, 3]}\n";
    let tagged =
        "--- !Pod\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\n--- !!binary aGVsbG8=\n";
    let cases: Vec<(&str, String)> = vec![
        ("deep.json", deep_json),
        ("deep.yaml", deep_yaml),
        ("flow.yaml", deep_flow),
        ("nested.json", nested_lists.clone()),
        ("nested.yaml", nested_lists.clone()),
        ("laughs.yaml", laughs.to_string()),
        ("types.yaml", wrong_types.to_string()),
        ("tagged.yaml", tagged.to_string()),
        ("empty.yaml", String::new()),
        ("empty.json", String::new()),
        ("dashes.yaml", "---\n---\n...\n---".to_string()),
        ("nul.yaml", "\0\0\0".to_string()),
    ];
    for (name, text) in cases {
        let loaded = from_str(name, &text);
        check_invariants(&loaded, name);
    }
    // Lists too deep to follow hide their items: a parse error, not an object problem.
    let nested = from_str("nested.json", &nested_lists);
    assert_eq!(nested.problems, []);
    assert_eq!(
        parse_keys(&nested),
        [("nested.json".into(), Some(1), None, ParseErrorKind::TooDeep)]
    );
    let message = &nested.parse_errors[0].message;
    assert!(
        message.starts_with("List at items[0].items[0]")
            && message.ends_with(": Lists nested more than 16 deep are not read"),
        "{message}"
    );
    let types = from_str("types.yaml", wrong_types);
    let problems: Vec<String> = types.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        [
            "types.yaml (document 1): Pod default/<unnamed>: metadata.labels.a: invalid type: integer `1`, expected a string",
            "types.yaml (document 2): kind: is missing or not a string",
            "types.yaml (document 3): Pod default/<unnamed>: metadata: invalid type: sequence, expected ObjectMeta",
            "types.yaml (document 4): PodList: items: expected a list, found a number",
            "types.yaml (document 6): NetworkPolicy default/y: spec.policyTypes[0]: invalid type: integer `1`, expected a string",
        ]
    );
    // A number JSON cannot hold leaves the document without a value at all: a parse error.
    let errors: Vec<String> = types.parse_errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        [
            "types.yaml (document 5, line 20): invalid YAML: spec.ingress[0].ports[0].port: JSON number out of range at line 20 column 122"
        ]
    );
}
