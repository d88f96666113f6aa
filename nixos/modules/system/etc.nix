# environment.etc: files under /etc.  Like NixOS, the build produces one
# store directory (`etc/` plus a `manifest`); activation points
# /etc/static at it and makes /etc/NAME a symlink to /etc/static/NAME, or,
# with a `mode` other than "symlink", a copy with that mode/owner.
{ config, lib, pkgs, ... }:
with lib;
let
  inherit (pkgs.nixosStandin) runBusybox;

  etcEntry = types.submodule ({ name, config, ... }: {
    options = {
      enable = mkOption { type = types.bool; default = true; description = "Whether this file is generated."; };
      target = mkOption { type = types.str; default = name; description = "Name of the file relative to /etc."; };
      text = mkOption { type = types.nullOr types.lines; default = null; description = "Contents of the file."; };
      source = mkOption { type = types.path; description = "File (or directory) the entry points to."; };
      mode = mkOption {
        type = types.str;
        default = "symlink";
        description = ''"symlink" (default), "direct-symlink" (link straight to the store) or an octal mode such as "0644" (a real copy).'';
      };
      uid = mkOption { type = types.int; default = 0; description = "Owner of a copied file."; };
      gid = mkOption { type = types.int; default = 0; description = "Group of a copied file."; };
      user = mkOption { type = types.str; default = "+${toString config.uid}"; description = "Owner name (overrides uid) of a copied file."; };
      group = mkOption { type = types.str; default = "+${toString config.gid}"; description = "Group name (overrides gid) of a copied file."; };
    };
    config.source = mkIf (config.text != null) (mkDefault (pkgs.writeText "etc-${baseNameOf name}" config.text));
  });

  entries = filter (e: e.enable) (attrValues config.environment.etc);

  cleanTarget = t: removePrefix "/" t;

  checkEntry = e:
    let t = cleanTarget e.target; in
    if t == "" || hasInfix "/../" "/${t}/" || hasInfix "\n" t
    then throw "environment.etc: invalid target `${e.target}'"
    else if match "symlink|direct-symlink|[0-7]{3,4}" e.mode == null
    then throw "environment.etc.\"${e.target}\".mode must be \"symlink\", \"direct-symlink\" or an octal mode, not `${e.mode}'"
    else e;

  etc = runBusybox "etc" { } (''
    mkdir -p "$out/etc"
    : > "$out/manifest"
    add() { # mode uid gid user group source target
      t="$out/etc/$7"
      if [ -e "$t" ] || [ -L "$t" ]; then echo "environment.etc: duplicate target $7" >&2; exit 1; fi
      mkdir -p "$(dirname "$t")"
      ln -s "$6" "$t"
      echo "$1 $2 $3 $4 $5 $7" >> "$out/manifest"
    }
  '' + concatMapStrings (e0:
    let e = checkEntry e0; in ''
      add ${escapeShellArgs [ e.mode (toString e.uid) (toString e.gid) e.user e.group "${e.source}" (cleanTarget e.target) ]}
    '') entries);
in
{
  options = {
    environment.etc = mkOption {
      type = types.attrsOf etcEntry;
      default = { };
      example = literalExpression ''{ "demo.conf".text = "x=1"; }'';
      description = "Files to put into /etc.";
    };
  };

  config.system.build.etc = etc;
}
