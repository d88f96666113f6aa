//! Private networking against real namespaces, veths, nftables and guests.

mod common;

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use nixos_container::net::names;

/// Network objects a test makes for itself (a peer namespace, a bridge, a
/// dummy interface); removed on drop, also when the test panics.
#[derive(Default)]
struct TestNet {
    netns: Vec<String>,
    links: Vec<String>,
}

impl TestNet {
    fn netns(&mut self, name: &str) {
        sh(&["ip", "netns", "add", name]);
        self.netns.push(name.to_string());
    }

    fn link(&mut self, args: &[&str]) {
        let mut cmd = vec!["ip", "link", "add"];
        cmd.extend(args);
        sh(&cmd);
        self.links.push(args[0].to_string());
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for l in &self.links {
            let _ = Command::new("ip").args(["link", "del", l]).stderr(Stdio::null()).status();
        }
        for n in &self.netns {
            let _ = Command::new("ip").args(["netns", "del", n]).stderr(Stdio::null()).status();
        }
    }
}

/// Runs a command and fails the test unless it succeeds; returns stdout.
fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(out.status.success(), "{args:?} failed: {}{}", stdout(&out), stderr(&out));
    stdout(&out)
}

/// A name of exactly `len` characters, unique to this test run.
fn name_of_len(env: &Env, short: &str, len: usize) -> String {
    let base = env.name(short);
    let name = format!("{base}{}", "x".repeat(len - base.len()));
    env.track(&name);
    assert_eq!(name.len(), len);
    name
}

/// Serves `text` over HTTP on TCP port `port` inside the guest, with the
/// host's busybox (the guest sees the host's /usr).
fn serve_in_guest(env: &Env, name: &str, port: u16, text: &str) {
    env.ok([
        "run",
        name,
        "--",
        "sh",
        "-c",
        &format!(
            "mkdir -p /srv/www && echo {text} > /srv/www/index.html && \
             systemd-run --unit=web-{port} busybox httpd -f -p {port} -h /srv/www"
        ),
    ]);
}

/// Waits (boundedly) for the guest's service to answer at `addr`.
fn get_eventually(addr: SocketAddr) -> String {
    wait_for(Duration::from_secs(60), || http_get(addr).ok().filter(|b| b.contains("200 OK")))
        .unwrap_or_else(|| panic!("nothing answered HTTP at {addr}: {:?}", http_get(addr)))
}

