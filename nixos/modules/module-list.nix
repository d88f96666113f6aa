# The modules every stand-in system is built from.
[
  ./misc/assertions.nix
  ./misc/nixpkgs.nix
  ./misc/version.nix
  ./misc/ignored.nix
  ./system/etc.nix
  ./system/activation.nix
  ./system/users.nix
  ./system/systemd.nix
  ./system/environment.nix
  ./system/networking.nix
  ./system/pam.nix
  ./system/toplevel.nix
]
