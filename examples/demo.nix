# A small configuration as a new user would write it: a directory made by
# tmpfiles and a oneshot service that writes into it.
{ config, lib, pkgs, ... }:
{
  systemd.tmpfiles.rules = [ "d /var/lib/demo 0755 root root -" ];
  systemd.services.demo = {
    description = "Write a greeting";
    wantedBy = [ "multi-user.target" ];
    serviceConfig = { Type = "oneshot"; RemainAfterExit = true; };
    script = "echo hello from $(hostname) > /var/lib/demo/hello";
  };
}
