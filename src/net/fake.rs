//! An in-memory stand-in for the kernel, for unit tests of the setup and
//! teardown logic. It keeps the rules that matter to that logic: names are
//! unique per namespace, a veth's peer goes when either end goes, an
//! interface goes with its namespace, routes need an interface that is up
//! and are unique, an address with a prefix brings the route to its subnet.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::netlink::{InUse, Link, Netlink, Ns, Route};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeLink {
    pub index: u32,
    pub up: bool,
    pub alias: Option<String>,
    pub altnames: Vec<String>,
    pub master: Option<String>,
    pub bridge: bool,
    pub addrs: Vec<(IpAddr, u8)>,
    pub mac: Option<[u8; 6]>,
    /// The other end of a veth: (namespace, name); None = host.
    pub peer: Option<(Option<String>, String)>,
    /// The host interface a macvlan sits on.
    pub lower: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct FakeNet {
    pub netns: BTreeSet<String>,
    /// Interfaces per namespace (None = the host's).
    pub links: BTreeMap<Option<String>, BTreeMap<String, FakeLink>>,
    pub routes: BTreeMap<Option<String>, Vec<Route>>,
    pub conf: BTreeMap<(String, String), String>,
    /// What `in_use` answers for given addresses.
    pub host_use: BTreeMap<IpAddr, InUse>,
    /// IPv6 is off (`disable_ipv6=1`): v6 addresses are refused as the
    /// kernel refuses them (EACCES).
    pub ipv6_disabled: bool,
    /// Fail the operation whose log entry starts with this.
    pub fail_on: Option<String>,
    pub log: Vec<String>,
    next_index: u32,
}

fn key(ns: Ns<'_>) -> Option<String> {
    match ns {
        Ns::Host => None,
        Ns::Named(n) => Some(n.to_string()),
    }
}

impl FakeNet {
    pub fn new() -> FakeNet {
        let mut f = FakeNet::default();
        f.links.insert(None, BTreeMap::new());
        f.add_plain_link(None, "lo");
        f.add_plain_link(None, "eth0");
        f
    }

    pub fn add_plain_link(&mut self, ns: Option<&str>, name: &str) {
        self.next_index += 1;
        let link = FakeLink { index: self.next_index, up: true, ..FakeLink::default() };
        self.links.entry(ns.map(str::to_string)).or_default().insert(name.to_string(), link);
    }

    pub fn add_bridge(&mut self, name: &str) {
        self.add_plain_link(None, name);
        self.links.get_mut(&None).unwrap().get_mut(name).unwrap().bridge = true;
    }

    pub fn host_link(&self, name: &str) -> Option<&FakeLink> {
        self.links.get(&None).and_then(|l| l.get(name))
    }

    pub fn ns_link(&self, ns: &str, name: &str) -> Option<&FakeLink> {
        self.links.get(&Some(ns.to_string())).and_then(|l| l.get(name))
    }

    pub fn host_routes(&self) -> Vec<Route> {
        self.routes.get(&None).cloned().unwrap_or_default()
    }

    fn step(&mut self, entry: String) -> Result<()> {
        let fail = self.fail_on.as_deref().is_some_and(|f| entry.starts_with(f));
        self.log.push(entry.clone());
        if fail {
            return Err(Error::other(format!("injected failure: {entry}")));
        }
        Ok(())
    }

    fn get_mut(&mut self, ns: Ns<'_>, name: &str) -> Result<&mut FakeLink> {
        self.links
            .get_mut(&key(ns))
            .and_then(|l| l.get_mut(name))
            .ok_or_else(|| Error::NoInterface { ifname: name.to_string(), wanted_by: None })
    }

    fn remove_link(&mut self, ns: Option<String>, name: &str) {
        let Some(link) = self.links.get_mut(&ns).and_then(|l| l.remove(name)) else { return };
        if let Some(routes) = self.routes.get_mut(&ns) {
            routes.retain(|r| r.dev != name);
            if routes.is_empty() {
                self.routes.remove(&ns);
            }
        }
        if let Some((pns, pname)) = link.peer {
            self.remove_link(pns, &pname);
        }
    }
}

