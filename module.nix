# NixOS module for a host that runs nixos-container (this repository's
# tool): the package on PATH (with its man pages and completions, which
# NixOS links from system packages), the unit files of units/ with ExecStart
# pointing into the package, and the boot-time start of containers created
# with --auto-start, hooked into machines.target as nixpkgs does. The
# declarative counterpart of `bash scripts/install`.
#
#   imports = [ /path/to/nixos-container/module.nix ];
#   programs.nixos-container.enable = true;
#   programs.nixos-container.package = ...;   # see the option
#
# It also evaluates with the project's NixOS stand-in (nixos/), a container
# OS that ignores systemd.packages: a stand-in system importing it is no
# working container host.
{ config, lib, pkgs, ... }:
let
  cfg = config.programs.nixos-container;

  # A running container is a transient unit the tool creates at start
  # (nixos-container@NAME.service, see ARCHITECTURE.md): only the boot-time
  # auto-start is a unit file.
  unitNames = [ "nixos-containers-autostart.service" ];

  # One package per unit, laid out as systemd.packages expects.
  unitPackage = file: pkgs.writeTextFile {
    name = "unit-" + builtins.replaceStrings [ "@" ] [ "-at" ] file;
    destination = "/lib/systemd/system/${file}";
    text = builtins.replaceStrings [ "@bindir@" ] [ "${cfg.package}/bin" ]
      (builtins.readFile (./units + "/${file}"));
  };

  # What the tool runs: nix-env/nix-store, systemd-nspawn, nft (port
  # forwards). NixOS services get no PATH beyond coreutils and systemd.
  # (The stand-in has no such packages: its services see the host's /usr.)
  toolPath = lib.filter (p: p != null)
    [ (config.nix.package or pkgs.nix or null) (pkgs.systemd or null) (pkgs.nftables or null) ];

  # nixpkgs' own nixos-container (boot.enableContainers) has the same name:
  # ours comes first on PATH. The stand-in has no package priorities.
  hiPrio = lib.hiPrio or (p: p);
in
{
  options.programs.nixos-container = {
    enable = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = ''
        Install nixos-container (the Rust tool) with its unit files, man
        pages and shell completions, and start containers created with
        --auto-start at boot.
      '';
    };
    package = lib.mkOption {
      type = lib.types.nullOr lib.types.package;
      default = null;
      description = ''
        The nixos-container package: bin/nixos-container, share/man/man1,
        share/bash-completion/completions, share/zsh/site-functions and
        share/fish/vendor_completions.d, as
        `DESTDIR=$out PREFIX=/ SYSTEMD_UNITS=no bash scripts/install` lays
        them out. The unit files come from this module.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [{
      assertion = cfg.package != null;
      message = "programs.nixos-container.package must be set to a nixos-container package (see its description)";
    }];

    environment.systemPackages = lib.optional (cfg.package != null) (hiPrio cfg.package);

    systemd.packages = lib.optionals (cfg.package != null) (map unitPackage unitNames);

    # NixOS ignores [Install] sections of packaged units: enable by hand.
    # (These definitions become drop-ins of the packaged units.)
    systemd.services.nixos-containers-autostart = { wantedBy = [ "machines.target" ]; path = toolPath; };
    systemd.targets.multi-user.wants = [ "machines.target" ];
  };
}