/// Runs `f` on a thread that has joined network namespace `netns`.
fn in_netns<T: Send + 'static>(netns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = std::fs::File::open(format!("/run/netns/{netns}")).unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn a_container_with_a_35_character_name_gets_a_private_network() {
    let env = Env::new();
    let name = name_of_len(&env, "net", 35);
    env.create(&name, &[]);
    let host = conf_value(&env, &name, "HOST_ADDRESS");
    let local = conf_value(&env, &name, "LOCAL_ADDRESS");
    let host6 = conf_value(&env, &name, "HOST_ADDRESS6");
    let local6 = conf_value(&env, &name, "LOCAL_ADDRESS6");
    assert_eq!(local, format!("10.{}.1.2", env.pool));
    assert!(local6.starts_with(&env.pool6().replace("::/48", ":")), "{local6}");
    assert_eq!(env.ok(["show-ip", &name]), format!("{local}\n"));
    env.ok(["start", &name]);

    // The host side: named within IFNAMSIZ, recognisable by altname and alias.
    let ifname = names::host_ifname(&name);
    assert!(ifname.len() <= 15);
    let link = sh(&["ip", "link", "show", "dev", &format!("ve-{name}")]);
    assert!(link.contains(&format!(": {ifname}@")), "{link}");
    assert!(link.contains(&format!("alias nixos-container {name}")), "{link}");
    // `ip netns` sees the namespace, so admins can debug in it.
    assert!(sh(&["ip", "netns", "list"]).lines().any(|l| l.starts_with(&names::netns(&name))));
    let inside = sh(&["ip", "netns", "exec", &names::netns(&name), "ip", "-o", "addr", "show", "dev", "eth0"]);
    assert!(inside.contains(&format!("inet {local}/32")), "{inside}");

    // Host -> guest: ping and a TCP service, over IPv4 and IPv6.
    sh(&["ping", "-c", "1", "-W", "5", &local]);
    sh(&["ping", "-6", "-c", "1", "-W", "5", &local6]);
    serve_in_guest(&env, &name, 80, "hello-over-veth");
    assert!(get_eventually(SocketAddr::new(ip(&local), 80)).contains("hello-over-veth"));
    assert!(get_eventually(SocketAddr::new(ip(&local6), 80)).contains("hello-over-veth"));

    // Guest -> host.
    env.ok(["run", &name, "--", "ping", "-c", "1", "-W", "5", &host]);
    env.ok(["run", &name, "--", "ping", "-6", "-c", "1", "-W", "5", &host6]);
    // The guest sees its loopback and eth0, nothing of the host's.
    assert_eq!(env.ok(["run", &name, "--", "ls", "/sys/class/net"]), "eth0\nlo\n");
    let routes = env.ok(["run", &name, "--", "ip", "route"]);
    assert!(routes.contains(&format!("default via {host} dev eth0")), "{routes}");

    env.ok(["stop", &name]);
    assert_eq!(network_leftovers(&name), Vec::<String>::new());
    for a in [&host, &local, &host6, &local6] {
        assert_eq!(routes_and_addresses_of(a), Vec::<String>::new(), "{a}");
    }
    env.ok(["destroy", &name]);
    assert_eq!(env.leftovers(&name), Vec::<String>::new());
}

#[test]
fn parallel_starts_get_distinct_interfaces_and_addresses() {
    let env = Env::new();
    // One long and one short name: both forms of interface names.
    let a = name_of_len(&env, "pa", 40);
    let b = env.name("pb");
    env.create(&a, &[]);
    env.create(&b, &[]);
    std::thread::scope(|s| {
        for n in [&a, &b] {
            let env = &env;
            s.spawn(move || env.ok(["start", n]));
        }
    });
    let (ia, ib) = (names::host_ifname(&a), names::host_ifname(&b));
    assert_ne!(ia, ib);
    assert!(ia.contains('.') && !ib.contains('.'), "one of each form: {a} -> {ia}, {b} -> {ib}");
    let (la, lb) = (conf_value(&env, &a, "LOCAL_ADDRESS"), conf_value(&env, &b, "LOCAL_ADDRESS"));
    assert_ne!(la, lb);
    for (n, ifname, local) in [(&a, &ia, &la), (&b, &ib, &lb)] {
        let host = conf_value(&env, n, "HOST_ADDRESS");
        let addrs = sh(&["ip", "-o", "addr", "show", "dev", ifname]);
        assert!(addrs.contains(&format!("inet {host}/32")), "{addrs}");
        sh(&["ping", "-c", "1", "-W", "5", local]);
        env.ok(["run", n, "--", "ping", "-c", "1", "-W", "5", &host]);
    }
    // Stopping one leaves the other's network alone.
    env.ok(["stop", &a]);
    assert_eq!(network_leftovers(&a), Vec::<String>::new());
    sh(&["ping", "-c", "1", "-W", "5", &lb]);
    env.ok(["stop", &b]);
    assert_eq!(network_leftovers(&b), Vec::<String>::new());
}

