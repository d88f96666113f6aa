# Guest side of the nixos-container CLI: how the host gets a shell in the
# container without ssh, machinectl or D-Bus (after the 2013 NixOS seed's
# container-login.nix).  A plain NixOS module: it only uses standard
# options, so it works in real NixOS as well as in the stand-in.
#
# Socket contract (paths inside the container; from the host they are
# ROOT/var/lib/...):
#
#   /var/lib/root-shell.socket   mode 0600 (root only), Accept=yes.
#     Each connection gets its own root-shell@ instance running
#     `bash --login` as root with stdin/stdout/stderr on the connection
#     (no pty, TERM=dumb).  Write commands, shut down the writing side,
#     read the output until EOF:
#       echo 'systemctl is-system-running' | socat - unix:ROOT/var/lib/root-shell.socket
#     `nixos-container run`/`root-login` send one line that execs the
#     CLI's static agent from the (shared) Nix store if it is there, and
#     speak a framed protocol with it; otherwise they fall back to plain
#     shell lines on the same connection.  bash must read the socket
#     line by line (it does: a socket is not seekable), so that the bytes
#     after an `exec` line reach the exec'd program.  See README.md,
#     "Guest socket contract".
#
#   /var/lib/login.socket        mode 0600, Accept=yes.
#     Each connection gets a login@ instance: socat puts /bin/login on a
#     fresh pty (setsid, controlling tty) and relays it; the host side
#     should put its terminal in raw mode:
#       socat -,raw,echo=0 unix:ROOT/var/lib/login.socket
#
# PATH: `bash --login` and `login` set it themselves (from /etc/profile
# and login.defs), so the units leave it alone.
{ pkgs, ... }:
{
  systemd.sockets.root-shell = {
    description = "Root shell socket (nixos-container)";
    wantedBy = [ "sockets.target" ];
    listenStreams = [ "/var/lib/root-shell.socket" ];
    socketConfig = {
      Accept = true;
      SocketMode = "0600";
    };
  };

  systemd.services."root-shell@" = {
    description = "Root shell (nixos-container)";
    environment = {
      TERM = "dumb";
      HOME = "/root";
      USER = "root";
      LOGNAME = "root";
    };
    serviceConfig = {
      ExecStart = "${pkgs.bashInteractive}/bin/bash --login";
      StandardInput = "socket";
      StandardOutput = "socket";
      StandardError = "socket";
      WorkingDirectory = "-/root";
      IgnoreSIGPIPE = false;
      SendSIGHUP = true;
    };
    unitConfig.CollectMode = "inactive-or-failed";
  };

  systemd.sockets.login = {
    description = "Login socket (nixos-container)";
    wantedBy = [ "sockets.target" ];
    listenStreams = [ "/var/lib/login.socket" ];
    socketConfig = {
      Accept = true;
      SocketMode = "0600";
    };
  };

  systemd.services."login@" = {
    description = "Login on a pty (nixos-container)";
    environment.TERM = "xterm-256color";
    serviceConfig = {
      ExecStart = "${pkgs.socat}/bin/socat -t0 - exec:${pkgs.shadow}/bin/login,pty,setsid,setpgid,stderr,ctty";
      StandardInput = "socket";
      StandardOutput = "socket";
      StandardError = "journal";
      IgnoreSIGPIPE = false;
      # interactive shells ignore SIGTERM; hang them up when the
      # connection is gone
      SendSIGHUP = true;
    };
    unitConfig.CollectMode = "inactive-or-failed";
  };
}
