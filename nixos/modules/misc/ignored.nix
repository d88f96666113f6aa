# Options that are accepted (so ordinary container configurations
# evaluate) but have no effect in the stand-in.
{ lib, ... }:
with lib;
let
  ignored = type: default: mkOption { inherit type default; description = "Accepted for compatibility; no effect in the NixOS stand-in."; };
in
{
  options = {
    boot.isContainer = ignored types.bool false;
    boot.loader.grub.enable = ignored types.bool false;
    boot.enableContainers = ignored types.bool false;
    networking.useDHCP = ignored types.bool true;
    networking.useNetworkd = ignored types.bool false;
    networking.useHostResolvConf = ignored types.bool true;
    networking.nameservers = ignored (types.listOf types.str) [ ];
    networking.firewall = {
      enable = ignored types.bool true;
      allowPing = ignored types.bool true;
      allowedTCPPorts = ignored (types.listOf types.port) [ ];
      allowedUDPPorts = ignored (types.listOf types.port) [ ];
      allowedTCPPortRanges = ignored (types.listOf types.attrs) [ ];
      allowedUDPPortRanges = ignored (types.listOf types.attrs) [ ];
      trustedInterfaces = ignored (types.listOf types.str) [ ];
      extraCommands = ignored types.lines "";
    };
    i18n.defaultLocale = ignored types.str "C.UTF-8";
    i18n.supportedLocales = ignored (types.listOf types.str) [ ];
    console.keyMap = ignored types.str "us";
    documentation = {
      enable = ignored types.bool true;
      doc.enable = ignored types.bool true;
      info.enable = ignored types.bool true;
      man.enable = ignored types.bool true;
      nixos.enable = ignored types.bool true;
    };
    nix.enable = ignored types.bool true;
    nix.settings = ignored (types.attrsOf types.anything) { };
    nix.extraOptions = ignored types.lines "";
    nix.nixPath = ignored (types.listOf types.str) [ ];
    security.sudo.enable = ignored types.bool false;
    security.polkit.enable = ignored types.bool false;
    programs.bash.completion.enable = ignored types.bool false;
    programs.command-not-found.enable = ignored types.bool false;
    services.udisks2.enable = ignored types.bool false;
    xdg.mime.enable = ignored types.bool false;
  };
}
