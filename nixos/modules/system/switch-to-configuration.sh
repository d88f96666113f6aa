#!@busybox@/bin/sh
# switch-to-configuration {switch|test|boot|dry-activate}
#
# Run INSIDE a running container, from the NEW system:
#   /nix/store/...-nixos-system-.../bin/switch-to-configuration test
# Compares the unit directories of the running system (/run/current-system)
# and the new one, stops units that were removed, runs the new activate
# (re-links /etc, users, /run/current-system), reloads systemd, re-applies
# tmpfiles, restarts changed units that are running (never instances of
# template units such as root-shell@, whose connection may be the one
# running this script), and starts units newly wanted by an active target.
# Exit status 4 when a unit failed to (re)start, 1 on other errors.
newSystem=@systemConfig@
export PATH=@busybox@/bin:/usr/bin:/usr/sbin

action=${1:-}
case "$action" in
  switch|test|dry-activate) ;;
  boot)
    echo "switch-to-configuration: there is no boot loader in a container; the profile already selects the system for the next start."
    exit 0 ;;
  *)
    echo "Usage: $0 [switch|boot|test|dry-activate]" >&2
    exit 1 ;;
esac

if [ "$(id -u)" != 0 ]; then echo "switch-to-configuration: must run as root" >&2; exit 1; fi
if [ ! -d /run/systemd/system ]; then echo "switch-to-configuration: systemd is not running here" >&2; exit 1; fi

oldSystem=$(readlink -f /run/current-system 2>/dev/null || true)
newUnits=$newSystem/etc/systemd/system
oldUnits=
[ -n "$oldSystem" ] && [ -d "$oldSystem/etc/systemd/system" ] && oldUnits=$oldSystem/etc/systemd/system

