# Evaluate a NixOS stand-in configuration, like nixpkgs/nixos/lib/eval-config.nix.
#
#   import ./eval-config.nix { modules = [ ./configuration.nix ]; }
#   => { config; options; pkgs; lib; ... }
#   config.system.build.toplevel is the system.
args@{ modules ? [ ]
, system ? null
, specialArgs ? { }
, extraArgs ? { }
, baseModules ? import ../modules/module-list.nix
, extraModules ? [ ]
, prefix ? [ ]
, lib ? import ./.
, pkgs ? null
, check ? true
, ...
}:
let
  config = eval.config;

  # The platform: the `system` argument, else nixpkgs.hostPlatform /
  # nixpkgs.system from the configuration.
  hostPlatform = eval.uncheckedConfig.nixpkgs.hostPlatform;
  theSystem =
    if system != null then system
    else if builtins.isString hostPlatform then hostPlatform
    else if hostPlatform ? system then hostPlatform.system
    else eval.uncheckedConfig.nixpkgs.system;

  thePkgs = if pkgs != null then pkgs else import ../pkgs { inherit lib; system = theSystem; };

  eval = lib.evalModules {
    inherit prefix;
    modules = baseModules ++ extraModules ++ modules;
    specialArgs = {
      pkgs = thePkgs;
      modulesPath = toString ../modules;
      baseModules = baseModules;
      extraModules = extraModules;
      utils = { };
    } // extraArgs // specialArgs;
  };
in
{
  inherit (eval) options;
  inherit config lib;
  pkgs = thePkgs;
  type = "configuration";
  _module = eval._module;
  extendModules = extra: import ./eval-config.nix (args // {
    modules = modules ++ (extra.modules or [ ]);
    specialArgs = specialArgs // (extra.specialArgs or { });
  });
}
