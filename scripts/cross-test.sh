#!/usr/bin/env bash
# fup on every platform this Linux machine can run, as a matrix: each build talks to another
# over 127.0.0.1 and every stored file is compared byte for byte.
#
#   scripts/cross-test.sh                # builds what it needs, then prints the matrix
#   SEED_PY=path/to/seed-py              # the original Python programs (default ../shared/seed-py)
#
# Rows: the static x86_64 build (musl) to itself; the static aarch64 build under qemu-user to
# the x86_64 server; the Windows build under wine (its server receiving from the Linux client,
# secure, plain and a tree with a Hangul name, and asking its operator on standard input; its
# client sending to the Linux server and to the Python server; its echo-server answering the
# Linux echo-client). The macOS builds are linked (cargo zigbuild) but cannot run here.
# Installs what it needs (rustup targets, apt packages, zig, cargo-zigbuild) and says so.
# Exit status 1 if any row failed.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
seed=${SEED_PY:-$here/../shared/seed-py}
cd "$here" || exit 2
. scripts/platforms.sh
ensure_tools linux-musl aarch64 windows macos run-windows run-aarch64 || exit 2

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  # Wine runs each program as a process of its own: end everything in this prefix.
  WINEPREFIX=${WINEPREFIX:-/var/tmp/fup-wine} /usr/lib/wine/wineserver -k 2>/dev/null
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

echo "building: native, x86_64 and aarch64 static (musl), Windows, macOS (link only)"
build_all || exit 2
native=$here/target/release
musl=$here/target/x86_64-unknown-linux-musl/release
arm=$here/target/aarch64-unknown-linux-musl/release
win=$here/target/x86_64-pc-windows-gnu/release
export WINEPREFIX=${WINEPREFIX:-/var/tmp/fup-wine} WINEDEBUG=-all
wine=/usr/lib/wine/wine64

rows=()
failed=0
row() { # name result detail (its first line, first-contact notes left out)
  local detail
  detail=$(grep -v 'first contact with' <<<"$3" | head -n 1)
  rows+=("$(printf '%-68s %-4s %s' "$1" "$2" "$detail")")
  [ "$2" = ok ] || failed=1
}

# start NAME CMD...: runs a server with its output in $work/NAME.log, waits (at most 30 s)
# for its "listening on" line, and sets $port.
start() {
  local name=$1; shift
  "$@" > "$work/$name.log" 2>&1 &
  pids+=($!)
  port=
  for _ in $(seq 300); do
    port=$(grep -aom1 'listening on [^ ]*' "$work/$name.log" | sed 's/.*://' | tr -d '\r')
    [ -n "$port" ] && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "$name did not start: $(tail -n 3 "$work/$name.log")"
  return 1
}

# The files every row sends: small, 5 MiB, and a tree with a Hangul name.
src=$work/src
mkdir -p "$src/사진 2026/sub"
printf 'hello from fup\n' > "$src/small.txt"
head -c 5242880 /dev/urandom > "$src/five.bin"
head -c 100000 /dev/urandom > "$src/사진 2026/sub/p1.jpg"
printf '한글\n' > "$src/사진 2026/메모.txt"

# same DIR: every file of $src that DIR should hold is there, byte for byte.
same() {
  local dir=$1; shift
  for f in "$@"; do cmp -s "$src/$f" "$dir/$f" || { echo "$f differs or is missing"; return 1; }; done
}

# A: the static x86_64 build to itself.
mkdir -p "$work/a-in"
if start a env FUP_CONFIG_DIR="$work/a-s" "$musl/fup-server" --yes --bind 127.0.0.1 --port 0 "$work/a-in"; then
  out=$(FUP_CONFIG_DIR="$work/a-c" timeout 60 "$musl/fup-client" -q --port "$port" 127.0.0.1 "$src/small.txt" "$src/five.bin" "$src/사진 2026" 2>&1)
  why=$(same "$work/a-in" small.txt five.bin "사진 2026/sub/p1.jpg" "사진 2026/메모.txt") && r=ok || r=FAIL
  row "x86_64 static (musl) client -> its own server, secure" "$r" "$why$out"
fi

# B: the aarch64 build under qemu to the x86_64 server (the native build).
mkdir -p "$work/b-in"
if start b env FUP_CONFIG_DIR="$work/b-s" "$native/fup-server" --yes --bind 127.0.0.1 --port 0 "$work/b-in"; then
  out=$(FUP_CONFIG_DIR="$work/b-c" timeout 120 qemu-aarch64-static "$arm/fup-client" -q --port "$port" 127.0.0.1 "$src/small.txt" "$src/five.bin" "$src/사진 2026" 2>&1)
  why=$(same "$work/b-in" small.txt five.bin "사진 2026/sub/p1.jpg" "사진 2026/메모.txt") && r=ok || r=FAIL
  row "aarch64 static client (qemu) -> x86_64 server, secure" "$r" "$why$out"
  out=$(FUP_CONFIG_DIR="$work/b-c" timeout 120 qemu-aarch64-static "$arm/fup-client" -q --plain --port "$port" 127.0.0.1 "$src/small.txt" 2>&1)
  cmp -s "$src/small.txt" "$work/b-in/small (1).txt" && r=ok || r=FAIL
  row "aarch64 static client (qemu) -> x86_64 server, plain" "$r" "$out"
