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
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); printf 'ok    %s\n' "$1"; }
bad() { fail=$((fail + 1)); printf 'FAIL  %s\n' "$1"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }

# Test files: the sizes of the issue, and names with a space and in Hangul.
mkdir -p "$work/src"
for size in 0 1 4095 4096 4097 10000000; do head -c "$size" /dev/urandom > "$work/src/f$size.bin"; done
cp "$work/src/f4097.bin" "$work/src/with space.txt"
cp "$work/src/f1.bin" "$work/src/한글 이름.bin"
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

# 2. Our client -> Python server.
for answer in yes no; do
  out=$work/py-$answer; mkdir -p "$out"; port=$(free_port)
  (cd "$seed" && FUP_PORT=$port FUP_AUTO_ANSWER=$answer exec python3 fup_server.py "$out") > "$work/py-$answer.log" 2>&1 & pids+=($!)
  wait_port "$port"
  for f in "${files[@]}"; do
    msg=$(timeout 60 "$bin/fup-client" --port "$port" 127.0.0.1 "$work/src/$f" 2>&1); code=$?
    if [ $answer = yes ] && [ $code = 0 ] && cmp -s "$work/src/$f" "$out/$f"; then
      ok "fup-client -> python server: $f"
    elif [ $answer = no ] && [ $code = 1 ] && grep -q denied <<<"$msg" && [ ! -e "$out/$f" ]; then
      ok "fup-client -> python server: $f denied"
    else bad "fup-client -> python server ($answer): $f (exit $code: $msg)"; fi
  done
  kill "${pids[-1]}"
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
