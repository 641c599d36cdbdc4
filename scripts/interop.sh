#!/usr/bin/env bash
# Interoperability matrix against the original Python programs (not part of `cargo test`:
# a fresh clone must pass its tests alone). Usage: scripts/interop.sh [path/to/seed-py]
# Runs: Python client -> fup-server, fup-client -> Python server (accept and deny),
# and both echo pairings, over 127.0.0.1 only. Prints one line per case and a total.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
seed=$(cd "${1:-$here/../shared/seed-py}" && pwd) || { echo "no seed-py directory"; exit 2; }
cargo build --release --quiet --manifest-path "$here/Cargo.toml" || exit 2
bin=$here/target/release
work=$(mktemp -d)
# The fup programs' identity and pins live here, not in the user's configuration.
export FUP_CONFIG_DIR=$work/config
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); printf 'ok    %s\n' "$1"; }
bad() { fail=$((fail + 1)); printf 'FAIL  %s\n' "$1"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Waits for a listening socket without connecting to it: a connection that sends nothing is
# a traceback in the Python server's log, and this script checks that log.
wait_port() { for _ in $(seq 100); do ss -ltnH "sport = :$1" | grep -q . && return 0; sleep 0.05; done; return 1; }

# Test files: the sizes of the issue, and names with a space and in Hangul.
mkdir -p "$work/src"
for size in 0 1 4095 4096 4097 10000000; do head -c "$size" /dev/urandom > "$work/src/f$size.bin"; done
cp "$work/src/f4097.bin" "$work/src/with space.txt"
cp "$work/src/f1.bin" "$work/src/한글 이름.bin"
cp "$work/src/f1.bin" "$work/src/plain.bin"
files=(f0.bin f1.bin f4095.bin f4096.bin f4097.bin f10000000.bin "with space.txt" "한글 이름.bin")

# 1. Python client -> our server.
out=$work/ours-in; port=$(free_port)
"$bin/fup-server" --yes --bind 127.0.0.1 --port "$port" "$out" > "$work/ours.log" 2>&1 & pids+=($!)
wait_port "$port"
for f in "${files[@]}"; do
  log=$(cd "$seed" && FUP_PORT=$port timeout 60 python3 fup_client.py 127.0.0.1 "$work/src/$f" 2>&1)
  if grep -q '파일 전송 성공 : True' <<<"$log" && cmp -s "$work/src/$f" "$out/$f"; then
    ok "python client -> fup-server: $f"
  else bad "python client -> fup-server: $f ($(tail -n 2 <<<"$log" | tr '\n' ' '))"; fi
done
kill "${pids[-1]}"
# Deny: an operator answering "n".
out=$work/ours-deny; port=$(free_port)
echo n | "$bin/fup-server" --bind 127.0.0.1 --port "$port" "$out" > "$work/ours-deny.log" 2>&1 & pids+=($!)
wait_port "$port"
log=$(cd "$seed" && FUP_PORT=$port timeout 60 python3 fup_client.py 127.0.0.1 "$work/src/f1.bin" 2>&1)
if grep -q '거부' <<<"$log" && [ -z "$(ls -A "$out")" ]; then ok "python client -> fup-server: denied"
else bad "python client -> fup-server: denied ($log)"; fi
kill "${pids[-1]}"

# 2. Our client -> Python server. By default it probes for secure mode first: the Python
# server must drop the probe quietly (no prompt, no traceback), and the upload then goes in
# plain with exactly one note.
note='does not offer secure mode; sending in plain'
for answer in yes no; do
  out=$work/py-$answer; mkdir -p "$out"; port=$(free_port)
  (cd "$seed" && FUP_PORT=$port FUP_AUTO_ANSWER=$answer exec python3 fup_server.py "$out") > "$work/py-$answer.log" 2>&1 & pids+=($!)
  wait_port "$port"
  for f in "${files[@]}"; do
    msg=$(timeout 60 "$bin/fup-client" --port "$port" 127.0.0.1 "$work/src/$f" 2>&1); code=$?
    notes=$(grep -c "$note" <<<"$msg")
    if [ "$notes" != 1 ]; then bad "fup-client -> python server ($answer): $f: $notes notes ($msg)"
    elif [ $answer = yes ] && [ $code = 0 ] && grep -q 'stored, plain' <<<"$msg" && cmp -s "$work/src/$f" "$out/$f"; then
      ok "fup-client -> python server: $f (probe dropped, plain, one note)"
    elif [ $answer = no ] && [ $code = 1 ] && grep -q 'denied by server, plain' <<<"$msg" && [ ! -e "$out/$f" ]; then
      ok "fup-client -> python server: $f denied"
    else bad "fup-client -> python server ($answer): $f (exit $code: $msg)"; fi
  done
  # --plain sends no probe and no note; --secure sends nothing but the probe.
  msg=$(timeout 60 "$bin/fup-client" --plain --port "$port" 127.0.0.1 "$work/src/plain.bin" 2>&1); code=$?
  want=0; [ $answer = no ] && want=1
  if ! grep -q "$note" <<<"$msg" && [ $code = $want ]; then
    ok "fup-client --plain -> python server ($answer)"
  else bad "fup-client --plain -> python server ($answer) (exit $code: $msg)"; fi
  before=$(ls "$out" | wc -l)
  msg=$(timeout 60 "$bin/fup-client" --secure --port "$port" 127.0.0.1 "$work/src/f4097.bin" 2>&1); code=$?
  if [ $code = 1 ] && grep -q 'does not offer secure mode (--secure); nothing was sent' <<<"$msg" && [ "$(ls "$out" | wc -l)" = "$before" ]; then
    ok "fup-client --secure -> python server ($answer): refused, nothing sent"
  else bad "fup-client --secure -> python server ($answer) (exit $code: $msg)"; fi
  kill "${pids[-1]}"
  # The server's own account: no traceback, no question for the probes, and (when it
  # accepted) exactly one stored file per upload.
  log=$work/py-$answer.log
  asked=$(grep -c '수락하시겠습니까' "$log"); uploads=$(( ${#files[@]} + 1 ))
  if grep -q Traceback "$log"; then bad "python server ($answer): traceback in its log"
  elif [ "$asked" != "$uploads" ]; then bad "python server ($answer): asked $asked times for $uploads uploads"
  elif [ $answer = yes ] && [ "$(ls "$out" | wc -l)" != "$uploads" ]; then bad "python server (yes): $(ls "$out" | wc -l) files for $uploads uploads"
  else ok "python server ($answer): no traceback, asked once per upload, probes dropped"; fi
done

# 3. Echo, both pairings.
port=$(free_port)
"$bin/echo-server" 127.0.0.1 --port "$port" > /dev/null 2>&1 & pids+=($!)
wait_port "$port"
log=$(cd "$seed" && FUP_PORT=$port timeout 20 python3 echo_client.py 127.0.0.1 127.0.0.1 '안녕 echo' 2>&1)
if grep -q '수신 : 안녕 echo' <<<"$log"; then ok "python echo client -> echo-server"; else bad "python echo client -> echo-server ($log)"; fi
kill "${pids[-1]}"
port=$(free_port)
(cd "$seed" && FUP_PORT=$port exec python3 echo_server.py 127.0.0.1) > /dev/null 2>&1 & pids+=($!)
wait_port "$port"
if timeout 20 "$bin/echo-client" --port "$port" --count 3 127.0.0.1 '안녕 echo' > /dev/null 2>&1; then ok "echo-client -> python echo server"
else bad "echo-client -> python echo server"; fi
long=$(head -c 3000 /dev/zero | tr '\0' x)
msg=$(timeout 20 "$bin/echo-client" --port "$port" 127.0.0.1 "$long" 2>&1); code=$?
if [ $code = 1 ] && grep -q '1024 of 3000 bytes' <<<"$msg"; then ok "echo-client -> python echo server: short echo reported"
else bad "echo-client -> python echo server: short echo (exit $code: $msg)"; fi
kill "${pids[-1]}"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
