#!/usr/bin/env bash
# What strangers can cost a fup server, measured on the release build over loopback:
#   1. peak RSS while N connections (each from its own 127.0.x.y address, with a key of its
#      own) send the largest manifest the limits allow and wait for an operator who never
#      answers, the server's limits at their defaults;
#   2. a soak: four clients start large batches and vanish, over and over, for SECONDS,
#      while a good client uploads 1 MiB files: how many of those are stored.
#
#   scripts/strangers.sh                  # N=64, SECONDS=60
#   N=16 SECONDS=30 scripts/strangers.sh
#   SERVER=path/to/fup-server scripts/strangers.sh   # another build (a baseline) as the server
#   ONLY=soak scripts/strangers.sh        # the soak alone (or ONLY=manifests)
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
n=${N:-64}
seconds=${SECONDS_SOAK:-${SECONDS_:-60}}
cargo build --release --quiet --manifest-path "$here/Cargo.toml" --bins --example strangers || exit 2
bin=$here/target/release
server_bin=${SERVER:-$bin/fup-server}
strangers=$bin/examples/strangers

work=$(mktemp -d "${TMPDIR:-/tmp}/fup-strangers.XXXXXX")
export FUP_CONFIG_DIR=$work/config
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
hwm() { awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
rss() { awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
listening() { for _ in $(seq 500); do grep -q '^listening on' "$1" 2>/dev/null && { sed -n 's/^listening on //p' "$1"; return 0; }; sleep 0.02; done; return 1; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); server: $server_bin"

only=${ONLY:-}

# 1. The largest manifests, from N strangers at once, an operator who never answers.
if [ "$only" != soak ]; then
mkfifo "$work/operator"
sleep 100000 > "$work/operator" & pids+=($!)
"$server_bin" --bind 127.0.0.1 --port 0 "$work/inbox1" < "$work/operator" > "$work/server1.log" 2> "$work/server1.err" & server=$!; pids+=($server)
addr=$(listening "$work/server1.log") || { echo "fup-server did not start"; cat "$work/server1.err"; exit 1; }
idle=$(hwm $server)
"$strangers" manifests "$addr" "$n" | sed 's/^/  /'
echo "manifests: $n strangers × 64 MiB (1,000,000 entries each): server peak RSS $(hwm $server) MiB (idle: $idle MiB; now $(rss $server) MiB)"
kill $server 2>/dev/null; wait $server 2>/dev/null
fi

# 2. The soak: cut batches all the time, and one good client.
[ "$only" = manifests ] && exit 0
"$server_bin" --yes --bind 127.0.0.1 --port 0 "$work/inbox2" > "$work/server2.log" 2> "$work/server2.err" & server=$!; pids+=($server)
addr=$(listening "$work/server2.log") || { echo "fup-server did not start"; cat "$work/server2.err"; exit 1; }
echo "soak: $seconds s, free space $(df -h --output=avail "$work" | tail -1 | tr -d ' ')"
FUP_CLIENT=$bin/fup-client "$strangers" soak "$addr" "$seconds" "$work/inbox2" | sed 's/^/  /'
echo "  partials left: $(find "$work/inbox2/.fup-partial" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l), holding $(find "$work/inbox2/.fup-partial" -type f -printf '%s\n' 2>/dev/null | awk '{ s += $1 } END { printf "%.2f GiB", s / 1073741824 }') (--max-partial: 16 GiB)"
