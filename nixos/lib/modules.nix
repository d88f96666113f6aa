# A small NixOS-style module system.
#
# A module is a path (imported), a function (called with
# { config, options, lib, ... } plus specialArgs and config._module.args)
# or an attribute set.  An attribute set either has `options` and/or
# `config` (plus imports/_file/key/meta/disabledModules), or is shorthand:
# everything except those keys is configuration.
#
# Definitions may be wrapped in properties: mkIf, mkMerge, mkOverride
# (mkDefault = 1000, plain definitions = 100, mkForce = 50, option
# defaults = 1500) and mkOrder (mkBefore/mkAfter).  Only the definitions
# with the best (numerically lowest) priority take part in merging; the
# option's type then merges them (lists concatenate, attribute sets merge
# per attribute, scalars must be equal).
{ lib }:
let
  b = builtins;
  inherit (lib) concatMap filter map attrNames foldl' length head tail elem
    isAttrs isFunction isPath isString isList concatStringsSep mapAttrs;

  propType = v: if isAttrs v then v._type or null else null;

  # `foo.bar."baz.conf"`, like nixpkgs' showOption.
  showOption = loc:
    concatStringsSep "." (map (n:
      if b.match "[a-zA-Z_][a-zA-Z0-9_'-]*" n != null then n
      else "\"${n}\"") loc);

  showFiles = files: concatStringsSep ", " (map (f: "`${toString f}'") files);

  showVal = v:
    if v == null then "null"
    else if isString v then "\"${v}\""
    else if b.isBool v then (if v then "true" else "false")
    else if b.isInt v || b.isFloat v then toString v
    else if isPath v then toString v
    else if isList v then "[ ${concatStringsSep " " (map showVal v)} ]"
    else if isFunction v then "<function>"
    else if lib.isDerivation v then "<derivation ${v.name or "?"}>"
    else if isAttrs v then (if v ? outPath then "\"${toString v}\"" else "{ ${concatStringsSep " " (map (n: "${n} = ...;") (attrNames v))} }")
    else "<${b.typeOf v}>";

  # --------------------------------------------------------------------
  # properties
  props = rec {
    mkIf = condition: content: { _type = "if"; inherit condition content; };
    mkMerge = contents: { _type = "merge"; inherit contents; };
    mkOverride = priority: content: { _type = "override"; inherit priority content; };
    mkOptionDefault = mkOverride 1500;
    mkDefault = mkOverride 1000;
    mkImageMediaOverride = mkOverride 60;
    mkForce = mkOverride 50;
    mkVMOverride = mkOverride 10;
    mkOrder = priority: content: { _type = "order"; inherit priority content; };
    mkBefore = mkOrder 500;
    mkAfter = mkOrder 1500;
    defaultOverridePriority = 100;
    defaultOrderPriority = 1000;
    mkFixStrictness = x: x;
  };

  # Distribute properties over the attributes of an attribute-set
  # definition *without* evaluating mkIf conditions (so that
  # `config = mkIf config.foo.enable { ... }` does not recurse).
  # Returns a list of plain attribute sets.
  pushDown = loc: file: v:
    let t = propType v; in
    if t == "merge" then concatMap (pushDown loc file) v.contents
    else if t == "if" then map (mapAttrs (_: x: props.mkIf v.condition x)) (pushDown loc file v.content)
    else if t == "override" then map (mapAttrs (_: x: props.mkOverride v.priority x)) (pushDown loc file v.content)
    else if t == "order" then map (mapAttrs (_: x: props.mkOrder v.priority x)) (pushDown loc file v.content)
    else if isAttrs v && t == null then [ v ]
    else throw "The option `${showOption loc}' is a set of options (or an attribute set), but the definition in `${toString file}' is not an attribute set: ${showVal v}";

  # Discharge mkMerge/mkIf and record mkOverride/mkOrder priorities.
  # Returns a list of { file; prio; order; value; }.
  normalizeDef = loc: file: prio: order: v:
    let t = propType v; in
    if t == "merge" then concatMap (normalizeDef loc file prio order) v.contents
    else if t == "if" then
      (if !(b.isBool v.condition)
       then throw "mkIf called with a non-Boolean condition (option `${showOption loc}', in `${toString file}')"
       else if v.condition then normalizeDef loc file prio order v.content else [ ])
    else if t == "override" then normalizeDef loc file v.priority order v.content
    else if t == "order" then normalizeDef loc file prio v.priority v.content
    else [ { inherit file prio order; value = v; } ];

  # Merge the definitions of one option of type `type`.  Returns
  # { isDefined; value; defsFinal; highestPrio; files; }.
  mergeDefinitions = loc: type: defs:
    let
      normalized = concatMap (d: normalizeDef loc d.file 100 1000 d.value) defs;
      highestPrio = foldl' (acc: d: if d.prio < acc then d.prio else acc) 9999 normalized;
      active = filter (d: d.prio == highestPrio) normalized;
      sorted = b.sort (x: y: x.order < y.order) active;
      defsFinal = map (d: { inherit (d) file value; }) sorted;
      isDefined = defsFinal != [ ];
    in {
      inherit isDefined defsFinal highestPrio;
      files = map (d: d.file) defsFinal;
      value =
        if isDefined then b.addErrorContext "while evaluating the option `${showOption loc}':" (type.merge loc defsFinal)
        else throw "The option `${showOption loc}' is used but not defined.";
    };

  isOption = v: isAttrs v && (v._type or null) == "option";

  mkOption = attrs: attrs // { _type = "option"; };

  mkEnableOption = name: mkOption {
    type = lib.types.bool;
    default = false;
    example = true;
    description = "Whether to enable ${name}.";
  };

  mkPackageOption = pkgs: name: { default ? [ name ], example ? null, ... }:
    let path = if isList default then default else [ default ]; in
    mkOption {
      type = lib.types.package;
      default = lib.getAttrFromPath path pkgs;
      description = "The ${name} package to use.";
    };

  mkSinkUndeclaredOptions = attrs: mkOption ({
    type = lib.types.anything;
    default = { };
  } // attrs);

  # --------------------------------------------------------------------
  # module collection

  reservedKeys = [ "_file" "key" "imports" "options" "config" "meta" "disabledModules" "require" "_class" ];

  # m: an attribute set (function already applied).
  structure = file: m:
    let hasStruct = m ? config || m ? options; in
    if !(isAttrs m) then throw "Module `${toString file}' is not an attribute set (it is a ${b.typeOf m})."
    else if hasStruct then
      let extra = filter (n: !(elem n reservedKeys)) (attrNames m); in
      if extra != [ ] then
        throw "Module `${toString file}' has an unsupported attribute `${head extra}'. This is caused by introducing a top-level `config' or `options' attribute. Add configuration attributes immediately on the top level instead, or move all of them (namely: ${concatStringsSep " " extra}) into the explicit `config' attribute."
      else {
        imports = m.imports or [ ] ++ m.require or [ ];
        options = m.options or { };
        config = m.config or { };
        disabledModules = m.disabledModules or [ ];
      }
    else {
      imports = m.imports or [ ] ++ m.require or [ ];
      options = { };
      config = removeAttrs m reservedKeys;
      disabledModules = m.disabledModules or [ ];
    };

  evalModules =
    { modules
    , specialArgs ? { }
    , prefix ? [ ]
    , args ? { }
    }:
    let
      allArgs = { inherit lib config options; } // args // specialArgs;

      callModule = file: f:
        let
          wanted = b.functionArgs f;
          extra = mapAttrs
            (n: _: allArgs.${n} or config._module.args.${n} or
              (throw "The module `${toString file}' asks for the argument `${n}', which is not available."))
            wanted;
        in f (allArgs // extra);

      isPathLike = m: isPath m || (isString m && lib.hasPrefix "/" m);

      mkEntry = parentFile: fallbackKey: m:
        let
          pathLike = isPathLike m;
          key =
            if pathLike then toString m
            else if isAttrs m && m ? key then toString m.key
            else fallbackKey;
          file =
            if pathLike then toString m
            else if isAttrs m && m ? _file then toString m._file
            else parentFile;
          raw = if pathLike then import m else m;
          applied = if isFunction raw then callModule file raw else raw;
          # a path module may itself set _file
          file' = if pathLike && isAttrs applied && applied ? _file then toString applied._file else file;
        in {
          inherit key;
          file = file';
          module = structure file' applied;
        };

      closure = b.genericClosure {
        startSet = lib.imap0 (i: m: mkEntry "<unknown-file>" "root-${toString (b.length prefix)}-${toString i}" m) modules;
        operator = entry:
          lib.imap0 (i: m: mkEntry entry.file "${entry.key}:anon-${toString i}" m) entry.module.imports;
      };

      disabled = map toString (concatMap (e: e.module.disabledModules) closure);
      entries = filter (e: !(elem e.key disabled)) closure;

      internalModule = {
        key = "<internal _module>";
        file = "<internal>";
        module = {
          imports = [ ];
          disabledModules = [ ];
          options._module.args = mkOption {
            type = lib.types.lazyAttrsOf lib.types.raw;
            default = { };
            description = "Arguments passed to each module.";
          };
          options._module.check = mkOption { type = lib.types.bool; default = true; };
          options._module.freeformType = mkOption { type = lib.types.raw; default = null; };
          config = { };
        };
      };

      allEntries = [ internalModule ] ++ entries;

      # ---- declarations: merge the `options` trees of all modules
      mergeDecls = loc: decls:
        let
          opts = filter (d: isOption d.options) decls;
        in
        if opts != [ ] then
          (if length decls == 1 then (head decls).options // { declarations = [ (head decls).file ]; }
           else throw "The option `${showOption loc}' is declared more than once: in ${showFiles (map (d: d.file) decls)}.")
        else
          let
            names = lib.unique (concatMap (d:
              if isAttrs d.options then attrNames d.options
              else throw "The declaration of `${showOption loc}' in `${toString d.file}' is not an option or a set of options.") decls);
          in
          b.listToAttrs (map (n: {
            name = n;
            value = mergeDecls (loc ++ [ n ])
              (concatMap (d: if d.options ? ${n} then [ { inherit (d) file; options = d.options.${n}; } ] else [ ]) decls);
          }) names);

      declTree = mergeDecls prefix (map (e: { inherit (e) file; options = e.module.options; }) allEntries);

      # ---- definitions
      topDefs = map (e: { inherit (e) file; value = e.module.config; }) allEntries;

      evalOption = loc: opt: defs:
        let
          type = opt.type or lib.types.unspecified;
          defaults = if opt ? default then [ { file = "<default value of ${showOption loc}>"; value = props.mkOptionDefault opt.default; } ] else [ ];
          res = mergeDefinitions loc type (defs ++ defaults);
          value = if opt ? apply then opt.apply res.value else res.value;
        in
        removeAttrs opt [ "apply" ] // {
          _type = "option";
          inherit value type;
          inherit (res) isDefined files highestPrio;
          definitions = map (d: d.value) res.defsFinal;
          definitionsWithLocations = res.defsFinal;
          loc = loc;
        };

      evalNode = loc: decls: defs:
        if isOption decls then
          let o = evalOption loc decls defs; in
          { options = o; config = o.value; unmatched = [ ]; }
        else
          let
            pushed = concatMap (d: map (v: { inherit (d) file; value = v; }) (pushDown loc d.file d.value)) defs;
            children = mapAttrs (n: sub:
              evalNode (loc ++ [ n ]) sub
                (concatMap (d: if d.value ? ${n} then [ { inherit (d) file; value = d.value.${n}; } ] else [ ]) pushed))
              decls;
            unmatchedHere = concatMap (d:
              map (n: { inherit (d) file; loc = loc ++ [ n ] ++ leafPath d.value.${n}; })
                (filter (n: !(decls ? ${n})) (attrNames d.value)))
              pushed;
          in {
            options = mapAttrs (_: c: c.options) children;
            config = mapAttrs (_: c: c.config) children;
            unmatched = unmatchedHere ++ concatMap (n: children.${n}.unmatched) (attrNames children);
          };

      # For error messages: follow plain attribute sets down to a leaf.
      leafPath = v:
        if isAttrs v && propType v == null && !(v ? outPath) && attrNames v != [ ]
        then [ (head (attrNames v)) ] ++ leafPath v.${head (attrNames v)}
        else [ ];

      result = evalNode prefix declTree topDefs;

      options = result.options;
      config = result.config;

      unmatched = result.unmatched;
      checkedConfig =
        if unmatched == [ ] then config
        else
          let u = head unmatched; in
          throw "The option `${showOption u.loc}' does not exist. Definition values:\n- In `${toString u.file}'";
    in {
      config = checkedConfig;
      inherit options;
      uncheckedConfig = config;
      _module = { inherit entries; };
    };

in
props // {
  inherit evalModules mergeDefinitions mkOption mkEnableOption mkPackageOption
    mkSinkUndeclaredOptions isOption showOption showFiles showVal pushDown;
  modules = { inherit evalModules mergeDefinitions; };
  options = { inherit mkOption mkEnableOption mkPackageOption showOption isOption; };
  isType = t: v: isAttrs v && (v._type or null) == t;
  setType = t: v: v // { _type = t; };
  mkAliasDefinitions = option: props.mkIf option.isDefined (props.mkMerge option.definitions);
  mkAliasOptionModule = from: to: { config, options, ... }: {
    options = lib.setAttrByPath from (mkOption { type = lib.types.raw; description = "Alias of ${showOption to}."; });
    config = lib.setAttrByPath to (props.mkIf (lib.getAttrFromPath from options).isDefined (lib.getAttrFromPath from config));
  };
  mkRenamedOptionModule = from: to: { config, options, ... }: {
    options = lib.setAttrByPath from (mkOption { type = lib.types.raw; description = "Renamed to ${showOption to}."; });
    config = lib.setAttrByPath to (props.mkIf (lib.getAttrFromPath from options).isDefined (lib.getAttrFromPath from config));
  };
  mkRemovedOptionModule = from: replacementInstructions: { options, ... }: {
    options = lib.setAttrByPath from (mkOption { type = lib.types.raw; description = "Removed."; });
    config.assertions = [ {
      assertion = !(lib.getAttrFromPath from options).isDefined;
      message = "The option definition `${showOption from}' no longer has any effect; please remove it.\n${replacementInstructions}";
    } ];
  };
}
