# system.build.toplevel: the system store path.
#
#   init                          started by nspawn (through the profile
#                                 symlink); runs ./activate, execs the
#                                 host's /usr/lib/systemd/systemd
#   activate                      sets up /etc, users, machine-id, ...
#   bin/switch-to-configuration   switch/test in a running container
#   etc -> ...-etc/etc            what /etc/static points to
#   sw                            linked systemPackages
#   busybox                       the static busybox all scripts use
#   nixos-version, nixos-version.json
{ config, lib, pkgs, ... }:
with lib;
let
  inherit (pkgs.nixosStandin) runBusybox sanitizeName;
  bb = pkgs.busybox;
  nixos = config.system.nixos;

  failedAssertions = map (x: x.message) (filter (x: !x.assertion) config.assertions);

  versionJson = builtins.toJSON ({
    nixosVersion = nixos.version;
    nixosStandin = true;
  } // optionalAttrs (config.system.configurationRevision != null) {
    configurationRevision = config.system.configurationRevision;
  });

  baseSystem = runBusybox (sanitizeName "nixos-system-${config.system.name}-${nixos.label}") {
    inherit versionJson;
    version = nixos.version;
    passAsFile = [ "versionJson" ];
    passthru = { inherit (config.system.build) etc activate units; };
  } ''
    mkdir -p "$out/bin"
    ln -s ${config.system.build.etc}/etc "$out/etc"
    ln -s ${config.system.path} "$out/sw"
    ln -s ${bb} "$out/busybox"
    printf '%s' "$version" > "$out/nixos-version"
    cp "$versionJsonPath" "$out/nixos-version.json"

    subst() { sed -e "s|@systemConfig@|$out|g" -e "s|@busybox@|${bb}|g" "$1" > "$2"; chmod 0555 "$2"; }
    subst ${config.system.build.activate} "$out/activate"
    subst ${./init.sh} "$out/init"
    subst ${./switch-to-configuration.sh} "$out/bin/switch-to-configuration"

    ${config.system.extraSystemBuilderCmds}
  '';

  # Forcing drvPath here makes every evaluation error surface as soon as
  # the toplevel is looked at.  (nix-env silently drops derivations whose
  # `name` throws, so a conflict in networking.hostName would otherwise
  # only give "--set requires exactly one derivation".)
  withWarnings = foldr (w: x: builtins.trace "warning: ${w}" x)
    (builtins.seq baseSystem.drvPath baseSystem) config.warnings;
in
{
  options.system = {
    build = mkOption {
      type = types.lazyAttrsOf types.unspecified;
      default = { };
      description = "Derivations that make up the system (toplevel, etc, units, activate, ...).";
    };
    extraSystemBuilderCmds = mkOption {
      type = types.lines;
      default = "";
      description = "Shell commands (busybox sh) appended to the toplevel builder; $out is the system.";
    };
  };

  config.system.build.toplevel =
    if failedAssertions != [ ]
    then throw "\nFailed assertions:\n${concatMapStrings (m: "- ${m}\n") failedAssertions}"
    else withWarnings;
}
