complete --keep-order --exclusive --command nixos-container --arguments "(COMPLETE=fish nixos-container -- (commandline --current-process --tokenize --cut-at-cursor) (commandline --current-token))"