fi

# C: the Windows server under wine, receiving from the Linux client.
mkdir -p "$work/c-in"
winpath() { echo "Z:${1//\//\\}"; }
if start c env FUP_CONFIG_DIR="$(winpath "$work/c-s")" "$wine" "$win/fup-server.exe" --yes --bind 127.0.0.1 --port 0 "$(winpath "$work/c-in")"; then
  out=$(FUP_CONFIG_DIR="$work/c-c" timeout 60 "$native/fup-client" -q --port "$port" 127.0.0.1 "$src/small.txt" "$src/five.bin" 2>&1)
  why=$(same "$work/c-in" small.txt five.bin) && r=ok || r=FAIL
  row "Linux client -> Windows server (wine), secure" "$r" "$why$out"
  out=$(FUP_CONFIG_DIR="$work/c-c" timeout 60 "$native/fup-client" -q --port "$port" 127.0.0.1 "$src/사진 2026" 2>&1)
  why=$(same "$work/c-in" "사진 2026/sub/p1.jpg" "사진 2026/메모.txt") && r=ok || r=FAIL
  row "Linux client -> Windows server (wine), a tree with a Hangul name" "$r" "$why$out"
  out=$(FUP_CONFIG_DIR="$work/c-c" timeout 60 "$native/fup-client" -q --plain --port "$port" 127.0.0.1 "$src/five.bin" 2>&1)
  cmp -s "$src/five.bin" "$work/c-in/five (1).bin" && r=ok || r=FAIL
  row "Linux client -> Windows server (wine), plain" "$r" "$out"
  out=$(FUP_CONFIG_DIR="$work/c-c" timeout 60 "$native/fup-client" -q --port "$port" 127.0.0.1 "$src/small.txt" "$src/small.txt" 2>&1)
  [ -f "$work/c-in/small (1).txt" ] && [ -f "$work/c-in/small (2).txt" ] && r=ok || r=FAIL
  row "Linux client -> Windows server (wine), no name replaced" "$r" "$out"
  # A name Windows cannot store is refused by the Windows server's name rule, never written.
  cp "$src/small.txt" "$work/what?.txt"
  out=$(FUP_CONFIG_DIR="$work/c-c" timeout 60 "$native/fup-client" --plain --port "$port" 127.0.0.1 "$work/what?.txt" 2>&1)
  if [ ! -e "$work/c-in/what?.txt" ] && grep -q 'denied' <<<"$out"; then r=ok; else r=FAIL; fi
  row "Linux client -> Windows server (wine): \"what?.txt\" refused" "$r" "$(tail -n 1 <<<"$out")"
  # The page on the same port, as a browser uses it (curl: an offer, then each file's PUT),
  # over http and https; a file, and a folder with a Hangul name published whole.
  page() { # scheme, then pairs of (name in the offer, local file)
    local scheme=$1; shift
    local files="" args=("$@") i token
    for ((i = 0; i < ${#args[@]}; i += 2)); do
      files+="${files:+,}{\"name\":\"${args[i]}\",\"size\":$(stat -c %s "${args[i + 1]}")}"
    done
    token=$(curl -sk -H 'Content-Type: application/json' \
      --data "{\"key\":\"00112233445566778899aabbccddeeff\",\"files\":[$files]}" \
      "$scheme://127.0.0.1:$port/offer" | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])') || return 1
    for ((i = 0; i < ${#args[@]}; i += 2)); do
      curl -skf -T "${args[i + 1]}" "$scheme://127.0.0.1:$port/file/$token/$((i / 2))?from=0" || return 1
    done
  }
  out=$(page http web.txt "$src/small.txt" 2>&1)
  cmp -s "$src/small.txt" "$work/c-in/web.txt" && r=ok || r=FAIL
  row "browser (curl) -> Windows server (wine): the page over http" "$r" "$out"
  out=$(page https "앨범/a.txt" "$src/small.txt" "앨범/sub/b.bin" "$src/five.bin" 2>&1)
  cmp -s "$src/small.txt" "$work/c-in/앨범/a.txt" && cmp -s "$src/five.bin" "$work/c-in/앨범/sub/b.bin" && r=ok || r=FAIL
  row "browser (curl) -> Windows server (wine): https, a folder whole" "$r" "$(tail -c 200 <<<"$out")"
  # A cut secure upload resumes: the client is killed once the server holds part of it.
  head -c 314572800 /dev/urandom > "$work/big.bin"
  FUP_CONFIG_DIR="$work/c-c" "$native/fup-client" -q --port "$port" 127.0.0.1 "$work/big.bin" > /dev/null 2>&1 &
  client=$!
  held=0
  for _ in $(seq 600); do
    held=$(find "$work/c-in/.fup-partial" -type f -name 'data-*' -printf '%s\n' 2>/dev/null | sort -n | tail -1)
    [ "${held:-0}" -gt 20000000 ] && break
    sleep 0.05
  done
  kill -9 "$client" 2>/dev/null; wait "$client" 2>/dev/null
  out=$(FUP_CONFIG_DIR="$work/c-c" timeout 120 "$native/fup-client" --port "$port" 127.0.0.1 "$work/big.bin" 2>&1)
  if [ "${held:-0}" -gt 0 ] && grep -q 'resuming at' <<<"$out" && cmp -s "$work/big.bin" "$work/c-in/big.bin"; then r=ok; else r=FAIL; fi
  row "Linux client -> Windows server (wine): a cut upload resumes" "$r" "$(grep -o 'resuming at [^)]*)' <<<"$out" | head -1)"
fi

# D: the Windows server asks its operator; the answers come on standard input: n, y, then
# a (always: the client's identity goes into the server's trusted_clients), after which the
# same client is let in without a question (the answers have run out by then).
mkdir -p "$work/d-in"
if start d sh -c "printf 'n\ny\na\n' | FUP_CONFIG_DIR='$(winpath "$work/d-s")' exec '$wine' '$win/fup-server.exe' --bind 127.0.0.1 --port 0 '$(winpath "$work/d-in")'"; then
  up() { FUP_CONFIG_DIR="$work/d-c" timeout 60 "$native/fup-client" -q --port "$port" 127.0.0.1 "$@" > /dev/null 2>&1; }
  up "$src/small.txt"; denied=$?
  up "$src/five.bin"; accepted=$?
  if [ "$denied" != 0 ] && [ "$accepted" = 0 ] && [ ! -e "$work/d-in/small.txt" ] && cmp -s "$src/five.bin" "$work/d-in/five.bin"; then r=ok; else r=FAIL; fi
  row "Windows server (wine) asks its operator: n, then y on stdin" "$r" "$([ $r = ok ] || tail -n 3 "$work/d.log")"
  up "$src/small.txt"; always=$?
  up "$src/사진 2026"; trusted=$?
  why=$(same "$work/d-in" small.txt "사진 2026/메모.txt") && [ "$always" = 0 ] && [ "$trusted" = 0 ] && grep -q . "$work/d-s/trusted_clients" && r=ok || r=FAIL
  row "Windows server (wine): a, then the trusted client needs no question" "$r" "$why"
fi

# D1: the Windows server pairs by code: the Linux client proves the first contact with it,
# pins the server, is trusted there under its label, and sends.
mkdir -p "$work/p-in"
if start p sh -c "FUP_CONFIG_DIR='$(winpath "$work/p-s")' exec '$wine' '$win/fup-server.exe' --pair --bind 127.0.0.1 --port 0 '$(winpath "$work/p-in")' < /dev/null"; then
  for _ in $(seq 100); do grep -aq '^code: ' "$work/p.log" && break; sleep 0.1; done
  code=$(sed -n 's/^code: \([^ ]*\).*/\1/p' "$work/p.log" | tr -d '\r')
  out=$(FUP_CONFIG_DIR="$work/p-c" timeout 60 "$native/fup-client" --code "$code" --server "127.0.0.1:$port" --label "linux box" "$src/small.txt" 2>&1)
  if cmp -s "$src/small.txt" "$work/p-in/small.txt" && grep -q 'linux box' "$work/p-s/trusted_clients" && grep -q "127.0.0.1:$port" "$work/p-c/known_hosts"; then r=ok; else r=FAIL; fi
  row "Linux client -> Windows server (wine): paired by code, then sent" "$r" "$(grep -v '^sent' <<<"$out" | head -n 1)"
fi

# D2: Ctrl-C (wine turns SIGINT into the console's Ctrl-C event) ends the Windows server as
# SIGINT does elsewhere: what was waiting is denied, exit status 130.
mkdir -p "$work/k-in"
( FUP_CONFIG_DIR="$(winpath "$work/k-s")" "$wine" "$win/fup-server.exe" --yes --bind 127.0.0.1 --port 0 "$(winpath "$work/k-in")" > "$work/k.log" 2>&1; echo "exit $?" >> "$work/k.log" ) &
for _ in $(seq 300); do grep -q 'listening on' "$work/k.log" && break; sleep 0.1; done
pkill -INT -f "fup-server.exe .*$(basename "$work")\\\\k-in"
for _ in $(seq 100); do grep -q '^exit' "$work/k.log" && break; sleep 0.1; done
if grep -q 'interrupted' "$work/k.log" && grep -q '^exit 130' "$work/k.log"; then r=ok; else r=FAIL; fi
row "Windows server (wine): Ctrl-C ends it with status 130" "$r" "$(grep -m1 interrupted "$work/k.log")"

# E: the Windows client sending to the Linux server, and to the Python server.
mkdir -p "$work/e-in"
if start e env FUP_CONFIG_DIR="$work/e-s" "$native/fup-server" --yes --bind 127.0.0.1 --port 0 "$work/e-in"; then
  out=$(FUP_CONFIG_DIR="$(winpath "$work/e-c")" timeout 60 "$wine" "$win/fup-client.exe" -q --port "$port" 127.0.0.1 "$(winpath "$src/five.bin")" "$(winpath "$src/사진 2026")" 2>&1)
  why=$(same "$work/e-in" five.bin "사진 2026/sub/p1.jpg" "사진 2026/메모.txt") && r=ok || r=FAIL
  row "Windows client (wine) -> Linux server, secure, a file and a tree" "$r" "$why$out"
  out=$(FUP_CONFIG_DIR="$(winpath "$work/e-c")" timeout 60 "$wine" "$win/fup-client.exe" --json --port "$port" 127.0.0.1 "$(winpath "$src/small.txt")" 2>/dev/null | tr -d '\r')
  if python3 -c 'import json,sys; o=json.loads(sys.argv[1]); sys.exit(0 if o["verdict"]=="stored" and o["secure"] and o["size"]==15 else 1)' "$out" 2>/dev/null; then r=ok; else r=FAIL; fi
  row "Windows client (wine) --json: one object, stored" "$r" "$([ $r = ok ] || echo "$out")"
fi
if [ -f "$seed/fup_server.py" ]; then
  mkdir -p "$work/f-in"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  (cd "$seed" && FUP_PORT=$port FUP_AUTO_ANSWER=yes exec python3 fup_server.py "$work/f-in") > "$work/f.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do ss -ltnH "sport = :$port" | grep -q . && break; sleep 0.05; done
  out=$(FUP_CONFIG_DIR="$(winpath "$work/f-c")" timeout 60 "$wine" "$win/fup-client.exe" -q --port "$port" 127.0.0.1 "$(winpath "$src/five.bin")" 2>&1)
  cmp -s "$src/five.bin" "$work/f-in/five.bin" && r=ok || r=FAIL
  row "Windows client (wine) -> the Python server (plain)" "$r" "$out"
else
  row "Windows client (wine) -> the Python server (plain)" skip "no $seed"
fi

# G: the Windows echo-server answering the Linux echo-client.
if start g "$wine" "$win/echo-server.exe" --port 0 127.0.0.1; then
  out=$(timeout 60 "$native/echo-client" --port "$port" --count 2 --interval 0.1 127.0.0.1 '안녕 echo' 2>&1) && r=ok || r=FAIL
  row "Linux echo-client -> Windows echo-server (wine)" "$r" "$([ $r = ok ] || echo "$out")"
fi

# I: the library's own tests, built for Windows and run under wine (those that need unix's
# socket pairs, symlinks or modes are left out of that build).
exe=$(cargo test --lib --target "$WINDOWS_TARGET" --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\.exe\)).*/\1/p' | head -1)
if [ -n "$exe" ]; then
  out=$(timeout 600 "$wine" "$exe" --test-threads 2 2>&1 | tr -d '\r')
  summary=$(grep -m1 '^test result' <<<"$out")
  grep -q '^test result: ok' <<<"$out" && r=ok || r=FAIL
  row "cargo test --lib for Windows, under wine" "$r" "${summary#test result: }$([ $r = ok ] || grep FAILED <<<"$out" | head -5)"
else
  row "cargo test --lib for Windows, under wine" FAIL "did not build"
fi

# H: macOS, linked only.
for t in aarch64-apple-darwin x86_64-apple-darwin; do
  f=$here/target/$t/release/fup-server
  if file -b "$f" 2>/dev/null | grep -q Mach-O; then r=ok; else r=FAIL; fi
  row "macOS $t: built and linked (cannot run here)" "$r" "$(file -b "$f" 2>/dev/null | cut -d, -f1)"
done

echo
printf '%-68s %s\n' "matrix" "result"
for r in "${rows[@]}"; do echo "$r"; done
exit $failed
