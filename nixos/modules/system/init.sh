#!@busybox@/bin/sh
# init of a NixOS stand-in system (PID 1 in the container until it execs
# systemd).  The container is started as
#   systemd-nspawn -D ROOT --bind-ro=/nix/store --bind-ro=/usr \
#     --bind=PROFILES:/nix/var/nix/profiles ... /nix/var/nix/profiles/system/init
# ROOT may be almost empty: /usr (mount point) and /etc/os-release.
systemConfig=@systemConfig@
export PATH=@busybox@/bin

if [ ! -x /usr/lib/systemd/systemd ]; then
  echo "init: /usr/lib/systemd/systemd not found; the container needs the host's /usr (--bind-ro=/usr)" >&2
  exit 1
fi

"$systemConfig/activate" || echo "init: activation reported errors (continuing)" >&2

ln -sfn "$systemConfig" /run/booted-system

exec /usr/lib/systemd/systemd "$@"
