use crate::cli::CreateArgs;
use crate::commands::{Ctx, require_root};
use nixos_container::conf::{
    Bind, Conf, parse_addr4, parse_addr6, validate_capability, validate_device_path, validate_private_users,
    validate_syscall_filter,
};
use nixos_container::error::{Error, Result};
use nixos_container::lifecycle::{self, CreateRequest, Source};
use nixos_container::nixos_config::UserConfig;
use nixos_container::profile::DEFAULT_NIXOS_PATH;
use nixos_container::update::NewSource;

fn invalid(what: &'static str, value: &str, reason: String) -> Error {
    Error::InvalidValue { what, value: value.to_string(), reason }
}

/// Turns the arguments into the conf to write, checking every value.
fn conf_from_args(args: &CreateArgs) -> Result<Conf> {
    let mut conf =
        Conf { private_network: true, auto_start: args.auto_start, nix_daemon: args.nix_daemon, ..Conf::default() };
    if let Some(b) = &args.bridge {
        nixos_container::net::names::validate_ifname(b).map_err(|r| invalid("bridge", b, r))?;
        conf.host_bridge = Some(b.clone());
    }
    // As nixpkgs passes them on: --host-address/--local-address may be
    // IPv6 (an IPv6-only container), stored where nixpkgs stores them.
    let v6 = |a: &Option<String>| a.as_deref().is_some_and(|a| parse_addr4(a).is_err() && parse_addr6(a).is_ok());
    if (v6(&args.host_address) || v6(&args.local_address))
        && args.host_address6.is_none()
        && args.local_address6.is_none()
    {
        for (given, slot, what) in [
            (&args.host_address, &mut conf.host_address6, "host address"),
            (&args.local_address, &mut conf.local_address6, "local address"),
        ] {
            if let Some(a) = given {
                *slot = Some(parse_addr6(a).map_err(|_| {
                    invalid(what, a, "give both --host-address and --local-address as IPv6, or both as IPv4".into())
                })?);
            }
        }
        conf.ipv6_in_address_keys = true;
        if args.local_address.is_some() && args.host_address.is_none() && args.bridge.is_none() {
            return Err(Error::Usage(
                "--local-address needs --host-address (or --bridge, where the host side has no address)".into(),
            ));
        }
        return finish_conf(args, conf);
    }
    if let Some(h) = &args.host_address {
        conf.host_address = Some(parse_addr4(h).map_err(|r| invalid("host address", h, r))?);
    }
    if let Some(l) = &args.local_address {
        conf.local_address = Some(parse_addr4(l).map_err(|r| invalid("local address", l, r))?);
        // Routed, the host side needs its address; on a bridge the
        // container's default route is optional (via --host-address, if given).
        if args.host_address.is_none() && args.bridge.is_none() {
            return Err(Error::Usage(
                "--local-address needs --host-address (or --bridge, where the host side has no address)".into(),
            ));
        }
    }
    finish_conf(args, conf)
}

/// The rest of the conf: everything but the IPv4 addresses.
fn finish_conf(args: &CreateArgs, mut conf: Conf) -> Result<Conf> {
    if let Some(h) = &args.host_address6 {
        conf.host_address6 = Some(parse_addr6(h).map_err(|r| invalid("host address6", h, r))?);
    }
    if let Some(l) = &args.local_address6 {
        conf.local_address6 = Some(parse_addr6(l).map_err(|r| invalid("local address6", l, r))?);
    }
    for p in &args.port {
        conf.host_port.push(p.parse().map_err(|r| invalid("port", p, r))?);
    }
    for (specs, ro) in [(&args.bind, false), (&args.bind_ro, true)] {
        for spec in specs {
            let b = Bind::parse(spec, ro).map_err(|r| invalid("bind", spec, r))?;
            b.check_options().map_err(|r| invalid("bind", spec, r))?;
            if !b.source.starts_with("+") && !b.source.exists() {
                return Err(invalid("bind", spec, format!("{} does not exist", b.source.display())));
            }
            conf.binds.push(b);
        }
    }
    for c in &args.capability {
        conf.capabilities.push(validate_capability(c).map_err(|r| invalid("capability", c, r))?);
    }
    for f in &args.system_call_filter {
        for token in f.split_whitespace() {
            conf.system_call_filter
                .push(validate_syscall_filter(token).map_err(|r| invalid("system call filter", token, r))?);
        }
    }
    for d in &args.device {
        let path = validate_device_path(d).map_err(|r| invalid("device", d, r))?;
        use std::os::unix::fs::FileTypeExt;
        let is_device = std::fs::metadata(&path)
            .map(|m| m.file_type().is_char_device() || m.file_type().is_block_device())
            .unwrap_or(false);
        if !is_device {
            return Err(invalid("device", d, "no such device node on this host".into()));
        }
        conf.devices.push(path);
    }
    if let Some(mode) = &args.private_users {
        validate_private_users(mode).map_err(|r| invalid("--private-users mode", mode, r))?;
        conf.private_users = Some(mode.clone());
    }
    conf.limits = conf.limits.with(&args.limits.change());
    Ok(conf)
}

pub fn run(ctx: &Ctx, args: &CreateArgs) -> Result<i32> {
    nixos_container::name::validate(&args.name)?;
    require_root()?;
    let mut conf = conf_from_args(args)?;
    // Nothing is stored yet: no source means the default configuration.
    let source = match args.source.source()? {
        NewSource::SystemPath(p) => Source::SystemPath(p),
        NewSource::Flake(f) => {
            conf.flake = Some(f.clone());
            Source::Flake(f)
        }
        NewSource::Stored => Source::Config { nixos_path: DEFAULT_NIXOS_PATH.into(), user: UserConfig::None },
        NewSource::Config { user, nixos_path } => {
            let nixos_path = nixos_path.unwrap_or_else(|| DEFAULT_NIXOS_PATH.into());
            if nixos_path != DEFAULT_NIXOS_PATH {
                conf.nixos_path = Some(nixos_path.clone());
            }
            Source::Config { nixos_path, user: user.unwrap_or(UserConfig::None) }
        }
    };
    let output = ctx.build_output();
    let created = lifecycle::create(
        &ctx.paths,
        CreateRequest {
            name: args.name.clone(),
            ensure_unique_name: args.ensure_unique_name,
            source,
            conf,
            output,
            nix: args.nix.flags(),
        },
    )?;
    if let (Some(h), Some(l)) = (created.conf.host_address, created.conf.local_address) {
        ctx.note(&format!("host IP is {}, container IP is {}", h.addr, l.addr));
    }
    if let (Some(h), Some(l)) = (created.conf.host_address6, created.conf.local_address6) {
        ctx.note(&format!("host IPv6 is {}, container IPv6 is {}", h.addr, l.addr));
    }
    if args.ensure_unique_name {
        println!("{}", created.name);
    }
    Ok(0)
}
