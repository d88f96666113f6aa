//! A container's private network: its namespace, veth pair, addresses,
//! routes, port forwards and host name.
//!
//! `start` (lifecycle) calls [`start`] before it launches the supervisor and
//! hands the namespace to nspawn (`--network-namespace-path`);
//! `lifecycle::release_runtime` calls [`release`] whenever a run is over
//! (stop, terminate, a guest that died, or leftovers found by the next
//! start). Everything is found again from the container's name alone
//! (`names`), so release works after a crash or a CLI killed half-way, and
//! touches nothing of another container.
//!
//! - `names`: interface, namespace and table names;
//! - `netlink`: the `Netlink` trait and the rtnetlink implementation;
//!   `fake`: an in-memory kernel for the unit tests below;
//! - `nft`: port forwards as a per-container nftables table;
//! - `hosts`: `NAME.containers` entries in the hosts file.

pub mod hosts;
pub mod names;
pub mod netlink;
pub mod nft;

#[cfg(test)]
pub mod fake;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use crate::addr::{Pool4, Pool6};
use crate::conf::{Addr4, Addr6, AddrSpec, Conf, PortForward};
use crate::error::{Error, IoContext, Result};
use netlink::{InUse, Netlink, Ns, Route};

/// One address family's pair: the host side's and the container's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    pub host: Option<(IpAddr, u8)>,
    pub local: Option<(IpAddr, u8)>,
}

/// What a container's network looks like, from its name and conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub name: String,
    pub netns: String,
    pub host_if: String,
    pub bridge: Option<String>,
    pub pairs: Vec<Pair>,
    pub ports: Vec<PortForward>,
    /// The MAC address of the container's eth0 (LOCAL_MAC_ADDRESS).
    pub local_mac: Option<[u8; 6]>,
    /// Host interfaces the container gets for itself (`INTERFACES`).
    pub interfaces: Vec<String>,
    /// Host interfaces the container gets a macvlan on (`MACVLANS`).
    pub macvlans: Vec<String>,
}

fn spec<A: Into<IpAddr> + Copy>(a: &Option<AddrSpec<A>>) -> Option<(IpAddr, u8)> {
    a.map(|s| {
        let ip: IpAddr = s.addr.into();
        (ip, s.prefix.unwrap_or(full_prefix(ip)))
    })
}

fn full_prefix(a: IpAddr) -> u8 {
    if a.is_ipv4() { 32 } else { 128 }
}

