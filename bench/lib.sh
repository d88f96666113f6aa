# Shared by the benchmarks in bench/ (sourced, not run).
#
# Every benchmark works in a private world: its own conf/state/profile/run
# directories and hosts file under one temporary directory, its own IPv4 and
# IPv6 pools (10.90-10.99, which no test uses), and container names with a
# per-run prefix. `bench_init` sets that up and installs a trap that removes
# everything the run made (containers, by-hand containers, cgroups, network
# namespaces, interfaces, mounts, files), also when it is interrupted.

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR")
# The binary under test: a release build (override with NC=...).
NC=${NC:-$REPO/target/release/nixos-container}
# These machines have no binary cache; asking for one costs seconds.
export NIX_CONFIG="${NIX_CONFIG:-substituters =}"
# Results go here, one file per benchmark (override with BENCH_OUT=...).
BENCH_OUT=${BENCH_OUT:-$REPO/bench/results}

# The host's cgroup trees, as src/cgroup.rs finds them: the cgroup2 tree is
# /sys/fs/cgroup itself on a unified host, its unified/ on a hybrid one,
# where nspawn also wants the v1 name=systemd tree.
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
    CG2=/sys/fs/cgroup
    CG_TREES=("$CG2")
else
    CG2=/sys/fs/cgroup/unified
    CG_TREES=("$CG2" /sys/fs/cgroup/systemd)
fi

# cg_memory NAME: bytes charged to a container's cgroup (v1 memory
# controller where there is one, else cgroup2's memory.current).
cg_memory() {
    cat "/sys/fs/cgroup/memory/nixos-containers/$1/memory.usage_in_bytes" 2>/dev/null \
        || cat "$CG2/nixos-containers/$1/memory.current" 2>/dev/null || echo 0
}

