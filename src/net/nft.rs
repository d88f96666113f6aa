//! Port forwards as one nftables table per container (`inet
//! nixos-container-NAME`), loaded with the `nft` tool in one atomic
//! transaction and removed as a whole.
//!
//! - `prerouting`: connections from other hosts and namespaces to any local
//!   address of the host are DNATed to the container;
//! - `output`: so are the host's own connections, including those to
//!   127.0.0.1 (the anchor's forwards miss these: nixpkgs #28721, #46975);
//! - `postrouting`: those from a loopback source are masqueraded behind
//!   the host side's address, since the container cannot answer 127.0.0.1
//!   (our interface gets `route_localnet=1` so they may leave it at all).
//!
//! IPv6 forwards have no loopback equivalent (`::1` is never routed off
//! the host), so the output rules skip it.
//!
//! `route_localnet=1` would also let the guest reach the host's services on
//! 127.0.0.0/8 (a packet to 127.0.0.1 sent through eth0, as in kube-proxy's
//! CVE-2020-8558), and send packets that look local. So the same
//! transaction loads a guard, `netdev nixos-container-NAME`: at the ingress
//! of the host side of the veth (before routing, conntrack and any bridge)
//! it drops every packet from the guest with a loopback source or
//! destination. The replies to forwarded connections from the host's
//! loopback are not affected: the guest sends them to the host side's
//! address, and conntrack restores 127.0.0.1 only after this hook.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use super::{Plan, names};
use crate::error::{Error, IoContext, Result};

/// The ruleset that installs the container's forwards, replacing an older
/// table of the same container. None when there is nothing to forward.
pub fn ruleset(plan: &Plan) -> Option<String> {
    let locals = plan.local_addresses();
    if plan.ports.is_empty() {
        return None;
    }
    let table = names::nft_table(&plan.name);
    let mut pre = Vec::new();
    let mut out = Vec::new();
    let mut post = Vec::new();
    for local in &locals {
        let (family, ip) = match local {
            IpAddr::V4(_) => ("ipv4", "ip"),
            IpAddr::V6(_) => ("ipv6", "ip6"),
        };
        let target_of = |a: &IpAddr, port: u16| match a {
            IpAddr::V4(a) => format!("{a}:{port}"),
            IpAddr::V6(a) => format!("[{a}]:{port}"),
        };
        for p in &plan.ports {
            let proto = p.protocol.name();
            let dnat = |only: &str| {
                format!(
                    "meta nfproto {family} {only}fib daddr type local {proto} dport {} dnat {ip} to {}",
                    p.host,
                    target_of(local, p.container)
                )
            };
            pre.push(dnat(""));
            out.push(match local {
                IpAddr::V4(_) => dnat(""),
                IpAddr::V6(_) => dnat("ip6 saddr != ::1 "),
            });
        }
        if let IpAddr::V4(a) = local {
            post.push(format!("ip saddr 127.0.0.0/8 ip daddr {a} masquerade"));
        }
    }
    let chain = |name: &str, hook: &str, prio: &str, rules: &[String]| {
        let mut s = format!("  chain {name} {{\n    type nat hook {hook} priority {prio}; policy accept;\n");
        for r in rules {
            s.push_str(&format!("    {r}\n"));
        }
        s.push_str("  }\n");
        s
    };
    Some(format!(
        "# port forwards of nixos-container {name}\n{}table inet {table} {{\n{}{}{}}}\n{}",
        removal(&plan.name),
        chain("prerouting", "prerouting", "dstnat", &pre),
        chain("output", "output", "-100", &out),
        chain("postrouting", "postrouting", "srcnat", &post),
        guard(plan),
        name = plan.name,
    ))
}

/// Drops what the guest sends from or to the loopback, at the ingress of
/// the host side of its veth (see the module's description).
fn guard(plan: &Plan) -> String {
    format!(
        "table netdev {table} {{\n  chain guard {{\n    \
         type filter hook ingress device \"{dev}\" priority -500; policy accept;\n    \
         ip saddr 127.0.0.0/8 drop\n    ip daddr 127.0.0.0/8 drop\n    \
         ip6 saddr ::1 drop\n    ip6 daddr ::1 drop\n  }}\n}}\n",
        table = names::nft_table(&plan.name),
        dev = plan.host_if,
    )
}

/// Removes the tables if they exist (creating an empty one first makes the
/// delete succeed either way, in one transaction).
pub fn removal(name: &str) -> String {
    let table = names::nft_table(name);
    format!(
        "table inet {table} {{}}\ndelete table inet {table}\ntable netdev {table} {{}}\ndelete table netdev {table}\n"
    )
}

fn run_nft(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::MissingProgram { program: "nft", hint: "install nftables (needed for --port forwards)" }
            }
            _ => Error::Io { context: "running nft".into(), source: e },
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(script.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| Error::Io { context: "running nft".into(), source: e })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().next().unwrap_or("").trim();
        return Err(Error::other(format!("nft failed: {first}")));
    }
    Ok(())
}

