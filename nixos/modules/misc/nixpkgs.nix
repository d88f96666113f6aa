# nixpkgs.* options are accepted so that configurations written for real
# NixOS evaluate; only the system double is used (for derivations).
{ lib, ... }:
with lib;
{
  options.nixpkgs = {
    system = mkOption {
      type = types.str;
      default = builtins.currentSystem or "x86_64-linux";
      description = "The platform the system is built for.";
    };
    hostPlatform = mkOption {
      type = types.either types.str types.attrs;
      default = { };
      description = "Accepted for compatibility; a string (or { system = ...; }) overrides nixpkgs.system.";
    };
    buildPlatform = mkOption { type = types.either types.str types.attrs; default = { }; description = "Ignored."; };
    localSystem = mkOption { type = types.attrs; default = { }; description = "Ignored."; };
    crossSystem = mkOption { type = types.nullOr types.attrs; default = null; description = "Ignored."; };
    config = mkOption { type = types.attrs; default = { }; description = "Ignored (there is no nixpkgs)."; };
    overlays = mkOption { type = types.listOf types.unspecified; default = [ ]; description = "Ignored (there is no nixpkgs)."; };
    pkgs = mkOption { type = types.raw; default = null; description = "Ignored."; };
  };
}
