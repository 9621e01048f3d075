// netreach web page: the pairs of /v1/pairs (this agent's, the demo's, or every node's through
// `netreach ui`), refreshed in place. Every value from the cluster is inserted as text, never
// as HTML: pod, policy and reason strings come from tenants.
"use strict";

const REFRESH_MS = 5000;
const VERDICTS = {
  unexpected_block: { letter: "U", label: "unexpected block", rank: 0 },
  policy_not_enforced: { letter: "N", label: "policy not enforced", rank: 1 },
  partially_blocked: { letter: "P", label: "partially blocked", rank: 2 },
  blocked_by_policy: { letter: "B", label: "blocked by policy", rank: 3 },
  not_probed: { letter: "-", label: "not probed", rank: 4 },
  inconclusive: { letter: "?", label: "inconclusive", rank: 5 },
  ok: { letter: "\u2713", label: "ok", rank: 6 },
};

const state = { pairs: [], node: "", selected: null, timer: null, token: sessionStorage.getItem("netreach-token") };
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function verdictInfo(verdict) {
  return VERDICTS[verdict] || { letter: "?", label: verdict, rank: 9 };
}

function badge(verdict) {
  const info = verdictInfo(verdict);
  return el("span", { class: `badge v-${verdict}` },
    el("span", { class: "letter", "aria-hidden": "true", text: info.letter }), ` ${info.label}`);
}

function destination(pair) {
  if (pair.dns) return `dns ${pair.dns}`;
  const to = pair.service ? `svc/${pair.service}` : (pair.host ? `${pair.host} (${pair.to})` : pair.to);
  return pair.port ? `${to}:${pair.port}/${pair.protocol}` : to;
}

function pairKey(pair) {
  return [pair.spec, pair.from, destination(pair), pair.ip].join("|");
}

function failing(pair) {
  return pair.meets_expectation === false;
}

function order(a, b) {
  return (failing(b) - failing(a))
    || verdictInfo(a.verdict).rank - verdictInfo(b.verdict).rank
    || a.from.localeCompare(b.from)
    || destination(a).localeCompare(destination(b));
}

function namespaces(pair) {
  const out = [pair.from.split("/")[0]];
  const to = pair.service || pair.to || "";
  if (to.includes("/")) out.push(to.split("/")[0]);
  return out;
}

// === Loading ===

async function load() {
  const headers = state.token ? { Authorization: `Bearer ${state.token}` } : {};
  let response;
  try {
    response = await fetch("v1/pairs", { headers, cache: "no-store" });
  } catch (error) {
    status(`cannot reach the agent: ${error.message}`);
    return;
  }
  if (response.status === 401 || response.status === 403) {
    $("auth").hidden = false;
    status(response.status === 401 ? "a token is needed" : "this token may not read /v1/pairs");
    return;
  }
  if (!response.ok) {
    status(`the agent answered ${response.status}`);
    return;
  }
  const body = await response.json();
  $("auth").hidden = true;
  state.pairs = (body.pairs || []).slice().sort(order);
  state.node = body.node || "";
  $("source").textContent = state.node ? (body.nodes ? state.node : `node ${state.node}`) : "";
  // Gathered from many agents (`netreach ui`): say which did not answer, never hide it.
  const missing = (body.nodes || []).filter((n) => n.error).map((n) => `${n.node}: ${n.error}`);
  status(`updated ${new Date().toLocaleTimeString()}, ${state.pairs.length} pairs`
    + (missing.length ? `; no answer from ${missing.join("; ")}` : ""));
  render();
}

function status(text) {
  $("status").textContent = text;
}

function schedule() {
  clearTimeout(state.timer);
  if ($("auto").checked) state.timer = setTimeout(async () => { await load(); schedule(); }, REFRESH_MS);
}

// === Rendering ===

function render() {
  renderCounts();
  renderFilterOptions();
  renderPairs();
  renderMatrices();
  // Nothing chosen yet: the detail shows the worst pair (the list's first).
  const selected = state.pairs.find((p) => pairKey(p) === state.selected) || state.pairs[0];
  if (selected) {
    state.selected = pairKey(selected);
    renderDetail(selected, false);
  }
}