#[test]
fn sixteen_parallel_creates_get_sixteen_distinct_pairs() {
    let env = Env::new();
    let system = build_system(&[]);
    let names: Vec<String> = (0..16).map(|i| env.name(&format!("c{i}"))).collect();
    std::thread::scope(|s| {
        for n in &names {
            let (env, system) = (&env, &system);
            s.spawn(move || env.create(n, &["--system-path", system]));
        }
    });
    let mut seen = std::collections::HashSet::new();
    for n in &names {
        for key in ["HOST_ADDRESS", "LOCAL_ADDRESS", "HOST_ADDRESS6", "LOCAL_ADDRESS6"] {
            let v = conf_value(&env, n, key);
            assert!(seen.insert(v.clone()), "{key} {v} of {n} given twice");
        }
    }
    assert_eq!(seen.len(), 64);
    let hosts = std::fs::read_to_string(env.hosts_file()).unwrap();
    for n in &names {
        let local = conf_value(&env, n, "LOCAL_ADDRESS");
        assert!(hosts.contains(&format!("{local} {n}.containers")), "{hosts}");
    }
    assert!(hosts.starts_with("127.0.0.1 localhost\n"), "the file's own lines stay: {hosts}");
}

#[test]
fn port_forwards_reach_the_guest_from_another_namespace_and_from_loopback() {
    let env = Env::new();
    let mut net = TestNet::default();
    let name = env.name("port");
    // Ports derived from the test's own pool, so parallel runs never meet.
    let host_port = 20000 + u16::from(env.pool) * 10;
    let udp_port = host_port + 1;
    env.create(&name, &["--port", &format!("tcp:{host_port}:80"), "--port", &format!("udp:{udp_port}:5353")]);
    assert_eq!(conf_value(&env, &name, "HOST_PORT"), format!("tcp:{host_port}:80,udp:{udp_port}:5353"));
    env.ok(["start", &name]);
    serve_in_guest(&env, &name, 80, "hello-through-a-forward");

    // From the host's own loopback (the anchor's forwards miss this).
    let body = get_eventually(SocketAddr::new(ip("127.0.0.1"), host_port));
    assert!(body.contains("hello-through-a-forward"), "{body}");

    // From another namespace, through the host's address on a link to it.
    let peer = format!("nct-peer-{}", env.pool);
    let (hv, pv) = (format!("ntp{}a", env.pool), format!("ntp{}b", env.pool));
    let (haddr, paddr) = (format!("10.{}.255.1", env.pool), format!("10.{}.255.2", env.pool));
    net.netns(&peer);
    net.link(&[&hv, "type", "veth", "peer", "name", &pv, "netns", &peer]);
    sh(&["ip", "addr", "add", &format!("{haddr}/30"), "dev", &hv]);
    sh(&["ip", "link", "set", &hv, "up"]);
    // Our own test link forwards; the host's global setting stays as it is.
    std::fs::write(format!("/proc/sys/net/ipv4/conf/{hv}/forwarding"), "1").unwrap();
    let in_peer = |args: &[&str]| {
        let mut cmd = vec!["ip", "netns", "exec", peer.as_str()];
        cmd.extend(args);
        sh(&cmd)
    };
    in_peer(&["ip", "addr", "add", &format!("{paddr}/30"), "dev", &pv]);
    in_peer(&["ip", "link", "set", &pv, "up"]);
    in_peer(&["ip", "link", "set", "lo", "up"]);
    in_peer(&["ip", "route", "add", "default", "via", &haddr]);
    let target = SocketAddr::new(ip(&haddr), host_port);
    let fetched = wait_for(Duration::from_secs(60), || {
        in_netns(&peer, move || http_get(target)).ok().filter(|b| b.contains("200 OK"))
    });
    let fetched = fetched.unwrap_or_else(|| panic!("nothing answered at {target} from namespace {peer}"));
    assert!(fetched.ends_with("\r\n\r\nhello-through-a-forward\n"), "{fetched}");

    // UDP too: a datagram to the host port arrives at the guest's port.
    env.ok([
        "run",
        &name,
        "--",
        "systemd-run",
        "--unit=udp-sink",
        "sh",
        "-c",
        "socat -u UDP-RECV:5353 OPEN:/srv/udp,creat",
    ]);
    let got = wait_for(Duration::from_secs(60), || {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.send_to(b"ping-over-udp\n", ("127.0.0.1", udp_port)).unwrap();
        let out = env.run(["run", &name, "--", "cat", "/srv/udp"]);
        stdout(&out).contains("ping-over-udp").then_some(())
    });
    assert!(got.is_some(), "the datagram reached the guest");

    env.ok(["stop", &name]);
    assert_eq!(network_leftovers(&name), Vec::<String>::new());
    let loopback = SocketAddr::new(ip("127.0.0.1"), host_port);
    assert!(TcpStream::connect_timeout(&loopback, Duration::from_secs(5)).is_err(), "the forward is gone");
    // And the port is the host's again: a rule left behind would send this
    // connection to the guest's address rather than to our listener.
    let listener = std::net::TcpListener::bind(loopback).unwrap();
    let conn = TcpStream::connect_timeout(&loopback, Duration::from_secs(5)).expect("connecting to host port");
    listener.set_nonblocking(true).unwrap();
    let (_, peer) = wait_for(Duration::from_secs(5), || listener.accept().ok()).expect("our listener gets it");
    assert_eq!(peer, conn.local_addr().unwrap(), "the connection reached the host's own listener");
}

