# The stand-in as a flake input, shaped like nixpkgs:
#   inputs.nixpkgs.url = "path:/path/to/nixos";
#   nixosConfigurations.container = nixpkgs.lib.nixosSystem {
#     system = "x86_64-linux"; modules = [ ./configuration.nix ]; };
{
  description = "NixOS stand-in: a tiny module system whose systems borrow the host's /usr";

  outputs = { self }: {
    lib = import ./lib // {
      nixosSystem = args: import ./lib/eval-config.nix args;
      evalConfig = args: import ./lib/eval-config.nix args;
    };
  };
}
