# PAM configuration for the host's login, su, runuser, passwd, chpasswd
# (Debian's binaries in /usr, which read /etc/pam.d).  Plain pam_unix
# against the container's /etc/shadow; root may use su/runuser freely.
# The texts are mkDefault: environment.etc."pam.d/NAME".text = "..."
# replaces a file.
{ lib, ... }:
with lib;
let
  unixAuth = ''
    auth      required   pam_unix.so
    account   required   pam_unix.so
    password  required   pam_unix.so sha512 shadow
    session   required   pam_unix.so
    session   optional   pam_env.so readenv=0
  '';
  rootOk = ''
    auth      sufficient pam_rootok.so
  '';
in
{
  config.environment.etc = mapAttrs (_: text: { text = mkDefault text; }) {
    "pam.d/login" = ''
      auth      optional   pam_faildelay.so delay=1000000
      auth      requisite  pam_nologin.so
    '' + unixAuth;
    "pam.d/su" = rootOk + unixAuth;
    "pam.d/su-l" = rootOk + unixAuth;
    "pam.d/runuser" = rootOk + ''
      session   required   pam_unix.so
    '';
    "pam.d/runuser-l" = rootOk + ''
      session   required   pam_unix.so
    '';
    "pam.d/passwd" = unixAuth;
    "pam.d/chpasswd" = rootOk + unixAuth;
    "pam.d/newusers" = rootOk + unixAuth;
    "pam.d/chsh" = rootOk + unixAuth;
    "pam.d/chfn" = rootOk + unixAuth;
    "pam.d/systemd-user" = ''
      account   required   pam_unix.so
      session   required   pam_unix.so
    '';
    "pam.d/other" = ''
      auth      required   pam_warn.so
      auth      required   pam_deny.so
      account   required   pam_warn.so
      account   required   pam_deny.so
      password  required   pam_warn.so
      password  required   pam_deny.so
      session   required   pam_warn.so
      session   required   pam_deny.so
    '';
  };
}