/// `addr` with the bits past `prefix` cleared: the network a route names.
fn network(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

impl Plan {
    /// The plan for a container, or None when it shares the host's network
    /// (or joins a namespace given in its conf).
    pub fn new(name: &str, conf: &Conf) -> Option<Plan> {
        if !conf.has_own_network() {
            return None;
        }
        let pairs = [
            Pair { host: spec(&conf.host_address), local: spec(&conf.local_address) },
            Pair { host: spec(&conf.host_address6), local: spec(&conf.local_address6) },
        ]
        .into_iter()
        .filter(|p| p.host.is_some() || p.local.is_some())
        .collect();
        Some(Plan {
            name: name.to_string(),
            netns: names::netns(name),
            host_if: names::host_ifname(name),
            bridge: conf.host_bridge.clone(),
            pairs,
            ports: conf.host_port.clone(),
            // Checked when the conf was read.
            local_mac: conf.local_mac_address.as_deref().and_then(|m| crate::conf::validate_mac(m).ok()),
            interfaces: conf.interfaces.clone(),
            macvlans: conf.macvlans.clone(),
        })
    }

    /// The container's IPv4 and IPv6 addresses, for port forwards and the
    /// hosts file.
    pub fn local_addresses(&self) -> Vec<IpAddr> {
        self.pairs.iter().filter_map(|p| p.local.map(|l| l.0)).collect()
    }
}

/// Creates the namespace and the veth pair and configures both ends. On
/// failure, whatever was made is removed again; what was there before
/// (an interface refused as not ours) is left alone.
pub fn setup(nl: &mut dyn Netlink, plan: &Plan) -> Result<()> {
    check_host_side(nl, plan)?;
    let result = build(nl, plan);
    if result.is_err() {
        roll_back(nl, &plan.name);
    }
    result
}

fn roll_back(nl: &mut dyn Netlink, name: &str) {
    if let Err(e) = teardown(nl, name) {
        tracing::error!("cleaning up the network of {name}: {e}");
    }
}

/// The bridge must be there, and the host-side name free.
fn check_host_side(nl: &mut dyn Netlink, plan: &Plan) -> Result<()> {
    if let Some(br) = &plan.bridge {
        match nl.link(Ns::Host, br)? {
            Some(l) if l.is_bridge => {}
            Some(_) => {
                return Err(Error::other(format!("{br} is not a bridge (HOST_BRIDGE of container '{}')", plan.name)));
            }
            None => {
                return Err(Error::NoInterface {
                    ifname: br.clone(),
                    wanted_by: Some(("HOST_BRIDGE", plan.name.clone())),
                });
            }
        }
    }
    if let Some(l) = nl.link(Ns::Host, &plan.host_if)? {
        // Our own leftovers were released before; anything else by this
        // name is not ours to take.
        return Err(Error::other(format!(
            "network interface {} already exists{}; container '{}' needs that name",
            plan.host_if,
            l.alias.map(|a| format!(" (alias '{a}')")).unwrap_or_default(),
            plan.name
        )));
    }
    Ok(())
}

fn build(nl: &mut dyn Netlink, plan: &Plan) -> Result<()> {
    let guest = Ns::Named(&plan.netns);
    let eth0 = names::GUEST_IFNAME;
    tracing::info!(
        "network of {}: namespace {}, veth {} (host) <-> {eth0} (container){}",
        plan.name,
        plan.netns,
        plan.host_if,
        plan.bridge.as_ref().map(|b| format!(", host side on bridge {b}")).unwrap_or_default()
    );
    nl.netns_add(&plan.netns)?;
    nl.link_up(guest, "lo")?;
    nl.veth_add(&plan.host_if, &plan.netns, eth0, plan.local_mac)?;
    nl.link_set_alias(&plan.host_if, &names::host_alias(&plan.name))?;
    let altname = names::host_altname(&plan.name);
    if altname != plan.host_if {
        nl.link_add_altname(&plan.host_if, &altname)?;
    }
    if let Some(br) = &plan.bridge {
        nl.link_set_master(&plan.host_if, br)?;
    }
    nl.link_up(Ns::Host, &plan.host_if)?;
    nl.link_up(guest, eth0)?;

    // A host without IPv6 (or with it disabled) still starts the container,
    // with its IPv4 pair only: the IPv6 pair may be the automatic one, made
    // when the host had IPv6.
    let is_v6 = |p: &Pair| p.host.or(p.local).is_some_and(|(a, _)| a.is_ipv6());
    let ipv6 = !plan.pairs.iter().any(is_v6) || nl.ipv6_enabled(plan.bridge.is_none().then_some(&plan.host_if));
    for pair in &plan.pairs {
        if is_v6(pair) && !ipv6 {
            tracing::warn!(
                "IPv6 is disabled on this host{}: container '{}' starts without its IPv6 addresses",
                if plan.bridge.is_none() {
                    format!(" (net.ipv6.conf.{}.disable_ipv6)", plan.host_if)
                } else {
                    String::new()
                },
                plan.name
            );
            continue;
        }
        if plan.bridge.is_none() {
            if let Some((host, prefix)) = pair.host {
                tracing::info!("address {host}/{prefix} on {}", plan.host_if);
                nl.addr_add(Ns::Host, &plan.host_if, host, prefix)?;
            }
            if let Some((local, prefix)) = pair.local {
                let dst = network(local, prefix);
                // A host address with the same prefix brought the kernel's
                // own route to that subnet (adding it again is EEXIST).
                let routed_by_kernel = pair.host.is_some_and(|(h, hp)| hp == prefix && network(h, hp) == dst);
                if !routed_by_kernel {
                    tracing::info!("route to {dst}/{prefix} via {}", plan.host_if);
                    nl.route_add(Ns::Host, &Route { dst, prefix, dev: plan.host_if.clone(), via: None })?;
                }
            }
        }
        if let Some((local, prefix)) = pair.local {
            tracing::info!("address {local}/{prefix} on {eth0} in the container");
            nl.addr_add(guest, eth0, local, prefix)?;
        }
        if let (Some((host, _)), Some(_)) = (pair.host, pair.local) {
            tracing::info!("default route via {host} in the container");
            let full = full_prefix(host);
            nl.route_add(guest, &Route { dst: host, prefix: full, dev: eth0.into(), via: None })?;
            let any =
                if host.is_ipv4() { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { IpAddr::V6(Ipv6Addr::UNSPECIFIED) };
            nl.route_add(guest, &Route { dst: any, prefix: 0, dev: eth0.into(), via: Some(host) })?;
        }
    }
    if plan.bridge.is_none() {
        // Packets from the container are routed by the host; the setting
        // belongs to our interface and goes with it.
        tracing::info!("net.ipv4.conf.{}.forwarding=1", plan.host_if);
        nl.ipv4_conf(&plan.host_if, "forwarding", "1")?;
        if !plan.ports.is_empty() {
            // Forwards from the host's own 127.0.0.1 leave through this
            // interface with a loopback source until they are masqueraded.
            // The forwards' nft transaction guards it (`nft::guard`): the
            // guest's own packets from or to 127.0.0.0/8 are dropped.
            nl.ipv4_conf(&plan.host_if, "route_localnet", "1")?;
        }
    }
    Ok(())
}

/// Removes a container's interfaces and namespace. Safe to call when
/// nothing or only part of it exists; never removes an interface that
/// another owner marked as its own.
pub fn teardown(nl: &mut dyn Netlink, name: &str) -> Result<()> {
    let host_if = names::host_ifname(name);
    tracing::debug!("removing interface {host_if} and namespace {} of {name}, if there", names::netns(name));
    let mut first_error = None;
    match nl.link(Ns::Host, &host_if) {
        Ok(Some(l)) if l.alias.as_deref().is_some_and(|a| a != names::host_alias(name)) => {
            tracing::warn!(
                "leaving network interface {host_if} alone: its alias '{}' says it is not container '{name}''s",
                l.alias.unwrap_or_default()
            );
        }
        Ok(Some(l)) => {
            if let Err(e) = nl.link_del(&l, &host_if) {
                first_error.get_or_insert(e);
            }
        }
        Ok(None) => {}
        Err(e) => {
            first_error.get_or_insert(e);
        }
    }
    if let Err(e) = nl.netns_del(&names::netns(name)) {
        first_error.get_or_insert(e);
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A host interface moved into a container's namespace: its name, and its
/// index there (what is given back must be what was moved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    pub index: u32,
    pub name: String,
}

impl Moved {
    /// `INDEX NAME` lines, as `RUN/NAME/interfaces` holds them.
    pub fn render(moved: &[Moved]) -> String {
        moved.iter().map(|m| format!("{} {}\n", m.index, m.name)).collect()
    }

    pub fn parse(text: &str) -> Vec<Moved> {
        text.lines()
            .filter_map(|l| {
                let (index, name) = l.split_once(' ')?;
                Some(Moved { index: index.parse().ok()?, name: name.to_string() })
            })
            .collect()
    }
}

/// Moves the plan's host interfaces into the container's namespace (as
/// nspawn's --network-interface does for a namespace of its own). On
/// failure, those already moved are given back.
pub fn move_in(nl: &mut dyn Netlink, plan: &Plan) -> Result<Vec<Moved>> {
    let mut moved = Vec::new();
    for ifname in &plan.interfaces {
        let step = (|| {
            let Some(link) = nl.link(Ns::Host, ifname)? else {
                return Err(Error::NoInterface {
                    ifname: ifname.clone(),
                    wanted_by: Some(("INTERFACES", plan.name.clone())),
                });
            };
            tracing::info!("moving host interface {ifname} into {}", plan.netns);
            nl.link_move(Ns::Host, &link, ifname, Ns::Named(&plan.netns))?;
            let index = nl.link(Ns::Named(&plan.netns), ifname)?.map_or(link.index, |l| l.index);
            Ok(Moved { index, name: ifname.clone() })
        })();
        match step {
            Ok(m) => moved.push(m),
            Err(e) => {
                give_back(nl, &plan.name, &moved);
                return Err(e);
            }
        }
    }
    Ok(moved)
}

/// Moves the interfaces `move_in` moved back to the host before the
/// namespace goes (a virtual one would go with it; a physical one would
/// come back only when the kernel gets to it). Only an interface that is
/// still the one moved (same name, same index) is given back: the guest may
/// have made others.
pub fn give_back(nl: &mut dyn Netlink, name: &str, moved: &[Moved]) {
    let netns = names::netns(name);
    for m in moved {
        match nl.link(Ns::Named(&netns), &m.name) {
            Ok(Some(link)) if link.index == m.index => {
                tracing::info!("giving interface {} back to the host", m.name);
                if let Err(e) = nl.link_move(Ns::Named(&netns), &link, &m.name, Ns::Host) {
                    tracing::warn!("giving interface {} of {name} back to the host: {e}", m.name);
                }
            }
            Ok(Some(_)) => tracing::warn!("interface {} in {netns} is not the one moved there; leaving it", m.name),
            Ok(None) => tracing::warn!("interface {} is no longer in {netns}", m.name),
            Err(e) => tracing::warn!("looking for interface {} in {netns}: {e}", m.name),
        }
    }
}

/// Creates a macvlan on each of the plan's `MACVLANS` host interfaces, in
/// the container's namespace, as nspawn's --network-macvlan does for a
/// namespace of its own: mode bridge, named `mv-PARENT` (see
/// `names::macvlan_ifname`), nspawn's stable MAC address when the host's
/// machine ID is known, and left down for the guest to configure. They live
/// in the namespace only, so they go with it (`teardown`); a failure here
/// leaves them to the caller's `roll_back` likewise.
pub fn add_macvlans(nl: &mut dyn Netlink, plan: &Plan, machine_id: Option<&[u8; 16]>) -> Result<()> {
    for (idx, parent) in (0u64..).zip(&plan.macvlans) {
        let Some(link) = nl.link(Ns::Host, parent)? else {
            return Err(Error::NoInterface {
                ifname: parent.clone(),
                wanted_by: Some(("MACVLANS", plan.name.clone())),
            });
        };
        let ifname = names::macvlan_ifname(parent);
        let mac = machine_id.map(|id| names::macvlan_mac(id, &plan.name, idx));
        tracing::info!("macvlan {ifname} on host interface {parent} in {}", plan.netns);
        nl.macvlan_add(&link, parent, &plan.netns, &ifname, mac)?;
    }
    Ok(())
}

fn host_machine_id() -> Option<[u8; 16]> {
    std::fs::read_to_string("/etc/machine-id").ok().as_deref().and_then(names::parse_machine_id)
}

/// Sets up the network of a container about to start. Returns the
/// namespace nspawn must join, if the container has a private network.
/// `nft_marker` records that a table may exist, `moved_file` which host
/// interfaces were moved into it (see `release`).
pub fn start(name: &str, conf: &Conf, nft_marker: &Path, moved_file: &Path) -> Result<Option<PathBuf>> {
    let Some(plan) = Plan::new(name, conf) else { return Ok(None) };
    let mut nl = netlink::RtNetlink::new()?;
    setup(&mut nl, &plan)?;
    let moved = match move_in(&mut nl, &plan) {
        Ok(m) => m,
        Err(e) => {
            roll_back(&mut nl, name);
            return Err(e);
        }
    };
    if let Err(e) = add_macvlans(&mut nl, &plan, host_machine_id().as_ref()) {
        give_back(&mut nl, name, &moved);
        roll_back(&mut nl, name);
        return Err(e);
    }
    let record = || -> Result<()> {
        if let Some(dir) = moved_file.parent() {
            std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        }
        crate::fsutil::write_atomic(moved_file, Moved::render(&moved).as_bytes(), 0o644)
    };
    if !moved.is_empty()
        && let Err(e) = record()
    {
        give_back(&mut nl, name, &moved);
        roll_back(&mut nl, name);
        return Err(e);
    }
    if let Err(e) = nft::apply(&plan, nft_marker) {
        give_back(&mut nl, name, &moved);
        roll_back(&mut nl, name);
        return Err(e);
    }
    if !plan.ports.is_empty() && plan.local_addresses().is_empty() {
        tracing::warn!("port forwards of '{name}' need its LOCAL_ADDRESS (or LOCAL_ADDRESS6); none were set up");
    } else if !plan.ports.is_empty() && !ipv4_forwarding_enabled() {
        tracing::warn!(
            "port forwards of '{name}' answer on this host only: forwarding from other hosts needs net.ipv4.ip_forward=1 (or forwarding on the incoming interface)"
        );
    }
    Ok(Some(nl.netns_path(&plan.netns)))
}

fn ipv4_forwarding_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|s| s.trim() == "1")
}

/// Removes everything `start` set up for container `name`, whatever is
/// left of it. Errors are logged: release runs on every exit path, twice
/// per stop and once per start, so it looks before it works: the nft table
/// only when `start` left its marker (running nft costs 10-20 ms), the
/// interfaces only while the namespace is mounted (the veth is made in it
/// and goes with it).
pub fn release(name: &str, nft_marker: &Path, moved_file: &Path) {
    if let Err(e) = nft::remove(name, nft_marker) {
        tracing::warn!("removing the port forwards of {name}: {e}");
    }
    if !Path::new(netlink::NETNS_DIR).join(names::netns(name)).exists() {
        let _ = std::fs::remove_file(moved_file);
        return;
    }
    match netlink::RtNetlink::new() {
        Ok(mut nl) => {
            if let Ok(text) = std::fs::read_to_string(moved_file) {
                give_back(&mut nl, name, &Moved::parse(&text));
            }
            let _ = std::fs::remove_file(moved_file);
            if let Err(e) = teardown(&mut nl, name) {
                tracing::warn!("removing the network of {name}: {e}");
            }
        }
        Err(e) => tracing::warn!("removing the network of {name}: {e}"),
    }
}

/// Why `addr`, in use on this host as `used`, cannot be given to a container.
pub fn conflict(addr: IpAddr, used: &InUse) -> String {
    match used {
        InUse::Local => "it is already an address of this host".to_string(),
        InUse::Routed { prefix } => {
            format!("the host already routes {}/{prefix} elsewhere", network(addr, *prefix))
        }
    }
}

/// What other containers (created or being created) already have.
#[derive(Debug, Default)]
pub struct Taken {
    pub names: Vec<String>,
    pub addrs: HashSet<IpAddr>,
    /// (container, forward)
    pub ports: Vec<(String, PortForward)>,
}

impl Taken {
    pub fn add(&mut self, name: &str, conf: &Conf) {
        self.names.push(name.to_string());
        let v4 = [conf.host_address, conf.local_address].into_iter().flatten().map(|a| IpAddr::V4(a.addr));
        let v6 = [conf.host_address6, conf.local_address6].into_iter().flatten().map(|a| IpAddr::V6(a.addr));
        self.addrs.extend(v4.chain(v6));
        self.ports.extend(conf.host_port.iter().map(|p| (name.to_string(), *p)));
    }
}

/// Checks what a new container `name` would share with others: its host
/// interface name and its host ports.
pub fn check_new(name: &str, conf: &Conf, taken: &Taken) -> Result<()> {
    let ifname = names::host_ifname(name);
    if let Some(other) = taken.names.iter().find(|o| names::host_ifname(o) == ifname) {
        return Err(Error::InvalidValue {
            what: "container name",
            value: name.to_string(),
            reason: format!(
                "its network interface would be {ifname}, which container '{other}' has; choose another name"
            ),
        });
    }
    check_own(conf)?;
    if let Some(bridge) = &conf.host_bridge {
        check_bridge(Path::new("/sys/class/net"), bridge)?;
    }
    for p in &conf.host_port {
        if let Some((other, _)) = taken.ports.iter().find(|(_, q)| q.protocol == p.protocol && q.host == p.host) {
            return Err(Error::InvalidValue {
                what: "port",
                value: p.to_string(),
                reason: format!("container '{other}' already forwards host port {}; choose another", p.host),
            });
        }
    }
    Ok(())
}

/// What a conf must agree with itself on, so that its start cannot fail on
/// it: each host port forwarded once per protocol, two different ends.
pub fn check_own(conf: &Conf) -> Result<()> {
    for (i, p) in conf.host_port.iter().enumerate() {
        if let Some(q) = conf.host_port[..i].iter().find(|q| q.protocol == p.protocol && q.host == p.host) {
            return Err(Error::InvalidValue {
                what: "port",
                value: p.to_string(),
                reason: format!("host port {} is forwarded twice ({q} and {p}); forward each host port once", p.host),
            });
        }
    }
    let same = |what: &'static str, h: Option<IpAddr>, l: Option<IpAddr>| match (h, l) {
        (Some(h), Some(l)) if h == l => Err(Error::InvalidValue {
            what,
            value: l.to_string(),
            reason: format!(
                "it is the host side's address too; the two ends need different addresses (e.g. {h} and another)"
            ),
        }),
        _ => Ok(()),
    };
    same("local address", conf.host_address.map(|a| a.addr.into()), conf.local_address.map(|a| a.addr.into()))?;
    same("local address6", conf.host_address6.map(|a| a.addr.into()), conf.local_address6.map(|a| a.addr.into()))?;
    Ok(())
}

