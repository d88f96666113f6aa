//! The kernel operations a container's network needs, as a trait, and its
//! real implementation over rtnetlink.
//!
//! `net::setup`/`net::teardown` speak only to the trait, so their logic is
//! unit-tested against `fake::FakeNet`. `RtNetlink` runs each request on a
//! current-thread tokio runtime that it creates itself; nothing else in
//! the program is async.

use std::collections::HashMap;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo as NlLinkInfo, MacVlanMode};
use rtnetlink::packet_route::route::{RouteFlags, RouteScope, RouteType};
use rtnetlink::{Handle, LinkMacVlan, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder};

use crate::error::{Error, IoContext, Result};

/// Which network namespace an operation applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ns<'a> {
    Host,
    /// A named namespace, `/run/netns/NAME`.
    Named(&'a str),
}

/// What the setup needs to know about an existing interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub alias: Option<String>,
    pub is_bridge: bool,
}

/// A route: `dst/prefix dev DEV [via GATEWAY]`; a default route has prefix 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpAddr,
    pub prefix: u8,
    pub dev: String,
    pub via: Option<IpAddr>,
}

/// What the host's routing already has for an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InUse {
    /// A local address of the host.
    Local,
    /// A route more specific than the default route covers it.
    Routed { prefix: u8 },
}

