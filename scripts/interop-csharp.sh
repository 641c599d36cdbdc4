#!/usr/bin/env bash
# Interoperability with the C# dialect (PROTOCOL.md, "The other dialect"), using our own small
# C# programs in scripts/csharp/ that behave on the wire as the C# FileSender / FileReceiver
# do, compiled and run with mono (installed with apt-get when missing). Not part of
# `cargo test`. Runs over 127.0.0.1 only; prints one line per case and a total.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v mcs >/dev/null || ! command -v mono >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq mono-mcs mono-runtime libmono-i18n-cjk4.0-cil) >/dev/null 2>&1
  fi
  command -v mcs >/dev/null || { echo "skipped: mono not found (apt-get install mono-mcs mono-runtime libmono-i18n-cjk4.0-cil)"; exit 0; }
fi
cargo build --release --quiet --manifest-path "$here/Cargo.toml" || exit 2
bin=$here/target/release
work=$(mktemp -d)
export FUP_CONFIG_DIR=$work/config
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
mcs -nologo -out:"$work/Sender.exe" "$here/scripts/csharp/Sender.cs" || exit 2
mcs -nologo -out:"$work/Receiver.exe" "$here/scripts/csharp/Receiver.cs" || exit 2
pass=0 fail=0
ok() { pass=$((pass + 1)); printf 'ok    %s\n' "$1"; }
bad() { fail=$((fail + 1)); printf 'FAIL  %s\n' "$1"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
# The receiver serves a fixed number of connections, so it is not probed: it says when it listens.
wait_line() { for _ in $(seq 200); do grep -q "listening on" "$1" 2>/dev/null && return 0; sleep 0.05; done; return 1; }

# Test files: the sizes of the issue, names with a space and in Hangul, in a subdirectory so
# that the sender's typed path has a directory part.
mkdir -p "$work/src/sub"
for size in 0 1 4095 4096 4097 10000000; do head -c "$size" /dev/urandom > "$work/src/sub/f$size.bin"; done
head -c 5000 /dev/urandom > "$work/src/sub/with space.txt"
head -c 3 /dev/urandom > "$work/src/sub/사진 1.jpg"
files=(f0.bin f1.bin f4095.bin f4096.bin f4097.bin f10000000.bin "with space.txt" "사진 1.jpg")

# 1. C# sender -> fup-server, both conventions, names as typed paths, UTF-8 and CP949.
for accept in 0 1; do
  for enc in utf8 cp949; do
    out=$work/in-$accept-$enc; port=$(free_port)
    "$bin/fup-server" --yes --accept-byte "$accept" --bind 127.0.0.1 --port "$port" "$out" > "$work/server.log" 2>&1 & pids+=($!)
    wait_port "$port"
    for f in "${files[@]}"; do
      flag=(); [ $enc = cp949 ] && flag=(--cp949)
      msg=$(cd "$work/src" && timeout 60 mono "$work/Sender.exe" 127.0.0.1 "$port" "sub/$f" "${flag[@]}" --accept-byte "$accept" 2>&1); code=$?
      if [ $code = 0 ] && [ "$msg" = success ] && cmp -s "$work/src/sub/$f" "$out/$f"; then
        ok "C# sender ($enc, accept byte $accept) -> fup-server: sub/$f"
      else bad "C# sender ($enc, accept byte $accept) -> fup-server: sub/$f (exit $code: $msg)"; fi
    done
    kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null
  done
done
# Denied: the operator answers n; the sender of each convention reads it as denied.
for accept in 0 1; do
  out=$work/deny-$accept; port=$(free_port)
  yes n | "$bin/fup-server" --accept-byte "$accept" --bind 127.0.0.1 --port "$port" "$out" > /dev/null 2>&1 & pids+=($!)
  wait_port "$port"
  msg=$(cd "$work/src" && timeout 60 mono "$work/Sender.exe" 127.0.0.1 "$port" sub/f1.bin --accept-byte "$accept" 2>&1); code=$?
  if [ $code = 1 ] && [ "$msg" = denied ] && [ -z "$(ls -A "$out")" ]; then ok "C# sender (accept byte $accept) -> fup-server: denied"
  else bad "C# sender (accept byte $accept) -> fup-server: denied (exit $code: $msg)"; fi
  kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null
done

# 2. fup-client -> C# receiver, both conventions, without a flag and with --accept-byte:
# every file accepted, then one run where the receiver says y, n, y.
for accept in 0 1; do
  for forced in no yes; do
    flag=(); [ $forced = yes ] && flag=(--accept-byte "$accept")
    out=$work/cs-$accept-$forced; mkdir -p "$out"; port=$(free_port)
    answers=$(printf 'y%.0s' "${files[@]}")
    mono "$work/Receiver.exe" "$port" "$out" "$accept" "$answers" > "$work/receiver.log" 2>&1 & pids+=($!)
    wait_line "$work/receiver.log"
    paths=(); for f in "${files[@]}"; do paths+=("$work/src/sub/$f"); done
    start=$(date +%s.%N)
    msg=$(timeout 120 "$bin/fup-client" --port "$port" "${flag[@]}" 127.0.0.1 "${paths[@]}" 2>&1); code=$?
    secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
    same=1; for f in "${files[@]}"; do cmp -s "$work/src/sub/$f" "$out/$f" || same=0; done
    if [ $code = 0 ] && [ $same = 1 ]; then ok "fup-client (forced: $forced) -> C# receiver (accept byte $accept): ${#files[@]} files stored in $secs s"
    else bad "fup-client (forced: $forced) -> C# receiver (accept byte $accept): exit $code: $msg"; fi
    wait "${pids[-1]}" 2>/dev/null
    out=$work/csd-$accept-$forced; mkdir -p "$out"; port=$(free_port)
    mono "$work/Receiver.exe" "$port" "$out" "$accept" yny > "$work/receiver2.log" 2>&1 & pids+=($!)
    wait_line "$work/receiver2.log"
    msg=$(timeout 60 "$bin/fup-client" --port "$port" "${flag[@]}" 127.0.0.1 "$work/src/sub/f1.bin" "$work/src/sub/f4097.bin" "$work/src/sub/with space.txt" 2>&1); code=$?
    if [ $code = 1 ] && grep -q '"f4097.bin" 4.0 KiB: denied by server' <<<"$msg" && grep -q '2 stored, 1 denied' <<<"$msg" \
       && cmp -s "$work/src/sub/f1.bin" "$out/f1.bin" && [ ! -e "$out/f4097.bin" ] && cmp -s "$work/src/sub/with space.txt" "$out/with space.txt"; then
      ok "fup-client (forced: $forced) -> C# receiver (accept byte $accept): yes, no, yes"
    else bad "fup-client (forced: $forced) -> C# receiver (accept byte $accept): yes, no, yes: exit $code: $msg"; fi
    wait "${pids[-1]}" 2>/dev/null
  done
done

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
