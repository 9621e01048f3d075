//! [`Testbed`]: builds a scenario's simulated cluster (see `build` for the steps), exposes its
//! pods, nodes and DNS server, runs commands in pods, changes rules and faults at run time, and
//! tears everything down on drop.

use std::{
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use serde_json::Value;

use crate::{
    Error, Result,
    cgroup::{self, CgroupHierarchy},
    cleanup::Live,
    cmd::{self, Tools},
    names,
    plan::{self, Plan, RulePlan},
    scenario::{Fault, Rule, Scenario},
};

mod build;
mod dns;
mod handles;

pub use dns::dnsmasq_args;
pub use handles::{DnsHandle, NodeHandle, PodHandle};

/// The router-local address of the SERVFAIL responder.
pub const SERVFAIL_UPSTREAM: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 253);
/// A black-holed address in the router: DNS names forwarded there never get an answer.
pub const TIMEOUT_UPSTREAM: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 254);

const APP_PY: &str = include_str!("app.py");

/// A running simulated cluster. Dropping it (also while unwinding from a panic) tears
/// everything down; [`Testbed::teardown`] does the same and reports problems.
#[derive(Debug)]
pub struct Testbed {
    live: Arc<Live>,
    scenario: Scenario,
    plan: Plan,
    run_dir: PathBuf,
    tools: Tools,
    hier: Vec<CgroupHierarchy>,
    nodes: Vec<NodeHandle>,
    pods: Vec<PodHandle>,
    dns: Option<DnsHandle>,
    rules: Mutex<Vec<RulePlan>>,
    /// The Services a `service-path-broken` fault currently removes.
    broken_services: Mutex<std::collections::BTreeSet<String>>,
    setup_time: Duration,
    counter: AtomicU32,
}

// === impl Testbed ===

impl Testbed {
    /// Builds the simulated cluster of `scenario`. Needs root. Refuses to start when leftovers
    /// of dead runs exist ([`Error::Leftovers`] says how to remove them).
    pub fn start(scenario: &Scenario) -> Result<Testbed> {
        let t0 = Instant::now();
        let euid = rustix::process::geteuid().as_raw();
        if euid != 0 {
            return Err(Error::NotRoot { euid });
        }
        let plan = plan::plan(scenario)?;
        let need_nft =
            !plan.rules.is_empty() || !plan.faults.is_empty() || !plan.services.is_empty();
        let tools = Tools::find(need_nft, plan.dns.is_some())?;
        let hier = cgroup::cgroup_hierarchies()?;
        let leftovers = crate::cleanup::scan_leftovers();
        if !leftovers.is_empty() {
            return Err(Error::Leftovers {
                items: leftovers
                    .iter()
                    .map(|l| l.path.display().to_string())
                    .collect(),
            });
        }
        let (prefix, run_dir) = names::allocate(&scenario.name)?;
        let live = Live::register(prefix);
        let nodes = plan
            .nodes
            .iter()
            .map(|n| NodeHandle {
                name: n.name.clone(),
                index: n.index,
                cidr: Scenario::node_cidr(n.index),
                gateway: gateway(n.index),
                bridge: format!("br{}", n.index),
            })
            .collect();
        let rules = Mutex::new(plan.rules.clone());
        let broken_services = Mutex::new(plan.broken_services.clone());
        let mut tb = Testbed {
            live,
            scenario: scenario.clone(),
            plan,
            run_dir,
            tools,
            hier,
            nodes,
            pods: Vec::new(),
            dns: None,
            rules,
            broken_services,
            setup_time: Duration::ZERO,
            counter: AtomicU32::new(0),
        };
        // On error `tb` is dropped here, which tears down whatever was built.
        tb.build()?;
        tb.setup_time = t0.elapsed();
        tracing::debug!(prefix = %tb.prefix(), setup = ?tb.setup_time, "testbed up");
        Ok(tb)
    }

    /// Parses `path` and starts it.
    pub fn start_file(path: impl AsRef<Path>) -> Result<Testbed> {
        Self::start(&Scenario::from_file(path)?)
    }

    /// The run's unique name prefix (`nrtb-<pid base36>-<n>`).
    pub fn prefix(&self) -> &str {
        &self.live.prefix
    }

    /// The scenario this testbed was built from.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// The simulated pods (`Running` pods with a node), in object order.
    pub fn pods(&self) -> &[PodHandle] {
        &self.pods
    }