pub trait Netlink {
    /// Creates `/run/netns/NAME`; fails if it exists.
    fn netns_add(&mut self, name: &str) -> Result<()>;
    /// Removes `/run/netns/NAME`; nothing to do when it is absent.
    fn netns_del(&mut self, name: &str) -> Result<()>;
    fn netns_path(&self, name: &str) -> PathBuf {
        Path::new(NETNS_DIR).join(name)
    }
    fn link(&mut self, ns: Ns<'_>, name: &str) -> Result<Option<Link>>;
    /// Creates a veth pair: `host` in the host's namespace, `peer` directly
    /// in namespace `peer_ns`.
    fn veth_add(&mut self, host: &str, peer_ns: &str, peer: &str, peer_mac: Option<[u8; 6]>) -> Result<()>;
    /// Deletes a host interface (a veth's peer goes with it); nothing to do
    /// when it is absent.
    /// Deletes the host interface `link` (as `link()` found it, so that what
    /// was checked is what goes; `name` is for messages).
    fn link_del(&mut self, link: &Link, name: &str) -> Result<()>;
    fn link_up(&mut self, ns: Ns<'_>, name: &str) -> Result<()>;
    fn link_set_alias(&mut self, name: &str, alias: &str) -> Result<()>;
    fn link_add_altname(&mut self, name: &str, altname: &str) -> Result<()>;
    fn link_set_master(&mut self, name: &str, bridge: &str) -> Result<()>;
    /// Creates macvlan interface `name` (mode bridge, as nspawn makes them)
    /// on the host interface `parent` (as `link()` found it; `parent_name`
    /// is for messages), directly in namespace `ns`, with address `mac` (or
    /// one the kernel picks). It is left down, for the guest to configure.
    fn macvlan_add(
        &mut self,
        parent: &Link,
        parent_name: &str,
        ns: &str,
        name: &str,
        mac: Option<[u8; 6]>,
    ) -> Result<()>;
    /// Moves interface `link` (as `link()` found it in `from`; `name` is for
    /// messages) into namespace `to`, keeping its name.
    fn link_move(&mut self, from: Ns<'_>, link: &Link, name: &str, to: Ns<'_>) -> Result<()>;
    fn addr_add(&mut self, ns: Ns<'_>, dev: &str, addr: IpAddr, prefix: u8) -> Result<()>;
    fn route_add(&mut self, ns: Ns<'_>, route: &Route) -> Result<()>;
    /// How the host's routing covers `addr`, ignoring default routes: one
    /// lookup, whatever the size of the routing tables.
    fn in_use(&mut self, addr: IpAddr) -> Result<Option<InUse>>;
    /// Sets `net.ipv4.conf.DEV.KEY` of a host interface.
    fn ipv4_conf(&mut self, dev: &str, key: &str, value: &str) -> Result<()>;
    /// Whether IPv6 works on the host's interface `dev` (else: on the host
    /// at all). It can be off for the host (`ipv6.disable=1` at boot) or
    /// for its interfaces (`net.ipv6.conf.*.disable_ipv6=1`).
    fn ipv6_enabled(&mut self, dev: Option<&str>) -> bool;
}

pub const NETNS_DIR: &str = "/run/netns";

/// The real thing.
pub struct RtNetlink {
    rt: tokio::runtime::Runtime,
    host: Handle,
    named: HashMap<String, Handle>,
}

fn nl_err(what: impl Into<String>, e: rtnetlink::Error) -> Error {
    let what = what.into();
    match errno_of(&e) {
        Some(code) => Error::Io { context: what, source: std::io::Error::from_raw_os_error(code) },
        None => Error::other(format!("{what}: {e}")),
    }
}

fn errno_of(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

fn connect(rt: &tokio::runtime::Runtime) -> Result<Handle> {
    let _in_rt = rt.enter();
    let (conn, handle, _) = rtnetlink::new_connection().context(|| "opening a netlink socket".into())?;
    rt.spawn(conn);
    Ok(handle)
}

impl RtNetlink {
    pub fn new() -> Result<RtNetlink> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .context(|| "creating the netlink runtime".into())?;
        let host = connect(&rt)?;
        Ok(RtNetlink { rt, host, named: HashMap::new() })
    }

    /// A netlink socket inside namespace `ns`: a socket belongs to the
    /// namespace of the thread that opens it, so a short-lived thread joins
    /// the namespace and opens it there.
    fn handle(&mut self, ns: Ns<'_>) -> Result<Handle> {
        let name = match ns {
            Ns::Host => return Ok(self.host.clone()),
            Ns::Named(n) => n,
        };
        if let Some(h) = self.named.get(name) {
            return Ok(h.clone());
        }
        let path = self.netns_path(name);
        let file = File::open(&path).context(|| format!("opening {}", path.display()))?;
        let rt = self.rt.handle().clone();
        let joined = std::thread::spawn(move || -> std::io::Result<_> {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)?;
            let _in_rt = rt.enter();
            rtnetlink::new_connection()
        })
        .join()
        .map_err(|_| Error::other("the thread joining a network namespace panicked"))?;
        let (conn, handle, _) = joined.context(|| format!("opening a netlink socket in {}", path.display()))?;
        self.rt.spawn(conn);
        self.named.insert(name.to_string(), handle.clone());
        Ok(handle)
    }

    fn index(&mut self, ns: Ns<'_>, name: &str) -> Result<u32> {
        match self.link(ns, name)? {
            Some(l) => Ok(l.index),
            None => Err(Error::NoInterface { ifname: name.to_string(), wanted_by: None }),
        }
    }
}

/// Makes `/run/netns` a shared mount point as `ip netns add` does, so that
/// namespaces mounted there are seen in mount namespaces made later.
fn prepare_netns_dir() -> Result<()> {
    use nix::mount::{MsFlags, mount};
    let dir = Path::new(NETNS_DIR);
    std::fs::create_dir_all(dir).context(|| format!("creating {NETNS_DIR}"))?;
    let shared = || mount(None::<&str>, dir, Some("none"), MsFlags::MS_SHARED | MsFlags::MS_REC, None::<&str>);
    match shared() {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) => {
            // Not a mount point yet: make it one.
            mount(Some(dir), dir, Some("none"), MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                .context(|| format!("bind-mounting {NETNS_DIR}"))?;
            shared().context(|| format!("making {NETNS_DIR} shared"))
        }
        Err(e) => Err(e).context(|| format!("making {NETNS_DIR} shared")),
    }
}

impl Netlink for RtNetlink {
    fn netns_add(&mut self, name: &str) -> Result<()> {
        prepare_netns_dir()?;
        let path = self.netns_path(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .context(|| format!("creating {}", path.display()))?;
        let target = path.clone();
        let made = std::thread::spawn(move || -> nix::Result<()> {
            // unshare affects this thread only; the thread then ends.
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
            nix::mount::mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
        })
        .join()
        .map_err(|_| Error::other("the thread creating a network namespace panicked"))?;
        if let Err(e) = made {
            let _ = std::fs::remove_file(&path);
            return Err(e).context(|| format!("creating network namespace {}", path.display()));
        }
        Ok(())
    }

    fn netns_del(&mut self, name: &str) -> Result<()> {
        self.named.remove(name);
        let path = self.netns_path(name);
        match nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::ENOENT | nix::errno::Errno::EINVAL) => {}
            Err(e) => return Err(e).context(|| format!("unmounting {}", path.display())),
        }
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        }
    }

    fn link(&mut self, ns: Ns<'_>, name: &str) -> Result<Option<Link>> {
        let h = self.handle(ns)?;
        let found = self.rt.block_on(async { h.link().get().match_name(name.to_string()).execute().try_next().await });
        match found {
            Ok(Some(msg)) => {
                let mut link = Link { index: msg.header.index, alias: None, is_bridge: false };
                for a in msg.attributes {
                    match a {
                        LinkAttribute::IfAlias(s) => link.alias = Some(s),
                        LinkAttribute::LinkInfo(infos) => {
                            link.is_bridge |= infos.iter().any(|i| matches!(i, NlLinkInfo::Kind(InfoKind::Bridge)))
                        }
                        _ => {}
                    }
                }
                Ok(Some(link))
            }
            Ok(None) => Ok(None),
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(nl_err(format!("looking up interface {name}"), e)),
        }
    }

    fn veth_add(&mut self, host: &str, peer_ns: &str, peer: &str, peer_mac: Option<[u8; 6]>) -> Result<()> {
        let path = self.netns_path(peer_ns);
        let ns = File::open(&path).context(|| format!("opening {}", path.display()))?;
        let mut peer_msg = LinkMessageBuilder::<LinkUnspec>::new().name(peer.to_string()).setns_by_fd(ns.as_raw_fd());
        if let Some(mac) = peer_mac {
            peer_msg = peer_msg.address(mac.to_vec());
        }
        let peer_msg = peer_msg.build();
        let msg = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
            .name(host.to_string())
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
            .build();
        let h = self.host.clone();
        self.rt
            .block_on(async { h.link().add(msg).execute().await })
            .map_err(|e| nl_err(format!("creating veth pair {host}/{peer}"), e))
    }

    fn link_del(&mut self, link: &Link, name: &str) -> Result<()> {
        let h = self.host.clone();
        match self.rt.block_on(async { h.link().del(link.index).execute().await }) {
            Err(e) if errno_of(&e) != Some(libc::ENODEV) => Err(nl_err(format!("deleting interface {name}"), e)),
            _ => Ok(()),
        }
    }

    fn link_up(&mut self, ns: Ns<'_>, name: &str) -> Result<()> {
        let index = self.index(ns, name)?;
        let h = self.handle(ns)?;
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.rt
            .block_on(async { h.link().set(msg).execute().await })
            .map_err(|e| nl_err(format!("bringing {name} up"), e))
    }

    fn link_set_alias(&mut self, name: &str, alias: &str) -> Result<()> {
        let index = self.index(Ns::Host, name)?;
        let msg = LinkUnspec::new_with_index(index).alias(alias.to_string()).build();
        let h = self.host.clone();
        self.rt
            .block_on(async { h.link().set(msg).execute().await })
            .map_err(|e| nl_err(format!("setting the alias of {name}"), e))
    }

    fn link_add_altname(&mut self, name: &str, altname: &str) -> Result<()> {
        let index = self.index(Ns::Host, name)?;
        let h = self.host.clone();
        self.rt
            .block_on(async { h.link().property_add(index).alt_ifname(&[altname]).execute().await })
            .map_err(|e| nl_err(format!("adding altname {altname} to {name}"), e))
    }

    fn link_set_master(&mut self, name: &str, bridge: &str) -> Result<()> {
        let index = self.index(Ns::Host, name)?;
        let master = self.index(Ns::Host, bridge)?;
        let msg = LinkUnspec::new_with_index(index).controller(master).build();
        let h = self.host.clone();
        self.rt
            .block_on(async { h.link().set(msg).execute().await })
            .map_err(|e| nl_err(format!("attaching {name} to bridge {bridge}"), e))
    }

    fn macvlan_add(
        &mut self,
        parent: &Link,
        parent_name: &str,
        ns: &str,
        name: &str,
        mac: Option<[u8; 6]>,
    ) -> Result<()> {
        let path = self.netns_path(ns);
        let ns_file = File::open(&path).context(|| format!("opening {}", path.display()))?;
        let mut msg = LinkMacVlan::new(name, parent.index, MacVlanMode::Bridge).setns_by_fd(ns_file.as_raw_fd());
        if let Some(mac) = mac {
            msg = msg.address(mac.to_vec());
        }
        let msg = msg.build();
        let h = self.host.clone();
        self.rt
            .block_on(async { h.link().add(msg).execute().await })
            .map_err(|e| nl_err(format!("creating macvlan {name} on {parent_name}"), e))
    }

    fn link_move(&mut self, from: Ns<'_>, link: &Link, name: &str, to: Ns<'_>) -> Result<()> {
        // The host is the namespace of this thread (never a named one's).
        let target = match to {
            Ns::Host => PathBuf::from("/proc/thread-self/ns/net"),
            Ns::Named(n) => self.netns_path(n),
        };
        let ns = File::open(&target).context(|| format!("opening {}", target.display()))?;
        let h = self.handle(from)?;
        let msg = LinkUnspec::new_with_index(link.index).setns_by_fd(ns.as_raw_fd()).build();
        self.rt
            .block_on(async { h.link().set(msg).execute().await })
            .map_err(|e| nl_err(format!("moving interface {name} to {}", target.display()), e))
    }

    fn addr_add(&mut self, ns: Ns<'_>, dev: &str, addr: IpAddr, prefix: u8) -> Result<()> {
        let index = self.index(ns, dev)?;
        let h = self.handle(ns)?;
        let mut req = h.address().add(index, addr, prefix);
        if addr.is_ipv6() {
            // Usable at once: duplicate address detection on a point-to-point
            // veth would only delay the container's first packets.
            req.message_mut().attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        self.rt
            .block_on(async { req.execute().await })
            .map_err(|e| nl_err(format!("adding address {addr}/{prefix} to {dev}"), e))
    }

    fn route_add(&mut self, ns: Ns<'_>, r: &Route) -> Result<()> {
        let index = self.index(ns, &r.dev)?;
        let h = self.handle(ns)?;
        let msg = match (r.dst, r.via) {
            (IpAddr::V4(dst), via) => {
                let mut b =
                    RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(dst, r.prefix).output_interface(index);
                match via {
                    Some(IpAddr::V4(g)) => b = b.gateway(g),
                    // A directly reachable destination, as `ip route add X dev D`
                    // makes it: gateways must be reachable through such routes.
                    _ => b = b.scope(RouteScope::Link),
                }
                b.build()
            }
            (IpAddr::V6(dst), via) => {
                let mut b =
                    RouteMessageBuilder::<Ipv6Addr>::new().destination_prefix(dst, r.prefix).output_interface(index);
                if let Some(IpAddr::V6(g)) = via {
                    b = b.gateway(g);
                }
                b.build()
            }
        };
        let what = match r.via {
            Some(g) => format!("adding route {}/{} via {g} dev {}", r.dst, r.prefix, r.dev),
            None => format!("adding route {}/{} dev {}", r.dst, r.prefix, r.dev),
        };
        self.rt.block_on(async { h.route().add(msg).execute().await }).map_err(|e| nl_err(what, e))
    }

    fn in_use(&mut self, addr: IpAddr) -> Result<Option<InUse>> {
        let mut msg = match addr {
            IpAddr::V4(a) => RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(a, 32).build(),
            IpAddr::V6(a) => RouteMessageBuilder::<Ipv6Addr>::new().destination_prefix(a, 128).build(),
        };
        // The matching FIB entry itself (with its prefix), not a clone for
        // the destination: `ip route get fibmatch`.
        msg.header.flags = RouteFlags::FibMatch;
        let h = self.host.clone();
        let found = self.rt.block_on(async { h.route().get(msg).execute().try_next().await });
        match found {
            Ok(Some(r)) => Ok(match r.header.kind {
                RouteType::Local => Some(InUse::Local),
                _ if r.header.destination_prefix_length == 0 => None,
                RouteType::Unicast | RouteType::Broadcast | RouteType::Anycast | RouteType::Multicast => {
                    Some(InUse::Routed { prefix: r.header.destination_prefix_length })
                }
                // Blackhole, unreachable, prohibit: an admin's statement that
                // this range is not to be used.
                _ => Some(InUse::Routed { prefix: r.header.destination_prefix_length }),
            }),
            Ok(None) => Ok(None),
            Err(e)
                if matches!(
                    errno_of(&e),
                    Some(libc::ENETUNREACH | libc::EHOSTUNREACH | libc::ENOENT | libc::ESRCH)
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(nl_err(format!("looking up the route to {addr}"), e)),
        }
    }

    fn ipv4_conf(&mut self, dev: &str, key: &str, value: &str) -> Result<()> {
        let path = Path::new("/proc/sys/net/ipv4/conf").join(dev).join(key);
        std::fs::write(&path, value).context(|| format!("writing {}", path.display()))
    }

    fn ipv6_enabled(&mut self, dev: Option<&str>) -> bool {
        match dev {
            // A new interface takes `default`'s setting, or `all`'s.
            Some(dev) => std::fs::read_to_string(Path::new("/proc/sys/net/ipv6/conf").join(dev).join("disable_ipv6"))
                .is_ok_and(|s| s.trim() == "0"),
            None => Path::new("/proc/sys/net/ipv6").exists(),
        }
    }
}
