# The stand-in's `lib`: a small library of list/string/attrset helpers plus
# the module system (lib/modules.nix) and option types (lib/types.nix).
# Written from scratch for this project; it mirrors the *names* and the
# documented behaviour of nixpkgs' lib, not its code.
let
  b = builtins;

  lib = rec {
    # ------------------------------------------------------------------
    # trivial
    id = x: x;
    const = x: _: x;
    flip = f: x: y: f y x;
    pipe = x: fs: b.foldl' (acc: f: f acc) x fs;
    inherit (b)
      attrNames attrValues hasAttr getAttr head tail length elem elemAt
      filter map foldl' concatLists concatMap listToAttrs mapAttrs isAttrs
      isList isString isInt isBool isFunction isPath isFloat toString
      replaceStrings stringLength substring genList any all sort match split
      toJSON fromJSON readFile pathExists seq deepSeq trace typeOf tryEval
      intersectAttrs removeAttrs functionArgs catAttrs zipAttrsWith
      groupBy baseNameOf dirOf compareVersions hashString partition
      genericClosure addErrorContext;

    boolToString = v: if v then "true" else "false";
    max = x: y: if x > y then x else y;
    min = x: y: if x < y then x else y;
    mod = x: y: x - (x / y) * y;
    inNixShell = false;
    isStorePath = p:
      let s = toString p; in
      hasPrefix "${b.storeDir}/" s && match "[^/]+" (substring (stringLength b.storeDir + 1) (-1) s) != null;

    # ------------------------------------------------------------------
    # lists
    foldr = op: nul: list:
      let len = length list;
          go = n: if n == len then nul else op (elemAt list n) (go (n + 1));
      in go 0;
    foldl = op: nul: list: b.foldl' op nul list;
    fold = foldr;
    last = list: elemAt list (length list - 1);
    init = list: genList (n: elemAt list n) (length list - 1);
    take = n: list: genList (i: elemAt list i) (min n (length list));
    drop = n: list: let l = length list; in
      if n >= l then [ ] else genList (i: elemAt list (i + n)) (l - n);
    sublist = start: count: list: take count (drop start list);
    flatten = x: if isList x then concatMap flatten x else [ x ];
    unique = list: foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ] list;
    range = first: last: if first > last then [ ] else genList (n: first + n) (last - first + 1);
    optional = cond: x: if cond then [ x ] else [ ];
    optionals = cond: xs: if cond then xs else [ ];
    imap0 = f: list: genList (n: f n (elemAt list n)) (length list);
    imap1 = f: list: genList (n: f (n + 1) (elemAt list n)) (length list);
    imap = imap1;
    count = pred: list: length (filter pred list);
    findFirst = pred: default: list:
      let found = filter pred list; in if found == [ ] then default else head found;
    remove = e: filter (x: x != e);
    subtractLists = e: filter (x: !(elem x e));
    intersectLists = e: filter (x: elem x e);
    mutuallyExclusive = a: b': length a == 0 || !(any (x: elem x a) b');
    toList = x: if isList x then x else [ x ];
    singleton = x: [ x ];
    forEach = xs: f: map f xs;
    reverseList = xs: let l = length xs; in genList (n: elemAt xs (l - n - 1)) l;
    zipListsWith = f: fst: snd:
      genList (n: f (elemAt fst n) (elemAt snd n)) (min (length fst) (length snd));
    zipLists = zipListsWith (fst: snd: { inherit fst snd; });
    intersperse = sep: list:
      if list == [ ] then [ ] else tail (concatMap (x: [ sep x ]) list);
    sortOn = f: sort (x: y: f x < f y);
    naturalSort = sort (x: y: x < y);
    lists = { inherit foldr foldl last init take drop flatten unique range optional optionals imap0 imap1 count findFirst remove subtractLists toList reverseList zipListsWith intersperse; };

    # ------------------------------------------------------------------
    # strings
    concatStrings = b.concatStringsSep "";
    concatStringsSep = b.concatStringsSep;
    concatMapStrings = f: list: concatStrings (map f list);
    concatMapStringsSep = sep: f: list: concatStringsSep sep (map f list);
    concatImapStrings = f: list: concatStrings (imap1 f list);
    concatImapStringsSep = sep: f: list: concatStringsSep sep (imap1 f list);
    concatLines = list: concatMapStrings (s: s + "\n") list;
    optionalString = cond: s: if cond then s else "";
    hasPrefix = pre: s: substring 0 (stringLength pre) s == pre;
    hasSuffix = suf: s:
      let ls = stringLength s; lf = stringLength suf; in
      ls >= lf && substring (ls - lf) lf s == suf;
    hasInfix = inf: s: match ".*${escapeRegex inf}.*" s != null;
    removePrefix = pre: s:
      if hasPrefix pre s then substring (stringLength pre) (-1) s else s;
    removeSuffix = suf: s:
      if hasSuffix suf s then substring 0 (stringLength s - stringLength suf) s else s;
    stringToCharacters = s: genList (p: substring p 1 s) (stringLength s);
    escape = chars: replaceStrings chars (map (c: "\\${c}") chars);
    escapeRegex = escape (stringToCharacters "\\[{()^$?*+|.");
    # builtins.split and builtins.match drop string context (the store
    # paths a string refers to); put it back.
    addContextFrom = src: target: substring 0 0 src + target;
    splitString = sep: s: map (addContextFrom s) (filter isString (split (escapeRegex sep) (toString s)));
    lowerChars = stringToCharacters "abcdefghijklmnopqrstuvwxyz";
    upperChars = stringToCharacters "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    toLower = replaceStrings upperChars lowerChars;
    toUpper = replaceStrings lowerChars upperChars;
    escapeShellArg = arg: "'${replaceStrings [ "'" ] [ "'\\''" ] (toString arg)}'";
    escapeShellArgs = concatMapStringsSep " " escapeShellArg;
    toInt = s:
      let r = fromJSON s; in
      if match "-?[0-9]+" s != null && isInt r then r else throw "toInt: could not convert `${s}' to an integer";
    fixedWidthString = width: filler: s:
      let l = stringLength s; in
      if l >= width then s else fixedWidthString width filler (filler + s);
    fixedWidthNumber = width: n: fixedWidthString width "0" (toString n);
    trim = s:
      let m = match "[[:space:]]*(.*[^[:space:]])[[:space:]]*" s; in
      if m == null then "" else addContextFrom s (head m);
    fileContents = file: removeSuffix "\n" (readFile file);
    versionOlder = v1: v2: compareVersions v2 v1 == 1;
    versionAtLeast = v1: v2: !(versionOlder v1 v2);
    makeSearchPath = subDir: paths:
      concatStringsSep ":" (map (p: "${toString p}/${subDir}") (filter (p: p != null) paths));
    makeSearchPathOutput = _output: makeSearchPath;
    makeBinPath = makeSearchPath "bin";
    makeLibraryPath = makeSearchPath "lib";
    strings = { inherit concatStrings concatStringsSep concatMapStrings concatMapStringsSep optionalString hasPrefix hasSuffix hasInfix removePrefix removeSuffix splitString toLower toUpper escapeShellArg escapeShellArgs toInt fileContents stringToCharacters escapeRegex trim; };

    # ------------------------------------------------------------------
    # attrsets
    nameValuePair = name: value: { inherit name value; };
    mapAttrs' = f: set: listToAttrs (map (n: f n set.${n}) (attrNames set));
    mapAttrsToList = f: set: map (n: f n set.${n}) (attrNames set);
    attrsToList = set: mapAttrsToList nameValuePair set;
    concatMapAttrs = f: set: foldl' (acc: x: acc // x) { } (mapAttrsToList f set);
    filterAttrs = pred: set:
      listToAttrs (concatMap (n: if pred n set.${n} then [ (nameValuePair n set.${n}) ] else [ ]) (attrNames set));
    genAttrs = names: f: listToAttrs (map (n: nameValuePair n (f n)) names);
    attrByPath = path: default: set:
      if path == [ ] then set
      else if isAttrs set && set ? ${head path} then attrByPath (tail path) default set.${head path}
      else default;
    hasAttrByPath = path: set:
      if path == [ ] then true
      else isAttrs set && set ? ${head path} && hasAttrByPath (tail path) set.${head path};
    getAttrFromPath = path: set:
      attrByPath path (throw "cannot find attribute `${concatStringsSep "." path}'") set;
    setAttrByPath = path: value:
      if path == [ ] then value else { ${head path} = setAttrByPath (tail path) value; };
    recursiveUpdateUntil = pred: lhs: rhs:
      zipAttrsWith
        (n: vs:
          let l = elemAt vs 1; r = head vs; in
          if length vs == 1 then head vs
          else if isAttrs l && isAttrs r && !(pred [ n ] l r) then recursiveUpdateUntil pred l r
          else r)
        [ rhs lhs ];
    recursiveUpdate = lhs: rhs:
      let go = l: r:
        zipAttrsWith
          (n: vs:
            if length vs == 1 then head vs
            else let lv = elemAt vs 0; rv = elemAt vs 1; in
              if isAttrs lv && isAttrs rv && !(isDerivation lv) && !(isDerivation rv) then go lv rv else rv)
          [ l r ];
      in go lhs rhs;
    zipAttrs = zipAttrsWith (_: vs: vs);
    isDerivation = x: isAttrs x && (x.type or null) == "derivation";
    collect = pred: v:
      if pred v then [ v ] else if isAttrs v then concatMap (collect pred) (attrValues v) else [ ];
    optionalAttrs = cond: set: if cond then set else { };
    getOutput = output: pkg: pkg.${output} or pkg;
    getBin = getOutput "bin";
    getLib = getOutput "lib";
    getDev = getOutput "dev";
    getExe = pkg: "${getBin pkg}/bin/${pkg.meta.mainProgram or pkg.pname or (b.parseDrvName pkg.name).name}";
    getExe' = pkg: exe: "${getBin pkg}/bin/${exe}";
    attrsets = { inherit nameValuePair mapAttrs' mapAttrsToList filterAttrs genAttrs attrByPath hasAttrByPath getAttrFromPath setAttrByPath recursiveUpdate isDerivation optionalAttrs collect; inherit (b) mapAttrs attrNames attrValues; };

    # ------------------------------------------------------------------
    # documentation helpers (only carried around)
    literalExpression = text: { _type = "literalExpression"; inherit text; };
    literalExample = literalExpression;
    literalMD = text: { _type = "literalMD"; inherit text; };
    mdDoc = s: s;

    # ------------------------------------------------------------------
    # module system and types
    types = import ./types.nix { inherit lib; };
  } // import ./modules.nix { inherit lib; };
in
lib