/// A bridge to attach to must exist, and be a bridge (`sys` is /sys/class/net).
pub fn check_bridge(sys: &Path, bridge: &str) -> Result<()> {
    let invalid = |reason: String| Error::InvalidValue { what: "bridge", value: bridge.to_string(), reason };
    if bridge.contains('/') || bridge.is_empty() || bridge.len() > 15 || bridge.starts_with('.') {
        return Err(invalid("not an interface name".into()));
    }
    let dev = sys.join(bridge);
    if !dev.exists() {
        return Err(invalid(
            "no such interface on this host; create the bridge first (ip link add NAME type bridge) or see 'ip link show type bridge'"
                .into(),
        ));
    }
    if !dev.join("bridge").is_dir() {
        return Err(invalid("this interface is not a bridge (see 'ip link show type bridge')".into()));
    }
    Ok(())
}

fn refuse(what: &'static str, addr: IpAddr, reason: String) -> Error {
    Error::InvalidValue { what, value: addr.to_string(), reason: format!("{reason}; choose another") }
}

/// Checks a given address against other containers and the host.
fn check_given(nl: &mut dyn Netlink, taken: &Taken, what: &'static str, addr: IpAddr, routed: bool) -> Result<()> {
    if taken.addrs.contains(&addr) {
        return Err(refuse(what, addr, "another container has it".into()));
    }
    match nl.in_use(addr)? {
        None => Ok(()),
        // On a bridge, the container's address lies in the bridge's subnet,
        // which the host routes; only an address of the host itself clashes.
        Some(InUse::Routed { .. }) if !routed => Ok(()),
        Some(used) => Err(refuse(what, addr, conflict(addr, &used))),
    }
}

