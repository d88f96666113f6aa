//! A hostile guest (root inside a real container, acting through `run`) and
//! hostile input against the host: issue 12's classes 3 (the network),
//! 4 (what host root reads or walks) and 5 (input validated where it
//! enters). Each test performs the attack and checks that it fails.

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

/// A new container `short` (see `Env::name`), started.
fn started(env: &Env, short: &str) -> String {
    let name = env.name(short);
    env.create(&name, &[]);
    env.ok(["start", &name]);
    name
}

/// Guest root makes a tree of `levels` directories named `dir` where the
/// shell command `cd` leads, by relative steps (no path is ever that long).
fn guest_makes_a_deep_tree(env: &Env, name: &str, cd: &str, dir: &str, levels: u32) {
    let script = format!(
        "{cd} && perl -e 'for (1..{levels}) {{ mkdir \"{dir}\" or die \"mkdir: $!\"; chdir \"{dir}\" or die \"chdir: $!\" }} print \"deep\\n\"'"
    );
    let (code, out, err) = guest_sh(env, name, &script);
    assert_eq!((code, out.as_str()), (Some(0), "deep\n"), "{err}");
}

/// Destroys `name`, which must succeed and leave nothing behind.
fn destroy_leaves_nothing(env: &Env, name: &str) {
    let out = env.run(["destroy", name]);
    assert_eq!(out.status.code(), Some(0), "destroy failed: {}", stderr(&out));
    assert_eq!(env.leftovers(name), Vec::<String>::new());
}

/// Runs `script` as root in the guest; returns (exit code, stdout, stderr).
fn guest_sh(env: &Env, name: &str, script: &str) -> (Option<i32>, String, String) {
    let out = env.run(["run", name, "--", "sh", "-c", script]);
    (out.status.code(), stdout(&out), stderr(&out))
}

/// Perl, run by guest root: sends UDP datagrams to 127.0.0.1 (from source
/// ARGV[1]) out of eth0 as raw Ethernet frames to MAC ARGV[0] (an
/// AF_PACKET socket: CAP_NET_RAW, which nspawn gives its guests). The
/// guest's own routing never lets 127.0.0.1 leave; the frame skips it.
const RAW_UDP_TO_LOOPBACK: &str = r#"
my ($dmac, $src, $port, $payload) = @ARGV;
open(my $f, '<', '/sys/class/net/eth0/ifindex') or die; my $ifindex = <$f> + 0;
open($f, '<', '/sys/class/net/eth0/address') or die; my $smac = <$f>; chomp $smac;
my $mac = sub { pack('H12', join('', split(/:/, $_[0]))) };
socket(my $s, 17, 3, 0) or die "socket: $!";
my $udp = pack('nnnn', 40000, $port, 8 + length($payload), 0) . $payload;
my $ip = pack('CCnnnCCnC4C4', 0x45, 0, 20 + length($udp), 1, 0x4000, 64, 17, 0,
    split(/\./, $src), 127, 0, 0, 1);
my $sum = 0; $sum += $_ for unpack('n10', $ip);
$sum = ($sum & 0xffff) + ($sum >> 16) while $sum >> 16;
substr($ip, 10, 2) = pack('n', ~$sum & 0xffff);
my $frame = $mac->($dmac) . $mac->($smac) . pack('n', 0x0800) . $ip . $udp;
my $to = pack('SniSCCa8', 17, 0x0800, $ifindex, 1, 0, 6, $mac->($dmac));
for (1..5) { defined(send($s, $frame, 0, $to)) or die "send: $!"; select(undef, undef, undef, 0.2) }
print "sent\n";
"#;