tmp=$(mktemp -d /run/switch-to-configuration.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# unit names (regular files or symlinks, not the *.wants directories)
listUnits() { [ -n "$1" ] && [ -d "$1" ] || return 0; for f in "$1"/*; do [ -e "$f" ] || [ -L "$f" ] || continue; [ -d "$f" ] && [ ! -L "$f" ] && continue; basename "$f"; done | sort; }
# "target unit" pairs from TARGET.wants directories
listWants() { [ -n "$1" ] && [ -d "$1" ] || return 0; for d in "$1"/*.wants "$1"/*.requires; do [ -d "$d" ] || continue; t=$(basename "$d"); t=${t%.wants}; t=${t%.requires}; for u in "$d"/*; do [ -e "$u" ] || [ -L "$u" ] || continue; echo "$t $(basename "$u")"; done; done | sort; }

listUnits "$oldUnits" > "$tmp/old"
listUnits "$newUnits" > "$tmp/new"
listWants "$oldUnits" > "$tmp/oldwants"
listWants "$newUnits" > "$tmp/newwants"

isMasked() { [ "$(readlink "$1")" = /dev/null ]; }
isTemplate() { case "$1" in *@.*) return 0 ;; *) return 1 ;; esac; }
isActive() { systemctl is-active --quiet "$1"; }
# A target still being reached (multi-user.target while the guest boots:
# inactive, with a start job waiting) counts as active for the units it
# newly wants: its start job was planned without them, so they would never
# start otherwise.
isTargetActive() {
  isActive "$1" && return 0
  systemctl list-jobs --no-legend 2>/dev/null | awk -v u="$1" '$2 == u && $3 == "start" { f = 1 } END { exit !f }'
}
noRestart() { grep -q '^X-RestartIfChanged=false' "$1" 2>/dev/null; }
wantsReload() { grep -q '^X-ReloadIfChanged=true' "$1" 2>/dev/null; }

: > "$tmp/stop"; : > "$tmp/restart"; : > "$tmp/reload"; : > "$tmp/start"

# removed (or newly masked) units
while read -r u; do
  if ! grep -qxF "$u" "$tmp/new" || { isMasked "$newUnits/$u" && ! isMasked "$oldUnits/$u"; }; then
    isTemplate "$u" && continue
    isActive "$u" && echo "$u" >> "$tmp/stop"
  fi
done < "$tmp/old"

# changed units
while read -r u; do
  grep -qxF "$u" "$tmp/old" || continue
  isMasked "$newUnits/$u" && continue
  cmp -s "$oldUnits/$u" "$newUnits/$u" && continue
  isTemplate "$u" && continue
  case "$u" in *.target) continue ;; esac
  if isActive "$u"; then
    if wantsReload "$newUnits/$u"; then echo "$u" >> "$tmp/reload"
    elif noRestart "$newUnits/$u"; then :
    else echo "$u" >> "$tmp/restart"; fi
  else
    # not running: start it if an active target wants it
    if grep -q " $u\$" "$tmp/newwants"; then
      grep " $u\$" "$tmp/newwants" | while read -r t _; do isTargetActive "$t" && echo "$u"; done | head -n 1 >> "$tmp/start"
    fi
  fi
done < "$tmp/new"

# units newly wanted by an active target
while read -r t u; do
  grep -qxF "$t $u" "$tmp/oldwants" && continue
  isTemplate "$u" && continue
  isMasked "$newUnits/$u" 2>/dev/null && continue
  isTargetActive "$t" || continue
  isActive "$u" && continue
  grep -qxF "$u" "$tmp/restart" && continue
  echo "$u" >> "$tmp/start"
done < "$tmp/newwants"

for f in stop restart reload start; do sort -u "$tmp/$f" > "$tmp/$f.s"; mv "$tmp/$f.s" "$tmp/$f"; done
words() { tr '\n' ' ' < "$1" | sed 's/ *$//'; }

if [ "$action" = dry-activate ]; then
  [ -s "$tmp/stop" ] && echo "would stop the following units: $(words "$tmp/stop")"
  echo "would activate the configuration..."
  [ -s "$tmp/reload" ] && echo "would reload the following units: $(words "$tmp/reload")"
  [ -s "$tmp/restart" ] && echo "would restart the following units: $(words "$tmp/restart")"
  [ -s "$tmp/start" ] && echo "would start the following units: $(words "$tmp/start")"
  exit 0
fi

status=0
if [ -s "$tmp/stop" ]; then
  echo "stopping the following units: $(words "$tmp/stop")"
  systemctl stop $(words "$tmp/stop") || status=1
fi

echo "activating the configuration..."
"$newSystem/activate" || { echo "warning: error(s) occurred while activating the configuration" >&2; status=1; }

echo "reloading the system manager..."
systemctl daemon-reload || status=1

echo "setting up tmpfiles"
systemd-tmpfiles --create --remove --exclude-prefix=/dev >/dev/null 2>&1
case $? in 0|65|73) ;; *) echo "warning: systemd-tmpfiles failed" >&2; status=1 ;; esac

if [ -s "$tmp/reload" ]; then
  echo "reloading the following units: $(words "$tmp/reload")"
  systemctl reload $(words "$tmp/reload") || true
fi
if [ -s "$tmp/restart" ]; then
  echo "restarting the following units: $(words "$tmp/restart")"
  systemctl restart $(words "$tmp/restart") || true
fi
if [ -s "$tmp/start" ]; then
  echo "starting the following units: $(words "$tmp/start")"
  systemctl start $(words "$tmp/start") || true
fi

failed=
for u in $(cat "$tmp/reload" "$tmp/restart" "$tmp/start"); do
  if systemctl is-failed --quiet "$u"; then failed="$failed $u"; fi
done
if [ -n "$failed" ]; then
  echo "warning: the following units failed:$failed" >&2
  for u in $failed; do systemctl status --no-pager --lines=10 "$u" 2>&1 | sed 's/^/  /' >&2; done
  status=4
fi

if [ "$status" = 0 ]; then echo "done"; fi
exit $status
