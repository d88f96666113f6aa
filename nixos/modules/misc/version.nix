{ config, lib, ... }:
with lib;
let cfg = config.system.nixos; in
{
  options.system = {
    stateVersion = mkOption {
      type = types.str;
      default = cfg.release;
      description = "Accepted and ignored (nothing here depends on it).";
    };
    nixos = {
      release = mkOption { type = types.str; default = "25.05"; description = "Release number shown in os-release."; };
      codeName = mkOption { type = types.str; default = "Stand-in"; description = "Release code name."; };
      versionSuffix = mkOption { type = types.str; default = "-standin"; description = "Version suffix."; };
      version = mkOption { type = types.str; default = cfg.release + cfg.versionSuffix; description = "Full version."; };
      label = mkOption { type = types.str; default = cfg.version; description = "Label used in the system's store path name."; };
      tags = mkOption { type = types.listOf types.str; default = [ ]; description = "Ignored."; };
    };
    name = mkOption {
      type = types.str;
      default = if config.networking.hostName == "" then "unnamed" else config.networking.hostName;
      description = "Name used in the system's store path name.";
    };
    configurationRevision = mkOption { type = types.nullOr types.str; default = null; description = "Recorded in the system's nixos-version.json."; };
  };
}
