# The stand-in's `pkgs`.  There is no nixpkgs here: "packages" are the
# HOST's /usr, which every container gets read-only (--bind-ro=/usr).
# So "${pkgs.socat}/bin/socat" is "/usr/bin/socat".  Nothing checks that a
# program really exists on the host.
#
# The only real store package is `busybox`: a copy of the host's static
# /bin/busybox (Debian's busybox-static), made by a derivation whose
# builder is the string "/bin/busybox".  That keeps evaluation pure (works
# in flakes) but needs the build to see /bin/busybox: the Nix sandbox must
# be off (Debian's nix.conf default here) or `extra-sandbox-paths` must
# contain /bin/busybox.  All other derivations are built with that busybox.
{ lib ? import ../lib
, system ? builtins.currentSystem or "x86_64-linux"
}:
let
  b = builtins;

  busybox = derivation {
    name = "busybox-static-host";
    inherit system;
    builder = "/bin/busybox";
    args = [
      "sh"
      "-c"
      ''
        set -e
        /bin/busybox mkdir -p "$out/bin"
        /bin/busybox cp /bin/busybox "$out/bin/busybox"
        /bin/busybox chmod 0555 "$out/bin/busybox"
        "$out/bin/busybox" --install -s "$out/bin"
        /bin/busybox test -L "$out/bin/sh"
      ''
    ];
  } // {
    meta = { mainProgram = "busybox"; description = "static busybox copied from the host"; };
    pname = "busybox";
  };

  bbPath = "${busybox}/bin";

  # A derivation whose build script runs under the store busybox `sh`.
  # `script` is passed as a file (no argv size limits).
  runBusybox = name: env: script: derivation ({
    inherit name system;
    builder = "${bbPath}/sh";
    args = [ "-c" ''set -e; . "$buildCommandPath"'' ];
    buildCommand = script;
    passAsFile = [ "buildCommand" ] ++ (env.passAsFile or [ ]);
    PATH = bbPath;
  } // removeAttrs env [ "passAsFile" "meta" "passthru" ]) // (env.passthru or { }) // { meta = env.meta or { }; };

  sanitizeName = name:
    let
      ok = c: b.match "[a-zA-Z0-9+._?=-]" c != null;
      cleaned = lib.concatStrings (map (c: if ok c then c else "-") (lib.stringToCharacters name));
    in
    if cleaned == "" then "unnamed" else if lib.hasPrefix "." cleaned then "_${cleaned}" else cleaned;

  writeTextFile =
    { name
    , text
    , executable ? false
    , destination ? ""
    , checkPhase ? ""
    , meta ? { }
    , ...
    }:
    runBusybox (sanitizeName name) { inherit text meta; passAsFile = [ "text" ]; } ''
      target="$out"${lib.escapeShellArg destination}
      mkdir -p "$(dirname "$target")"
      cp "$textPath" "$target"
      ${lib.optionalString executable ''chmod +x "$target"''}
    '';

  writeText = name: text: writeTextFile { inherit name text; };
  writeTextDir = path: text: writeTextFile { name = baseNameOf path; inherit text; destination = "/${path}"; };
  writeScript = name: text: writeTextFile { inherit name text; executable = true; };
  writeScriptBin = name: text: writeTextFile { inherit name text; executable = true; destination = "/bin/${name}"; meta.mainProgram = name; };
  writeShellScript = name: text: writeScript name "#!${runtimeShell}\n${text}";
  writeShellScriptBin = name: text: writeScriptBin name "#!${runtimeShell}\n${text}";
  writeShellApplication = { name, text, runtimeInputs ? [ ], ... }:
    writeShellScriptBin name ''
      set -o errexit
      set -o nounset
      set -o pipefail
      ${lib.optionalString (runtimeInputs != [ ]) ''export PATH="${lib.makeBinPath runtimeInputs}:$PATH"''}
      ${text}
    '';

  # runCommand: busybox first on PATH, then the bin dirs of
  # nativeBuildInputs/buildInputs, then the host's /usr/bin (the build is
  # not sandboxed here).
  runCommandWith = name: env: script:
    let inputs = (env.nativeBuildInputs or [ ]) ++ (env.buildInputs or [ ]); in
    runBusybox (sanitizeName name)
      (env // { PATH = lib.concatStringsSep ":" ([ bbPath ] ++ map (p: "${p}/bin") inputs ++ [ "/usr/bin" "/bin" ]); })
      script;
  runCommand = runCommandWith;
  runCommandLocal = runCommandWith;
  runCommandNoCC = runCommandWith;
  runCommandCC = runCommandWith;

  # Link the contents of several store paths into one tree.
  symlinkJoin = { name, paths, postBuild ? "", ... }:
    runBusybox (sanitizeName name) { } ''
      mkdir -p "$out"
      for p in ${lib.concatMapStringsSep " " (p: lib.escapeShellArg "${p}") paths}; do
        [ -d "$p" ] || continue
        (cd "$p" && find . -mindepth 1 -type d) | while read -r d; do mkdir -p "$out/$d"; done
        (cd "$p" && find . -mindepth 1 ! -type d) | while read -r f; do
          [ -e "$out/$f" ] || [ -L "$out/$f" ] || ln -s "$p/$f" "$out/$f"
        done
      done
      ${postBuild}
    '';
  buildEnv = { name, paths, ... }@args: symlinkJoin { inherit name; paths = lib.filter (p: lib.hasPrefix "${b.storeDir}/" (toString p)) paths; };

  runtimeShell = "/usr/bin/bash";

  # A host package: an attribute set that behaves like a derivation whose
  # output is the host's /usr.
  hostPkg = name: extra:
    let self = {
      type = "derivation";
      inherit name system;
      pname = name;
      version = "host";
      outPath = "/usr";
      outputs = [ "out" ];
      out = self;
      bin = self;
      lib = self;
      dev = self;
      man = self;
      outputName = "out";
      meta = { mainProgram = name; description = "${name} from the host's /usr"; } // (extra.meta or { });
      passthru = { };
    } // removeAttrs extra [ "meta" ];
    in self;

  host = name: hostPkg name { };
  hostWith = name: prog: hostPkg name { meta.mainProgram = prog; };

  platform = {
    inherit system;
    config = "${system}-unknown-linux-gnu";
    isLinux = true;
    isDarwin = false;
    isx86_64 = lib.hasPrefix "x86_64" system;
    isAarch64 = lib.hasPrefix "aarch64" system;
  };

  pkgs = {
    inherit lib system busybox runtimeShell;
    inherit writeTextFile writeText writeTextDir writeScript writeScriptBin
      writeShellScript writeShellScriptBin writeShellApplication runCommand
      runCommandWith runCommandLocal runCommandNoCC runCommandCC symlinkJoin buildEnv;
    # internal helpers, used by the stand-in's modules
    nixosStandin = { inherit runBusybox sanitizeName; };

    stdenv = {
      shell = runtimeShell;
      inherit system;
      hostPlatform = platform;
      buildPlatform = platform;
      targetPlatform = platform;
      isLinux = true;
      isDarwin = false;
      mkDerivation = _: throw "stdenv.mkDerivation is not available in the NixOS stand-in (there is no nixpkgs); use pkgs.runCommand or plain derivations";
    };
    stdenvNoCC = pkgs.stdenv;
    hostPlatform = platform;
    buildPlatform = platform;
    targetPlatform = platform;
    callPackage = f: args:
      let fn = if b.isFunction f then f else import f; in
      fn (b.intersectAttrs (b.functionArgs fn) pkgs // args);

    bash = hostPkg "bash" { shellPath = "/bin/bash"; };
    bashInteractive = hostPkg "bash-interactive" { shellPath = "/bin/bash"; meta.mainProgram = "bash"; };
    runtimeShellPackage = pkgs.bash;
    dash = hostPkg "dash" { shellPath = "/bin/dash"; };
    coreutils = hostWith "coreutils" "ls";
    coreutils-full = pkgs.coreutils;
    socat = host "socat";
    shadow = hostWith "shadow" "login";
    util-linux = hostWith "util-linux" "mount";
    util-linuxMinimal = pkgs.util-linux;
    iproute2 = hostWith "iproute2" "ip";
    iproute = pkgs.iproute2;
    iputils = hostWith "iputils" "ping";
    systemd = hostWith "systemd" "systemctl";
    systemdMinimal = pkgs.systemd;
    python3 = host "python3";
    python3Minimal = pkgs.python3;
    perl = host "perl";
    gnugrep = hostWith "gnugrep" "grep";
    gnused = hostWith "gnused" "sed";
    gawk = hostWith "gawk" "awk";
    findutils = hostWith "findutils" "find";
    diffutils = hostWith "diffutils" "diff";
    gnutar = hostWith "gnutar" "tar";
    gzip = host "gzip";
    xz = host "xz";
    procps = hostWith "procps" "ps";
    kmod = hostWith "kmod" "modprobe";
    hostname = host "hostname";
    which = host "which";
    less = host "less";
    vim = host "vim";
    git = host "git";
    curl = host "curl";
    wget = host "wget";
    openssh = hostWith "openssh" "ssh";
    openssl = host "openssl";
    jq = host "jq";
    file = host "file";
    strace = host "strace";
    tmux = host "tmux";
    nix = host "nix";
    getent = host "getent";
    glibc = hostWith "glibc" "getent";
    ncurses = hostWith "ncurses" "tput";
    dbus = hostWith "dbus" "dbus-daemon";
  };
in
pkgs
