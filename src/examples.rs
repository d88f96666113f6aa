//! Examples for each command: shown by `--help` (after the options) and
//! as the EXAMPLES section of its man page.

/// (command line, what it does) for each subcommand.
pub fn of(command: &str) -> &'static [(&'static str, &'static str)] {
    match command {
        "nixos-container" => &[
            ("nixos-container create web --config 'services.nginx.enable = true;'", "Create a container"),
            ("nixos-container start web", "Start it; returns when it is ready"),
            ("nixos-container run web -- systemctl status nginx", "Run a command in it"),
            ("nixos-container info web", "See how it is doing"),
            ("nixos-container destroy web", "Remove it and all its data"),
        ],
        "list" => &[
            ("nixos-container list", "A table at a terminal, names in a pipe"),
            ("nixos-container list -o name,state,ipv4,ipv6,uptime,memory", "Choose the columns"),
            ("nixos-container list --json", "Everything, for programs"),
        ],
        "create" => &[
            ("nixos-container create web --config-file ./web.nix", "From a NixOS module"),
            ("nixos-container create web --flake /src/site#web", "From a flake's nixosConfigurations.web"),
            (
                "nixos-container create web --port tcp:8080:80 --bind /srv/www:/var/www",
                "Forward a port, share a directory",
            ),
            ("nixos-container create web --memory-max 512M --cpus 1.5 --pids-max 500", "With resource limits"),
            ("nixos-container create web --ensure-unique-name --auto-start", "Pick a free name, start at boot"),
        ],
        "destroy" => &[
            ("nixos-container destroy web", "Asks first at a terminal"),
            ("nixos-container destroy --yes web", "Does not ask"),
        ],
        "start" => &[
            ("nixos-container start web", "Start web and wait until it is ready"),
            ("nixos-container start", "At a terminal: choose among the stopped containers"),
            ("nixos-container start --auto", "Start those created with --auto-start (at boot)"),
        ],
        "stop" => &[
            ("nixos-container stop web", "Halt it cleanly (killed after 90 s)"),
            ("nixos-container stop --all --timeout 30", "Stop every running container"),
        ],
        "terminate" => &[("nixos-container terminate web", "Kill all its processes at once")],
        "restart" => &[("nixos-container restart web", "Stop it, then start it")],
        "update" => &[
            ("nixos-container update web", "Rebuild from its stored configuration and activate it"),
            (
                "nixos-container update web --config-file ./web.nix --restart",
                "A new configuration, restarting if needed",
            ),
            ("nixos-container update web --rollback", "Back to the previous generation"),
        ],
        "generations" => &[("nixos-container generations web", "Its system generations")],
        "status" => &[
            ("nixos-container status web", "Prints up or down"),
            ("nixos-container status web --json", "The fields of list --json"),
        ],
        "info" => &[
            ("nixos-container info web", "State, addresses, system, resources, limits, console"),
            ("nixos-container info web --json -n 0", "The same for programs, without console lines"),
        ],
        "logs" => &[
            ("nixos-container logs web", "Its console: what booting printed"),
            ("nixos-container logs web -f -n 20", "The last 20 lines, then follow"),
            ("nixos-container logs web --journal -n 50", "The guest's journal (also when it is stopped)"),
            ("nixos-container logs web --journal -- -u nginx -p err", "journalctl's own options after --"),
        ],
        "run" => &[
            ("nixos-container run web -- systemctl status nginx", "Run a command as root"),
            ("tar c ./site | nixos-container run web -- tar x -C /var/www", "Stdin is forwarded"),
            ("nixos-container run -t --user alice --cwd /srv web -- htop", "On a pty, as another user"),
            ("nixos-container exec web -- passwd", "The same with incus's name; here: give root a password"),
        ],
        "login" => &[
            ("nixos-container login web", "The guest's login prompt (^] three times leaves)"),
            ("nixos-container run web -- passwd", "First give root a password"),
        ],
        "root-login" => &[
            ("nixos-container root-login web", "A root shell on a pty (^] three times leaves)"),
            ("nixos-container shell web", "The same with machinectl's and incus's name"),
        ],
        "cp" => &[
            ("nixos-container cp ./site web:/var/www", "Copy a directory in (into /var/www/site)"),
            ("nixos-container cp ./site/. web:/var/www", "Copy a directory's contents in"),
            ("nixos-container cp web:/etc/nixos/configuration.nix .", "Copy a file out"),
            ("nixos-container cp -a ./data web:/srv/data", "Keep the files' numeric owners"),
        ],
        "set-limits" => &[
            ("nixos-container set-limits web --memory-max 1G", "At once if it runs, and from its next start"),
            ("nixos-container set-limits web --cpu-quota 50% --pids-max 200", "Half a CPU, 200 processes"),
            ("nixos-container set-limits web --memory-max infinity", "Remove a limit"),
        ],
        "show-ip" => &[("ping -c1 \"$(nixos-container show-ip web)\"", "Its address, for scripts")],
        "show-host-key" => {
            &[("nixos-container show-host-key web >> ~/.ssh/known_hosts", "Its SSH host key, as a known_hosts line")]
        }
        _ => &[],
    }
}

/// The examples as `--help` shows them, after the options.
pub fn help(command: &str) -> String {
    let mut out = String::from("Examples:\n");
    for (line, what) in of(command) {
        out.push_str(&format!("  {line}\n      {what}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_command_has_examples_of_itself() {
        let cli = crate::cli::Cli::command();
        for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
            let name = sub.get_name();
            let examples = of(name);
            assert!(!examples.is_empty(), "{name} has no examples");
            let mentions = |l: &str| {
                l.contains(&format!("nixos-container {name} "))
                    || sub.get_visible_aliases().any(|a| l.contains(&format!("nixos-container {a} ")))
            };
            assert!(examples.iter().any(|(l, _)| mentions(l)), "{name}'s examples do not use it");
        }
    }
}