/// Fills in the addresses of a new container with a private network and
/// checks those given. Runs under the global lock.
pub fn assign(conf: &mut Conf, taken: &Taken, nl: &mut dyn Netlink, pools: (Pool4, Pool6), ipv6: bool) -> Result<()> {
    if !conf.has_own_network() {
        return Ok(());
    }
    let routed = conf.host_bridge.is_none();
    if routed {
        for (what, a) in [("host address", conf.host_address), ("local address", conf.local_address)] {
            if let Some(a) = a {
                check_given(nl, taken, what, IpAddr::V4(a.addr), true)?;
            }
        }
        for (what, a) in [("host address6", conf.host_address6), ("local address6", conf.local_address6)] {
            if let Some(a) = a {
                check_given(nl, taken, what, IpAddr::V6(a.addr), true)?;
            }
        }
    } else {
        if let Some(a) = conf.local_address {
            check_given(nl, taken, "local address", IpAddr::V4(a.addr), false)?;
        }
        if let Some(a) = conf.local_address6 {
            check_given(nl, taken, "local address6", IpAddr::V6(a.addr), false)?;
        }
        // Addresses on a bridge come from the user or stay unset.
        return Ok(());
    }
    let mut free = |a: IpAddr| Ok(nl.in_use(a)?.is_none());
    // IPv6 given where nixpkgs takes it (--host-address): an IPv6-only container.
    if conf.host_address.is_none() && conf.local_address.is_none() && !conf.ipv6_in_address_keys {
        let (h, l) = pools.0.allocate_where(&taken.addrs, &mut free)?;
        conf.host_address = Some(Addr4 { addr: h, prefix: None });
        conf.local_address = Some(Addr4 { addr: l, prefix: None });
    }
    if ipv6 && conf.host_address6.is_none() && conf.local_address6.is_none() {
        let (h, l) = pools.1.allocate_where(&taken.addrs, &mut free)?;
        conf.host_address6 = Some(Addr6 { addr: h, prefix: None });
        conf.local_address6 = Some(Addr6 { addr: l, prefix: None });
    }
    Ok(())
}

