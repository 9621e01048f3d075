//! Cluster DNS: dnsmasq in the DNS pod's netns and app-container cgroup, answering the
//! scenario's records; names it does not know get NXDOMAIN (`--local=/#/`), `SERVFAIL` names are
//! forwarded to the router's SERVFAIL responder, `TIMEOUT` names to a black hole.

use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;

use super::{
    DnsHandle, SERVFAIL_UPSTREAM, TIMEOUT_UPSTREAM, Testbed,
    build::{READY_TIMEOUT, exited},
};
use crate::{Error, Result, cgroup, cmd, scenario::DnsAnswer};

impl Testbed {
    pub(super) fn setup_dns(&self) -> Result<Option<DnsHandle>> {
        let Some(d) = &self.plan.dns else {
            return Ok(None);
        };
        let dnsmasq = self.tools.dnsmasq.clone().ok_or(Error::MissingProgram {
            program: "dnsmasq",
            package: "dnsmasq-base",
        })?;
        let pod = &self.pods[d.pod];
        let ns = pod.netns_name.clone().unwrap_or_default();
        let log_path = self.run_dir.join("logs/dnsmasq.log");
        let mut cmd = self.in_netns(Some(&ns), &dnsmasq);
        cmd.args(dnsmasq_args(
            d.ip,
            &self.run_dir.join("dnsmasq.pid"),
            &log_path,
        ));
        for (name, answer) in &d.records {
            cmd.arg(match answer {
                DnsAnswer::A(ip) => format!("--host-record={name},{ip}"),
                DnsAnswer::NxDomain => continue,
                DnsAnswer::ServFail => format!("--server=/{name}/{SERVFAIL_UPSTREAM}"),
                DnsAnswer::Timeout => format!("--server=/{name}/{TIMEOUT_UPSTREAM}"),
            });
        }
        let err_log = self.run_dir.join("logs/dnsmasq.stderr");
        let pid = self.spawn(&mut cmd, false, Some(&err_log))?;
        cgroup::attach(&self.hier, self.prefix(), &pod.app_rel, pid)?;
        let want = format!("{:08X}:0035", u32::from_ne_bytes(d.ip.octets()));
        let ok = cmd::poll(READY_TIMEOUT, || {
            if exited(pid) {
                return Some(false);
            }
            let udp = fs::read_to_string(format!("/proc/{pid}/net/udp")).ok()?;
            let tcp = fs::read_to_string(format!("/proc/{pid}/net/tcp")).ok()?;
            (udp.contains(&want) && tcp.contains(&want)).then_some(true)
        });
        match ok {
            Some(true) => Ok(Some(DnsHandle {
                pod: pod.pod_ref(),
                ip: d.ip,
                pid,
                log_path,
            })),
            Some(false) => Err(Error::Pod {
                pod: pod.pod_ref().to_string(),
                problem: format!(
                    "dnsmasq (pid {pid}) exited: {}",
                    fs::read_to_string(&err_log).unwrap_or_default().trim()
                ),
            }),
            None => Err(Error::Timeout {
                what: format!("pod {}: dnsmasq listening on {}:53", pod.pod_ref(), d.ip),
                after: READY_TIMEOUT,
            }),
        }
    }
}

/// dnsmasq's flags for a responder on `listen`:53 that answers only what further
/// `--host-record`/`--server` flags add (NXDOMAIN otherwise), runs in the foreground as root
/// without caching, and logs every query to `log`. Also for tests that start their own.
pub fn dnsmasq_args(listen: Ipv4Addr, pid_file: &Path, log: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--keep-in-foreground",
        "--port=53",
        "--bind-interfaces",
        "--user=root",
        "--cache-size=0",
        "--no-negcache",
        "--log-queries",
        "--local=/#/",
    ]
    .map(String::from)
    .to_vec();
    args.push(format!("--listen-address={listen}"));
    args.push(format!("--pid-file={}", pid_file.display()));
    args.push(format!("--log-facility={}", log.display()));
    args
}