#[test]
fn container_names_resolve_on_the_host_while_the_container_exists() {
    let env = Env::new();
    let name = env.name("dns");
    let hosts = env.hosts_file();
    std::fs::write(&hosts, "127.0.0.1 localhost\n# keep this comment\n10.9.9.9 other.example\n").unwrap();
    let before = std::fs::read_to_string(&hosts).unwrap();
    env.create(&name, &["--system-path", &build_system(&[])]);
    let local = conf_value(&env, &name, "LOCAL_ADDRESS");
    let local6 = conf_value(&env, &name, "LOCAL_ADDRESS6");
    let text = std::fs::read_to_string(&hosts).unwrap();
    assert!(text.starts_with(&before), "{text}");
    assert_eq!(
        &text[before.len()..],
        format!("{local} {name}.containers # nixos-container\n{local6} {name}.containers # nixos-container\n")
    );
    // Resolve through the file, as the host's resolver would read /etc/hosts
    // (in a mount namespace of our own: the real /etc/hosts is not touched).
    assert_eq!(resolve(&env, &format!("{name}.containers"), "ahostsv4").as_deref(), Some(local.as_str()));
    env.ok(["destroy", &name]);
    assert_eq!(std::fs::read_to_string(&hosts).unwrap(), before, "only our lines went");
    assert_eq!(resolve(&env, &format!("{name}.containers"), "ahostsv4"), None);
}

/// `getent DB HOST` with the test's hosts file as /etc/hosts and only
/// files as the source; the first address, if any.
fn resolve(env: &Env, host: &str, db: &str) -> Option<String> {
    let nsswitch = env.base.join("nsswitch.conf");
    std::fs::write(&nsswitch, "hosts: files\n").unwrap();
    let script = format!(
        "mount --bind {} /etc/hosts && mount --bind {} /etc/nsswitch.conf && exec getent {db} {host}",
        env.hosts_file().display(),
        nsswitch.display()
    );
    let out =
        Command::new("unshare").args(["--mount", "--propagation", "private", "sh", "-c", &script]).output().unwrap();
    if !out.status.success() {
        assert_eq!(out.status.code(), Some(2), "getent: {}", stderr(&out));
        return None;
    }
    stdout(&out).split_whitespace().next().map(str::to_string)
}

