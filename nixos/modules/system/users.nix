# users.users / users.groups.  /etc/passwd, /etc/group and /etc/shadow are
# real, writable files (so `passwd`/`chpasswd` work in the container).
# On every activation the declared users and groups are merged in
# (like NixOS with users.mutableUsers = true): declared fields win, other
# entries are kept, and passwords are only set when a user is created.
# Afterwards systemd-sysusers (from the host's /usr) adds the system users
# the host's units expect (messagebus, systemd-journal, ...).
{ config, lib, pkgs, ... }:
with lib;
let
  cfg = config.users;
  bb = pkgs.busybox;

  shellPath = s:
    if s == null then "/usr/sbin/nologin"
    else if isString s then s
    else if s ? shellPath then "${s}${s.shellPath}"
    else "${s}/bin/${s.meta.mainProgram or "sh"}";

  userOpts = { name, config, ... }: {
    options = {
      name = mkOption { type = types.passwdEntry types.str; default = name; description = "User name."; };
      uid = mkOption { type = types.nullOr types.int; default = null; description = "User id; allocated when null."; };
      group = mkOption { type = types.str; default = if config.isNormalUser then "users" else "nogroup"; description = "Primary group."; };
      extraGroups = mkOption { type = types.listOf types.str; default = [ ]; description = "Supplementary groups."; };
      description = mkOption { type = types.passwdEntry types.str; default = ""; description = "GECOS field."; };
      home = mkOption { type = types.passwdEntry types.str; default = if config.isNormalUser then "/home/${config.name}" else "/var/empty"; description = "Home directory."; };
      homeMode = mkOption { type = types.strMatching "[0-7]{1,5}"; default = "700"; description = "Mode of a created home directory."; };
      createHome = mkOption { type = types.bool; default = config.isNormalUser; description = "Create the home directory."; };
      shell = mkOption {
        type = types.nullOr (types.either types.str types.package);
        default = if config.isNormalUser then cfg.defaultUserShell else "/usr/sbin/nologin";
        description = "Login shell (a path, or a package with shellPath).";
      };
      isNormalUser = mkOption { type = types.bool; default = false; description = "A normal (human) user: uid >= 1000, group users, home in /home, bash."; };
      isSystemUser = mkOption { type = types.bool; default = false; description = "A system user: uid < 1000."; };
      hashedPassword = mkOption { type = types.nullOr (types.passwdEntry types.str); default = null; description = "Hashed password, set when the user is created."; };
      initialHashedPassword = mkOption { type = types.nullOr (types.passwdEntry types.str); default = null; description = "Hashed password, set when the user is created."; };
      password = mkOption { type = types.nullOr types.str; default = null; description = "Clear-text password (ends up in the store!), set when the user is created."; };
      initialPassword = mkOption { type = types.nullOr types.str; default = null; description = "Clear-text password, set when the user is created."; };
      hashedPasswordFile = mkOption { type = types.nullOr types.str; default = null; description = "Ignored."; };
      packages = mkOption { type = types.listOf types.package; default = [ ]; description = "Added to environment.systemPackages."; };
      openssh.authorizedKeys.keys = mkOption { type = types.listOf types.str; default = [ ]; description = "Ignored (no sshd)."; };
      linger = mkOption { type = types.bool; default = false; description = "Ignored."; };
      subUidRanges = mkOption { type = types.listOf types.attrs; default = [ ]; description = "Ignored."; };
      subGidRanges = mkOption { type = types.listOf types.attrs; default = [ ]; description = "Ignored."; };
      autoSubUidGidRange = mkOption { type = types.bool; default = false; description = "Ignored."; };
    };
  };

  groupOpts = { name, ... }: {
    options = {
      name = mkOption { type = types.passwdEntry types.str; default = name; description = "Group name."; };
      gid = mkOption { type = types.nullOr types.int; default = null; description = "Group id; allocated when null."; };
      members = mkOption { type = types.listOf types.str; default = [ ]; description = "Member user names."; };
    };
  };

  # root first, so that a fresh /etc/passwd starts with it
  users = sort (a: b: a.uid == 0 && b.uid != 0) (attrValues cfg.users);
  groups = attrValues cfg.groups;

  field = v: if v == null then "" else toString v;
  bool01 = v: if v then "1" else "0";

  # name:uid:group:description:home:shell:createHome:isNormal:homeMode:hashed:clear
  usersSpec = pkgs.writeText "users-spec" (concatMapStrings (u: concatStringsSep ":" [
    u.name (field u.uid) u.group u.description u.home (shellPath u.shell)
    (bool01 u.createHome) (bool01 u.isNormalUser) u.homeMode
    (field (if u.hashedPassword != null then u.hashedPassword else u.initialHashedPassword))
    (field (if u.password != null then u.password else u.initialPassword))
  ] + "\n") users);

  membersOf = g: unique (g.members ++ map (u: u.name) (filter (u: elem g.name u.extraGroups) users));

  # name:gid:member,member
  groupsSpec = pkgs.writeText "groups-spec" (concatMapStrings (g:
    "${g.name}:${field g.gid}:${concatStringsSep "," (membersOf g)}\n") groups);
in
{
  options.users = {
    users = mkOption { type = types.attrsOf (types.submodule userOpts); default = { }; description = "User accounts."; };
    groups = mkOption { type = types.attrsOf (types.submodule groupOpts); default = { }; description = "Groups."; };
    mutableUsers = mkOption { type = types.bool; default = true; description = "Only `true' is implemented: existing accounts and passwords are kept."; };
    defaultUserShell = mkOption { type = types.either types.str types.package; default = "/bin/bash"; description = "Shell of normal users."; };
    enforceIdUniqueness = mkOption { type = types.bool; default = true; description = "Ignored."; };
  };

  config = {
    users.users.root = {
      uid = 0;
      group = "root";
      description = "System administrator";
      home = "/root";
      shell = mkDefault "/bin/bash";
    };
    users.users.nobody = {
      uid = 65534;
      group = "nogroup";
      description = "Unprivileged account (don't use!)";
      home = "/var/empty";
    };
    users.groups = {
      root.gid = 0;
      wheel.gid = 1;
      tty.gid = 5; # the group nspawn gives /dev/pts (Debian's id)
      users.gid = 100;
      nogroup.gid = 65534;
    };

    environment.systemPackages = concatMap (u: u.packages) users;

    assertions =
      concatMap (u: [
        { assertion = !(u.isNormalUser && u.isSystemUser); message = "users.users.${u.name}: isNormalUser and isSystemUser are mutually exclusive."; }
        { assertion = u.group == "" || cfg.groups ? ${u.group}; message = "users.users.${u.name}.group = \"${u.group}\" is not a declared group (declare users.groups.${u.group})."; }
      ]) users
      ++ [ { assertion = cfg.mutableUsers; message = "users.mutableUsers = false is not supported by the NixOS stand-in."; } ];

    system.activationScripts.users = {
      deps = [ "etc" ];
      text = ''
        ${bb}/bin/sh ${./update-users.sh} ${usersSpec} ${groupsSpec}
        if [ -x /usr/bin/systemd-sysusers ]; then /usr/bin/systemd-sysusers >/dev/null 2>&1 || true; fi
        if grep -q '^shadow:' /etc/group; then chgrp shadow /etc/shadow; fi
      '';
    };
  };
}