impl Netlink for FakeNet {
    fn netns_add(&mut self, name: &str) -> Result<()> {
        self.step(format!("netns_add {name}"))?;
        if !self.netns.insert(name.to_string()) {
            return Err(Error::other(format!("netns {name} exists")));
        }
        self.add_plain_link(Some(name), "lo");
        self.links.get_mut(&Some(name.to_string())).unwrap().get_mut("lo").unwrap().up = false;
        Ok(())
    }

    fn netns_del(&mut self, name: &str) -> Result<()> {
        self.step(format!("netns_del {name}"))?;
        self.netns.remove(name);
        let ns = Some(name.to_string());
        let names: Vec<String> = self.links.get(&ns).map(|l| l.keys().cloned().collect()).unwrap_or_default();
        for n in names {
            self.remove_link(ns.clone(), &n);
        }
        self.links.remove(&ns);
        self.routes.remove(&ns);
        Ok(())
    }

    fn link(&mut self, ns: Ns<'_>, name: &str) -> Result<Option<Link>> {
        Ok(self.links.get(&key(ns)).and_then(|l| l.get(name)).map(|l| Link {
            index: l.index,
            alias: l.alias.clone(),
            is_bridge: l.bridge,
        }))
    }

    fn veth_add(&mut self, host: &str, peer_ns: &str, peer: &str, peer_mac: Option<[u8; 6]>) -> Result<()> {
        self.step(format!("veth_add {host} {peer_ns} {peer}"))?;
        if !self.netns.contains(peer_ns) {
            return Err(Error::other(format!("no netns {peer_ns}")));
        }
        if self.host_link(host).is_some() || self.ns_link(peer_ns, peer).is_some() {
            return Err(Error::other("File exists (os error 17)"));
        }
        self.add_plain_link(None, host);
        self.add_plain_link(Some(peer_ns), peer);
        let h = self.get_mut(Ns::Host, host)?;
        h.up = false;
        h.peer = Some((Some(peer_ns.to_string()), peer.to_string()));
        let p = self.get_mut(Ns::Named(peer_ns), peer)?;
        p.up = false;
        p.mac = peer_mac;
        p.peer = Some((None, host.to_string()));
        Ok(())
    }

    fn link_del(&mut self, link: &Link, name: &str) -> Result<()> {
        self.step(format!("link_del {name}"))?;
        // By index, as the kernel does: an interface of that name made
        // since the lookup is not the one deleted.
        let found =
            self.links.get(&None).and_then(|l| l.iter().find(|(_, l)| l.index == link.index)).map(|(n, _)| n.clone());
        if let Some(n) = found {
            self.remove_link(None, &n);
        }
        Ok(())
    }

    fn link_up(&mut self, ns: Ns<'_>, name: &str) -> Result<()> {
        self.step(format!("link_up {ns:?} {name}"))?;
        self.get_mut(ns, name)?.up = true;
        Ok(())
    }

    fn link_set_alias(&mut self, name: &str, alias: &str) -> Result<()> {
        self.step(format!("link_set_alias {name} {alias}"))?;
        self.get_mut(Ns::Host, name)?.alias = Some(alias.to_string());
        Ok(())
    }

    fn link_add_altname(&mut self, name: &str, altname: &str) -> Result<()> {
        self.step(format!("link_add_altname {name} {altname}"))?;
        self.get_mut(Ns::Host, name)?.altnames.push(altname.to_string());
        Ok(())
    }

    fn link_set_master(&mut self, name: &str, bridge: &str) -> Result<()> {
        self.step(format!("link_set_master {name} {bridge}"))?;
        if !self.host_link(bridge).is_some_and(|b| b.bridge) {
            return Err(Error::other(format!("{bridge} is not a bridge")));
        }
        self.get_mut(Ns::Host, name)?.master = Some(bridge.to_string());
        Ok(())
    }

