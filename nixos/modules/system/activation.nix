# system.activationScripts and $system/activate.
#
# `activate` is run by `init` before systemd starts and by
# `switch-to-configuration` in a running container.  It runs under the
# store's static busybox `sh` (ash: most bash syntax such as [[ ]] and
# `local` works, arrays do not), each snippet in a subshell with `set -e`;
# a failing snippet is reported and makes `activate` exit 1, the others
# still run.  Snippets are ordered by their `deps`, then by name.
{ config, lib, pkgs, ... }:
with lib;
let
  bb = pkgs.busybox;

  snippetType = types.coercedTo types.str (text: { inherit text; }) (types.submodule {
    options = {
      deps = mkOption { type = types.listOf types.str; default = [ ]; description = "Snippets that must run first."; };
      text = mkOption { type = types.lines; description = "Shell code."; };
      supportsDryActivation = mkOption { type = types.bool; default = false; description = "Ignored."; };
    };
  });

  scripts = config.system.activationScripts;

  visit = stack: acc: name:
    if elem name acc then acc
    else if elem name stack then throw "system.activationScripts: dependency cycle: ${concatStringsSep " -> " (stack ++ [ name ])}"
    else if !(scripts ? ${name}) then throw "system.activationScripts.${name} is needed by ${last stack} but not defined"
    else foldl' (visit (stack ++ [ name ])) acc scripts.${name}.deps ++ [ name ];

  order = foldl' (visit [ ]) [ ] (attrNames scripts);

  activate = pkgs.writeText "activate-template" ''
    #!${bb}/bin/sh
    # Activation script of a NixOS stand-in system (generated).
    systemConfig='@systemConfig@'
    export PATH=${bb}/bin:/usr/bin:/usr/sbin:/bin:/sbin
    umask 0022
    _status=0

    ${concatMapStrings (name: ''
      # ---- ${name}
      (
        set -e
        ${scripts.${name}.text}
      )
      if [ $? -ne 0 ]; then
        echo "Activation script snippet '${name}' failed" >&2
        _status=1
      fi

    '') order}
    ln -sfn "$systemConfig" /run/current-system.tmp && mv -Tf /run/current-system.tmp /run/current-system || _status=1
    exit $_status
  '';
in
{
  options.system.activationScripts = mkOption {
    type = types.attrsOf snippetType;
    default = { };
    description = "Shell snippets run (as root, in the container) on every boot and switch.";
  };

  config = {
    system.build.activate = activate;

    system.activationScripts = {
      specialfs = ''
        for d in bin sbin lib lib32 lib64 libx32; do
          if [ -d "/usr/$d" ] && [ ! -e "/$d" ] && [ ! -L "/$d" ]; then ln -s "usr/$d" "/$d"; fi
        done
        mkdir -p /etc /var/lib /var/log /var/cache /var/db /var/spool /home /run/wrappers/bin
        mkdir -m 0700 -p /root
        mkdir -m 1777 -p /tmp /var/tmp
        mkdir -m 0555 -p /var/empty
        [ -e /etc/mtab ] || [ -L /etc/mtab ] || ln -s ../proc/self/mounts /etc/mtab
      '';

      etc = {
        deps = [ "specialfs" ];
        text = ''
          ${bb}/bin/sh ${./setup-etc.sh} ${config.system.build.etc}
        '';
      };

      machine-id = {
        deps = [ "etc" ];
        text = ''
          # Without a machine id systemd assumes a first boot and runs
          # systemd-firstboot, which waits for answers on the console.
          if [ ! -s /etc/machine-id ]; then
            tr -d '\n-' < /proc/sys/kernel/random/uuid > /etc/machine-id.tmp
            echo >> /etc/machine-id.tmp
            chmod 0444 /etc/machine-id.tmp
            mv -f /etc/machine-id.tmp /etc/machine-id
          fi
        '';
      };
    };
  };
}