function renderCounts() {
  const counts = {};
  for (const pair of state.pairs) counts[pair.verdict] = (counts[pair.verdict] || 0) + 1;
  const items = Object.keys(VERDICTS).map((verdict) =>
    el("li", {},
      el("button", {
        type: "button",
        class: "count",
        "aria-pressed": $("f-verdict").value === verdict ? "true" : "false",
        onclick: () => { $("f-verdict").value = $("f-verdict").value === verdict ? "" : verdict; render(); },
      }, badge(verdict), el("strong", { text: String(counts[verdict] || 0) }))));
  $("counts").replaceChildren(...items);
}

function setOptions(select, values) {
  const current = select.value;
  const options = [el("option", { value: "", text: "all" })].concat(
    values.map((value) => el("option", { value, text: VERDICTS[value] ? verdictInfo(value).label : value })));
  select.replaceChildren(...options);
  select.value = values.includes(current) ? current : "";
}

function renderFilterOptions() {
  const unique = (values) => [...new Set(values)].sort();
  setOptions($("f-verdict"), Object.keys(VERDICTS).filter((v) => state.pairs.some((p) => p.verdict === v)).concat(
    $("f-verdict").value && !state.pairs.some((p) => p.verdict === $("f-verdict").value) ? [$("f-verdict").value] : []));
  setOptions($("f-spec"), unique(state.pairs.map((p) => p.spec || "(on demand)")));
  setOptions($("f-namespace"), unique(state.pairs.flatMap(namespaces)));
}

function filtered() {
  const verdict = $("f-verdict").value;
  const spec = $("f-spec").value;
  const namespace = $("f-namespace").value;
  const text = $("f-text").value.trim().toLowerCase();
  return state.pairs.filter((pair) =>
    (!verdict || pair.verdict === verdict)
    && (!spec || (pair.spec || "(on demand)") === spec)
    && (!namespace || namespaces(pair).includes(namespace))
    && (!text || [pair.from, destination(pair), pair.reason, pair.summary, ...(pair.policies || [])]
      .join(" ").toLowerCase().includes(text)));
}

