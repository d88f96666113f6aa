//! Which devices a guest may open: the device policy of its cgroup.
//!
//! A privileged guest keeps `CAP_MKNOD` and `CAP_SYS_ADMIN`; nspawn run
//! with `--keep-unit` leaves the device policy to whoever made its cgroup.
//! Without one, guest root makes a node of a host disk (or mounts devtmpfs,
//! the host's /dev) and reads or writes it. The policy is the one
//! systemd-nspawn@.service sets: the standard pseudo devices, the guest's
//! ptys, /dev/net/tun, and the conf's `DEVICES`; everything else, opening
//! and `mknod` alike, fails with EPERM.
//!
//! - Unit mode: unit properties (`DevicePolicy=closed`, `DeviceAllow=`,
//!   `crate::systemd::properties`); systemd attaches the program.
//! - Own supervisor: a `BPF_PROG_TYPE_CGROUP_DEVICE` program built here
//!   ([`program`]) and attached to the container's cgroup2 directory
//!   ([`attach`]) before nspawn joins it. Attached with `BPF_F_ALLOW_MULTI`,
//!   it applies to every cgroup below (nspawn's `supervisor/` and
//!   `payload/`, the guest's own), and a program the guest's systemd
//!   attaches there can only narrow it: every program on the way up must
//!   allow an access. Hosts without a cgroup2 tree get no policy (see
//!   SECURITY.md, "Open").

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Device types as the kernel's device programs see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Block = 1,
    Char = 2,
}

/// Access bits (`BPF_DEVCG_ACC_*`).
pub const MKNOD: u32 = 1;
pub const READ: u32 = 2;
pub const WRITE: u32 = 4;
pub const RW: u32 = READ | WRITE;
pub const RWM: u32 = READ | WRITE | MKNOD;

/// One allowed device, or range of majors (any minor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub kind: Type,
    /// Inclusive range of majors.
    pub majors: (u32, u32),
    /// None: any minor.
    pub minor: Option<u32>,
    pub access: u32,
}

impl Rule {
    fn dev(kind: Type, major: u32, minor: u32, access: u32) -> Rule {
        Rule { kind, majors: (major, major), minor: Some(minor), access }
    }
}

/// A device node found under one of the conf's `DEVICES` paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub path: PathBuf,
    pub kind: Type,
    pub major: u32,
    pub minor: u32,
}

/// What every guest may open: what systemd's `DevicePolicy=closed` allows
/// (null, zero, full, random, urandom, tty, ptmx, and the 0:0 nodes systemd
/// makes for `InaccessiblePaths=`), plus what systemd-nspawn@.service adds:
/// the ptys (`char-pts`: majors 136-143, read and write) and /dev/net/tun.
/// Not /dev/console (5:1): the guest's is a pty nspawn binds there; 5:1 is
/// the host's console.
pub fn base_rules() -> Vec<Rule> {
    let mut rules: Vec<Rule> = [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 2), (10, 200), (0, 0)]
        .iter()
        .map(|&(major, minor)| Rule::dev(Type::Char, major, minor, RWM))
        .collect();
    rules.push(Rule::dev(Type::Block, 0, 0, RWM));
    rules.push(Rule { kind: Type::Char, majors: (136, 143), minor: None, access: RW });
    rules
}

/// The policy for a guest with these `DEVICES` nodes (read, write, mknod).
pub fn rules(nodes: &[Node]) -> Vec<Rule> {
    let mut rules = base_rules();
    rules.extend(nodes.iter().map(|n| Rule::dev(n.kind, n.major, n.minor, RWM)));
    rules
}

/// The device nodes of the conf's `DEVICES`: a node itself (symlinks
/// followed, as nspawn's `--bind` does), or every node below a directory
/// (e.g. /dev/dri). Anything else is an error.
pub fn nodes(devices: &[PathBuf]) -> Result<Vec<Node>> {
    let mut found = Vec::new();
    for d in devices {
        collect(d, &mut found, 0)?;
    }
    Ok(found)
}

fn collect(path: &Path, found: &mut Vec<Node>, depth: u32) -> Result<()> {
    let err = |why: String| Error::other(format!("device {}: {why}", path.display()));
    // The top is followed (DEVICES=/dev/disk/by-id/...); nothing below is.
    let meta = if depth == 0 { std::fs::metadata(path) } else { std::fs::symlink_metadata(path) };
    let meta = meta.map_err(|e| err(e.to_string()))?;
    let t = meta.file_type();
    let kind = if t.is_char_device() {
        Type::Char
    } else if t.is_block_device() {
        Type::Block
    } else if t.is_dir() && depth < 8 {
        let mut entries: Vec<_> =
            std::fs::read_dir(path).map_err(|e| err(e.to_string()))?.flatten().map(|e| e.path()).collect();
        entries.sort();
        for e in entries {
            collect(&e, found, depth + 1)?;
        }
        return Ok(());
    } else if depth > 0 {
        return Ok(());
    } else {
        return Err(err("not a device node or a directory of them".into()));
    };
    let rdev = meta.rdev();
    found.push(Node {
        path: path.to_path_buf(),
        kind,
        major: nix::sys::stat::major(rdev) as u32,
        minor: nix::sys::stat::minor(rdev) as u32,
    });
    Ok(())
}

