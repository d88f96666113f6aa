# update-users.sh USERS_SPEC GROUPS_SPEC   (busybox sh + awk, from `activate`)
#
# GROUPS_SPEC lines: name:gid:member,member          (gid may be empty)
# USERS_SPEC lines:  name:uid:group:description:home:shell:createHome:isNormal:homeMode:hashed:clear
#
# Merges the declared groups/users into /etc/group, /etc/passwd and
# /etc/shadow: declared fields are updated, undeclared entries are kept,
# missing ids are allocated (groups and system users from 999 down, normal
# users from 1000 up), and a password is only written for users that are
# created now (hashed, or clear text hashed with sha512; else locked "!").
set -e
users_spec=$1
groups_spec=$2
umask 0022

touch /etc/passwd /etc/group
if [ ! -e /etc/shadow ]; then
  (umask 0077; : > /etc/shadow)
fi
chmod 0640 /etc/shadow

# ---- groups
awk -F: '
  FILENAME == ARGV[1] {
    if ($1 == "") next
    n++; sname[n] = $1; sgid[$1] = $2; smem[$1] = $3; declared[$1] = 1
    next
  }
  {
    if ($0 == "") next
    m++; line[m] = $0; have[$1] = 1; used[$3] = 1
  }
  function union(a, b,   x, i, seen, out, k) {
    out = ""
    k = split(a "," b, x, ",")
    for (i = 1; i <= k; i++) {
      if (x[i] == "" || (x[i] in seen)) continue
      seen[x[i]] = 1
      out = (out == "" ? x[i] : out "," x[i])
    }
    return out
  }
  function alloc(   k) {
    for (k = 999; k >= 400; k--) if (!((k "") in used)) return k
    for (k = 60000; k < 65000; k++) if (!((k "") in used)) return k
    return ""
  }
  END {
    for (i = 1; i <= m; i++) {
      split(line[i], f, ":")
      g = f[1]
      if (g in declared) {
        if (sgid[g] != "") f[3] = sgid[g]
        line[i] = f[1] ":" (f[2] == "" ? "x" : f[2]) ":" f[3] ":" union(f[4], smem[g])
      }
      print line[i]
    }
    for (j = 1; j <= n; j++) {
      g = sname[j]
      if (g in have) continue
      gid = sgid[g]
      if (gid == "") gid = alloc()
      used[gid ""] = 1
      print g ":x:" gid ":" smem[g]
    }
  }
' "$groups_spec" /etc/group > /etc/group.tmp
mv -f /etc/group.tmp /etc/group

# ---- users: hash clear-text passwords of users that do not exist yet
today=$(( $(date +%s) / 86400 ))
spec2=/etc/.users-spec.$$
: > "$spec2"
while IFS=: read -r name uid group desc home shell createHome isNormal homeMode hashed clear; do
  [ -n "$name" ] || continue
  if [ -z "$hashed" ] && [ -n "$clear" ] && ! grep -q "^$name:" /etc/passwd; then
    hashed=$(mkpasswd -m sha512 "$clear")
  fi
  echo "$name:$uid:$group:$desc:$home:$shell:$createHome:$isNormal:$homeMode:$hashed" >> "$spec2"
done < "$users_spec"

newusers=/etc/.new-users.$$
awk -F: -v newusers="$newusers" '
  FILENAME == ARGV[1] {
    if ($1 == "") next
    n++; sname[n] = $1; spec[$1] = $0; declared[$1] = 1
    next
  }
  FILENAME == ARGV[2] { if ($1 != "") ggid[$1] = $3; next }
  {
    if ($0 == "") next
    m++; line[m] = $0; have[$1] = 1; used[$3] = 1
  }
  function allocSystem(   k) { for (k = 999; k >= 400; k--) if (!((k "") in used)) return k; return "" }
  function allocNormal(   k) { for (k = 1000; k < 60000; k++) if (!((k "") in used)) return k; return "" }
  function entry(name, uid,   s, gid) {
    split(spec[name], s, ":")
    gid = (s[3] in ggid) ? ggid[s[3]] : 65534
    return name ":x:" uid ":" gid ":" s[4] ":" s[5] ":" s[6]
  }
  END {
    for (i = 1; i <= m; i++) {
      split(line[i], f, ":")
      u = f[1]
      if (u in declared) {
        split(spec[u], s, ":")
        line[i] = entry(u, (s[2] != "" ? s[2] : f[3]))
      }
      print line[i]
    }
    for (j = 1; j <= n; j++) {
      u = sname[j]
      if (u in have) continue
      split(spec[u], s, ":")
      uid = s[2]
      if (uid == "") uid = (s[8] == "1") ? allocNormal() : allocSystem()
      used[uid ""] = 1
      print entry(u, uid)
      print u > newusers
    }
  }
' "$spec2" /etc/group /etc/passwd > /etc/passwd.tmp
touch "$newusers"
mv -f /etc/passwd.tmp /etc/passwd
chmod 0644 /etc/passwd /etc/group

# ---- shadow: every passwd user gets an entry; new ones get their password
awk -F: -v today="$today" '
  FILENAME == ARGV[1] { if ($1 != "") { split($0, s, ":"); hash[$1] = s[10] } next }
  FILENAME == ARGV[2] { if ($1 != "") isnew[$1] = 1; next }
  FILENAME == ARGV[3] { if ($1 != "") { pw[++n] = $1 } next }
  { if ($0 == "") next; line[++m] = $0; have[$1] = 1 }
  END {
    for (i = 1; i <= m; i++) print line[i]
    for (j = 1; j <= n; j++) {
      u = pw[j]
      if (u in have) continue
      h = (u in isnew && hash[u] != "") ? hash[u] : "!"
      print u ":" h ":" today "::::::"
    }
  }
' "$spec2" "$newusers" /etc/passwd /etc/shadow > /etc/shadow.tmp
chmod 0640 /etc/shadow.tmp
mv -f /etc/shadow.tmp /etc/shadow

# ---- home directories
while IFS=: read -r name uid group desc home shell createHome isNormal homeMode hashed; do
  [ "$createHome" = 1 ] || continue
  [ -n "$home" ] && [ "$home" != / ] || continue
  if [ ! -e "$home" ]; then
    mkdir -p "$home"
    ids=$(awk -F: -v u="$name" '$1 == u { print $3 ":" $4 }' /etc/passwd)
    chown "$ids" "$home"
    chmod "$homeMode" "$home"
  fi
done < "$spec2"

rm -f "$spec2" "$newusers"
