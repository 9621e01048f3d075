//! Building a [`Testbed`]: namespaces, bridges, veths, rules, cgroups and processes.
//!
//! Build order (each step bounded in time; any failure tears down what exists):
//! 1. run dir + `state.json` (names::allocate), helper files (`bin/pause`, `bin/conmon`,
//!    `app.py`);
//! 2. one `ip -batch`: every netns (router + one per non-hostNetwork pod);
//! 3. one `ip -n <router> -batch`: bridges with gateways, a veth per pod (peer `eth0` created
//!    directly in the pod netns), the DNS helper addresses;
//! 4. in parallel, one thread per pod: addresses and default route, nftables rules,
//!    resolv.conf, cgroups, the `pause` holder, the app listener (and CRI-O's conmon); and the
//!    router thread: ip_forward, fault rules, the SERVFAIL responder;
//! 5. dnsmasq in the DNS pod (`dns.rs`); `objects.yaml` in the run dir.

use std::{
    fmt::Write as _,
    fs,
    os::unix::fs::MetadataExt as _,
    path::Path,
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use super::{APP_PY, PodHandle, SERVFAIL_UPSTREAM, TIMEOUT_UPSTREAM, Testbed, panicked};
use crate::{
    Error, Result, cgroup,
    cmd::{self, COMMAND_TIMEOUT},
    names, nft,
    plan::{self, PodPlan, RulePlan},
    scenario::{DnsAnswer, Protocol},
};

/// How long a pod's processes may take to come up.
pub(super) const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// The kernel's neighbour (ARP/NDP) tables, whose size limits are one setting for every network
/// namespace of the host.
const NEIGHBOUR_TABLES: [&str; 2] = [
    "/proc/sys/net/ipv4/neigh/default",
    "/proc/sys/net/ipv6/neigh/default",
];

impl Testbed {
    pub(super) fn build(&mut self) -> Result<()> {
        let prefix = self.prefix().to_string();
        let run = self.run_dir.clone();
        self.ensure_neighbour_capacity()?;
        fs::create_dir_all(run.join("bin")).map_err(|e| Error::io("create", run.join("bin"), e))?;
        fs::create_dir_all(run.join("logs"))
            .map_err(|e| Error::io("create", run.join("logs"), e))?;
        for name in ["pause", "conmon"] {
            let to = run.join("bin").join(name);
            fs::copy(&self.tools.sleep, &to).map_err(|e| Error::io("copy sleep to", &to, e))?;
        }
        let app = run.join("app.py");
        fs::write(&app, APP_PY).map_err(|e| Error::io("write", &app, e))?;

        // Namespaces, then the router's bridges and veths.
        let router = names::router_netns(&prefix);
        let mut batch = format!("netns add {router}\n");
        for k in self.netns_pods() {
            let _ = writeln!(batch, "netns add {}", names::pod_netns(&prefix, k));
        }
        self.ip_batch(None, "netns", &batch)?;
        let mut batch = String::from("link set lo up\n");
        let _ = writeln!(batch, "addr add {SERVFAIL_UPSTREAM}/32 dev lo");
        let _ = writeln!(batch, "route add blackhole {TIMEOUT_UPSTREAM}/32");
        for n in &self.nodes {
            let _ = writeln!(batch, "link add {} type bridge", n.bridge);
            let _ = writeln!(batch, "addr add {}/24 dev {}", n.gateway, n.bridge);
            let _ = writeln!(batch, "link set {} up", n.bridge);
        }
        for k in self.netns_pods() {
            let bridge = &self.nodes[self.plan.pods[k].node].bridge;
            let ns = names::pod_netns(&prefix, k);
            let _ = writeln!(batch, "link add v{k} type veth peer name eth0 netns {ns}");
            let _ = writeln!(batch, "link set v{k} master {bridge} up");
        }
        self.ip_batch(Some(&router), "router", &batch)?;

        // Pods and the router, in parallel.
        let this = &*self;
        let (pods, router_result) = thread::scope(|s| {
            let router = s.spawn(|| this.setup_router());
            let pods: Vec<_> = (0..this.plan.pods.len())
                .map(|k| s.spawn(move || this.setup_pod(k)))
                .collect();
            let pods: Vec<Result<PodHandle>> = pods
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(panicked("pod setup"))))
                .collect();
            let router = router
                .join()
                .unwrap_or_else(|_| Err(panicked("router setup")));
            (pods, router)
        });
        router_result?;
        self.pods = pods.into_iter().collect::<Result<_>>()?;
        self.dns = self.setup_dns()?;
        let objects = self.objects_path();
        fs::write(&objects, self.objects_yaml()).map_err(|e| Error::io("write", &objects, e))?;
        Ok(())
    }

    /// A real node has a neighbour table of its own; here every simulated pod shares the
    /// host's, whose default hard limit (`gc_thresh3`, 1,024 entries) a few dozen pods per
    /// bridge exceed: each pod learns every peer on its bridge, so a node of `n` pods needs
    /// about n² entries. Past the limit the kernel drops new packets ("neighbor table
    /// overflow") and probes time out for no reason a real cluster would have. Raises the
    /// limits to fit the scenario (never lowers them; other testbeds may share the host).
    fn ensure_neighbour_capacity(&self) -> Result<()> {
        let mut per_node = vec![0usize; self.nodes.len()];
        for pod in self.plan.pods.iter().filter(|p| !p.host_network) {
            if let Some(count) = per_node.get_mut(pod.node) {
                *count += 1;
            }
        }
        // Each pod: its bridge peers and the gateway; the router: every pod.
        let needed: usize = per_node.iter().map(|n| n * (n + 1) + n).sum();
        for table in NEIGHBOUR_TABLES {
            for (name, want) in [("gc_thresh2", needed * 2), ("gc_thresh3", needed * 4)] {
                let path = Path::new(table).join(name);
                let Ok(current) = fs::read_to_string(&path) else {
                    continue; // no IPv6 in this kernel
                };
                let current: usize = current.trim().parse().unwrap_or(0);
                if current < want {
                    fs::write(&path, want.to_string()).map_err(|e| Error::io("raise", &path, e))?;
                    tracing::info!(path = %path.display(), from = current, to = want, "raised the host's neighbour table limit");
                }
            }
        }
        Ok(())
    }

    /// What a node does when a pod's sandbox is recreated under the same UID (the sandbox
    /// crashed, or the runtime restarted it): the holder and app processes die, the netns goes
    /// (its veth with it), and a new netns with the same IP, a new holder and a new app come
    /// up in new container cgroups of the same pod. Returns the new handle.
    pub(super) fn recreate_sandbox(&self, k: usize) -> Result<PodHandle> {
        let old = &self.pods[k];
        let Some(ns) = old.netns_name.clone() else {
            return Err(Error::Pod {
                pod: self.plan.pods[k].pod.to_string(),
                problem: "hostNetwork pods have no sandbox netns to recreate".into(),
            });
        };
        for pid in [Some(old.pause_pid), old.app_pid].into_iter().flatten() {
            if let Ok(pid) = i32::try_from(pid) {
                // SIGKILL by PID: these are this run's own children (reaped at teardown).
                let _ = rustix::process::kill_process(
                    rustix::process::Pid::from_raw(pid).ok_or_else(|| panicked("pid 0"))?,
                    rustix::process::Signal::KILL,
                );
            }
        }
        let router = self.router_netns();
        let bridge = &self.nodes[self.plan.pods[k].node].bridge;
        // Deleting the router's end takes the pod's eth0 with it, even if someone (the agent)
        // still holds the old netns open: no stale copy of the pod IP stays on the bridge.
        self.ip_batch(
            Some(&router),
            &format!("recreate-del-{ns}"),
            &format!("link del v{k}\n"),
        )?;
        self.ip_batch(
            None,
            &format!("recreate-netns-{ns}"),
            &format!("netns del {ns}\nnetns add {ns}\n"),
        )?;
        self.ip_batch(
            Some(&router),
            &format!("recreate-add-{ns}"),
            &format!("link add v{k} type veth peer name eth0 netns {ns}\nlink set v{k} master {bridge} up\n"),
        )?;
        // The new app signals readiness through the same file: the old one's must not count.
        let ready = self.run_dir.join(format!("{ns}.ready"));
        let _ = fs::remove_file(&ready);
        self.setup_pod(k)
    }

    /// Indexes of pods with a netns of their own.
    pub(super) fn netns_pods(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.plan.pods.len()).filter(|&k| !self.plan.pods[k].host_network)
    }

    fn ip_batch(&self, netns: Option<&str>, label: &str, batch: &str) -> Result<()> {
        let file = self.run_dir.join(format!("logs/{label}.ip-batch"));
        fs::write(&file, batch).map_err(|e| Error::io("write", &file, e))?;
        let mut cmd = Command::new(&self.tools.ip);
        if let Some(ns) = netns {
            cmd.args(["-n", ns]);
        }
        cmd.arg("-batch").arg(&file);
        cmd::run(&mut cmd, COMMAND_TIMEOUT).map(drop)
    }

    fn nft_load(&self, netns: &str, label: &str, ruleset: &str) -> Result<()> {
        let file = self.run_dir.join(format!("logs/{label}.nft"));
        fs::write(&file, ruleset).map_err(|e| Error::io("write", &file, e))?;
        let mut cmd = Command::new(&self.tools.ip);
        cmd.args(["netns", "exec", netns])
            .arg(self.tools.nft()?)
            .arg("-f")
            .arg(&file);
        cmd::run(&mut cmd, COMMAND_TIMEOUT).map(drop)
    }

    fn setup_router(&self) -> Result<()> {
        let router = self.router_netns();
        let mut cmd = Command::new(&self.tools.ip);
        cmd.args(["netns", "exec", &router, "/bin/sh", "-c"]).arg(
            "echo 1 > /proc/sys/net/ipv4/ip_forward && \
             if [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then \
               echo 0 > /proc/sys/net/bridge/bridge-nf-call-iptables; fi",
        );
        cmd::run(&mut cmd, COMMAND_TIMEOUT)?;
        if !self.plan.faults.is_empty() {
            self.load_faults(&self.plan.faults)?;
        }
        let servfail = self
            .plan
            .dns
            .as_ref()
            .is_some_and(|d| d.records.values().any(|a| *a == DnsAnswer::ServFail));
        if servfail {
            let ready = self.run_dir.join("servfail.ready");
            let log = self.run_dir.join("logs/servfail.log");
            let mut cmd = Command::new(&self.tools.ip);
            cmd.args(["netns", "exec", &router])
                .arg(&self.tools.python)
                .args(["-I", "-S"])
                .arg(self.run_dir.join("app.py"))
                .arg("servfail")
                .arg(&ready)
                .arg(SERVFAIL_UPSTREAM.to_string());
            let pid = self.spawn(&mut cmd, true, Some(&log))?;
            self.wait_ready("router", pid, &ready, &log)?;
        }
        Ok(())
    }

    pub(super) fn load_faults(&self, faults: &[plan::FaultPlan]) -> Result<()> {
        let ruleset = nft::fault_ruleset(faults, |node| {
            self.netns_pods()
                .filter(|&k| self.plan.pods[k].node == node)
                .map(|k| format!("v{k}"))
                .collect()
        });
        self.nft_load(&self.router_netns(), "faults", &ruleset)
    }

    /// The Services' kube-proxy-like rules in pod `k`'s netns (see [`crate::services`]).
    pub(super) fn load_services(&self, k: usize) -> Result<()> {
        let ns = names::pod_netns(self.prefix(), k);
        let ruleset =
            crate::services::services_ruleset(&self.plan.services, &self.broken_services.lock());
        self.nft_load(&ns, &format!("services-{ns}"), &ruleset)
    }

    pub(super) fn load_pod_rules(&self, k: usize, rules: &[RulePlan]) -> Result<()> {
        let mine: Vec<&RulePlan> = rules.iter().filter(|r| r.dst == k).collect();
        let ns = names::pod_netns(self.prefix(), k);
        self.nft_load(&ns, &format!("rules-{ns}"), &nft::pod_ruleset(&mine))
    }

    /// Spawns a long-lived process, keeps it for teardown and returns its PID. `stdin_pipe`
    /// gives it the run's shared stdin pipe, whose write end the testbed holds (closed on
    /// teardown or death).
    pub(super) fn spawn(
        &self,
        cmd: &mut Command,
        stdin_pipe: bool,
        log: Option<&Path>,
    ) -> Result<u32> {
        cmd.stdin(if stdin_pipe {
            self.live.child_stdin()?
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null());
        match log {
            Some(p) => {
                let f = fs::File::create(p).map_err(|e| Error::io("create", p, e))?;
                cmd.stderr(f)
            }
            None => cmd.stderr(Stdio::null()),
        };
        let child = cmd
            .spawn()
            .map_err(|e| Error::io("spawn", cmd::describe(cmd), e))?;
        let pid = child.id();
        self.live.adopt(child)?;
        Ok(pid)
    }

    pub(super) fn setup_pod(&self, k: usize) -> Result<PodHandle> {
        let p = &self.plan.pods[k];
        let prefix = self.prefix();
        let node = &self.nodes[p.node];
        let fail = |problem: String| Error::Pod {
            pod: p.pod.to_string(),
            problem,
        };
        let netns = (!p.host_network).then(|| names::pod_netns(prefix, k));

        if let (Some(ns), Some(ip)) = (&netns, p.ip) {
            let batch = format!(
                "link set lo up\naddr add {ip}/24 dev eth0\nlink set eth0 up\nroute add default via {}\n",
                node.gateway
            );
            self.ip_batch(Some(ns), ns, &batch)?;
            if let Some(kind) = p.mesh {
                self.nft_load(ns, &format!("mesh-{ns}"), &nft::mesh_ruleset(kind))?;
            }
            let rules = self.rules.lock().clone();
            if rules.iter().any(|r| r.dst == k) {
                self.load_pod_rules(k, &rules)?;
            }
            if !self.plan.services.is_empty() {
                self.load_services(k)?;
            }
            let dir = Path::new(names::ETC_NETNS_DIR).join(ns);
            fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
            let resolv = dir.join("resolv.conf");
            fs::write(&resolv, self.resolv_conf(p)).map_err(|e| Error::io("write", &resolv, e))?;
        }

        // Cgroups: pod dir, sandbox and app containers (and conmon for CRI-O).
        let sandbox_id = cgroup::container_id()?;
        let app_id = cgroup::container_id()?;
        let pod_dir = p.layout.pod_dir(&p.uid);
        let sandbox_rel = format!("{pod_dir}/{}", p.layout.container_leaf(&sandbox_id));
        let app_rel = format!("{pod_dir}/{}", p.layout.container_leaf(&app_id));
        let conmon_rel = p
            .layout
            .conmon_leaf(&sandbox_id)
            .map(|l| format!("{pod_dir}/{l}"));
        for rel in [Some(&sandbox_rel), Some(&app_rel), conmon_rel.as_ref()]
            .into_iter()
            .flatten()
        {
            cgroup::create(&self.hier, prefix, rel)?;
        }

        // The holder.
        let pause = self.run_dir.join("bin/pause");
        let mut cmd = self.in_netns(netns.as_deref(), &pause);
        cmd.arg("infinity");
        let pause_pid = self.spawn(&mut cmd, false, None)?;
        cgroup::attach(&self.hier, prefix, &sandbox_rel, pause_pid)?;

        // CRI-O's conmon: in the pod's cgroup, in the host netns.
        let conmon_pid = match &conmon_rel {
            Some(rel) => {
                let mut cmd = Command::new(self.run_dir.join("bin/conmon"));
                cmd.arg("infinity");
                let pid = self.spawn(&mut cmd, false, None)?;
                cgroup::attach(&self.hier, prefix, rel, pid)?;
                Some(pid)
            }
            None => None,
        };

        // The app.
        let app_pid = match (&netns, p.ip) {
            (Some(ns), Some(ip)) => {
                let ready = self.run_dir.join(format!("{ns}.ready"));
                let log = self.run_dir.join(format!("logs/{ns}.app.log"));
                let mut cmd = self.in_netns(Some(ns), &self.tools.python);
                cmd.args(["-I", "-S"])
                    .arg(self.run_dir.join("app.py"))
                    .arg("listen")
                    .arg(&ready)
                    .arg(ip.to_string())
                    .args(p.listeners.iter().map(|(proto, port)| match proto {
                        Protocol::Tcp => format!("tcp:{port}"),
                        Protocol::Udp => format!("udp:{port}"),
                    }))
                    // The mesh's local proxy: accepts whatever the redirect sends it.
                    .args(
                        p.mesh
                            .map(|kind| format!("tcp:{}@127.0.0.1", kind.proxy_port())),
                    );
                let pid = self.spawn(&mut cmd, true, Some(&log))?;
                cgroup::attach(&self.hier, prefix, &app_rel, pid)?;
                Some((pid, ready, log))
            }
            _ => None,
        };

        // Wait: pause exec'd in the right netns, the app bound everything.
        let want_ns = match &netns {
            Some(ns) => netns_inode(&Path::new(names::NETNS_DIR).join(ns)),
            None => netns_inode(Path::new("/proc/self/ns/net")),
        }
        .map_err(|e| fail(format!("netns handle: {e}")))?;
        let up = cmd::poll(READY_TIMEOUT, || {
            if exited(pause_pid) {
                return Some(Err(fail(format!("holder (pid {pause_pid}) exited"))));
            }
            let comm = fs::read_to_string(format!("/proc/{pause_pid}/comm")).ok()?;
            let ns = netns_inode(Path::new(&format!("/proc/{pause_pid}/ns/net"))).ok()?;
            (comm.trim() == "pause" && ns == want_ns).then_some(Ok(()))
        });
        up.unwrap_or_else(|| {
            Err(Error::Timeout {
                what: format!("pod {}: holder in its netns", p.pod),
                after: READY_TIMEOUT,
            })
        })?;
        if let Some((pid, ready, log)) = &app_pid {
            self.wait_ready(&p.pod.to_string(), *pid, ready, log)?;
            let seen = fs::read_to_string(format!("/proc/{pid}/root/etc/resolv.conf"))
                .map_err(|e| fail(format!("reading the app's resolv.conf: {e}")))?;
            if seen != self.resolv_conf(p) {
                return Err(fail(format!(
                    "the app's /etc/resolv.conf is not the pod's (ip netns exec bind mount missing?): {seen:?}"
                )));
            }
        }

        let cg = |rel: &str| format!("/{}/{rel}", names::cgroup_dir_name(prefix));
        Ok(PodHandle {
            namespace: p.pod.namespace.clone(),
            name: p.pod.name.clone(),
            uid: p.uid.clone(),
            node: node.name.clone(),
            ip: p.ip,
            host_network: p.host_network,
            netns_path: netns.as_ref().map(|n| Path::new(names::NETNS_DIR).join(n)),
            veth: netns.as_ref().map(|_| format!("v{k}")),
            netns_name: netns,
            pause_pid,
            app_pid: app_pid.map(|(pid, _, _)| pid),
            conmon_pid,
            cgroup_layout: p.layout,
            sandbox_cgroup: cg(&sandbox_rel),
            app_cgroup: cg(&app_rel),
            sandbox_id,
            app_container_id: app_id,
            listeners: p.listeners.clone(),
            app_rel,
        })
    }

    /// `ip netns exec <ns> <program>`, or just `<program>` for the host netns.
    pub(super) fn in_netns(&self, netns: Option<&str>, program: &Path) -> Command {
        match netns {
            Some(ns) => {
                let mut cmd = Command::new(&self.tools.ip);
                cmd.args(["netns", "exec", ns]).arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }

    /// Waits for an app.py instance to create its ready file.
    fn wait_ready(&self, who: &str, pid: u32, ready: &Path, log: &Path) -> Result<()> {
        let ok = cmd::poll(READY_TIMEOUT, || {
            if ready.exists() {
                Some(true)
            } else if exited(pid) {
                Some(false)
            } else {
                None
            }
        });
        match ok {
            Some(true) => Ok(()),
            Some(false) => Err(Error::Pod {
                pod: who.to_string(),
                problem: format!(
                    "app (pid {pid}) exited: {}",
                    fs::read_to_string(log).unwrap_or_default().trim()
                ),
            }),
            None => Err(Error::Timeout {
                what: format!("{who}: app listeners"),
                after: READY_TIMEOUT,
            }),
        }
    }

    fn resolv_conf(&self, p: &PodPlan) -> String {
        let ns = &p.pod.namespace;
        let mut s = format!("search {ns}.svc.cluster.local svc.cluster.local cluster.local\n");
        if let Some(d) = &self.plan.dns {
            let _ = writeln!(s, "nameserver {}", d.ip);
        }
        s.push_str("options ndots:5\n");
        s
    }
}

/// The inode of a netns handle (`/run/netns/X` or `/proc/PID/ns/net`).
fn netns_inode(path: &Path) -> std::io::Result<u64> {
    fs::metadata(path).map(|m| m.ino())
}

/// Whether our child `pid` has exited (it stays a zombie until teardown reaps it).
pub(super) fn exited(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}
