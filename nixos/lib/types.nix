# Option types for the stand-in module system.  Each type has a `check`
# predicate and a `merge loc defs` function; `defs` is a list of
# { file; value; } whose top-level mkIf/mkMerge/mkOverride have already
# been resolved (nested ones are handled by attrsOf/listOf/submodule).
{ lib }:
let
  b = builtins;
  inherit (lib) map filter concatMap length head tail all any elem attrNames
    isAttrs isList isString isInt isBool isFunction isPath concatStringsSep
    showOption showVal mergeDefinitions;

  checkDefs = type: loc: defs:
    map (d:
      if type.check d.value then d
      else throw "A definition for option `${showOption loc}' is not of type `${type.description}'. Definition values:\n- In `${toString d.file}': ${showVal d.value}")
      defs;

  mkOptionType =
    { name
    , description ? name
    , check ? (_: true)
    , merge ? mergeDefaultOption
    , ...
    }@attrs:
    let self = attrs // {
      _type = "option-type";
      inherit name description check;
      merge = loc: defs: merge loc (checkDefs self loc defs);
    };
    in self;

  conflictMessage = loc: defs:
    "The option `${showOption loc}' has conflicting definition values:\n"
    + concatStringsSep "\n" (map (d: "- In `${toString d.file}': ${showVal d.value}") defs)
    + "\nUse `lib.mkForce value` or `lib.mkDefault value` to change the priority on any of these definitions.";

  mergeEqualOption = loc: defs:
    let first = head defs; in
    if all (d: d.value == first.value) (tail defs) then first.value
    else throw (conflictMessage loc defs);

  mergeOneOption = loc: defs:
    if length defs == 1 then (head defs).value
    else mergeEqualOption loc defs;

  mergeDefaultOption = loc: defs:
    let vals = map (d: d.value) defs; in
    if length defs == 1 then head vals
    else if all isList vals then b.concatLists vals
    else if all (v: isAttrs v && !(lib.isDerivation v)) vals then b.foldl' (acc: v: acc // v) { } vals
    else if all isBool vals then b.any (x: x) vals
    else if all isString vals then lib.concatStrings vals
    else mergeEqualOption loc defs;

  isCoercibleToString = v:
    isString v || isPath v || (isAttrs v && (v ? outPath || v ? __toString)) || isInt v || isBool v || v == null;

  # Merge a list of attribute-set definitions attribute by attribute.
  mergeAttrDefs = loc: elemType: defs:
    let
      pushed = concatMap (d: map (v: { inherit (d) file; value = v; }) (lib.pushDown loc d.file d.value)) defs;
      names = lib.unique (concatMap (d: attrNames d.value) pushed);
    in
    b.listToAttrs (map (n: {
      name = n;
      value = mergeDefinitions (loc ++ [ n ]) elemType
        (concatMap (d: if d.value ? ${n} then [ { inherit (d) file; value = d.value.${n}; } ] else [ ]) pushed);
    }) names);

  separatedString = sep: mkOptionType {
    name = "separatedString";
    description = if sep == "" then "concatenated string" else "strings concatenated with ${b.toJSON sep}";
    check = isString;
    merge = _loc: defs: concatStringsSep sep (map (d: d.value) defs);
  };

  ints = rec {
    between = lowest: highest: mkOptionType {
      name = "intBetween";
      description = "integer between ${toString lowest} and ${toString highest} (both inclusive)";
      check = x: isInt x && x >= lowest && x <= highest;
      merge = mergeEqualOption;
    };
    unsigned = mkOptionType { name = "unsignedInt"; description = "unsigned integer, meaning >=0"; check = x: isInt x && x >= 0; merge = mergeEqualOption; };
    positive = mkOptionType { name = "positiveInt"; description = "positive integer, meaning >0"; check = x: isInt x && x > 0; merge = mergeEqualOption; };
    u8 = between 0 255;
    u16 = between 0 65535;
    u32 = between 0 4294967295;
    s8 = between (-128) 127;
    s16 = between (-32768) 32767;
    s32 = between (-2147483648) 2147483647;
  };

  types = rec {
    inherit mkOptionType mergeEqualOption mergeOneOption mergeDefaultOption isCoercibleToString ints separatedString;
    isType = t: v: isAttrs v && (v._type or null) == t;

    raw = mkOptionType { name = "raw"; description = "raw value"; merge = mergeOneOption; };
    unspecified = mkOptionType { name = "unspecified"; description = "unspecified value"; };

    anything = mkOptionType {
      name = "anything";
      description = "anything";
      merge = loc: defs:
        let vals = map (d: d.value) defs; in
        if all (v: isAttrs v && !(lib.isDerivation v) && !(v ? outPath)) vals then
          b.mapAttrs (_: r: r.value) (lib.filterAttrs (_: r: r.isDefined) (mergeAttrDefs loc anything defs))
        else if length defs == 1 then head vals
        else if all isList vals then b.concatLists vals
        else mergeEqualOption loc defs;
    };

    bool = mkOptionType { name = "bool"; description = "boolean"; check = isBool; merge = mergeEqualOption; };
    int = mkOptionType { name = "int"; description = "signed integer"; check = isInt; merge = mergeEqualOption; };
    port = ints.u16;
    float = mkOptionType { name = "float"; description = "floating point number"; check = b.isFloat; merge = mergeEqualOption; };
    number = either int float;

    str = mkOptionType { name = "str"; description = "string"; check = isString; merge = mergeEqualOption; };
    nonEmptyStr = mkOptionType { name = "nonEmptyStr"; description = "non-empty string"; check = x: isString x && b.match "[[:space:]]*" x == null; merge = mergeEqualOption; };
    singleLineStr = mkOptionType { name = "singleLineStr"; description = "(optionally newline-terminated) single-line string"; check = x: isString x && b.match "[^\n]*\n?" x != null; merge = mergeEqualOption; };
    strMatching = pattern: mkOptionType {
      name = "strMatching ${b.toJSON pattern}";
      description = "string matching the pattern ${pattern}";
      check = x: isString x && b.match pattern x != null;
      merge = mergeEqualOption;
    };
    lines = separatedString "\n";
    commas = separatedString ",";
    envVar = separatedString ":";
    string = separatedString "";
    passwdEntry = entryType: mkOptionType {
      name = "passwdEntry ${entryType.name}";
      description = "${entryType.description}, not containing newlines or colons";
      check = x: entryType.check x && b.match ".*[:\n].*" x == null;
      merge = entryType.merge;
    };
    shellPackage = package;

    path = mkOptionType {
      name = "path";
      description = "path";
      check = x: isCoercibleToString x && (let s = toString x; in lib.hasPrefix "/" s);
      merge = mergeEqualOption;
    };
    pathInStore = path;

    package = mkOptionType {
      name = "package";
      description = "package";
      check = x: lib.isDerivation x || (isAttrs x && x ? outPath) || isPath x || (isString x && lib.hasPrefix "/" x);
      merge = mergeEqualOption;
    };

    attrs = mkOptionType {
      name = "attrs";
      description = "attribute set";
      check = isAttrs;
      merge = _loc: defs: b.foldl' (acc: d: acc // d.value) { } defs;
    };

    enum = values: mkOptionType {
      name = "enum";
      description = "one of ${concatStringsSep ", " (map showVal values)}";
      check = x: elem x values;
      merge = mergeEqualOption;
    };

    listOf = elemType: mkOptionType {
      name = "listOf";
      description = "list of ${elemType.description}";
      check = isList;
      merge = loc: defs:
        concatMap (d:
          concatMap (r: if r.isDefined then [ r.value ] else [ ])
            (lib.imap1 (i: v: mergeDefinitions (loc ++ [ "[definition-entry ${toString i}]" ]) elemType [ { inherit (d) file; value = v; } ]) d.value))
          defs;
      inherit elemType;
    };
    nonEmptyListOf = elemType: mkOptionType {
      name = "nonEmptyListOf";
      description = "non-empty list of ${elemType.description}";
      check = x: isList x && x != [ ];
      merge = (listOf elemType).merge;
      inherit elemType;
    };

    attrsOf = elemType: mkOptionType {
      name = "attrsOf";
      description = "attribute set of ${elemType.description}";
      check = isAttrs;
      merge = loc: defs:
        b.mapAttrs (_: r: r.value) (lib.filterAttrs (_: r: r.isDefined) (mergeAttrDefs loc elemType defs));
      inherit elemType;
    };
    lazyAttrsOf = elemType: mkOptionType {
      name = "lazyAttrsOf";
      description = "lazy attribute set of ${elemType.description}";
      check = isAttrs;
      merge = loc: defs: b.mapAttrs (_: r: r.value) (mergeAttrDefs loc elemType defs);
      inherit elemType;
    };
    loaOf = attrsOf;

    uniq = elemType: mkOptionType {
      name = "uniq";
      inherit (elemType) description check;
      merge = loc: defs:
        if length defs == 1 then elemType.merge loc defs
        else throw "The option `${showOption loc}' is defined multiple times, but it may be defined only once:\n"
          + concatStringsSep "\n" (map (d: "- In `${toString d.file}'") defs);
    };
    unique = { message ? "" }: uniq;

    nullOr = elemType: mkOptionType {
      name = "nullOr";
      description = "null or ${elemType.description}";
      check = x: x == null || elemType.check x;
      merge = loc: defs:
        let nulls = filter (d: d.value == null) defs; in
        if length nulls == length defs then null
        else if nulls != [ ] then throw "The option `${showOption loc}' is defined both null and not null, in ${lib.showFiles (map (d: d.file) defs)}."
        else elemType.merge loc defs;
      inherit elemType;
    };

    either = t1: t2: mkOptionType {
      name = "either";
      description = "${t1.description} or ${t2.description}";
      check = x: t1.check x || t2.check x;
      merge = loc: defs:
        if all (d: t1.check d.value) defs then t1.merge loc defs
        else if all (d: t2.check d.value) defs then t2.merge loc defs
        else mergeOneOption loc defs;
    };
    oneOf = ts:
      if ts == [ ] then throw "types.oneOf needs at least one type"
      else b.foldl' either (head ts) (tail ts);

    coercedTo = coercedType: coerceFunc: finalType: mkOptionType {
      name = "coercedTo";
      description = "${finalType.description} or ${coercedType.description} convertible to it";
      check = x: (coercedType.check x && finalType.check (coerceFunc x)) || finalType.check x;
      merge = loc: defs:
        finalType.merge loc (map (d: d // { value = if coercedType.check d.value && !(finalType.check d.value) then coerceFunc d.value else d.value; }) defs);
    };

    functionTo = elemType: mkOptionType {
      name = "functionTo";
      description = "function that evaluates to a(n) ${elemType.description}";
      check = isFunction;
      merge = loc: defs: fnArgs:
        (mergeDefinitions loc elemType (map (d: { inherit (d) file; value = d.value fnArgs; }) defs)).value;
    };

    submoduleWith =
      { modules
      , specialArgs ? { }
      , shorthandOnlyDefinesConfig ? false
      , description ? null
      , ...
      }:
      mkOptionType {
        name = "submodule";
        description = if description != null then description else "submodule";
        check = x: isAttrs x || isFunction x || isPath x;
        merge = loc: defs:
          (lib.evalModules {
            prefix = loc;
            specialArgs = { name = lib.last loc; } // specialArgs;
            modules = modules ++ map (d: { _file = d.file; imports = [ d.value ]; }) defs;
          }).config;
        getSubModules = modules;
      };

    submodule = modules: submoduleWith {
      modules = lib.toList modules;
    };

    deferredModule = mkOptionType {
      name = "deferredModule";
      description = "module";
      check = x: isAttrs x || isFunction x || isPath x;
      merge = _loc: defs: { imports = map (d: { _file = d.file; imports = [ d.value ]; }) defs; };
    };
  };
in
types