/// One eBPF instruction (`struct bpf_insn`): opcode, registers (dst in the
/// low nibble), offset, immediate.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

const LDX_MEM_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const ALU32_AND_K: u8 = 0x54; // dst &= imm (32 bit)
const ALU32_RSH_K: u8 = 0x74; // dst >>= imm (32 bit)
const ALU64_MOV_K: u8 = 0xb7; // dst = imm
const JMP_JNE_K: u8 = 0x55; // if dst != imm: pc += off
const JMP_JLT_K: u8 = 0xa5; // if dst < imm (unsigned)
const JMP_JGT_K: u8 = 0x25; // if dst > imm (unsigned)
const JMP_JSET_K: u8 = 0x45; // if dst & imm
const EXIT: u8 = 0x95;

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2; // device type
const R3: u8 = 3; // access requested
const R4: u8 = 4; // major
const R5: u8 = 5; // minor

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: dst | (src << 4), off, imm }
}

/// The device program for `rules`: it returns 1 (allow) when the access
/// matches one rule (type, major, minor, and every access bit requested
/// among the rule's), else 0 (EPERM). The context is `struct
/// bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`, with
/// `access_type` = access << 16 | type.
pub fn program(rules: &[Rule]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_MEM_W, R2, R1, 0, 0),
        insn(ALU32_AND_K, R2, 0, 0, 0xffff),
        insn(LDX_MEM_W, R3, R1, 0, 0),
        insn(ALU32_RSH_K, R3, 0, 0, 16),
        insn(LDX_MEM_W, R4, R1, 4, 0),
        insn(LDX_MEM_W, R5, R1, 8, 0),
    ];
    for r in rules {
        // Each test jumps past the rest of the rule: to the next rule.
        let mut tests = vec![(JMP_JNE_K, R2, r.kind as i32)];
        let denied = !r.access & RWM;
        if denied != 0 {
            tests.push((JMP_JSET_K, R3, denied as i32));
        }
        if r.majors.0 == r.majors.1 {
            tests.push((JMP_JNE_K, R4, r.majors.0 as i32));
        } else {
            tests.push((JMP_JLT_K, R4, r.majors.0 as i32));
            tests.push((JMP_JGT_K, R4, r.majors.1 as i32));
        }
        if let Some(minor) = r.minor {
            tests.push((JMP_JNE_K, R5, minor as i32));
        }
        let n = tests.len();
        for (i, (code, reg, imm)) in tests.into_iter().enumerate() {
            // Past the remaining tests and the two instructions of "allow".
            let skip = (n - i - 1 + 2) as i16;
            p.push(insn(code, reg, 0, skip, imm));
        }
        p.push(insn(ALU64_MOV_K, R0, 0, 0, 1));
        p.push(insn(EXIT, 0, 0, 0, 0));
    }
    p.push(insn(ALU64_MOV_K, R0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The head of `union bpf_attr` for BPF_PROG_LOAD.
#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The head of `union bpf_attr` for BPF_PROG_ATTACH.
#[repr(C)]
#[derive(Default)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<i32> {
    // SAFETY: `attr` is a live, initialized `#[repr(C)]` head of `union
    // bpf_attr` for `cmd`, and its size is passed: the kernel reads (and
    // for some commands writes) only that many bytes. The pointers inside
    // it point into buffers the caller keeps alive across the call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>() as libc::c_uint) };
    if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(r as i32) }
}