// Class 3: with --port, the host side has route_localnet=1, so the host
// took packets to 127.0.0.1 arriving from the guest: guest root reached the
// host's services bound to the loopback (CVE-2020-8558's class).
#[test]
fn a_guest_cannot_reach_host_services_on_the_loopback() {
    let env = Env::new();
    let name = env.name("lo");
    let forward = 21000 + u16::from(env.pool) * 10;
    // A host service that trusts the loopback.
    let service = std::net::UdpSocket::bind(("127.0.0.1", forward + 7)).unwrap();
    service.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    env.create(&name, &["--port", &format!("tcp:{forward}:80")]);
    env.ok(["start", &name]);
    let local = conf_value(&env, &name, "LOCAL_ADDRESS");
    let host_if = nixos_container::net::names::host_ifname(&name);
    let host_mac = std::fs::read_to_string(format!("/sys/class/net/{host_if}/address")).unwrap();
    let port = (forward + 7).to_string();
    // From the guest's own address, and with a loopback source.
    for (src, payload) in [(local.as_str(), "from-the-guest"), ("127.0.0.1", "spoofed-loopback")] {
        let out =
            env.run(["run", &name, "--", "perl", "-e", RAW_UDP_TO_LOOPBACK, host_mac.trim(), src, &port, payload]);
        assert_eq!(stdout(&out), "sent\n", "the guest could not send: {}", stderr(&out));
        let mut buf = [0u8; 64];
        // The whole 3 s, whatever signals interrupt the wait (EINTR).
        let received = loop {
            match service.recv_from(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match received {
            Ok((n, peer)) => panic!(
                "a host service bound to 127.0.0.1 got {:?} from the guest ({peer})",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(e) => assert!(matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut), "{e}"),
        }
    }

    // The forward from the host's own loopback keeps working.
    env.ok([
        "run",
        &name,
        "--",
        "sh",
        "-c",
        "mkdir -p /srv/www && echo through-the-forward > /srv/www/index.html && \
         systemd-run --unit=web busybox httpd -f -p 80 -h /srv/www",
    ]);
    let target = SocketAddr::from(([127, 0, 0, 1], forward));
    let body = wait_for(Duration::from_secs(60), || http_get(target).ok().filter(|b| b.contains("200 OK")))
        .unwrap_or_else(|| panic!("the forward from 127.0.0.1 broke: {:?}", http_get(target)));
    assert!(body.contains("through-the-forward"), "{body}");
    env.ok(["stop", &name]);
    assert_eq!(network_leftovers(&name), Vec::<String>::new());
}

// Class 4: show-host-key printed the guest's file verbatim, into the
// admin's known_hosts (the README says `>> known_hosts`) and terminal.
#[test]
fn show_host_key_prints_one_checked_known_hosts_line() {
    let env = Env::new();
    let name = env.name("key");
    env.create(&name, &[]);
    env.ok(["start", &name]);
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOr9pX2k1tJ3hX5m3YkGZ2f0v9m6b8y3Tq2m7QF0d1Yx";
    let file = "/etc/ssh/ssh_host_ed25519_key.pub";
    let write = |content: &str| {
        // `$1` carries the content verbatim (any bytes but NUL).
        let out = env.run([
            "run",
            &name,
            "--",
            "sh",
            "-c",
            &format!("mkdir -p /etc/ssh && printf '%s' \"$1\" > {file}"),
            "sh",
            content,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    let forged = [
        format!("@cert-authority * {key}\n"),
        format!("* {key}\n"),
        format!("{key} root@web\n@cert-authority *.example.com {key}\n"),
        format!("{key} \u{1b}]0;owned\u{7}\u{1b}[2J\n"),
        "ssh-ed25519 not-base64!\n".to_string(),
    ];
    for text in &forged {
        write(text);
        let out = env.run(["show-host-key", &name]);
        assert_eq!(out.status.code(), Some(1), "accepted {text:?}: {}", stdout(&out));
        assert_eq!(stdout(&out), "", "printed something for {text:?}");
        let err = stderr(&out);
        assert!(err.contains("is not a public key"), "{err}");
        assert!(!err.contains('\u{1b}'), "the message carries the guest's escapes: {err:?}");
    }
    // A fifo (or a device) is not opened: show-host-key would hang on it.
    let (code, _, err) = guest_sh(&env, &name, &format!("rm -f {file} && mkfifo {file}"));
    assert_eq!(code, Some(0), "{err}");
    let mut child =
        KillOnDrop::spawn(env.command().args(["show-host-key", &name]).stdout(Stdio::piped()).stderr(Stdio::piped()));
    let status = child.wait_timeout(Duration::from_secs(60));
    assert!(status.is_some(), "show-host-key hangs on a fifo the guest put in place of its key");
    let out = child.wait_with_output().unwrap();
    assert!(stderr(&out).contains("not a regular file"), "{}", stderr(&out));

    // A real key gives a line known_hosts can take as it is.
    let (code, _, err) = guest_sh(&env, &name, &format!("rm -f {file}"));
    assert_eq!(code, Some(0), "{err}");
    write(&format!("{key} root@{name}\n"));
    let addr = conf_value(&env, &name, "LOCAL_ADDRESS");
    let addr6 = conf_value(&env, &name, "LOCAL_ADDRESS6");
    assert_eq!(env.ok(["show-host-key", &name]), format!("{name}.containers,{addr},{addr6} {key} root@{name}\n"));
}

/// Watches `paths` for being opened; call the result for the ones that were.
fn watch_opens(paths: &[PathBuf]) -> impl Fn() -> Vec<PathBuf> {
    let watch = Inotify::init(InitFlags::IN_NONBLOCK).unwrap();
    let wds: Vec<_> = paths.iter().map(|p| (watch.add_watch(p, AddWatchFlags::IN_OPEN).unwrap(), p.clone())).collect();
    move || {
        let events = watch.read_events().unwrap_or_default();
        let opened = events.iter().filter(|e| e.mask.contains(AddWatchFlags::IN_OPEN));
        opened.filter_map(|e| wds.iter().find(|(wd, _)| *wd == e.wd).map(|(_, p)| p.clone())).collect()
    }
}

// Class 4: destroy walked the root recursively (a deep tree overflowed its
// stack: exit 134, and the container could not be destroyed any more).
#[test]
fn destroy_removes_a_very_deep_tree_the_guest_made() {
    let env = Env::new();
    let name = started(&env, "dp");
    guest_makes_a_deep_tree(&env, &name, "cd /var", "d", 100_000);
    destroy_leaves_nothing(&env, &name);
}

// Class 4: the container's cgroup was removed by paths: a guest's cgroup
// tree deeper than PATH_MAX stayed behind after terminate and destroy.
#[test]
fn terminate_removes_a_cgroup_tree_the_guest_made_deeper_than_path_max() {
    let env = Env::new();
    let name = started(&env, "dc");
    // 20 levels of 255-character names: about 5 KiB of path below its
    // cgroup2 root (hybrid: unified/).
    let cd = "cd /sys/fs/cgroup && { [ -e cgroup.controllers ] || cd unified; }";
    guest_makes_a_deep_tree(&env, &name, cd, &"c".repeat(255), 20);
    // Killed, so that neither the guest's systemd nor nspawn trims it first.
    env.ok(["terminate", &name]);
    assert_eq!(cgroup_dirs(&name), Vec::<std::path::PathBuf>::new(), "the cgroup is left after terminate");
    destroy_leaves_nothing(&env, &name);
}

// Class 4: destroy opened the guest's device nodes and fifos (to clear
// chattr flags): a device node opens its driver on the host.
#[test]
fn destroy_opens_no_device_node_or_fifo_the_guest_made() {
    let env = Env::new();
    let name = started(&env, "dv");
    // One special file per locked directory: destroy cannot unlink it
    // before it clears the directory's flag, and then it used to open the
    // entry to clear its flags too. Guest root makes them itself where
    // nspawn lets it (CAP_MKNOD); the host makes the ones it cannot, as a
    // guest given more capabilities could.
    let (_, made, err) = guest_sh(
        &env,
        &name,
        "mkdir -p /t1 /t2 /t3 /t4 && mkfifo /t1/fifo && mkfifo /t3/fifo && \
         (mknod /t2/null c 1 3 && echo mknod-char-ok; mknod /t4/loop b 7 200 && echo mknod-block-ok; true) && \
         mkdir -p /t5 && for i in $(seq 1 2000); do : > /t5/f$i; done && : > /t5/immutable && \
         chattr +i /t5/immutable && : > /t5/appendonly && chattr +a /t5/appendonly && echo made",
    );
    assert!(made.contains("made"), "{made}{err}");
    eprintln!("guest mknod: {made}");
    let root = env.root(&name);
    for (p, kind, dev) in [
        ("t2/null", nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::makedev(1, 3)),
        ("t4/loop", nix::sys::stat::SFlag::S_IFBLK, nix::sys::stat::makedev(7, 200)),
    ] {
        if root.join(p).symlink_metadata().is_err() {
            eprintln!("guest root could not mknod {p}; made from the host");
            let mode = nix::sys::stat::Mode::from_bits_truncate(0o666);
            nix::sys::stat::mknod(&root.join(p), kind, mode, dev).unwrap();
        }
    }
    let (code, _, err) = guest_sh(&env, &name, "chattr +i /t1 /t2 /t5 && chattr +a /t3 /t4");
    assert_eq!(code, Some(0), "{err}");
    let specials: Vec<_> = ["t1/fifo", "t2/null", "t3/fifo", "t4/loop"].iter().map(|p| root.join(p)).collect();
    let opened = watch_opens(&specials);
    destroy_leaves_nothing(&env, &name);
    assert_eq!(opened(), Vec::<PathBuf>::new(), "destroy opened guest-made special files");
}

// Class 5: a newline in --bridge wrote a conf that broke every later command.
#[test]
fn a_bridge_name_with_a_newline_is_refused_and_writes_nothing() {
    let env = Env::new();
    let name = env.name("br");
    let system = build_system(&[]);
    let out = env.run(["create", &name, "--bridge", "br0\nHOST_PORT=\"1", "--system-path", &system]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("invalid bridge 'br0\\nHOST_PORT=\"1'"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!env.conf_dir().join(format!("{name}.conf")).exists());
    assert!(!env.conf_dir().join(format!("{name}.conf.creating")).exists());
    for bad in ["a-bridge-name-too-long", "br 0", "br/0", "."] {
        let out = env.run(["create", &name, "--bridge", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
    }
    // Every other command still works.
    env.ok(["list"]);
    // A conf edited by hand the same way is named, not half-read.
    std::fs::create_dir_all(env.conf_dir()).unwrap();
    std::fs::write(env.conf_dir().join(format!("{name}.conf")), "PRIVATE_NETWORK=1\nHOST_BRIDGE=\"br\u{1b}0\"\n")
        .unwrap();
    let out = env.run(["status", &name]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("HOST_BRIDGE contains the control character '\\u{1b}'"), "{}", stderr(&out));
    std::fs::remove_file(env.conf_dir().join(format!("{name}.conf"))).unwrap();
}

// Class 5: the --config-file name was spliced into configuration.nix as a
// bare path literal: a file name can carry Nix code (here it throws).
#[test]
fn a_config_file_name_cannot_splice_nix_code() {
    let env = Env::new();
    let name = env.name("cf");
    let base = env.base.join("cfg");
    std::fs::create_dir_all(&base).unwrap();
    let b = base.display().to_string();
    std::fs::write(format!("{b}/x"), "{ }").unwrap();
    std::fs::write(format!("{b}/evil.nix"), "throw \"spliced-code-ran\"").unwrap();
    let dir = format!("{b}/x]++[(import({b}/evil.nix))]++[({b}/y");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(format!("{b}/y")).unwrap();
    std::fs::write(format!("{b}/y/z.nix)"), "{ }").unwrap();
    let file = format!("{dir}/z.nix)");
    std::fs::write(&file, "{ environment.etc.marker.text = \"from-the-real-file\"; }").unwrap();
    let out = env.run(["create", &name, "--nixos-path", nixos_path().to_str().unwrap(), "--config-file", &file]);
    let err = stderr(&out);
    assert!(!err.contains("spliced-code-ran"), "the file's name ran as Nix code: {err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
    // The file's content is what the configuration imports (a copy kept
    // outside the root), not its name as Nix code.
    let copy = std::fs::read_to_string(env.conf_dir().join(&name).join("config-file.nix")).unwrap();
    assert_eq!(copy, std::fs::read_to_string(&file).unwrap());
}

// Class 5: relative path variables were accepted; destroy from another
// directory then removed nothing of the root, removed the conf, exit 0.
#[test]
fn relative_path_variables_are_refused() {
    let env = Env::new();
    let name = env.name("rel");
    let system = build_system(&[]);
    env.create(&name, &["--system-path", &system]);
    let elsewhere = env.base.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    for var in ["NIXOS_CONTAINER_STATE_DIR", "NIXOS_CONTAINER_CONF_DIR", "NIXOS_CONTAINER_RUN_DIR"] {
        let out = env.command().current_dir(&elsewhere).env(var, "state").args(["destroy", &name]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}: {}", stderr(&out));
        assert!(stderr(&out).contains(&format!("{var}=state")), "{}", stderr(&out));
        assert!(stderr(&out).contains("absolute path"), "{}", stderr(&out));
    }
    assert!(env.conf_dir().join(format!("{name}.conf")).exists(), "the conf is still there");
    assert!(env.root(&name).exists(), "the root is still there");
    env.ok(["destroy", &name]);
    assert_eq!(env.leftovers(&name), Vec::<String>::new());
}

// Class 5: a container named `locks` had the lock directory as its run
// directory: its start and stop removed every container's lock file.
#[test]
fn a_container_named_locks_leaves_the_locks_alone() {
    let env = Env::new();
    let system = build_system(&[]);
    let other = env.name("o");
    env.create(&other, &["--system-path", &system]);
    let lock_of = |n: &str| {
        let dir = env.base.join("run");
        ["locks", ".locks"].iter().map(|d| dir.join(d).join(format!("{n}.lock"))).find(|p| p.exists())
    };
    let before = lock_of(&other).expect("create made a lock file").metadata().unwrap().ino();
    // The name is global on the host (interfaces, cgroups); tests of other
    // runs never use it.
    env.track("locks");
    env.create("locks", &["--system-path", &system]);
    env.ok(["start", "locks"]);
    env.ok(["stop", "locks"]);
    assert!(lock_of("locks").is_some());
    // Destroying it removes its run directory: that must not be the locks.
    env.ok(["destroy", "locks"]);
    let after = lock_of(&other).map(|p| p.metadata().unwrap().ino());
    assert_eq!(after, Some(before), "the other container's lock file was removed");
    assert!(lock_of(".global").is_some(), "the global lock file was removed");
    env.ok(["destroy", &other]);
}

/// A loop device of the host over a file of `content`, detached on drop:
/// a real block device that host root can read on any host (some refuse
/// even host root their disk).
struct HostLoop {
    dev: PathBuf,
    _file: tempfile::NamedTempFile,
}

impl HostLoop {
    fn new(content: &[u8]) -> HostLoop {
        let mut file = tempfile::NamedTempFile::new_in("/tmp").unwrap();
        std::io::Write::write_all(&mut file, content).unwrap();
        // A loop device's size is whole 512-byte sectors.
        file.as_file().set_len(content.len().next_multiple_of(4096) as u64).unwrap();
        let out = std::process::Command::new("losetup")
            .args(["--find", "--show", "--read-only"])
            .arg(file.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "losetup: {}", stderr(&out));
        HostLoop { dev: PathBuf::from(stdout(&out).trim()), _file: file }
    }

    fn major_minor(&self) -> (u64, u64) {
        let rdev = self.dev.metadata().unwrap().rdev();
        (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev))
    }
}

impl Drop for HostLoop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

// A privileged guest keeps CAP_MKNOD and CAP_SYS_ADMIN. nspawn with
// --keep-unit sets no device policy of its own, so nothing stopped guest
// root from making a node for a host block device (or mounting devtmpfs,
// the host's /dev) and reading or writing it: the host's disks, hence host
// root. The guest may open only the pseudo devices, its ptys, /dev/net/tun
// and the conf's DEVICES; anything else fails with EPERM. The probes only
// read (a loop device over a file made for the test) or open for writing
// and write nothing (/dev/kmsg).
#[test]
fn a_privileged_guest_cannot_open_host_devices() {
    let env = Env::new();
    let name = env.name("dn");
    env.create(&name, &["--device", "/dev/fuse"]);
    env.ok(["start", &name]);
    let secret = "host-secret";
    let disk = HostLoop::new(secret.as_bytes());
    assert_eq!(std::fs::read(&disk.dev).unwrap()[..secret.len()], *secret.as_bytes(), "host root reads it");
    let (maj, min) = disk.major_minor();
    let kname = disk.dev.file_name().unwrap().to_string_lossy().into_owned();
    let script = format!(
        "mkdir -p /devtest/dt; cd /devtest
         try() {{ label=$1; shift; if \"$@\" 2>err; then echo \"$label: OPENED\"; else echo \"$label: $(cat err)\"; fi; }}
         mknod disk b {maj} {min} 2>err || echo \"disk-mknod: $(cat err)\"
         [ -b disk ] && try disk head -c{len} disk
         mknod kmsg c 1 11 2>err || echo \"kmsg-mknod: $(cat err)\"
         [ -c kmsg ] && try kmsg sh -c 'exec 3>kmsg'
         if mount -t devtmpfs devtmpfs dt 2>err; then try devtmpfs head -c{len} dt/{kname}; umount dt; \
         else echo \"devtmpfs-mount: $(cat err)\"; fi
         for d in null zero full random urandom tty ptmx net/tun fuse; do
           [ -c /dev/$d ] || {{ echo \"$d: missing\"; continue; }}
           (exec 3<>/dev/$d) 2>err && echo \"$d: ok\" || echo \"$d: $(cat err)\"
         done
         head -c1 /dev/urandom | wc -c | sed 's/^/urandom-bytes: /'
         script -qec tty /dev/null </dev/null | sed 's/^/pty: /'",
        len = secret.len()
    );
    let (code, out, err) = guest_sh(&env, &name, &script);
    eprintln!("guest ({code:?}):\n{out}{err}");
    drop(disk);
    let line = |label: &str| {
        out.lines()
            .filter(|l| l.starts_with(&format!("{label}:")) || l.starts_with(&format!("{label}-mknod:")))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(!out.contains(secret), "guest root read a host block device:\n{out}");
    for attack in ["disk", "kmsg"] {
        let said = line(attack);
        assert!(!said.contains("OPENED"), "guest root opened a host device:\n{out}");
        assert!(said.contains("Operation not permitted"), "{attack}: not refused with EPERM:\n{out}");
    }
    // devtmpfs is the host's /dev: where the guest can mount it, no node
    // in it may open either.
    let devtmpfs = line("devtmpfs");
    assert!(!devtmpfs.contains("OPENED"), "guest root opened a host disk through devtmpfs:\n{out}");
    for ok in ["null", "zero", "full", "random", "urandom", "tty", "ptmx", "fuse"] {
        // /dev/tty opens only with a controlling terminal, which `run`
        // without -t does not give: ENXIO, not EPERM, shows the device
        // policy let it through.
        let said = line(ok);
        assert!(
            said == format!("{ok}: ok") || (ok == "tty" && said.contains("No such device or address")),
            "{ok} must open in the guest: {said}\n{out}"
        );
    }
    if std::path::Path::new("/dev/net/tun").exists() {
        assert_eq!(line("net/tun"), "net/tun: ok", "{out}");
    }
    assert_eq!(line("urandom-bytes"), "urandom-bytes: 1", "{out}");
    assert!(line("pty").starts_with("pty: /dev/pts/"), "the guest could not use a pty:\n{out}");
    env.ok(["destroy", &name]);
}