#[test]
fn a_cli_killed_during_start_leaves_nothing_after_stop() {
    let env = Env::new();
    let name = name_of_len(&env, "kill", 30);
    env.create(&name, &["--port", &format!("tcp:{}:80", 20005 + u16::from(env.pool) * 10)]);
    let netns = std::path::Path::new("/run/netns").join(names::netns(&name));
    let ifpath = std::path::PathBuf::from(format!("/sys/class/net/{}", names::host_ifname(&name)));
    // Kill at two points: as soon as the namespace exists, and as soon as
    // the veth exists.
    for (point, marker) in [("namespace", &netns), ("veth", &ifpath)] {
        let mut start = KillOnDrop::spawn(env.command().args(["start", &name]).stderr(Stdio::null()));
        let seen = wait_for(Duration::from_secs(60), || marker.exists().then_some(()));
        start.kill().unwrap();
        let _ = start.wait();
        assert!(seen.is_some(), "start created the {point}");
        env.ok(["stop", &name]);
        assert_eq!(network_leftovers(&name), Vec::<String>::new(), "after a kill at the {point}");
        assert!(processes_of(&name).is_empty());
    }
    // Leftovers of a killed start do not stop the next start either.
    let mut start = KillOnDrop::spawn(env.command().args(["start", &name]).stderr(Stdio::null()));
    wait_for(Duration::from_secs(60), || ifpath.exists().then_some(())).expect("the veth appears");
    start.kill().unwrap();
    let _ = start.wait();
    env.ok(["start", &name]);
    let local = conf_value(&env, &name, "LOCAL_ADDRESS");
    sh(&["ping", "-c", "1", "-W", "5", &local]);
    env.ok(["terminate", &name]);
    assert_eq!(network_leftovers(&name), Vec::<String>::new(), "after terminate");
    assert_eq!(routes_and_addresses_of(&local), Vec::<String>::new());
}

#[test]
fn a_bridge_takes_the_host_side() {
    let env = Env::new();
    let mut net = TestNet::default();
    let bridge = format!("ntbr{}", env.pool);
    net.link(&[&bridge, "type", "bridge"]);
    let gw = format!("10.{}.254.1", env.pool);
    let local = format!("10.{}.254.7", env.pool);
    sh(&["ip", "addr", "add", &format!("{gw}/24"), "dev", &bridge]);
    sh(&["ip", "link", "set", &bridge, "up"]);
    let name = env.name("br");
    env.create(&name, &["--bridge", &bridge, "--host-address", &gw, "--local-address", &format!("{local}/24")]);
    assert_eq!(conf_value(&env, &name, "HOST_BRIDGE"), bridge);
    assert!(!std::fs::read_to_string(env.conf_dir().join(format!("{name}.conf"))).unwrap().contains("ADDRESS6"));
    env.ok(["start", &name]);
    let ifname = names::host_ifname(&name);
    let master = std::fs::read_link(format!("/sys/class/net/{ifname}/master")).unwrap();
    assert_eq!(master.file_name().unwrap().to_str(), Some(bridge.as_str()));
    assert_eq!(sh(&["ip", "-o", "-4", "addr", "show", "dev", &ifname]), "", "no address on a bridge port");
    sh(&["ping", "-c", "1", "-W", "5", &local]);
    env.ok(["run", &name, "--", "ping", "-c", "1", "-W", "5", &gw]);
    env.ok(["stop", &name]);
    assert_eq!(network_leftovers(&name), Vec::<String>::new());
    assert!(cmd_ok("ip", &["link", "show", "dev", &bridge]), "the bridge is not ours to remove");
}