/// Installs the container's forwards (if any). `marker` is written first,
/// so that a table loaded by a start that dies right after is still found.
pub fn apply(plan: &Plan, marker: &Path) -> Result<()> {
    match ruleset(plan) {
        Some(rules) => {
            if let Some(dir) = marker.parent() {
                std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
            }
            std::fs::write(marker, "").context(|| format!("writing {}", marker.display()))?;
            tracing::info!("nft -f - with the port forwards of {}:\n{}", plan.name, rules.trim_end());
            run_nft(&rules)
        }
        None => Ok(()),
    }
}

/// Removes the container's table. nft runs only when `apply` left its
/// marker: there is nothing to remove otherwise, and a host that never had
/// forwards may have no nft at all.
pub fn remove(name: &str, marker: &Path) -> Result<()> {
    if !marker.exists() {
        return Ok(());
    }
    match run_nft(&removal(name)) {
        Ok(()) | Err(Error::MissingProgram { .. }) => {}
        Err(e) => return Err(e),
    }
    match std::fs::remove_file(marker) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).context(|| format!("removing {}", marker.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::{Conf, parse_addr4, parse_addr6};

    fn plan(ports: &[&str], v6: bool) -> Plan {
        let conf = Conf {
            private_network: true,
            host_address: Some(parse_addr4("10.233.1.1").unwrap()),
            local_address: Some(parse_addr4("10.233.1.2").unwrap()),
            host_address6: v6.then(|| parse_addr6("fd6e::1").unwrap()),
            local_address6: v6.then(|| parse_addr6("fd6e::2").unwrap()),
            host_port: ports.iter().map(|p| p.parse().unwrap()).collect(),
            ..Conf::default()
        };
        Plan::new("web", &conf).unwrap()
    }

    #[test]
    fn no_ports_no_table() {
        assert_eq!(ruleset(&plan(&[], true)), None);
    }

    #[test]
    fn the_guest_cannot_send_from_or_to_the_loopback() {
        // Wherever there are forwards (and so route_localnet=1), also
        // without an address to forward to and on a bridge.
        let mut plans = vec![plan(&["8080:80"], false), plan(&["8080:80"], true)];
        let mut no_addr = plan(&["8080:80"], false);
        no_addr.pairs.clear();
        plans.push(no_addr);
        let mut bridged = plan(&["8080:80"], false);
        bridged.bridge = Some("br0".into());
        plans.push(bridged);
        for p in plans {
            let r = ruleset(&p).unwrap();
            assert!(
                r.ends_with(
                    "table netdev nixos-container-web {
  chain guard {
    type filter hook ingress device \"ve-web\" priority -500; policy accept;
    ip saddr 127.0.0.0/8 drop
    ip daddr 127.0.0.0/8 drop
    ip6 saddr ::1 drop
    ip6 daddr ::1 drop
  }
}
"
                ),
                "{r}"
            );
            assert!(r.starts_with(&format!("# port forwards of nixos-container web\n{}", removal("web"))), "{r}");
        }
    }

    #[test]
    fn forwards_for_other_hosts_and_loopback() {
        let r = ruleset(&plan(&["tcp:8080:80", "udp:53"], false)).unwrap();
        let guard = r.find("table netdev nixos-container-web {\n  chain guard").unwrap();
        assert_eq!(
            &r[..guard],
            "# port forwards of nixos-container web
table inet nixos-container-web {}
delete table inet nixos-container-web
table netdev nixos-container-web {}
delete table netdev nixos-container-web
table inet nixos-container-web {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    meta nfproto ipv4 fib daddr type local tcp dport 8080 dnat ip to 10.233.1.2:80
    meta nfproto ipv4 fib daddr type local udp dport 53 dnat ip to 10.233.1.2:53
  }
  chain output {
    type nat hook output priority -100; policy accept;
    meta nfproto ipv4 fib daddr type local tcp dport 8080 dnat ip to 10.233.1.2:80
    meta nfproto ipv4 fib daddr type local udp dport 53 dnat ip to 10.233.1.2:53
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr 127.0.0.0/8 ip daddr 10.233.1.2 masquerade
  }
}
"
        );
    }

    #[test]
    fn ipv6_forwards_skip_the_loopback() {
        let r = ruleset(&plan(&["8080:80"], true)).unwrap();
        assert!(r.contains("meta nfproto ipv6 fib daddr type local tcp dport 8080 dnat ip6 to [fd6e::2]:80\n"), "{r}");
        assert!(
            r.contains(
                "meta nfproto ipv6 ip6 saddr != ::1 fib daddr type local tcp dport 8080 dnat ip6 to [fd6e::2]:80\n"
            ),
            "{r}"
        );
    }

    #[test]
    fn nft_runs_at_release_only_after_a_table_was_applied() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("run/web/nft-table");
        // No forwards: apply writes nothing, release has nothing to do.
        apply(&plan(&[], false), &marker).unwrap();
        assert!(!marker.exists());
        remove("web", &marker).unwrap();
        assert!(!marker.exists());
    }

    #[test]
    fn removal_is_idempotent_by_construction() {
        assert_eq!(
            removal("web"),
            "table inet nixos-container-web {}\ndelete table inet nixos-container-web\n\
             table netdev nixos-container-web {}\ndelete table netdev nixos-container-web\n"
        );
    }
}
