# Checks of whole-system evaluation (no build); evaluates to "ok" or fails.
#   nix-instantiate --eval --strict /work/main/nixos/tests/system.nix
let
  evalSys = modules: import ../lib/eval-config.nix { system = "x86_64-linux"; inherit modules; };
  base = { lib, ... }: {
    boot.isContainer = true;
    networking.hostName = lib.mkDefault "t";
    imports = [ ../../guest/container-login.nix ];
  };
  fails = x: !(builtins.tryEval (builtins.deepSeq x x)).success;
  sys = evalSys [ base ({ pkgs, ... }: {
    systemd.services.demo = { wantedBy = [ "multi-user.target" ]; script = "true"; path = [ pkgs.socat ]; };
    environment.etc."a.conf".text = "a";
    users.users.u.isNormalUser = true;
  }) ];
  c = sys.config;
  # the line of the unit directory's build script that makes default.target
  defaultTargetLine = modules:
    builtins.filter (l: builtins.match ".*\"[$]out/default[.]target\"" l != null)
      (builtins.filter builtins.isString (builtins.split "\n" (evalSys ([ base ] ++ modules)).config.system.build.units.buildCommand));
  checks = {
    toplevelIsDrv = c.system.build.toplevel.type == "derivation";
    hostName = c.networking.hostName == "t";
    guestSocket = c.systemd.sockets.root-shell.listenStreams == [ "/var/lib/root-shell.socket" ];
    loginSocket = c.systemd.sockets.login.socketConfig.Accept;
    etcText = c.environment.etc."a.conf".text == "a";
    hostPkg = "${sys.pkgs.socat}/bin/socat" == "/usr/bin/socat";
    normalUser = c.users.users.u.home == "/home/u" && c.users.users.u.group == "users";
    rootUser = c.users.users.root.uid == 0 && c.users.users.root.home == "/root";
    assertionFails = fails (evalSys [ base { assertions = [ { assertion = false; message = "boom"; } ]; } ]).config.system.build.toplevel.drvPath;
    unknownOptionFails = fails (evalSys [ base { services.nginx.enable = true; } ]).config.system.build.toplevel.drvPath;
    defaultTargetHost = defaultTargetLine [ ] == [ "ln -sfn '/usr/lib/systemd/system/multi-user.target' \"$out/default.target\"" ];
    defaultTargetGenerated = defaultTargetLine [ { systemd.targets.app = { }; systemd.defaultUnit = "app.target"; } ]
      == [ "ln -sfn 'app.target' \"$out/default.target\"" ];
    defaultTargetAlias = defaultTargetLine [ { systemd.targets.app.aliases = [ "main.target" ]; systemd.defaultUnit = "main.target"; } ]
      == [ "ln -sfn 'main.target' \"$out/default.target\"" ];
    mkDefaultHostName = (evalSys [ base { networking.hostName = "other"; } ]).config.networking.hostName == "other";
  };
  failed = builtins.filter (n: !checks.${n}) (builtins.attrNames checks);
in
if failed == [ ] then "ok" else throw "system checks failed: ${toString failed}"
