# Host name, /etc/hosts and /etc/nsswitch.conf.  Interfaces, routes and
# resolv.conf are the business of the container manager (nspawn and the
# nixos-container CLI), not of the guest.
{ config, lib, ... }:
with lib;
let
  cfg = config.networking;
  fqdn = if cfg.domain != null then "${cfg.hostName}.${cfg.domain}" else cfg.hostName;
in
{
  options.networking = {
    hostName = mkOption {
      type = types.strMatching "^$|^[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?$";
      default = "nixos";
      description = "The container's host name (/etc/hostname).";
    };
    domain = mkOption { type = types.nullOr types.str; default = null; description = "Domain name."; };
    hosts = mkOption { type = types.attrsOf (types.listOf types.str); default = { }; description = "Extra /etc/hosts entries: address -> names."; };
    extraHosts = mkOption { type = types.lines; default = ""; description = "Extra lines of /etc/hosts."; };
    fqdn = mkOption { type = types.str; default = fqdn; readOnly = true; description = "Fully qualified host name."; };
  };

  config.system.activationScripts.hostname = {
    deps = [ "etc" ];
    text = optionalString (cfg.hostName != "") ''
      hostname ${escapeShellArg cfg.hostName} 2>/dev/null || true
    '';
  };

  config.environment.etc = {
    "hostname" = mkIf (cfg.hostName != "") { text = cfg.hostName + "\n"; };
    "hosts".text = ''
      127.0.0.1 localhost
      ::1 localhost
      ${optionalString (cfg.hostName != "") "127.0.0.2 ${optionalString (cfg.domain != null) "${fqdn} "}${cfg.hostName}"}
      ${concatStrings (mapAttrsToList (addr: names: "${addr} ${concatStringsSep " " names}\n") cfg.hosts)}
      ${cfg.extraHosts}
    '';
    "nsswitch.conf".text = ''
      passwd:    files systemd
      group:     files [success=merge] systemd
      shadow:    files
      sudoers:   files
      hosts:     files myhostname dns
      networks:  files
      ethers:    files
      services:  files
      protocols: files
      rpc:       files
    '';
  };
}
