# Checks of the stand-in's module system; evaluates to "ok" or fails.
#   nix-instantiate --eval --strict /work/main/nixos/tests/module-system.nix
let
  lib = import ../lib;
  inherit (lib) mkOption types mkIf mkMerge mkDefault mkForce mkOverride mkBefore mkAfter mkEnableOption;

  eval = modules: (lib.evalModules { inherit modules; }).config;
  fails = x: !(builtins.tryEval (builtins.deepSeq x x)).success;

  decls = {
    options = {
      s = mkOption { type = types.str; default = "dflt"; };
      n = mkOption { type = types.int; };
      b = mkEnableOption "b";
      l = mkOption { type = types.listOf types.str; default = [ ]; };
      ln = mkOption { type = types.lines; default = ""; };
      a = mkOption { type = types.attrsOf types.int; default = { }; };
      sub = mkOption {
        type = types.attrsOf (types.submodule ({ name, config, ... }: {
          options.x = mkOption { type = types.str; default = "x-${name}"; };
          options.y = mkOption { type = types.listOf types.int; default = [ ]; };
        }));
        default = { };
      };
      nested.deep.v = mkOption { type = types.nullOr types.int; default = null; };
    };
  };

  checks = {
    default = (eval [ decls ]).s == "dflt";
    mkDefaultLoses = (eval [ decls { s = mkDefault "d"; } { s = "plain"; } ]).s == "plain";
    mkForceWins = (eval [ decls { s = mkForce "f"; } { s = "plain"; } ]).s == "f";
    mkOverride = (eval [ decls { s = mkOverride 10 "o"; } { s = mkForce "f"; } ]).s == "o";
    equalScalarsOk = (eval [ decls { s = "same"; } { s = "same"; } ]).s == "same";
    conflictFails = fails (eval [ decls { s = "a"; } { s = "b"; } ]).s;
    listsConcat = (eval [ decls { l = [ "a" ]; } { l = [ "b" ]; } ]).l == [ "a" "b" ];
    listOrder = (eval [ decls { l = [ "m" ]; } { l = mkAfter [ "z" ]; } { l = mkBefore [ "a" ]; } ]).l == [ "a" "m" "z" ];
    lines = (eval [ decls { ln = "a"; } { ln = "b"; } ]).ln == "a\nb";
    attrsMerge = (eval [ decls { a.x = 1; } { a.y = 2; } ]).a == { x = 1; y = 2; };
    mkIfFalse = (eval [ decls { a = mkIf false { x = 1; }; } ]).a == { };
    mkIfAttrFalse = (eval [ decls { a.x = mkIf false 1; a.y = 2; } ]).a == { y = 2; };
    mkMerge = (eval [ decls { l = mkMerge [ [ "a" ] (mkIf true [ "b" ]) (mkIf false [ "c" ]) ]; } ]).l == [ "a" "b" ];
    selfReference = (eval [ decls ({ config, ... }: { b = true; l = mkIf config.b [ "on" ]; }) ]).l == [ "on" ];
    configMkIfTop = (eval [ decls ({ config, ... }: { config = mkIf config.b { s = "b-on"; }; }) { b = true; } ]).s == "b-on";
    submoduleName = (eval [ decls { sub.foo = { }; } ]).sub.foo.x == "x-foo";
    submoduleMerge = (eval [ decls { sub.foo.y = [ 1 ]; } { sub.foo.y = [ 2 ]; } ]).sub.foo.y == [ 1 2 ];
    submoduleFunction = (eval [ decls { sub.bar = { name, ... }: { x = "fn-${name}"; }; } ]).sub.bar.x == "fn-bar";
    unknownFails = fails (eval [ decls { nope = 1; } ]);
    unknownNestedFails = fails (eval [ decls { sub.foo.nope = 1; } ]).sub;
    typeFails = fails (eval [ decls { n = "str"; } ]).n;
    undefinedFails = fails (eval [ decls ]).n;
    nullOr = (eval [ decls ]).nested.deep.v == null && (eval [ decls { nested.deep.v = 3; } ]).nested.deep.v == 3;
    imports = (eval [ { imports = [ decls { s = "imp"; } ]; } ]).s == "imp";
    structured = (eval [ decls { config.s = "cfg"; } ]).s == "cfg";
    optionsArg = (eval [ decls ({ options, ... }: { l = [ (if options.s.isDefined then "def" else "undef") ]; }) ]).l == [ "def" ];
    moduleArgs = (eval [ decls { _module.args.foo = "bar"; } ({ foo, ... }: { s = foo; }) ]).s == "bar";
    splitKeepsContext =
      let drv = derivation { name = "x"; builder = "/bin/sh"; system = "x86_64-linux"; };
      in builtins.hasContext (builtins.head (lib.splitString " " "${drv} y"));
  };

  failed = builtins.filter (n: !checks.${n}) (builtins.attrNames checks);
in
if failed == [ ] then "ok" else throw "module-system checks failed: ${toString failed}"