    fn macvlan_add(
        &mut self,
        parent: &Link,
        parent_name: &str,
        ns: &str,
        name: &str,
        mac: Option<[u8; 6]>,
    ) -> Result<()> {
        self.step(format!("macvlan_add {parent_name} {ns} {name}"))?;
        if !self.netns.contains(ns) {
            return Err(Error::other(format!("no netns {ns}")));
        }
        if self.host_link(parent_name).is_none_or(|l| l.index != parent.index) {
            return Err(Error::other("No such device (os error 19)"));
        }
        if self.ns_link(ns, name).is_some() {
            return Err(Error::other("File exists (os error 17)"));
        }
        self.add_plain_link(Some(ns), name);
        let link = self.get_mut(Ns::Named(ns), name)?;
        // Like the kernel: a new link is down.
        link.up = false;
        link.mac = mac;
        link.lower = Some(parent_name.to_string());
        Ok(())
    }

    fn link_move(&mut self, from: Ns<'_>, link: &Link, name: &str, to: Ns<'_>) -> Result<()> {
        self.step(format!("link_move {from:?} {name} {to:?}"))?;
        if let Ns::Named(n) = to
            && !self.netns.contains(n)
        {
            return Err(Error::other(format!("no netns {n}")));
        }
        if self.links.get(&key(to)).is_some_and(|l| l.contains_key(name)) {
            return Err(Error::other("File exists (os error 17)"));
        }
        let found = self.links.get(&key(from)).and_then(|l| l.get(name)).filter(|l| l.index == link.index).cloned();
        let Some(moved) = found else { return Err(Error::other("No such device (os error 19)")) };
        self.links.get_mut(&key(from)).unwrap().remove(name);
        // Like the kernel: addresses and routes stay behind, the link is down.
        let moved = FakeLink { up: false, addrs: Vec::new(), ..moved };
        self.links.entry(key(to)).or_default().insert(name.to_string(), moved);
        Ok(())
    }

    fn addr_add(&mut self, ns: Ns<'_>, dev: &str, addr: IpAddr, prefix: u8) -> Result<()> {
        self.step(format!("addr_add {ns:?} {dev} {addr}/{prefix}"))?;
        if addr.is_ipv6() && self.ipv6_disabled && ns == Ns::Host {
            return Err(Error::other(format!("adding {addr}/{prefix} to {dev}: Permission denied (os error 13)")));
        }
        self.get_mut(ns, dev)?.addrs.push((addr, prefix));
        // Like the kernel: an address with a prefix routes its subnet.
        if prefix < if addr.is_ipv4() { 32 } else { 128 } {
            let dst = super::network(addr, prefix);
            self.routes.entry(key(ns)).or_default().push(Route { dst, prefix, dev: dev.to_string(), via: None });
        }
        Ok(())
    }

    fn route_add(&mut self, ns: Ns<'_>, route: &Route) -> Result<()> {
        self.step(format!("route_add {ns:?} {}/{} {}", route.dst, route.prefix, route.dev))?;
        if !self.get_mut(ns, &route.dev)?.up {
            return Err(Error::other("Network is down (os error 100)"));
        }
        let routes = self.routes.entry(key(ns)).or_default();
        if routes.iter().any(|r| r.dst == route.dst && r.prefix == route.prefix) {
            return Err(Error::other("File exists (os error 17)"));
        }
        routes.push(route.clone());
        Ok(())
    }

    fn in_use(&mut self, addr: IpAddr) -> Result<Option<InUse>> {
        if let Some(u) = self.host_use.get(&addr) {
            return Ok(Some(u.clone()));
        }
        let local = self.links.get(&None).is_some_and(|l| l.values().any(|l| l.addrs.iter().any(|(a, _)| *a == addr)));
        if local {
            return Ok(Some(InUse::Local));
        }
        Ok(self
            .host_routes()
            .iter()
            .find(|r| r.prefix > 0 && r.dst == addr)
            .map(|r| InUse::Routed { prefix: r.prefix }))
    }

    fn ipv4_conf(&mut self, dev: &str, key: &str, value: &str) -> Result<()> {
        self.step(format!("ipv4_conf {dev} {key}={value}"))?;
        self.get_mut(Ns::Host, dev)?;
        self.conf.insert((dev.to_string(), key.to_string()), value.to_string());
        Ok(())
    }

    fn ipv6_enabled(&mut self, _dev: Option<&str>) -> bool {
        !self.ipv6_disabled
    }
}
