//! nixos-container: lightweight NixOS containers on systemd-nspawn: systemd
//! units registered with machined where systemd is PID 1, supervised by the
//! tool itself where it is not.
//!
//! The CLI is the binary's (`main.rs` and its modules `cli`, `commands`,
//! `completion`, `examples`, `manpages`); it sits on these domain modules,
//! which never reach back into it:
//! - `paths`, `name`, `conf`: where things are, what names are valid, the
//!   conf file format;
//! - `addr`: address allocation;
//! - `net`: the private network (namespace, veth, routes, port forwards,
//!   `NAME.containers`);
//! - `nixos_config`, `profile`: the generated configuration.nix and the Nix
//!   builds into the per-container profile;
//! - `rootfs`, `fsutil`: the container root and careful file operations;
//! - `hostkey`: the guest's SSH host key, checked, as a known_hosts line;
//! - `lock`: per-container and global locks;
//! - `supervision`: the seam that keeps a container running (one per host)
//!   and the one answer to "is it running" (`RunStatus`);
//! - `cgroup`, `nspawn`, `supervisor`: launching and supervising a guest
//!   with our own supervisor;
//! - `systemd`, `unit`: the host's systemd over D-Bus, and the backend that
//!   runs a container as the transient unit `nixos-container@NAME.service`;
//! - `devices`: which devices a guest may open (its cgroup's device policy);
//! - `limits`: memory, CPU and process limits through the container's cgroup;
//! - `guest`: the sockets inside a running guest;
//! - `info`, `logs`: a container's details, its console and journal;
//! - `copy`: files between the host and a container's root (`cp`);
//! - `lifecycle`: create/start/stop/terminate/destroy on top of all that;
//! - `update`: new generations, live activation, rollback.

pub mod addr;
pub mod buildusers;
pub mod cgroup;
pub mod conf;
pub mod container;
pub mod copy;
pub mod devices;
pub mod error;
pub mod faults;
pub mod fsutil;
pub mod guest;
pub mod hostkey;
pub mod hostlimits;
pub mod info;
pub mod lifecycle;
pub mod limits;
pub mod lock;
pub mod logs;
pub mod name;
pub mod net;
pub mod nixos_config;
pub mod nspawn;
pub mod paths;
pub mod profile;
pub mod rootfs;
pub mod supervision;
pub mod supervisor;
pub mod systemd;
pub mod unit;
pub mod update;