/// Whether the host has IPv6 at all (it can be disabled at boot).
pub fn host_has_ipv6() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/disable_ipv6").is_ok_and(|s| s.trim() == "0")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_conf_must_agree_with_itself_and_its_bridge_exist() {
        use crate::conf::parse_addr4;
        let mut c =
            Conf { host_port: vec!["8080:80".parse().unwrap(), "udp:8080".parse().unwrap()], ..Conf::default() };
        super::check_own(&c).unwrap();
        c.host_port.push("tcp:8080:81".parse().unwrap());
        let e = super::check_own(&c).unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid port 'tcp:8080:81': host port 8080 is forwarded twice (tcp:8080:80 and tcp:8080:81); forward each host port once"
        );
        c.host_port.clear();
        c.host_address = Some(parse_addr4("10.0.0.1").unwrap());
        c.local_address = Some(parse_addr4("10.0.0.1").unwrap());
        let e = super::check_own(&c).unwrap_err().to_string();
        assert!(e.starts_with("invalid local address '10.0.0.1': it is the host side's address too"), "{e}");

        let sys = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(sys.path().join("br0/bridge")).unwrap();
        std::fs::create_dir_all(sys.path().join("eth0")).unwrap();
        super::check_bridge(sys.path(), "br0").unwrap();
        let e = super::check_bridge(sys.path(), "br9").unwrap_err().to_string();
        assert!(e.starts_with("invalid bridge 'br9': no such interface on this host"), "{e}");
        let e = super::check_bridge(sys.path(), "eth0").unwrap_err().to_string();
        assert!(e.contains("not a bridge"), "{e}");
        assert!(super::check_bridge(sys.path(), "../etc").is_err());
    }

    use super::fake::FakeNet;
    use super::*;
    use crate::conf::{parse_addr4, parse_addr6};

    fn conf() -> Conf {
        Conf {
            private_network: true,
            host_address: Some(parse_addr4("10.233.1.1").unwrap()),
            local_address: Some(parse_addr4("10.233.1.2").unwrap()),
            host_address6: Some(parse_addr6("fd6e:6978:6f73:1::1").unwrap()),
            local_address6: Some(parse_addr6("fd6e:6978:6f73:1::2").unwrap()),
            ..Conf::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const LONG: &str = "a-container-with-a-name-of-35-chars";

    #[test]
    fn routed_setup_builds_what_the_seed_did() {
        let mut nl = FakeNet::new();
        let plan = Plan::new(LONG, &conf()).unwrap();
        setup(&mut nl, &plan).unwrap();
        let ns = names::netns(LONG);
        let hif = names::host_ifname(LONG);
        assert!(nl.netns.contains(&ns));
        let host = nl.host_link(&hif).unwrap();
        assert!(host.up);
        assert_eq!(host.alias.as_deref(), Some(format!("nixos-container {LONG}").as_str()));
        assert_eq!(host.altnames, [format!("ve-{LONG}")]);
        assert_eq!(host.addrs, [(ip("10.233.1.1"), 32), (ip("fd6e:6978:6f73:1::1"), 128)]);
        let eth0 = nl.ns_link(&ns, "eth0").unwrap();
        assert!(eth0.up && nl.ns_link(&ns, "lo").unwrap().up);
        assert_eq!(eth0.addrs, [(ip("10.233.1.2"), 32), (ip("fd6e:6978:6f73:1::2"), 128)]);
        assert_eq!(nl.links[&Some(ns.clone())].len(), 2, "the guest sees lo and eth0 only");
        let host_routes: Vec<String> =
            nl.host_routes().iter().map(|r| format!("{}/{} {}", r.dst, r.prefix, r.dev)).collect();
        assert_eq!(host_routes, [format!("10.233.1.2/32 {hif}"), format!("fd6e:6978:6f73:1::2/128 {hif}")]);
        let guest_routes: Vec<String> = nl.routes[&Some(ns.clone())]
            .iter()
            .map(|r| format!("{}/{} {} {:?}", r.dst, r.prefix, r.dev, r.via))
            .collect();
        assert_eq!(
            guest_routes,
            [
                "10.233.1.1/32 eth0 None",
                "0.0.0.0/0 eth0 Some(10.233.1.1)",
                "fd6e:6978:6f73:1::1/128 eth0 None",
                "::/0 eth0 Some(fd6e:6978:6f73:1::1)"
            ]
        );
        assert_eq!(nl.conf.get(&(hif.clone(), "forwarding".into())).map(String::as_str), Some("1"));
        assert!(!nl.conf.contains_key(&(hif, "route_localnet".into())), "only with port forwards");
    }

    #[test]
    fn without_ipv6_on_the_host_the_ipv4_pair_still_works() {
        let mut nl = FakeNet::new();
        nl.ipv6_disabled = true;
        let plan = Plan::new("web", &conf()).unwrap();
        setup(&mut nl, &plan).unwrap();
        let hif = names::host_ifname("web");
        assert_eq!(nl.host_link(&hif).unwrap().addrs, [(ip("10.233.1.1"), 32)]);
        assert_eq!(nl.ns_link(&names::netns("web"), "eth0").unwrap().addrs, [(ip("10.233.1.2"), 32)]);
        assert!(nl.routes[&Some(names::netns("web"))].iter().all(|r| r.dst.is_ipv4()));
    }

    #[test]
    fn the_local_mac_address_goes_to_the_containers_side() {
        let mut c = conf();
        c.local_mac_address = Some("02:12:34:56:78:9a".into());
        let mut nl = FakeNet::new();
        setup(&mut nl, &Plan::new("web", &c).unwrap()).unwrap();
        assert_eq!(nl.ns_link(&names::netns("web"), "eth0").unwrap().mac, Some([2, 0x12, 0x34, 0x56, 0x78, 0x9a]));
        assert_eq!(nl.host_link(&names::host_ifname("web")).unwrap().mac, None);
    }

    #[test]
    fn a_local_address_with_a_prefix_routes_its_network() {
        let mut c = conf();
        c.local_address = Some(parse_addr4("10.0.7.2/24").unwrap());
        c.host_address6 = None;
        c.local_address6 = None;
        let mut nl = FakeNet::new();
        setup(&mut nl, &Plan::new("web", &c).unwrap()).unwrap();
        assert_eq!(nl.host_routes()[0].dst, ip("10.0.7.0"));
        assert_eq!(nl.host_routes()[0].prefix, 24);
        assert_eq!(nl.ns_link(&names::netns("web"), "eth0").unwrap().addrs, [(ip("10.0.7.2"), 24)]);
    }

    #[test]
    fn a_host_address_in_the_same_subnet_leaves_the_route_to_the_kernel() {
        let mut c = conf();
        c.host_address = Some(parse_addr4("10.0.7.1/24").unwrap());
        c.local_address = Some(parse_addr4("10.0.7.2/24").unwrap());
        c.host_address6 = Some(parse_addr6("fd00:7::1/64").unwrap());
        c.local_address6 = Some(parse_addr6("fd00:7::2/64").unwrap());
        let mut nl = FakeNet::new();
        setup(&mut nl, &Plan::new("web", &c).unwrap()).unwrap();
        let routes: Vec<String> =
            nl.host_routes().iter().map(|r| format!("{}/{} {}", r.dst, r.prefix, r.dev)).collect();
        assert_eq!(routes, ["10.0.7.0/24 ve-web", "fd00:7::/64 ve-web"]);
        // Different subnets: the container's needs a route of its own.
        c.host_address = Some(parse_addr4("10.0.8.1/24").unwrap());
        let mut nl = FakeNet::new();
        setup(&mut nl, &Plan::new("web", &c).unwrap()).unwrap();
        assert_eq!(nl.host_routes().len(), 3, "{:?}", nl.host_routes());
    }

    #[test]
    fn host_interfaces_move_in_and_are_given_back_as_they_were() {
        let mut nl = FakeNet::new();
        nl.add_plain_link(None, "eth7");
        nl.add_plain_link(None, "eth8");
        let mut c = conf();
        c.interfaces = vec!["eth7".into(), "eth8".into()];
        let plan = Plan::new("web", &c).unwrap();
        setup(&mut nl, &plan).unwrap();
        let moved = move_in(&mut nl, &plan).unwrap();
        assert_eq!(moved.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["eth7", "eth8"]);
        assert_eq!(Moved::parse(&Moved::render(&moved)), moved);
        assert!(nl.host_link("eth7").is_none() && nl.ns_link(&plan.netns, "eth7").is_some());
        // The guest replaced eth8 with one of its own: that one stays.
        let netns = plan.netns.clone();
        nl.links.get_mut(&Some(netns.clone())).unwrap().get_mut("eth8").unwrap().index = 99;
        give_back(&mut nl, "web", &moved);
        teardown(&mut nl, "web").unwrap();
        assert!(nl.host_link("eth7").is_some(), "eth7 is back");
        assert!(nl.host_link("eth8").is_none(), "not the guest's impostor");

        // A missing interface fails the start, and those moved go back.
        let mut nl = FakeNet::new();
        nl.add_plain_link(None, "eth7");
        let mut c = conf();
        c.interfaces = vec!["eth7".into(), "nope0".into()];
        let plan = Plan::new("web", &c).unwrap();
        setup(&mut nl, &plan).unwrap();
        let err = move_in(&mut nl, &plan).unwrap_err().to_string();
        assert_eq!(err, "network interface nope0 does not exist on the host (INTERFACES of container 'web')");
        assert!(nl.host_link("eth7").is_some());
    }

    #[test]
    fn macvlans_are_made_in_the_namespace_and_go_with_it() {
        let mut nl = FakeNet::new();
        nl.add_plain_link(None, "eth7");
        nl.add_plain_link(None, "enp0s31f6abcd");
        let before = (nl.links.clone(), nl.routes.clone(), nl.netns.clone());
        let mut c = conf();
        c.macvlans = vec!["eth7".into(), "enp0s31f6abcd".into()];
        let plan = Plan::new("web", &c).unwrap();
        setup(&mut nl, &plan).unwrap();
        let id = [7u8; 16];
        add_macvlans(&mut nl, &plan, Some(&id)).unwrap();
        let mv = nl.ns_link(&plan.netns, "mv-eth7").unwrap();
        // Down, for the guest to configure, as nspawn leaves it.
        assert!(!mv.up);
        assert_eq!(mv.lower.as_deref(), Some("eth7"));
        assert_eq!(mv.mac, Some(names::macvlan_mac(&id, "web", 0)));
        let long = nl.ns_link(&plan.netns, "mv-enp0s31fJNwz").unwrap();
        assert_eq!(long.mac, Some(names::macvlan_mac(&id, "web", 1)));
        assert!(nl.host_link("eth7").is_some_and(|l| l.up), "the parent stays on the host as it was");
        assert!(nl.host_link("mv-eth7").is_none());
        teardown(&mut nl, "web").unwrap();
        assert_eq!((nl.links.clone(), nl.routes.clone(), nl.netns.clone()), before);

        // Without a machine ID, the kernel picks the address.
        setup(&mut nl, &plan).unwrap();
        add_macvlans(&mut nl, &plan, None).unwrap();
        assert_eq!(nl.ns_link(&plan.netns, "mv-eth7").unwrap().mac, None);
        teardown(&mut nl, "web").unwrap();
    }

    #[test]
    fn a_missing_macvlan_parent_is_a_clear_error_and_leaves_nothing() {
        let mut nl = FakeNet::new();
        nl.add_plain_link(None, "eth7");
        let before = (nl.links.clone(), nl.routes.clone(), nl.netns.clone());
        let mut c = conf();
        c.macvlans = vec!["eth7".into(), "nope0".into()];
        let plan = Plan::new("web", &c).unwrap();
        setup(&mut nl, &plan).unwrap();
        let err = add_macvlans(&mut nl, &plan, None).unwrap_err().to_string();
        assert_eq!(err, "network interface nope0 does not exist on the host (MACVLANS of container 'web')");
        // What `start` does then.
        roll_back(&mut nl, "web");
        assert_eq!((nl.links.clone(), nl.routes.clone(), nl.netns.clone()), before);

        // A failing kernel call is an error too, and the roll-back the same.
        c.macvlans = vec!["eth7".into()];
        let plan = Plan::new("web", &c).unwrap();
        nl.fail_on = Some("macvlan_add".into());
        setup(&mut nl, &plan).unwrap();
        assert!(add_macvlans(&mut nl, &plan, None).is_err());
        roll_back(&mut nl, "web");
        assert_eq!((nl.links.clone(), nl.routes.clone(), nl.netns.clone()), before);
    }

    #[test]
    fn teardown_removes_everything_and_is_idempotent() {
        let mut nl = FakeNet::new();
        let before = (nl.links.clone(), nl.routes.clone(), nl.netns.clone());
        setup(&mut nl, &Plan::new("web", &conf()).unwrap()).unwrap();
        teardown(&mut nl, "web").unwrap();
        assert_eq!((nl.links.clone(), nl.routes.clone(), nl.netns.clone()), before);
        teardown(&mut nl, "web").unwrap();
        teardown(&mut nl, "never-started").unwrap();
    }

    #[test]
    fn one_containers_teardown_leaves_the_others_alone() {
        let mut nl = FakeNet::new();
        let mut c2 = conf();
        c2.host_address = Some(parse_addr4("10.233.2.1").unwrap());
        c2.local_address = Some(parse_addr4("10.233.2.2").unwrap());
        c2.host_address6 = None;
        c2.local_address6 = None;
        // Names where one is a prefix of the other.
        setup(&mut nl, &Plan::new("web", &conf()).unwrap()).unwrap();
        setup(&mut nl, &Plan::new("web-0", &c2).unwrap()).unwrap();
        teardown(&mut nl, "web").unwrap();
        assert!(nl.host_link("ve-web-0").is_some());
        assert!(nl.netns.contains(&names::netns("web-0")));
        assert_eq!(nl.host_routes().len(), 1);
        assert!(nl.host_link("ve-web").is_none());
    }

    #[test]
    fn every_failing_step_leaves_nothing() {
        let plan = Plan::new(LONG, &Conf { host_port: vec!["8080:80".parse().unwrap()], ..conf() }).unwrap();
        let mut probe = FakeNet::new();
        setup(&mut probe, &plan).unwrap();
        let steps: Vec<String> =
            probe.log.iter().filter(|s| !s.starts_with("netns_del") && !s.starts_with("link_del")).cloned().collect();
        assert!(steps.len() > 10, "{steps:?}");
        for step in steps {
            let mut nl = FakeNet::new();
            let clean = (nl.links.clone(), nl.routes.clone(), nl.netns.clone());
            nl.fail_on = Some(step.clone());
            assert!(setup(&mut nl, &plan).is_err(), "{step}");
            nl.fail_on = None;
            assert_eq!((nl.links.clone(), nl.routes.clone(), nl.netns.clone()), clean, "after failing at {step}");
        }
    }

    #[test]
    fn leftovers_of_a_killed_start_are_released_and_setup_works_again() {
        let plan = Plan::new("web", &conf()).unwrap();
        let mut nl = FakeNet::new();
        // A start killed right after creating the pair.
        nl.netns_add(&plan.netns).unwrap();
        nl.veth_add(&plan.host_if, &plan.netns, "eth0", None).unwrap();
        assert!(setup(&mut nl, &plan).is_err(), "a start without release refuses the existing interface");
        assert!(nl.host_link("ve-web").is_some(), "and leaves it to release");
        teardown(&mut nl, "web").unwrap();
        setup(&mut nl, &plan).unwrap();
        assert!(nl.host_link("ve-web").unwrap().up);
    }

    #[test]
    fn an_interface_marked_as_someone_elses_is_never_deleted() {
        let mut nl = FakeNet::new();
        nl.add_plain_link(None, "ve-web");
        nl.link_set_alias("ve-web", "my own bridge port").unwrap();
        teardown(&mut nl, "web").unwrap();
        assert!(nl.host_link("ve-web").is_some());
        let err = setup(&mut nl, &Plan::new("web", &conf()).unwrap()).unwrap_err().to_string();
        assert!(err.contains("ve-web already exists (alias 'my own bridge port')"), "{err}");
        assert!(nl.host_link("ve-web").is_some());
    }

    #[test]
    fn a_bridge_gets_the_host_side_and_no_host_routes() {
        let mut nl = FakeNet::new();
        nl.add_bridge("br0");
        let mut c = conf();
        c.host_bridge = Some("br0".into());
        c.local_address = Some(parse_addr4("192.168.5.7/24").unwrap());
        c.host_address = Some(parse_addr4("192.168.5.1").unwrap());
        c.host_address6 = None;
        c.local_address6 = None;
        setup(&mut nl, &Plan::new("web", &c).unwrap()).unwrap();
        let host = nl.host_link("ve-web").unwrap();
        assert_eq!(host.master.as_deref(), Some("br0"));
        assert!(host.addrs.is_empty());
        assert!(nl.host_routes().is_empty());
        let guest = nl.routes[&Some(names::netns("web"))].clone();
        let default = guest.iter().find(|r| r.prefix == 0).expect("a default route");
        assert_eq!(default.via, Some(ip("192.168.5.1")));
    }

    #[test]
    fn a_missing_bridge_is_a_clear_error_and_leaves_nothing() {
        let mut nl = FakeNet::new();
        nl.add_plain_link(None, "eth1");
        for (br, msg) in [("br9", "bridge br9 does not exist"), ("eth1", "eth1 is not a bridge")] {
            let c = Conf { host_bridge: Some(br.into()), ..conf() };
            let err = setup(&mut nl, &Plan::new("web", &c).unwrap()).unwrap_err().to_string();
            assert!(err.contains(msg), "{err}");
            assert!(nl.netns.is_empty());
        }
    }

    #[test]
    fn port_forwards_allow_loopback_sources_on_our_interface() {
        let mut nl = FakeNet::new();
        let c = Conf { host_port: vec!["tcp:8080:80".parse().unwrap()], ..conf() };
        setup(&mut nl, &Plan::new("web", &c).unwrap()).unwrap();
        assert_eq!(nl.conf.get(&("ve-web".into(), "route_localnet".into())).map(String::as_str), Some("1"));
    }

    #[test]
    fn no_private_network_no_plan() {
        assert_eq!(Plan::new("web", &Conf::default()), None);
        let c = Conf { network_namespace_path: Some("/run/netns/mine".into()), ..conf() };
        assert_eq!(Plan::new("web", &c), None);
    }

    fn fresh() -> Conf {
        Conf { private_network: true, ..Conf::default() }
    }

    #[test]
    fn assign_fills_both_families_and_skips_what_is_taken_or_used() {
        let mut nl = FakeNet::new();
        nl.host_use.insert(ip("10.233.2.1"), InUse::Local);
        nl.host_use.insert(ip("fd6e:6978:6f73:1::2"), InUse::Routed { prefix: 64 });
        let mut taken = Taken::default();
        taken.add("old", &conf());
        let mut c = fresh();
        assign(&mut c, &taken, &mut nl, Default::default(), true).unwrap();
        assert_eq!(c.host_address.unwrap().to_string(), "10.233.3.1");
        assert_eq!(c.local_address.unwrap().to_string(), "10.233.3.2");
        assert_eq!(c.host_address6.unwrap().to_string(), "fd6e:6978:6f73:2::1");
        assert_eq!(c.local_address6.unwrap().to_string(), "fd6e:6978:6f73:2::2");
        let mut c = fresh();
        assign(&mut c, &taken, &mut nl, Default::default(), false).unwrap();
        assert_eq!(c.local_address6, None, "no IPv6 on a host without it");
    }

    #[test]
    fn given_addresses_that_clash_are_refused_clearly() {
        let mut nl = FakeNet::new();
        nl.host_use.insert(ip("192.0.2.2"), InUse::Local);
        nl.host_use.insert(ip("192.0.2.7"), InUse::Routed { prefix: 24 });
        let mut taken = Taken::default();
        taken.add("old", &conf());
        let cases = [
            (
                "192.0.2.2",
                "10.9.9.2",
                "invalid host address '192.0.2.2': it is already an address of this host; choose another",
            ),
            (
                "10.9.9.1",
                "192.0.2.7",
                "invalid local address '192.0.2.7': the host already routes 192.0.2.0/24 elsewhere; choose another",
            ),
            ("10.9.9.1", "10.233.1.2", "invalid local address '10.233.1.2': another container has it; choose another"),
        ];
        for (h, l, msg) in cases {
            let mut c = Conf {
                host_address: Some(parse_addr4(h).unwrap()),
                local_address: Some(parse_addr4(l).unwrap()),
                ..fresh()
            };
            let err = assign(&mut c, &taken, &mut nl, Default::default(), false).unwrap_err();
            assert_eq!(err.to_string(), msg);
            assert_eq!(err.exit_code(), crate::error::exit::USAGE);
        }
        // On a bridge, the bridge's subnet is where the container belongs.
        let mut c = Conf {
            host_bridge: Some("br0".into()),
            local_address: Some(parse_addr4("192.0.2.7/24").unwrap()),
            ..fresh()
        };
        assign(&mut c, &taken, &mut nl, Default::default(), true).unwrap();
        assert_eq!(c.host_address, None);
        assert_eq!(c.local_address6, None);
    }

    #[test]
    fn interface_names_and_host_ports_are_not_shared() {
        let mut taken = Taken::default();
        taken.add("web", &Conf { host_port: vec!["tcp:8080:80".parse().unwrap()], ..conf() });
        let c = Conf { host_port: vec!["udp:8080".parse().unwrap()], ..conf() };
        check_new("web2", &c, &taken).unwrap();
        let c = Conf { host_port: vec!["8080:81".parse().unwrap()], ..conf() };
        let err = check_new("web2", &c, &taken).unwrap_err().to_string();
        assert_eq!(err, "invalid port 'tcp:8080:81': container 'web' already forwards host port 8080; choose another");
        // Two long names whose interfaces would meet: find such a pair.
        let mut seen = std::collections::HashMap::new();
        let (a, b) = (0u32..)
            .map(|i| format!("abcde-long-name-{i}"))
            .find_map(|n| seen.insert(names::host_ifname(&n), n.clone()).map(|o| (o, n)))
            .unwrap();
        let mut taken = Taken::default();
        taken.add(&a, &fresh());
        let err = check_new(&b, &fresh(), &taken).unwrap_err().to_string();
        assert!(err.contains(&format!("which container '{a}' has; choose another name")), "{err}");
    }

    #[test]
    fn conflicts_are_explained() {
        let mut nl = FakeNet::new();
        nl.host_use.insert(ip("10.233.1.1"), InUse::Local);
        nl.host_use.insert(ip("10.233.9.9"), InUse::Routed { prefix: 16 });
        let explain = |nl: &mut FakeNet, a: &str| nl.in_use(ip(a)).unwrap().map(|u| conflict(ip(a), &u));
        assert_eq!(explain(&mut nl, "10.233.1.1").unwrap(), "it is already an address of this host");
        assert_eq!(explain(&mut nl, "10.233.9.9").unwrap(), "the host already routes 10.233.0.0/16 elsewhere");
        assert_eq!(explain(&mut nl, "10.233.1.2"), None);
    }
}
