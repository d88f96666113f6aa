{ lib, ... }:
with lib;
{
  options = {
    assertions = mkOption {
      type = types.listOf types.unspecified;
      default = [ ];
      description = ''
        List of { assertion = bool; message = str; }.  Building
        system.build.toplevel fails ("Failed assertions: ...") when any
        assertion is false.
      '';
    };
    warnings = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Messages printed (as evaluation traces) when the system is built.";
    };
  };
}