#[test]
fn addresses_the_host_already_uses_are_refused_or_skipped() {
    let env = Env::new();
    let mut net = TestNet::default();
    let system = build_system(&[]);
    // The host has the first pair's host address and routes a /30 of the pool.
    // (A bridge stands in for a dummy interface: not every kernel has those.)
    let dummy = format!("ntdm{}", env.pool);
    net.link(&[&dummy, "type", "bridge"]);
    sh(&["ip", "addr", "add", &format!("10.{}.1.1/32", env.pool), "dev", &dummy]);
    sh(&["ip", "link", "set", &dummy, "up"]);
    sh(&["ip", "route", "add", &format!("10.{}.200.0/30", env.pool), "dev", &dummy]);

    let skip = env.name("skip");
    env.create(&skip, &["--system-path", &system]);
    assert_eq!(env.ok(["show-ip", &skip]), format!("10.{}.2.2\n", env.pool), "the used pair is skipped");

    let cases = [
        (
            format!("10.{}.9.1", env.pool),
            "127.0.0.5".to_string(),
            "invalid local address '127.0.0.5': it is already an address of this host; choose another".to_string(),
        ),
        (
            format!("10.{}.9.1", env.pool),
            format!("10.{}.200.2", env.pool),
            format!(
                "invalid local address '10.{0}.200.2': the host already routes 10.{0}.200.0/30 elsewhere; choose another",
                env.pool
            ),
        ),
        (
            format!("10.{}.2.1", env.pool),
            format!("10.{}.9.2", env.pool),
            format!("invalid host address '10.{}.2.1': another container has it; choose another", env.pool),
        ),
    ];
    for (h, l, msg) in cases {
        let bad = env.name("bad");
        let out = env.run(["create", &bad, "--system-path", &system, "--host-address", &h, "--local-address", &l]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert_eq!(stderr(&out), format!("error: {msg}\n"));
        assert_eq!(env.leftovers(&bad), Vec::<String>::new());
    }
    // A host port another container forwards is refused too.
    let p1 = env.name("p1");
    env.create(&p1, &["--system-path", &system, "--port", "tcp:20999:80"]);
    let out = env.run(["create", &env.name("p2"), "--system-path", &system, "--port", "20999"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(&format!("container '{p1}' already forwards host port 20999")), "{}", stderr(&out));
}

#[test]
fn show_ip_prints_ipv6_when_the_container_has_only_that() {
    let env = Env::new();
    let name = env.name("v6");
    let (h6, l6) = (env.pool6().replace("::/48", ":77::1"), env.pool6().replace("::/48", ":77::2"));
    // create refuses a bridge that does not exist; one that goes away
    // after create makes start fail, which must leave nothing.
    let bridge = format!("ncgone{}", env.pool);
    struct Bridge<'a>(&'a str);
    impl Drop for Bridge<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip").args(["link", "del", self.0]).status();
        }
    }
    let guard = Bridge(&bridge);
    assert!(
        std::process::Command::new("ip").args(["link", "add", &bridge, "type", "bridge"]).status().unwrap().success()
    );
    env.create(
        &name,
        &["--system-path", &build_system(&[]), "--bridge", &bridge, "--host-address6", &h6, "--local-address6", &l6],
    );
    drop(guard);
    assert_eq!(env.ok(["show-ip", &name]), format!("{l6}\n"));
    let out = env.run(["start", &name]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&format!("bridge {bridge} does not exist")), "{}", stderr(&out));
    assert_eq!(network_leftovers(&name), Vec::<String>::new(), "a failed start leaves nothing");
}

#[test]
fn host_and_container_addresses_in_one_subnet() {
    // The nixpkgs way of giving a subnet: the kernel routes the host
    // address's subnet on the host side by itself.
    let env = Env::new();
    let name = env.name("subnet");
    let (host, local) = (format!("10.{}.7.1", env.pool), format!("10.{}.7.2", env.pool));
    let args = ["--system-path", &build_system(&[]), "--host-address", &format!("{host}/24")];
    env.create(&name, &[&args[..], &["--local-address", &format!("{local}/24")]].concat());
    env.ok(["start", &name]);
    let routes = sh(&["ip", "-4", "route", "show", "dev", &names::host_ifname(&name)]);
    assert_eq!(routes.matches(&format!("10.{}.7.0/24", env.pool)).count(), 1, "{routes}");
    sh(&["ping", "-c", "1", "-W", "5", &local]);
    env.ok(["run", &name, "--", "ping", "-c", "1", "-W", "5", &host]);
    env.ok(["stop", &name]);
    assert_eq!(network_leftovers(&name), Vec::<String>::new());
}

/// Appends `line` to container `name`'s conf (what nixpkgs' declarative
/// module writes for options this CLI has no flag for).
fn append_conf(env: &Env, name: &str, line: &str) {
    let path = env.conf_dir().join(format!("{name}.conf"));
    let conf = std::fs::read_to_string(&path).unwrap();
    assert!(conf.contains("PRIVATE_NETWORK=1"), "{conf}");
    std::fs::write(&path, format!("{conf}{line}\n")).unwrap();
}

