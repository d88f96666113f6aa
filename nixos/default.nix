# Stand-in for <nixpkgs/nixos>:
#   nix-env -p PROFILE -I nixos-config=CONFIG.nix -f /path/to/nixos --set -A system
#   nix-build /path/to/nixos -A system --arg configuration ./configuration.nix
# `configuration` defaults to <nixos-config> (looked up in NIX_PATH / -I)
# or the file named by $NIXOS_CONFIG.
{ configuration ?
    (let env = builtins.getEnv "NIXOS_CONFIG"; in
     if env != "" then /. + env else <nixos-config>)
, system ? builtins.currentSystem or "x86_64-linux"
}:
let
  eval = import ./lib/eval-config.nix {
    inherit system;
    modules = [ configuration ];
  };
in
{
  inherit (eval) config options pkgs;
  system = eval.config.system.build.toplevel;
  inherit (eval.config.system.build) etc;
}