say() { printf '%s\n' "$*" >&2; }
die() { say "bench: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (the benchmarks start real containers)"

ensure_binary() {
    if [ -z "${NC_PREBUILT:-}" ]; then
        (cd "$REPO" && cargo build --release --locked --quiet)
    fi
    [ -x "$NC" ] || die "$NC missing: cargo build --release"
}

# Microseconds since the epoch, without forking: `t=$(now)` would fork, so
# use `now_into VAR`.
now_into() { printf -v "$1" '%s' "${EPOCHREALTIME/./}"; }

# The system every benchmark container boots: the stand-in NixOS with the
# guest module, the same store path for the tool and for the by-hand runs.
# BENCH_SYSTEM=dense caps the guest's runtime journal (journald otherwise
# fills 8 MiB of tmpfs per guest, half of a small guest's memory), as a
# host packing hundreds of containers would.
build_system() {
    local extra=""
    if [ "${BENCH_SYSTEM:-default}" = dense ]; then
        extra='{ environment.etc."systemd/journald.conf.d/dense.conf".text = "[Journal]\nRuntimeMaxUse=1M\n"; }'
    fi
    nix-build --no-out-link -E "(import $REPO/nixos { configuration = { imports = [ $REPO/guest/container-login.nix $extra ]; }; }).system" 2>/dev/null
}

# Claims one of the pools 10.90.0.0/16 .. 10.99.0.0/16 for this run (a
# flock held until the run exits), so two benchmarks never share one and
# none uses a pool with leftovers on the host.
claim_pool() {
    local dir=/tmp/nixos-container-bench-pools n
    mkdir -p "$dir"
    for n in 90 91 92 93 94 95 96 97 98 99; do
        exec {POOL_FD}>"$dir/$n.lock"
        # Skip a pool that a killed run left addresses or routes in.
        if flock -n "$POOL_FD" && ! grep -Eq "(^|[[:space:]])10\.$n\." <<<"$(ip -o addr show; ip -4 route show)"; then
            POOL=$n
            return
        fi
        exec {POOL_FD}>&-
    done
    die "no free benchmark pool (10.90-10.99 all in use)"
}

# bench_init TAG: the private world and the cleanup trap.
bench_init() {
    local tag=$1
    ensure_binary
    claim_pool
    BASE=$(mktemp -d "/tmp/nc-bench-$tag-XXXXXX")
    export NIXOS_CONTAINER_CONF_DIR=$BASE/conf
    export NIXOS_CONTAINER_STATE_DIR=$BASE/state
    export NIXOS_CONTAINER_PROFILES_DIR=$BASE/profiles
    export NIXOS_CONTAINER_GCROOTS_DIR=$BASE/gcroots
    export NIXOS_CONTAINER_RUN_DIR=$BASE/run
    export NIXOS_CONTAINER_HOSTS_FILE=$BASE/hosts
    export NIXOS_CONTAINER_IPV4_POOL=10.$POOL.0.0/16
    export NIXOS_CONTAINER_IPV6_POOL=fd6e:6978:b$POOL::/48
    # A copy: a build during the run must not change the binary under test.
    cp "$NC" "$BASE/nixos-container"
    NC=$BASE/nixos-container
    printf '127.0.0.1 localhost\n' >"$BASE/hosts"
    mkdir -p "$BASE/conf" "$BASE/hand" "$BENCH_OUT"
    # Short and unique: benchmark names become interface names.
    PREFIX=b$(printf '%04x' $(( ($$ + RANDOM) % 65536 )))
    HAND_CGROUP=nc-bench-$PREFIX
    HAND_NAMES=()
    trap bench_cleanup EXIT
    trap 'say "bench: interrupted"; exit 130' INT TERM HUP
}

# Everything this run made, and nothing else: the containers in our private
# conf dir, the by-hand containers we started, then our directory.
bench_cleanup() {
    local rc=$? n
    trap - EXIT INT TERM HUP
    set +e
    say "bench: cleaning up $BASE"
    if [ -d "$BASE/conf" ]; then
        # terminate+destroy, 8 at a time (a thousand containers otherwise
        # take minutes).
        find "$BASE/conf" -maxdepth 1 \( -name '*.conf' -o -name '*.conf.creating' \) -printf '%f\n' \
            | sed -e 's/\.conf\.creating$//' -e 's/\.conf$//' \
            | xargs -r -P 8 -I{} sh -c '"$0" -q terminate "$1" >/dev/null 2>&1; "$0" -q destroy "$1" >/dev/null 2>&1' "$NC" {}
    fi
    for n in "${HAND_NAMES[@]}"; do hand_cleanup "$n"; done
    for h in "${CG_TREES[@]}"; do rmdir "$h/$HAND_CGROUP" 2>/dev/null; done
    # Mounts left below our directory (none, normally): detach them so that
    # rm cannot reach into what they show.
    findmnt -rn -o TARGET | grep "^$BASE/" | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf "$BASE"
    exit "$rc"
}

# Creates containers from the prebuilt system: create_containers SYSTEM NAME...
create_containers() {
    local sys=$1; shift
    printf '%s\n' "$@" | xargs -r -P "${CREATE_JOBS:-4}" -I{} \
        "$NC" -q create {} --system-path "$sys" --bind-ro /usr >/dev/null
}

# --- the seed's way, by hand ---------------------------------------------
#
# What the seed's container@ service did (ip(8) for the netns and veth pair,
# addresses and routes, then systemd-nspawn with the seed's binds), done from
# a shell. `ip -n NS` is the cheaper spelling of the seed's `ip netns exec NS
# ip ...` (no mount namespace per command), so the baseline is a strong one.
# The nspawn gets a cgroup of its own, as systemd gave the seed's service.
# Interface names follow the seed: c-NAME on the host, net-NAME the netns.

# hand_cg TREE NAME: the by-hand container's cgroup in one of CG_TREES.
hand_cg() { printf '%s/%s/%s' "$1" "$HAND_CGROUP" "$2"; }

# hand_net NAME HOST_ADDR LOCAL_ADDR
hand_net() {
    local n=$1 host=$2 local=$3
    ip netns add "net-$n"
    ip link add name "c-$n" type veth peer name "ctmp-$n"
    ip link set "ctmp-$n" netns "net-$n"
    ip -n "net-$n" link set "ctmp-$n" name eth0
    ip -n "net-$n" link set dev eth0 up
    ip link set dev "c-$n" up
    ip addr add "$host" dev "c-$n"
    ip route add "$local" dev "c-$n"
    ip -n "net-$n" addr add "$local" dev eth0
    ip -n "net-$n" route add "$host" dev eth0
    ip -n "net-$n" route add default via "$host"
}

# What the seed's service made in the root before nspawn (plus usr/, which
# nspawn needs to see an OS tree when /usr is bound in).
hand_prepare() {
    local root=$NIXOS_CONTAINER_STATE_DIR/$1
    mkdir -p "$root/etc" "$root/usr" "$root/var/lib" "$root/nix/var/nix"
    touch "$root/etc/os-release"
}

# hand_nspawn NAME SYSTEM: starts nspawn in the background, sets HAND_PID.
# The root, profile and GC roots directories are those `create` made for
# NAME (the same kind of root as the tool's).
hand_nspawn() {
    local n=$1 sys=$2 h binds=()
    local root=$NIXOS_CONTAINER_STATE_DIR/$n
    for h in "${CG_TREES[@]}"; do mkdir -p "$(hand_cg "$h" "$n")"; done
    # As the tool binds them (src/nspawn.rs): no daemon socket for a
    # privileged guest, profiles and GC roots read-only.
    binds=(--bind-ro=/nix/store --bind-ro=/nix/var/nix/db)
    binds+=("--bind-ro=$NIXOS_CONTAINER_PROFILES_DIR/$n:/nix/var/nix/profiles"
            "--bind-ro=$NIXOS_CONTAINER_GCROOTS_DIR/$n:/nix/var/nix/gcroots"
            --bind-ro=/usr)
    (
        for h in "${CG_TREES[@]}"; do echo "$BASHPID" >"$(hand_cg "$h" "$n")/cgroup.procs"; done
        exec systemd-nspawn --keep-unit --register=no -M "$n" -D "$root" "${binds[@]}" \
            "--network-namespace-path=/run/netns/net-$n" "$sys/init"
    ) </dev/null >"$BASE/hand/$n.log" 2>&1 &
    HAND_PID=$!
}

# Waits until the guest's root shell answers a command (10 ms polls).
hand_wait_shell() {
    local sock=$NIXOS_CONTAINER_STATE_DIR/$1/var/lib/root-shell.socket i
    for ((i = 0; i < 6000; i++)); do
        if [ "$(echo 'true && echo ok' | socat -t 5 - "UNIX-CONNECT:$sock" 2>/dev/null)" = ok ]; then
            return 0
        fi
        nap 0.01
    done
    return 1
}

# Whether a cgroup (its unified directory) still has processes; builtins only.
populated() {
    local line=""
    { read -r line <"$1/cgroup.events"; } 2>/dev/null || return 1
    [ "$line" = "populated 1" ]
}

hand_populated() { populated "$(hand_cg "$CG2" "$1")"; }

# The container's init: PID 1 of its PID namespace, in its cgroup.
hand_leader() {
    local p
    for p in $(find "$(hand_cg "$CG2" "$1")" -name cgroup.procs -exec cat {} + 2>/dev/null); do
        if awk '/^NSpid:/ { exit !(NF > 2 && $NF == 1) }' "/proc/$p/status" 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# Removes everything of a by-hand container (processes, network, cgroup).
hand_cleanup() {
    local n=$1 d
    d=$(hand_cg "$CG2" "$n")
    if [ -d "$d" ]; then
        echo 1 >"$d/cgroup.kill" 2>/dev/null
        for _ in $(seq 50); do hand_populated "$n" || break; sleep 0.1; done
    fi
    ip link del "c-$n" 2>/dev/null
    ip netns del "net-$n" 2>/dev/null
    for h in "${CG_TREES[@]}"; do
        d=$(hand_cg "$h" "$n")
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    return 0
}

# A pause without a fork: read from a pipe that never has data.
nap() {
    [ -n "${NAP_FD:-}" ] || exec {NAP_FD}<> <(:)
    read -r -t "$1" -u "$NAP_FD" _ || true
}

# --- statistics ------------------------------------------------------------

# stats FILE: "n median mean min max" of the numbers in FILE (one a line).
stats() {
    sort -n "$1" | awk '{ v[NR] = $1; s += $1 }
        END { if (NR == 0) { print "0 0 0 0 0"; exit }
              m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
              printf "%d %.1f %.1f %.1f %.1f\n", NR, m, s / NR, v[1], v[NR] }'
}

median() { stats "$1" | awk '{ print $2 }'; }

machine_line() {
    printf '%s, %s cores, %s GiB, kernel %s, load %s' \
        "$(. /etc/os-release && echo "$PRETTY_NAME")" "$(nproc)" \
        "$(awk '/MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)" \
        "$(uname -r)" "$(cut -d' ' -f1-3 /proc/loadavg)"
}