/// A host interface's promiscuity count: a macvlan that is up on it
/// (with an address of its own) counts one.
fn promiscuity(ifname: &str) -> u32 {
    let out = sh(&["ip", "-d", "link", "show", "dev", ifname]);
    let word = out.split_whitespace().skip_while(|w| *w != "promiscuity").nth(1);
    word.and_then(|w| w.parse().ok()).unwrap_or_else(|| panic!("no promiscuity in {out}"))
}

#[test]
fn macvlans_appear_in_the_guest_and_go_with_its_namespace() {
    let env = Env::new();
    let mut net = TestNet::default();
    // The parent: a veth stands in for a dummy interface (not every kernel
    // has those); the test's pool makes the name unique on the host.
    let parent = format!("ncmv{}", env.pool);
    net.link(&[&parent, "type", "veth", "peer", "name", &format!("ncmp{}", env.pool)]);
    sh(&["ip", "link", "set", &parent, "up"]);
    let mv = format!("mv-{parent}");
    let name = env.name("mv");
    env.create(&name, &[]);
    // What nixpkgs' declarative module writes for `macvlans = [ ... ]`.
    append_conf(&env, &name, &format!("MACVLANS=\"{parent}\""));
    let mut macs = Vec::new();
    for round in 0..2 {
        env.ok(["start", &name]);
        let seen = env.ok(["run", &name, "--", "ls", "/sys/class/net"]);
        assert_eq!(seen, format!("eth0\nlo\n{mv}\n"), "round {round}");
        // As nspawn leaves it: mode bridge, down, for the guest to configure.
        let link = env.ok(["run", &name, "--", "ip", "-d", "link", "show", "dev", &mv]);
        assert!(link.contains("macvlan mode bridge") && link.contains("state DOWN"), "round {round}: {link}");
        macs.push(env.ok(["run", &name, "--", "cat", &format!("/sys/class/net/{mv}/address")]));
        // The guest may configure it (CAP_NET_ADMIN), and the host's side
        // shows that it is there: the parent takes its address.
        env.ok(["run", &name, "--", "ip", "link", "set", "dev", &mv, "up"]);
        assert_eq!(promiscuity(&parent), 1, "round {round}");
        assert!(!cmd_ok("ip", &["link", "show", "dev", &mv]), "round {round}: no {mv} on the host");
        env.ok(["stop", &name]);
        // The macvlan went with the namespace (the kernel deletes virtual
        // interfaces of a namespace that goes, a moment later).
        let gone = wait_for(Duration::from_secs(60), || (promiscuity(&parent) == 0).then_some(()));
        assert!(gone.is_some(), "round {round}: a macvlan is still up on {parent} after stop");
        assert_eq!(network_leftovers(&name), Vec::<String>::new(), "round {round}");
        assert!(!cmd_ok("ip", &["link", "show", "dev", &mv]), "round {round}");
        assert!(cmd_ok("ip", &["link", "show", "dev", &parent]), "round {round}: the parent stays");
    }
    // nspawn's address for it: the same at every start.
    assert_eq!(macs[0], macs[1]);
    env.ok(["destroy", &name]);
    assert_eq!(env.leftovers(&name), Vec::<String>::new());
}

#[test]
fn a_missing_macvlan_parent_fails_the_start_in_one_line_and_leaves_nothing() {
    let env = Env::new();
    let name = env.name("mvx");
    let parent = format!("ncmvno{}", env.pool);
    env.create(&name, &[]);
    append_conf(&env, &name, &format!("MACVLANS={parent}"));
    let out = env.run(["start", &name]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out),
        format!("error: network interface {parent} does not exist on the host (MACVLANS of container '{name}')\n")
    );
    assert_eq!(env.ok(["status", &name]), "down\n");
    assert_eq!(network_leftovers(&name), Vec::<String>::new());
    env.ok(["destroy", &name]);
    assert_eq!(env.leftovers(&name), Vec::<String>::new());
}
