#!/usr/bin/env bash
# LAN discovery and pairing between two hosts on one switch with multicast: the network
# namespaces of ../shared/netlab/netlab `lan` (server 10.200.0.1, client 10.200.0.2; needs
# root, so it is not part of `cargo test`). Rows: the server is announced and `fup-client
# --find` lists it (identity, not pinned, its pairing number); `fup-client --code CODE FILE`
# without --server finds it by the code's number, pairs and sends; the next upload needs no
# code and no question; a server started with --no-announce is not heard.
# Usage: sudo scripts/discovery-test.sh [path/to/netlab]
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
netlab=${1:-$here/../shared/netlab/netlab}
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)"; exit 2; }
cargo build --release --locked --quiet --bin fup-server --bin fup-client --manifest-path "$here/Cargo.toml" || exit 2
bin=$here/target/release
work=$(mktemp -d)
chmod 755 "$work"
trap '"$netlab" down > /dev/null 2>&1; rm -rf "$work"' EXIT
"$netlab" lan > /dev/null || { echo "netlab lan failed"; exit 2; }
pass=0 fail=0
row() { if [ "$2" = ok ]; then pass=$((pass + 1)); else fail=$((fail + 1)); fi; printf '%-4s  %s%s\n' "$2" "$1" "${3:+  ($3)}"; }

mkdir -p "$work/s" "$work/c" "$work/in"
printf 'hello over the LAN\n' > "$work/one.txt"
printf 'and again\n' > "$work/two.txt"
# The server: all interfaces, a pairing code, nobody at its terminal (a question is a denial).
"$netlab" server env FUP_CONFIG_DIR="$work/s" "$bin/fup-server" --pair --port 5425 "$work/in" \
  < /dev/null > "$work/server.log" 2>&1 &
for _ in $(seq 100); do grep -q '^code: ' "$work/server.log" && break; sleep 0.1; done
code=$(sed -n 's/^code: \([^ ]*\).*/\1/p' "$work/server.log")
id=$(sed -n 's/^identity: //p' "$work/server.log")
[ -n "$code" ] || { echo "the server did not start:"; cat "$work/server.log"; exit 1; }

found=$("$netlab" client env FUP_CONFIG_DIR="$work/c" "$bin/fup-client" --find 2>&1)
if grep -q "10.200.0.1:5425  $id  (not pinned, pairing code ${code%%-*}-…)" <<<"$found"; then r=ok; else r=FAIL; fi
row "fup-client --find lists the server: address, identity, not pinned, the code's number" "$r" "$(head -n 1 <<<"$found")"

out=$("$netlab" client env FUP_CONFIG_DIR="$work/c" "$bin/fup-client" --code "$code" "$work/one.txt" 2>&1)
if grep -q 'paired with 10.200.0.1:5425' <<<"$out" && cmp -s "$work/one.txt" "$work/in/one.txt"; then r=ok; else r=FAIL; fi
row "fup-client --code CODE FILE (no --server): found by the number, paired, sent" "$r" "$(tail -n 1 <<<"$out")"

out=$("$netlab" client env FUP_CONFIG_DIR="$work/c" "$bin/fup-client" --secure 10.200.0.1 "$work/two.txt" 2>&1)
if cmp -s "$work/two.txt" "$work/in/two.txt" && grep -q "accepted: trusted client" "$work/server.log"; then r=ok; else r=FAIL; fi
row "the next upload needs no code and no question (pinned, trusted)" "$r" "$(tail -n 1 <<<"$out")"

found=$("$netlab" client env FUP_CONFIG_DIR="$work/c" "$bin/fup-client" --find 2>&1)
if grep -q "10.200.0.1:5425  $id  (pinned)" <<<"$found"; then r=ok; else r=FAIL; fi
row "--find then says pinned, and the spent code is no longer announced" "$r" "$(head -n 1 <<<"$found")"

# A server that is not announced is not heard.
"$netlab" server pkill -f "fup-server --pair" > /dev/null 2>&1
sleep 1
"$netlab" server env FUP_CONFIG_DIR="$work/s" "$bin/fup-server" --no-announce --port 5426 "$work/in" \
  < /dev/null > "$work/quiet.log" 2>&1 &
for _ in $(seq 100); do grep -q '^identity: ' "$work/quiet.log" && break; sleep 0.1; done
found=$("$netlab" client env FUP_CONFIG_DIR="$work/c" "$bin/fup-client" --find 2>&1)
if ! grep -q "5426" <<<"$found"; then r=ok; else r=FAIL; fi
row "--no-announce: not heard" "$r" "$(head -n 1 <<<"$found")"
"$netlab" server pkill -f "fup-server --no-announce" > /dev/null 2>&1

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
