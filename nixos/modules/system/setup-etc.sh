# setup-etc.sh ETC_DERIVATION   (run by busybox sh, from `activate`)
#
# Points /etc/static at ETC/etc and makes every entry of ETC/manifest
# ("MODE UID GID USER GROUP TARGET" per line) exist in /etc:
#   symlink         /etc/TARGET -> /etc/static/TARGET
#   direct-symlink  /etc/TARGET -> the store file itself
#   0644 etc.       a real copy with that mode and owner (listed in
#                   /etc/.clean so that it is removed when dropped)
# Symlinks into /etc/static that no longer resolve (entries removed from
# the configuration) are deleted.  A real directory that is in the way of
# a symlink is moved to TARGET.before-nixos.
etcdrv=$1
static=$etcdrv/etc
manifest=$etcdrv/manifest

[ -d "$static" ] && [ -f "$manifest" ] || { echo "setup-etc: $etcdrv is not an etc tree" >&2; exit 1; }

mkdir -p /etc
ln -sfn "$static" /etc/.static.tmp
mv -Tf /etc/.static.tmp /etc/static

# Remove dangling symlinks into /etc/static.
# (Only builtins for the common case: this runs on every boot.)
find /etc -path /etc/static -prune -o -type l -print 2>/dev/null | while read -r l; do
  [ -e "$l" ] && continue
  case "$(readlink "$l")" in
    /etc/static/*) rm -f "$l" ;;
  esac
done

# Remove copies made for entries that are gone.
if [ -f /etc/.clean ]; then
  while read -r f; do
    [ -n "$f" ] || continue
    if ! awk -v t="$f" '$6 == t && $1 != "symlink" && $1 != "direct-symlink" { found = 1 } END { exit !found }' "$manifest"; then
      rm -f "/etc/$f"
    fi
  done < /etc/.clean
fi

: > /etc/.clean.tmp
status=0
while read -r mode uid gid user group target; do
  [ -n "$target" ] || continue
  dst="/etc/$target"
  case "$target" in */*) [ -d "${dst%/*}" ] || mkdir -p "${dst%/*}" ;; esac
  case "$mode" in
    symlink|direct-symlink)
      # already a symlink that resolves to the right file? (test builtin;
      # /etc/static already points to the new tree)
      if [ -L "$dst" ] && [ "$dst" -ef "$static/$target" ]; then continue; fi
      if [ "$mode" = symlink ]; then want="/etc/static/$target"; else want=$(readlink "$static/$target"); fi
      if [ -d "$dst" ] && [ ! -L "$dst" ]; then
        if [ -e "$dst.before-nixos" ]; then rm -rf "$dst"; else mv "$dst" "$dst.before-nixos"; fi
        echo "setup-etc: moved the directory $dst out of the way" >&2
      fi
      ln -sfn "$want" "$dst.tmp.$$" && mv -Tf "$dst.tmp.$$" "$dst" || status=1
      ;;
    *)
      case "$user" in +*) u=${user#+} ;; *) u=$user ;; esac
      case "$group" in +*) g=${group#+} ;; *) g=$group ;; esac
      if cp -L "$static/$target" "$dst.tmp.$$" \
         && chmod "$mode" "$dst.tmp.$$" \
         && chown "$u:$g" "$dst.tmp.$$" \
         && { [ ! -d "$dst" ] || [ -L "$dst" ] || rm -rf "$dst"; } \
         && mv -f "$dst.tmp.$$" "$dst"; then
        echo "$target" >> /etc/.clean.tmp
      else
        echo "setup-etc: could not install /etc/$target" >&2
        rm -f "$dst.tmp.$$"
        status=1
      fi
      ;;
  esac
done < "$manifest"
mv -f /etc/.clean.tmp /etc/.clean
exit $status
