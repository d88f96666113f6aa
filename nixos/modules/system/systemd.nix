# systemd.services / sockets / targets / timers / paths, tmpfiles rules,
# and the unit directory linked to /etc/systemd/system.
#
# The container's systemd is the host's (/usr/lib/systemd/systemd), so it
# also sees the host's units in /usr/lib/systemd/system.  The generated
# directory masks the ones that do not fit a container started this way
# (gettys, first-boot wizard, ...) and makes multi-user.target the default.
{ config, lib, pkgs, ... }:
with lib;
let
  cfg = config.systemd;
  inherit (pkgs.nixosStandin) runBusybox sanitizeName;

  atom = types.oneOf [ types.bool types.int types.str types.path types.package ];
  unitValue = types.either (types.listOf atom) atom;
  unitSection = types.attrsOf unitValue;

  listOpt = desc: mkOption { type = types.listOf types.str; default = [ ]; description = desc; };

  # The list options of every unit: option name -> its [Unit] key (values
  # joined by spaces).  `by` names the reverse option, which makes a
  # symlink instead: wantedBy = [ "T" ] puts one in T.wants/.
  unitLists = {
    documentation.key = "Documentation";
    wants = { key = "Wants"; by = "wantedBy"; };
    requires = { key = "Requires"; by = "requiredBy"; };
    requisite.key = "Requisite";
    bindsTo.key = "BindsTo";
    partOf.key = "PartOf";
    upholds = { key = "Upholds"; by = "upheldBy"; };
    conflicts.key = "Conflicts";
    after.key = "After";
    before.key = "Before";
    onFailure.key = "OnFailure";
    onSuccess.key = "OnSuccess";
  };
  # symlink directory suffix -> reverse option, e.g. wants -> wantedBy
  reverseLists = mapAttrs (_: l: l.by) (filterAttrs (_: l: l ? by) unitLists);

  commonOptions =
    mapAttrs (_: l: listOpt "${l.key}=.") unitLists
    // mapAttrs' (dir: by: nameValuePair by
      (listOpt "Units that ${removeSuffix "s" dir} this unit (a symlink in UNIT.${dir}/).")) reverseLists
    // {
    enable = mkOption { type = types.bool; default = true; description = "Whether to generate this unit."; };
    description = mkOption { type = types.singleLineStr; default = ""; description = "Description= of the unit."; };
    aliases = listOpt "Alias names of this unit.";
    unitConfig = mkOption { type = unitSection; default = { }; description = "Extra [Unit] settings."; };
    restartTriggers = mkOption { type = types.listOf types.unspecified; default = [ ]; description = "Values whose change restarts the unit (recorded in the unit file)."; };
    reloadTriggers = mkOption { type = types.listOf types.unspecified; default = [ ]; description = "Ignored."; };
    startLimitBurst = mkOption { type = types.nullOr types.int; default = null; description = "StartLimitBurst=."; };
    startLimitIntervalSec = mkOption { type = types.nullOr types.int; default = null; description = "StartLimitIntervalSec=."; };
    overrideStrategy = mkOption { type = types.str; default = "asDropinIfExists"; description = "Ignored."; };
  };

  serviceOptions = { name, config, ... }: {
    options = commonOptions // {
      script = mkOption { type = types.lines; default = ""; description = "Shell commands run as ExecStart (bash -e)."; };
      scriptArgs = mkOption { type = types.str; default = ""; description = "Arguments of the script."; };
      preStart = mkOption { type = types.lines; default = ""; description = "ExecStartPre script."; };
      postStart = mkOption { type = types.lines; default = ""; description = "ExecStartPost script."; };
      reload = mkOption { type = types.lines; default = ""; description = "ExecReload script."; };
      preStop = mkOption { type = types.lines; default = ""; description = "ExecStop script."; };
      postStop = mkOption { type = types.lines; default = ""; description = "ExecStopPost script."; };
      environment = mkOption {
        type = types.attrsOf (types.nullOr (types.oneOf [ types.str types.path types.package types.int ]));
        default = { };
        description = "Environment variables of the service.";
      };
      path = mkOption {
        type = types.listOf (types.either types.package types.str);
        default = [ ];
        description = "Packages whose bin/ and sbin/ go on PATH.";
      };
      serviceConfig = mkOption { type = unitSection; default = { }; description = "[Service] settings."; };
      restartIfChanged = mkOption { type = types.bool; default = true; description = "Restart on switch when the unit changed."; };
      reloadIfChanged = mkOption { type = types.bool; default = false; description = "Reload instead of restart on switch."; };
      stopIfChanged = mkOption { type = types.bool; default = true; description = "Accepted; a changed unit is restarted."; };
      startAt = mkOption { type = types.either types.str (types.listOf types.str); default = [ ]; description = "OnCalendar= of a generated timer."; };
      enableStrictShellChecks = mkOption { type = types.bool; default = false; description = "Ignored."; };
      confinement.enable = mkOption { type = types.bool; default = false; description = "Ignored."; };
    };
  };

  socketOptions = { ... }: {
    options = commonOptions // {
      listenStreams = listOpt "ListenStream=.";
      listenDatagrams = listOpt "ListenDatagram=.";
      socketConfig = mkOption { type = unitSection; default = { }; description = "[Socket] settings."; };
    };
  };

  targetOptions = { ... }: { options = commonOptions; };

  timerOptions = { ... }: {
    options = commonOptions // {
      timerConfig = mkOption { type = unitSection; default = { }; description = "[Timer] settings."; };
    };
  };

  pathOptions = { ... }: {
    options = commonOptions // {
      pathConfig = mkOption { type = unitSection; default = { }; description = "[Path] settings."; };
    };
  };

  # ------------------------------------------------------------------
  # unit text
  valueToString = v: if isBool v then boolToString v else toString v;

  sectionLines = attrs:
    concatLists (mapAttrsToList (k: v:
      if v == null then [ ]
      else if isList v then map (x: "${k}=${valueToString x}") v
      else [ "${k}=${valueToString v}" ]) attrs);

  section = name: attrs:
    let lines = sectionLines attrs; in
    if lines == [ ] && name != "Unit" then "" else "[${name}]\n" + concatMapStrings (l: l + "\n") lines + "\n";

  joined = l: if l == [ ] then null else concatStringsSep " " l;

  unitSectionOf = u: filterAttrs (_: v: v != null) (mapAttrs' (opt: l: nameValuePair l.key (joined u.${opt})) unitLists // {
    Description = if u.description == "" then null else u.description;
    StartLimitBurst = u.startLimitBurst;
    StartLimitIntervalSec = u.startLimitIntervalSec;
    X-Restart-Triggers =
      if u.restartTriggers == [ ] then null
      else builtins.hashString "sha256" (concatMapStringsSep "\n" (t: toString t) u.restartTriggers);
  }) // u.unitConfig;

  escapeEnv = s: replaceStrings [ "\\" "\"" "\n" ] [ "\\\\" "\\\"" "\\n" ] s;

  # Like NixOS: /nix/store/...-unit-script-NAME-start/bin/NAME-start, so
  # that the journal shows "NAME-start[pid]".
  jobScript = name: kind: text:
    let exe = "${sanitizeName name}-${kind}"; in
    "${pkgs.writeTextFile {
      name = "unit-script-${exe}";
      executable = true;
      destination = "/bin/${exe}";
      text = "#!/usr/bin/bash -e\n${text}\n";
    }}/bin/${exe}";

  servicePath = s:
    let pkgsPath = concatMap (p: [ "${p}/bin" "${p}/sbin" ]) s.path; in
    concatStringsSep ":" (unique (pkgsPath ++ [ "/usr/local/bin" "/usr/bin" "/usr/sbin" "/bin" "/sbin" ]));

  serviceText = name: s:
    let
      env = cfg.globalEnvironment // s.environment;
      envLines = [ "Environment=\"PATH=${escapeEnv (servicePath s)}\"" ]
        ++ concatLists (mapAttrsToList (k: v: optional (v != null) "Environment=\"${k}=${escapeEnv (toString v)}\"") env);
      exec = kind: key: text:
        optional (text != "") "${key}=${jobScript name kind text}${optionalString (kind == "start" && s.scriptArgs != "") " ${s.scriptArgs}"}";
      execLines =
        exec "start" "ExecStart" s.script
        ++ exec "pre-start" "ExecStartPre" s.preStart
        ++ exec "post-start" "ExecStartPost" s.postStart
        ++ exec "reload" "ExecReload" s.reload
        ++ exec "pre-stop" "ExecStop" s.preStop
        ++ exec "post-stop" "ExecStopPost" s.postStop;
      unitCfg = unitSectionOf s
        // optionalAttrs (!s.restartIfChanged) { X-RestartIfChanged = false; }
        // optionalAttrs s.reloadIfChanged { X-ReloadIfChanged = true; };
    in
    section "Unit" unitCfg
    + "[Service]\n" + concatMapStrings (l: l + "\n") (envLines ++ execLines ++ sectionLines s.serviceConfig);

  socketText = _name: s:
    section "Unit" (unitSectionOf s)
    + "[Socket]\n"
    + concatMapStrings (l: "ListenStream=${l}\n") s.listenStreams
    + concatMapStrings (l: "ListenDatagram=${l}\n") s.listenDatagrams
    + concatMapStrings (l: l + "\n") (sectionLines s.socketConfig);

  targetText = _name: t: section "Unit" (unitSectionOf t);
  timerText = _name: t: section "Unit" (unitSectionOf t) + section "Timer" t.timerConfig;
  pathText = _name: p: section "Unit" (unitSectionOf p) + section "Path" p.pathConfig;

  enabled = filterAttrs (_: u: u.enable);

  unitsOf = suffix: textFn: set:
    mapAttrsToList (name: u: {
      file = "${name}.${suffix}";
      text = textFn name u;
      inherit (u) aliases;
      # symlink directory suffix -> the units whose UNIT.<suffix>/ gets one
      reverse = mapAttrs (_: by: u.${by}) reverseLists;
    }) (enabled set);

  units =
    unitsOf "service" serviceText cfg.services
    ++ unitsOf "socket" socketText cfg.sockets
    ++ unitsOf "target" targetText cfg.targets
    ++ unitsOf "timer" timerText cfg.timers
    ++ unitsOf "path" pathText cfg.paths;

  unitFiles = map (u: u.file) units;

  masked = filter (u: !(elem u unitFiles)) (unique cfg.suppressedSystemUnits);

  # default.target: the generated unit (or alias) when defaultUnit names
  # one, else the host's unit in /usr.
  defaultTarget =
    if elem cfg.defaultUnit (unitFiles ++ concatMap (u: u.aliases) units) then cfg.defaultUnit
    else "/usr/lib/systemd/system/${cfg.defaultUnit}";

  unitsDir = runBusybox "system-units"
    (listToAttrs (imap0 (i: u: nameValuePair "unit_${toString i}" u.text) units)
      // { passAsFile = imap0 (i: _: "unit_${toString i}") units; })
    (''
      mkdir -p "$out"
      link() { mkdir -p "$out/$1"; ln -sfn "../$2" "$out/$1/$2"; }
    ''
    + concatImapStrings (i: u:
      let var = "unit_${toString (i - 1)}Path"; in ''
        cp "''$${var}" "$out/"${escapeShellArg u.file}
        ${concatStrings (mapAttrsToList (dir: ts: concatMapStrings (t: "link ${escapeShellArg "${t}.${dir}"} ${escapeShellArg u.file}\n") ts) u.reverse)}
        ${concatMapStrings (a: "ln -sfn ${escapeShellArg u.file} \"$out/\"${escapeShellArg a}\n") u.aliases}
      '') units
    + concatMapStrings (m: "ln -sfn /dev/null \"$out/\"${escapeShellArg m}\n") masked
    + optionalString (!(elem "default.target" unitFiles)) ''
      ln -sfn ${escapeShellArg defaultTarget} "$out/default.target"
    '');
in
{
  options.systemd = {
    services = mkOption { type = types.attrsOf (types.submodule serviceOptions); default = { }; description = "Service units (NAME.service; NAME may be a template like foo@)."; };
    sockets = mkOption { type = types.attrsOf (types.submodule socketOptions); default = { }; description = "Socket units."; };
    targets = mkOption { type = types.attrsOf (types.submodule targetOptions); default = { }; description = "Target units."; };
    timers = mkOption { type = types.attrsOf (types.submodule timerOptions); default = { }; description = "Timer units."; };
    paths = mkOption { type = types.attrsOf (types.submodule pathOptions); default = { }; description = "Path units."; };
    tmpfiles.rules = mkOption { type = types.listOf types.str; default = [ ]; description = "Lines of /etc/tmpfiles.d/00-nixos.conf."; };
    packages = mkOption { type = types.listOf types.package; default = [ ]; description = "Ignored: the host's units in /usr are always visible."; };
    globalEnvironment = mkOption { type = types.attrsOf (types.nullOr (types.oneOf [ types.str types.path types.package types.int ])); default = { }; description = "Environment of every generated service."; };
    defaultUnit = mkOption { type = types.str; default = "multi-user.target"; description = "Target booted by default."; };
    suppressedSystemUnits = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Units (typically from the host's /usr) masked in the container.";
    };
    extraConfig = mkOption { type = types.lines; default = ""; description = "[Manager] settings in /etc/systemd/system.conf."; };
    enableEmergencyMode = mkOption { type = types.bool; default = false; description = "Ignored."; };
    enableUnifiedCgroupHierarchy = mkOption { type = types.bool; default = true; description = "Ignored."; };
    units = mkOption { type = types.attrsOf types.anything; default = { }; description = "Not supported (must stay empty)."; };
  };

  config = {
    systemd.suppressedSystemUnits = [
      # gettys: the container is reached through login.socket instead
      "getty.target"
      "getty-static.service"
      "getty@.service"
      "autovt@.service"
      "serial-getty@.service"
      "console-getty.service"
      "container-getty@.service"
      # first-boot wizard (asks questions on the console)
      "systemd-firstboot.service"
      # activation already runs systemd-sysusers (before systemd starts)
      "systemd-sysusers.service"
      # nothing to wait for / not for containers
      "systemd-networkd-wait-online.service"
      "systemd-timesyncd.service"
      "systemd-ask-password-wall.path"
      "systemd-ask-password-console.path"
      "systemd-hwdb-update.service"
      "systemd-journal-catalog-update.service"
      "ldconfig.service"
      "e2scrub_reap.service"
      "packagekit-offline-update.service"
    ];

    systemd.timers = mapAttrs (name: s: {
      wantedBy = [ "timers.target" ];
      timerConfig.OnCalendar = s.startAt;
    }) (filterAttrs (_: s: s.enable && s.startAt != [ ] && s.startAt != "") cfg.services);

    system.build.units = unitsDir;

    environment.etc = {
      "systemd/system".source = unitsDir;
      "tmpfiles.d/00-nixos.conf".text = concatMapStrings (r: r + "\n") ([ "# generated from systemd.tmpfiles.rules" ] ++ cfg.tmpfiles.rules);
      "systemd/system.conf" = mkIf (cfg.extraConfig != "") { text = "[Manager]\n${cfg.extraConfig}\n"; };
    };

    assertions = [
      { assertion = cfg.units == { }; message = "systemd.units is not supported by the NixOS stand-in; use systemd.services/sockets/targets/timers/paths."; }
    ];
  };
}