function renderPairs() {
  const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.key : null;
  const pairs = filtered();
  const rows = pairs.map((pair) => {
    const key = pairKey(pair);
    return el("tr", {
      tabindex: "0",
      "data-key": key,
      class: [failing(pair) ? "failing" : "", key === state.selected ? "selected" : ""].join(" ").trim(),
      "aria-selected": key === state.selected ? "true" : "false",
      onclick: () => select(pair),
      onkeydown: (event) => { if (event.key === "Enter" || event.key === " ") { event.preventDefault(); select(pair); } },
    },
    el("td", {}, badge(pair.verdict)),
    el("td", { text: pair.from }),
    el("td", { text: destination(pair) }),
    el("td", { text: pair.reason || "" }),
    el("td", { text: (pair.policies || []).join(", ") }),
    el("td", { text: pair.spec || "(on demand)" }));
  });
  $("pairs").tBodies[0].replaceChildren(...rows);
  $("empty").hidden = pairs.length > 0;
  $("shown").textContent = `(${pairs.length} of ${state.pairs.length}, failing first)`;
  if (focused) {
    const again = $("pairs").querySelector(`tr[data-key="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
}

function select(pair) {
  state.selected = pairKey(pair);
  for (const row of $("pairs").tBodies[0].rows) {
    const on = row.dataset.key === state.selected;
    row.classList.toggle("selected", on);
    row.setAttribute("aria-selected", on ? "true" : "false");
  }
  renderDetail(pair, true);
}

function time(value) {
  return value ? new Date(value).toLocaleString() : "";
}

function renderDetail(pair, focus) {
  const parts = [
    el("h2", { id: "detail-title", text: "Detail" }),
    el("p", {}, badge(pair.verdict), " ", el("strong", { text: `${pair.from} \u2192 ${destination(pair)}` })),
    el("p", { class: "summary", text: pair.summary }),
    el("dl", {},
      pair.node ? el("dt", { text: "Node" }) : null, pair.node ? el("dd", { text: pair.node }) : null,
      el("dt", { text: "Observed" }), el("dd", { text: `${pair.outcome} (${(pair.latency_seconds * 1000).toFixed(1)} ms) at ${time(pair.last_probe)}` }),
      el("dt", { text: "Policy allows" }), el("dd", { text: pair.policy_allowed ? "yes" : "no" }),
      el("dt", { text: "Reason" }), el("dd", { text: pair.reason || "-" }),
      el("dt", { text: "Direction" }), el("dd", { text: pair.direction || "-" }),
      el("dt", { text: "Policies" }), el("dd", { text: (pair.policies || []).join(", ") || "-" }),
      el("dt", { text: "Expect" }), el("dd", { text: pair.expect ? `${pair.expect}${pair.meets_expectation === false ? " (not met)" : ""}` : "-" })),
    el("h3", { text: "Explanation" }),
    el("pre", { class: "explanation", text: pair.explanation || pair.summary }),
  ];
  if (pair.hints && pair.hints.length) {
    parts.push(el("h3", { text: "Hints" }), el("ul", {}, pair.hints.map((hint) => el("li", { text: hint }))));
  }
  if (pair.endpoints && pair.endpoints.length) {
    parts.push(el("h3", { text: "Endpoints" }), table(["Endpoint", "Port", "Verdict", "Reason", "Policies"],
      pair.endpoints.map((e) => [e.pod ? `${e.pod} ${e.ip}` : e.ip, String(e.port), badge(e.verdict), e.reason || "", (e.policies || []).join(", ")])));
  }
  parts.push(el("h3", { text: "Outage history" }));
  if (pair.history) {
    const probes = Object.entries(pair.history.probes || {}).map(([outcome, n]) => `${outcome} ${n}`).join(", ");
    parts.push(el("p", { text: `Probed since ${time(pair.history.since)}: ${probes || "no probes"}.` }));
    const periods = (pair.history.periods || []).slice().reverse();
    parts.push(table(["From", "Until", "Verdict", "Reason", "Policies"],
      periods.map((p) => [time(p.start), p.end ? time(p.end) : "now", badge(p.verdict), p.reason || "", (p.policies || []).join(", ")])));
  } else {
    parts.push(el("p", { class: "muted", text: "No history: a one-off probe." }));
  }
  $("detail").replaceChildren(...parts);
  if (focus) $("detail").focus();
}

function table(headers, rows) {
  return el("table", { class: "small" },
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c))))));
}

function renderMatrices() {
  const bySpec = new Map();
  for (const pair of filtered()) {
    const spec = pair.spec || "(on demand)";
    if (!bySpec.has(spec)) bySpec.set(spec, []);
    bySpec.get(spec).push(pair);
  }
  const sections = [...bySpec.keys()].sort().map((spec) => {
    const pairs = bySpec.get(spec);
    const sources = [...new Set(pairs.map((p) => p.from))].sort();
    const targets = [...new Set(pairs.map(destination))].sort();
    const cell = new Map(pairs.map((p) => [`${p.from}|${destination(p)}`, p]));
    const head = el("tr", {}, el("th", { scope: "col", text: "from \\ to" }),
      targets.map((t) => el("th", { scope: "col", class: "target" }, el("span", { text: t }))));
    const body = sources.map((source) => el("tr", {}, el("th", { scope: "row", text: source }),
      targets.map((target) => {
        const pair = cell.get(`${source}|${target}`);
        if (!pair) return el("td", { class: "none", "aria-label": `${source} to ${target}: not a pair of this spec` });
        const info = verdictInfo(pair.verdict);
        const tip = `${source} \u2192 ${target}: ${info.label}${pair.reason ? ` (${pair.reason})` : ""}`;
        return el("td", {
          class: `cell v-${pair.verdict}`,
          tabindex: "0",
          title: tip,
          "data-tip": tip,
          "aria-label": tip,
          onclick: () => select(pair),
          onkeydown: (event) => { if (event.key === "Enter") select(pair); },
        }, info.letter);
      })));
    return el("figure", { class: "matrix" },
      el("figcaption", { text: `${spec}: ${sources.length} sources x ${targets.length} destinations` }),
      el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, head), el("tbody", {}, body))));
  });
  $("matrices").replaceChildren(...sections);
}

function renderLegend() {
  $("legend").replaceChildren(...Object.keys(VERDICTS).map((v) => badge(v)));
}

// === Wiring ===

$("refresh").addEventListener("click", () => load());
$("auto").addEventListener("change", schedule);
for (const id of ["f-verdict", "f-spec", "f-namespace"]) $(id).addEventListener("change", render);
$("f-text").addEventListener("input", render);
$("auth").addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = $("token").value.trim();
  sessionStorage.setItem("netreach-token", state.token);
  $("token").value = "";
  load();
});
renderLegend();
load().then(schedule);