/// Loads the device program for `rules`.
fn load(rules: &[Rule]) -> Result<OwnedFd> {
    let insns = program(rules);
    let license = c"GPL";
    let mut log = vec![0u8; 64 * 1024];
    let mut attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..ProgLoad::default()
    };
    attr.prog_name[..10].copy_from_slice(b"nc_devices");
    let fd = match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => fd,
        Err(first) => {
            // Again with the verifier's log, for the error message.
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            // Loaded the second time (the first failure was passing): use
            // it rather than leak it.
            if let Ok(fd) = bpf(BPF_PROG_LOAD, &mut attr) {
                // SAFETY: the kernel just returned this descriptor to us.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]).into_owned();
            let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").to_string();
            return Err(Error::other(format!("loading the guest's device policy (a BPF program): {first} {last}")));
        }
    };
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Attaches the device policy for `rules` to the cgroup2 directory `dir`
/// (and so to every cgroup below it). The kernel keeps the program while
/// the cgroup exists; the descriptors are closed on return.
pub fn attach(dir: &Path, rules: &[Rule]) -> Result<()> {
    let prog = load(rules)?;
    let cgroup =
        std::fs::File::open(dir).map_err(|e| Error::other(format!("opening cgroup {}: {e}", dir.display())))?;
    let mut attr = ProgAttach {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..ProgAttach::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attr)
        .map_err(|e| Error::other(format!("attaching the guest's device policy to {}: {e}", dir.display())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `program` on one access, as the kernel would: the instructions
    /// this module emits, interpreted.
    fn run(p: &[Insn], kind: Type, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | kind as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            let imm = i.imm as i64 as u64;
            let mut jump = false;
            match i.code {
                LDX_MEM_W => {
                    assert_eq!(src, R1 as usize);
                    r[dst] = u64::from(ctx[i.off as usize / 4]);
                }
                ALU32_AND_K => r[dst] = (r[dst] as u32 & i.imm as u32) as u64,
                ALU32_RSH_K => r[dst] = ((r[dst] as u32) >> i.imm) as u64,
                ALU64_MOV_K => r[dst] = imm,
                JMP_JNE_K => jump = r[dst] != imm,
                JMP_JLT_K => jump = r[dst] < imm,
                JMP_JGT_K => jump = r[dst] > imm,
                JMP_JSET_K => jump = r[dst] & imm != 0,
                EXIT => return r[0],
                c => panic!("unknown opcode {c:#x}"),
            }
            pc += 1;
            if jump {
                pc += i.off as usize;
            }
            assert!(pc < p.len(), "ran off the end");
        }
    }

    #[test]
    fn the_pseudo_devices_ptys_and_tun_are_allowed_and_nothing_else() {
        let p = program(&rules(&[]));
        let allow = |kind, access, major, minor| run(&p, kind, access, major, minor) == 1;
        for (major, minor) in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 2), (10, 200)] {
            assert!(allow(Type::Char, READ | WRITE, major, minor), "{major}:{minor}");
            assert!(allow(Type::Char, MKNOD, major, minor), "{major}:{minor}");
            assert!(!allow(Type::Block, READ, major, minor), "block {major}:{minor}");
        }
        // ptys: any minor of majors 136-143, not made by mknod.
        for major in 136..=143 {
            assert!(allow(Type::Char, RW, major, 0) && allow(Type::Char, READ, major, 4711));
            assert!(!allow(Type::Char, MKNOD, major, 0));
        }
        assert!(!allow(Type::Char, READ, 135, 0) && !allow(Type::Char, READ, 144, 0));
        // The host's disks, memory, kernel log and console.
        for (kind, major, minor) in [
            (Type::Block, 254, 0),
            (Type::Block, 8, 0),
            (Type::Block, 7, 0),
            (Type::Char, 1, 1),
            (Type::Char, 1, 11),
            (Type::Char, 5, 1),
            (Type::Char, 10, 229),
        ] {
            for access in [READ, WRITE, MKNOD, RWM] {
                assert!(!allow(kind, access, major, minor), "{kind:?} {major}:{minor} access {access}");
            }
        }
    }

    #[test]
    fn the_confs_devices_are_added_by_type_and_number() {
        let fuse = Node { path: "/dev/fuse".into(), kind: Type::Char, major: 10, minor: 229 };
        let disk = Node { path: "/dev/sdb".into(), kind: Type::Block, major: 8, minor: 16 };
        let p = program(&rules(&[fuse, disk]));
        assert_eq!(run(&p, Type::Char, RWM, 10, 229), 1);
        assert_eq!(run(&p, Type::Block, RW, 8, 16), 1);
        assert_eq!(run(&p, Type::Block, READ, 8, 0), 0);
        assert_eq!(run(&p, Type::Char, READ, 8, 16), 0, "the type counts");
        assert_eq!(run(&p, Type::Block, READ, 10, 229), 0);
    }

    #[test]
    fn each_rule_is_a_few_tests_then_allow() {
        let p = program(&[Rule::dev(Type::Char, 1, 3, RW)]);
        // Prologue (6), type, access, major, minor, allow (2), deny (2).
        assert_eq!(p.len(), 6 + 4 + 2 + 2);
        assert_eq!(p[6], insn(JMP_JNE_K, R2, 0, 5, 2));
        assert_eq!(p[7], insn(JMP_JSET_K, R3, 0, 4, MKNOD as i32));
        assert_eq!(p[9], insn(JMP_JNE_K, R5, 0, 2, 3));
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }

    #[test]
    fn devices_are_nodes_or_directories_of_them() {
        let null = nodes(&["/dev/null".into()]).unwrap();
        assert_eq!(null, [Node { path: "/dev/null".into(), kind: Type::Char, major: 1, minor: 3 }]);
        assert!(nodes(&["/dev/no-such-device".into()]).is_err());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(nodes(std::slice::from_ref(&file)).is_err(), "a plain file is no device");
        std::os::unix::fs::symlink("/dev/null", dir.path().join("null")).unwrap();
        // Below a directory only nodes count, and links are not followed.
        assert_eq!(nodes(&[dir.path().into()]).unwrap(), []);
        let devs = nodes(&["/dev/null".into(), "/dev/zero".into()]).unwrap();
        assert_eq!(devs.iter().map(|n| (n.major, n.minor)).collect::<Vec<_>>(), [(1, 3), (1, 5)]);
    }
}