    /// A pod by namespace and name.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&PodHandle> {
        self.pods
            .iter()
            .find(|p| p.namespace == namespace && p.name == name)
    }

    /// The nodes.
    pub fn nodes(&self) -> &[NodeHandle] {
        &self.nodes
    }

    /// The cluster DNS server, when the scenario has `dataplane.dns`.
    pub fn dns(&self) -> Option<&DnsHandle> {
        self.dns.as_ref()
    }

    /// The router namespace's name.
    pub fn router_netns(&self) -> String {
        names::router_netns(self.prefix())
    }

    /// The run directory (`/run/netreach-testbed/<prefix>`): state, logs, generated files.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The cgroup hierarchies the pods' processes were put in.
    pub fn cgroup_hierarchies(&self) -> &[CgroupHierarchy] {
        &self.hier
    }

    /// How long [`Testbed::start`] took.
    pub fn setup_time(&self) -> Duration {
        self.setup_time
    }

    /// The scenario's objects with every missing `metadata.uid` filled in (the UIDs the pods'
    /// cgroups carry).
    pub fn objects(&self) -> Vec<Value> {
        self.plan.objects.clone()
    }

    /// [`Testbed::objects`] as a multi-document YAML stream.
    pub fn objects_yaml(&self) -> String {
        let mut out = String::new();
        for obj in &self.plan.objects {
            out.push_str("---\n");
            out.push_str(&serde_yaml_ng::to_string(obj).unwrap_or_default());
        }
        out
    }

    /// `objects.yaml` in the run dir: [`Testbed::objects_yaml`], for tools that load files.
    pub fn objects_path(&self) -> PathBuf {
        self.run_dir.join("objects.yaml")
    }

    /// Runs `argv` inside `pod`'s netns (`ip netns exec`, so with the pod's resolv.conf),
    /// killing it after `timeout`. Returns its output whatever the exit status.
    pub fn run_in(&self, pod: &PodHandle, argv: &[&str], timeout: Duration) -> Result<Output> {
        let Some(ns) = &pod.netns_name else {
            return Err(Error::Pod {
                pod: pod.pod_ref().to_string(),
                problem: "is hostNetwork: no netns to run in".into(),
            });
        };
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let out_path = self.run_dir.join(format!("logs/run-{n}.out"));
        let err_path = self.run_dir.join(format!("logs/run-{n}.err"));
        let open = |p: &Path| fs::File::create(p).map_err(|e| Error::io("create", p, e));
        let mut cmd = Command::new(&self.tools.ip);
        cmd.args(["netns", "exec", ns])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(open(&out_path)?)
            .stderr(open(&err_path)?);
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io("spawn", cmd::describe(&cmd), e))?;
        let status = cmd::wait_timeout(&mut child, timeout);
        let stdout = fs::read(&out_path).unwrap_or_default();
        let stderr = fs::read(&err_path).unwrap_or_default();
        let _ = fs::remove_file(&out_path);
        let _ = fs::remove_file(&err_path);
        match status {
            Some(status) => Ok(Output {
                status,
                stdout,
                stderr,
            }),
            None => Err(Error::Timeout {
                what: format!("`{}` in pod {}", argv.join(" "), pod.pod_ref()),
                after: timeout,
            }),
        }
    }

    /// Replaces the enforcement rules (same format and checks as `dataplane.rules`).
    pub fn set_rules(&self, rules: &[Rule]) -> Result<()> {
        let new = plan::resolve_rules(&self.scenario, &self.plan.pods, rules.iter(), "rules")?;
        let mut current = self.rules.lock();
        let touched: Vec<usize> = (0..self.plan.pods.len())
            .filter(|k| current.iter().chain(new.iter()).any(|r| r.dst == *k))
            .collect();
        thread::scope(|s| {
            let handles: Vec<_> = touched
                .iter()
                .map(|&k| {
                    let new = &new;
                    s.spawn(move || self.load_pod_rules(k, new))
                })
                .collect();
            handles
                .into_iter()
                .try_for_each(|h| h.join().unwrap_or_else(|_| Err(panicked("set_rules"))))
        })?;
        *current = new;
        Ok(())
    }

    /// Recreates a pod's sandbox under the same UID: its holder and app are killed, its netns
    /// is deleted and made again with the same IP, and a new holder and app start in new
    /// container cgroups of the pod. Returns the pod's new handle (also in [`Self::pods`]).
    pub fn recreate_pod_sandbox(&mut self, namespace: &str, name: &str) -> Result<PodHandle> {
        let k = self
            .pods
            .iter()
            .position(|p| p.namespace == namespace && p.name == name)
            .ok_or_else(|| Error::Pod {
                pod: format!("{namespace}/{name}"),
                problem: "no such pod in this testbed".into(),
            })?;
        let handle = self.recreate_sandbox(k)?;
        self.pods[k] = handle.clone();
        Ok(handle)
    }

    /// Replaces the injected faults (same format and checks as `dataplane.faults`).
    pub fn set_faults(&self, faults: &[Fault]) -> Result<()> {
        let plans = plan::resolve_faults(&self.scenario, &self.plan.nodes, faults.iter())?;
        let broken = plan::broken_services(&self.scenario, &self.plan.services, faults.iter())?;
        self.load_faults(&plans)?;
        if !self.plan.services.is_empty() {
            *self.broken_services.lock() = broken;
            for k in self.netns_pods() {
                self.load_services(k)?;
            }
        }
        Ok(())
    }

    /// Tears everything down now, reporting anything that could not be removed. (Dropping
    /// does the same, logging problems instead.)
    pub fn teardown(self) -> Result<()> {
        self.live.teardown()
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if let Err(error) = self.live.teardown() {
            tracing::error!(%error, "testbed teardown");
        }
    }
}

fn gateway(index: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, index, 1)
}

fn panicked(what: &str) -> Error {
    Error::Pod {
        pod: what.to_string(),
        problem: "setup thread panicked".into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn testbeds_can_be_shared_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<super::Testbed>();
        send_sync::<super::PodHandle>();
    }
}
