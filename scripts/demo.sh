#!/usr/bin/env bash
# The main job, quickly: builds fup-server and fup-client (a debug build, and none of the
# test-only crates: about 35 s on 2 cores; `cargo install` makes the optimised ones), starts
# fup-server on a free port over loopback in a scratch directory, uploads a 64 MiB file with
# fup-client, and checks that it arrived byte for byte.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
cargo build --locked --bin fup-server --bin fup-client --quiet --manifest-path "$here/Cargo.toml"
bin=$here/target/debug
work=$(mktemp -d)
# The demo's identities and pins stay in its scratch directory.
export FUP_CONFIG_DIR=$work/config
server=
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
head -c 64M /dev/urandom > "$work/example.bin"
"$bin/fup-server" --yes --bind 127.0.0.1 --port 0 "$work/inbox" > "$work/server.log" 2>&1 &
server=$!
# Ready when it says where it listens (at most 10 s).
for _ in $(seq 200); do grep -q '^listening on ' "$work/server.log" && break; sleep 0.05; done
addr=$(sed -n 's/^listening on //p' "$work/server.log")
[ -n "$addr" ] || { echo "fup-server did not start:"; cat "$work/server.log"; exit 1; }
echo "server: listening on $addr, storing into $work/inbox"
echo "client: $("$bin/fup-client" "$addr" "$work/example.bin")"
for _ in $(seq 200); do grep -q 'stored' "$work/server.log" && break; sleep 0.05; done
echo "server: $(grep stored "$work/server.log")"
cmp "$work/example.bin" "$work/inbox/example.bin"
echo "ok: the stored file is byte for byte the one sent"
