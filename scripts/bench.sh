#!/usr/bin/env bash
# Upload throughput benchmark: fup against netcat, iperf3 and (when found) the original Python
# pair, over loopback, tmpfs to tmpfs, alternating runs, medians and ratios, plus fup's peak RSS.
#
#   scripts/bench.sh            # 5 rounds
#   ROUNDS=9 scripts/bench.sh   # more rounds
#   SEED_PY=path/to/seed-py     # where the Python original is (default ../shared/seed-py)
#   DISK_DIR=path               # a directory on a real disk for the durability row
#                               # (default: target/bench-disk; set DISK_DIR= to skip)
#   ONLY=secure                 # only the secure-mode rows: secure vs plain vs an
#                               # ssh tunnel, each cipher suite, the probe's cost
#   ONLY=batch                  # only the batch rows: many files and trees vs tar | nc
#                               # over ../shared/netlab (root; NETLAB=path) and into a disk
#   ONLY=resume                 # only the resume rows: what verification costs (loopback,
#                               # each end on a core of its own, netlab at 1 Gbit/s) and how
#                               # much a resume after a cut at half of 1 GiB moves again
#
# "fup" rows are the plain protocol (--plain); "secure" rows are fup<->fup's default, TLS 1.3.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
rounds=${ROUNDS:-5}
seed=${SEED_PY:-$here/../shared/seed-py}
disk_dir=${DISK_DIR-$here/target/bench-disk}
cargo build --release --quiet --manifest-path "$here/Cargo.toml" || exit 2
bin=$here/target/release

# Tools: install what is missing when we can, else skip it with a line saying so.
need() {
  command -v "$1" >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq "$2") >/dev/null 2>&1
  fi
  command -v "$1" >/dev/null || { echo "skipped: $1 not found (install $2)"; return 1; }
}
only=${ONLY:-}
have_nc=0; have_iperf=0
if [ -z "$only" ] || [ "$only" = batch ]; then
  need nc netcat-openbsd && nc -h 2>&1 | grep -q OpenBSD && have_nc=1
fi
[ -z "$only" ] && need iperf3 iperf3 && have_iperf=1
have_ssh=0; need sshd openssh-server || [ -x /usr/sbin/sshd ]; [ -x /usr/sbin/sshd ] && need ssh openssh-client && have_ssh=1
have_py=0; [ -f "$seed/fup_server.py" ] && command -v python3 >/dev/null && have_py=1
[ $have_py = 1 ] || echo "skipped: the Python original (set SEED_PY to its directory)"

base=/dev/shm; [ -d "$base" ] && [ -w "$base" ] || base=${TMPDIR:-/tmp}
work=$(mktemp -d "$base/fup-bench.XXXXXX")
# The fup programs' identities and pins live here, not in the user's configuration.
export FUP_CONFIG_DIR=$work/config
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; [ -n "$disk_dir" ] && rm -rf "$disk_dir/fup-bench"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Ready when listening: checked with ss, not by connecting (nc -l and iperf3 -1 would take the
# probe for their one client).
wait_port() { for _ in $(seq 250); do ss -Hltn "sport = :$1" | grep -q . && return 0; sleep 0.02; done; return 1; }
now() { date +%s.%N; }
mib() { echo "$1" | awk '{ printf "%d", $1 / 1048576 }'; }
rate() { awk -v b="$1" -v t="$2" 'BEGIN { printf "%.0f\n", b / 1048576 / t }'; }
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) { print 0 } else if (NR % 2) { print a[(NR + 1) / 2] } else { printf "%.0f", (a[NR / 2] + a[NR / 2 + 1]) / 2 } }'; }
# This VM's balloon reports freed memory to the host (free page reporting), which makes the
# next touch of those pages fault: a 1 GiB tmpfs write then runs up to 8x slower. Before each
# timed run, every contender alike gets memory made hot again: write and delete a scratch file
# as large as the output, whose pages the run then reuses before they are reported.
prewarm() { dd if=/dev/zero of="$work/warm" bs=1M count=$(( $1 / 1048576 + 64 )) status=none; rm -f "$work/warm"; }
hwm() { awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr); files on $(df --output=fstype "$work" | tail -1)"
big=$work/big.bin; mid=$work/mid.bin; part=$work/part.bin
if [ "$only" != batch ]; then
  head -c 1G /dev/urandom > "$big"; head -c 200M /dev/urandom > "$mid"; head -c 128M /dev/urandom > "$part"
else
  : > "$big"; : > "$mid"; : > "$part"
fi
big_size=$(stat -c %s "$big"); mid_size=$(stat -c %s "$mid"); part_size=$(stat -c %s "$part")

# One long-lived fup server for all fup runs: its VmHWM is the peak over all of them.
port=$(free_port); inbox=$work/fup-in
"$bin/fup-server" --yes --bind 127.0.0.1 --port "$port" "$inbox" > "$work/server.log" 2>&1 & server=$!; pids+=($server)
wait_port "$port" || { echo "fup-server did not start"; exit 1; }
echo 0 > "$work/client_rss"
fup_run() {  # file [--plain|--secure [port]] -> seconds; keeps the client's peak RSS in $work/client_rss
  rm -f "$inbox"/*
  local t0 t1 rss mode=${2:---plain} to=${3:-$port}
  prewarm "$(stat -c %s "$1")"
  t0=$(now)
  rss=$( { /usr/bin/time -f %M "$bin/fup-client" "$mode" --port "$to" 127.0.0.1 "$1" > /dev/null; } 2>&1 | tail -1)
  t1=$(now)
  [ "$rss" -gt "$(cat "$work/client_rss")" ] 2>/dev/null && echo "$rss" > "$work/client_rss"
  cmp -s "$1" "$inbox/$(basename "$1")" || echo "WARNING: fup stored a different file" >&2
  rm -f "$inbox"/*
  awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}
nc_run() {  # file -> seconds until the receiving nc has written everything and exited
  local p out t0 t1 rx
  p=$(free_port); out=$work/nc.out; rm -f "$out"
  nc -l 127.0.0.1 "$p" > "$out" & rx=$!
  wait_port "$p"
  prewarm "$(stat -c %s "$1")"
  t0=$(now); nc -N 127.0.0.1 "$p" < "$1"; wait $rx; t1=$(now)
  cmp -s "$1" "$out" || echo "WARNING: nc delivered a different file" >&2
  rm -f "$out"
  awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}
py_run() {  # file -> seconds, Python client -> Python server
  local p dir t0 t1 srv
  p=$(free_port); dir=$work/py-in; rm -rf "$dir"; mkdir -p "$dir"
  (cd "$seed" && FUP_PORT=$p FUP_AUTO_ANSWER=yes exec python3 fup_server.py "$dir") > /dev/null 2>&1 & srv=$!
  wait_port "$p"
  prewarm "$(stat -c %s "$1")"
  t0=$(now); (cd "$seed" && FUP_PORT=$p python3 fup_client.py 127.0.0.1 "$1") > /dev/null 2>&1; t1=$(now)
  kill $srv; wait $srv 2>/dev/null
  cmp -s "$1" "$dir/$(basename "$1")" || echo "WARNING: the Python pair stored a different file" >&2
  rm -rf "$dir"
  awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}

if [ -z "$only" ]; then
# Every run deletes its own output as soon as it is checked, so each starts from the same
# state, memory is made hot before each (see prewarm), and each contender runs once uncounted.
dd if=/dev/zero of="$work/warm" bs=1M count=4096 status=none; rm -f "$work/warm"
fup_run "$big" > /dev/null; [ $have_nc = 1 ] && nc_run "$big" > /dev/null

: > "$work/fup1g"; : > "$work/nc1g"; : > "$work/fup200"; : > "$work/py200"
for r in $(seq "$rounds"); do
  rate "$big_size" "$(fup_run "$big")" >> "$work/fup1g"
  [ $have_nc = 1 ] && rate "$big_size" "$(nc_run "$big")" >> "$work/nc1g"
  rate "$mid_size" "$(fup_run "$mid")" >> "$work/fup200"
  [ $have_py = 1 ] && rate "$mid_size" "$(py_run "$mid")" >> "$work/py200"
  printf 'round %s/%s: fup 1 GiB %s MiB/s' "$r" "$rounds" "$(tail -1 "$work/fup1g")"
  [ $have_nc = 1 ] && printf ', nc %s MiB/s' "$(tail -1 "$work/nc1g")"
  printf ', fup 200 MiB %s MiB/s' "$(tail -1 "$work/fup200")"
  [ $have_py = 1 ] && printf ', python %s MiB/s' "$(tail -1 "$work/py200")"
  echo
done
iperf=0
if [ $have_iperf = 1 ]; then
  p=$(free_port)
  for _ in $(seq 3); do
    iperf3 -s -1 -p "$p" > /dev/null 2>&1 & ip=$!
    wait_port "$p"
    iperf3 -c 127.0.0.1 -p "$p" -t 3 -J 2>/dev/null \
      | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 8 / 1048576))' >> "$work/iperf"
    wait $ip 2>/dev/null
  done
  iperf=$(median < "$work/iperf")
fi

# 8 concurrent 128 MiB uploads against one alone, alternating.
: > "$work/one"; : > "$work/eight"
for i in $(seq 8); do cp "$part" "$work/part$i.bin"; done
for r in $(seq 3); do
  rate "$part_size" "$(fup_run "$part")" >> "$work/one"
  prewarm $((8 * part_size))
  t0=$(now)
  for i in $(seq 8); do "$bin/fup-client" --plain --port "$port" 127.0.0.1 "$work/part$i.bin" > /dev/null & done
  wait $(jobs -p | grep -v "^$server$") 2>/dev/null
  t1=$(now)
  rate $((8 * part_size)) "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" >> "$work/eight"
  rm -f "$inbox"/*
done
server_rss=$(hwm "$server")

fup1g=$(median < "$work/fup1g"); fup200=$(median < "$work/fup200")
echo
echo "| what | MiB/s (median of $rounds) | ratio |"
echo "|---|---:|---|"
echo "| fup 1 GiB, fup-client → fup-server --yes | $fup1g | |"
if [ $have_nc = 1 ]; then
  nc1g=$(median < "$work/nc1g")
  echo "| nc 1 GiB, nc < file → nc -l > file | $nc1g | fup/nc = $(awk -v a="$fup1g" -v b="$nc1g" 'BEGIN { printf "%.2f", a / b }') (target ≥ 2) |"
fi
[ "$iperf" != 0 ] && echo "| iperf3 loopback, memory to memory (median of 3) | $iperf | fup/iperf3 = $(awk -v a="$fup1g" -v b="$iperf" 'BEGIN { printf "%.2f", a / b }') (target ≥ 0.6) |"
echo "| fup 200 MiB | $fup200 | |"
if [ $have_py = 1 ]; then
  py200=$(median < "$work/py200")
  echo "| Python original pair 200 MiB | $py200 | fup/python = $(awk -v a="$fup200" -v b="$py200" 'BEGIN { printf "%.1f", a / b }') (target ≥ 5) |"
fi
one=$(median < "$work/one"); eight=$(median < "$work/eight")
echo "| fup 128 MiB alone (median of 3) | $one | |"
echo "| fup 8 × 128 MiB at once, aggregate (median of 3) | $eight | 8×/alone = $(awk -v a="$eight" -v b="$one" 'BEGIN { printf "%.2f", a / b }') (target ≥ 1) |"
echo
echo "peak RSS: fup-server $server_rss MiB over all runs, fup-client $(awk -v k="$(cat "$work/client_rss")" 'BEGIN { printf "%.1f", k / 1024 }') MiB (target ≤ 16 each)"

fi

# Durability on a real disk: fup fsyncs the file and the directory before reporting success.
if [ -z "$only" ] && [ -n "$disk_dir" ] && mkdir -p "$disk_dir/fup-bench" 2>/dev/null; then
  fs=$(df --output=fstype "$disk_dir" | tail -1)
  dport=$(free_port); dinbox=$disk_dir/fup-bench/in
  "$bin/fup-server" --yes --bind 127.0.0.1 --port "$dport" "$dinbox" > /dev/null 2>&1 & dserver=$!; pids+=($dserver)
  wait_port "$dport"
  : > "$work/dfup"; : > "$work/dnc"; : > "$work/dncs"
  for r in $(seq 3); do
    rm -f "$dinbox"/*; sync
    t0=$(now); "$bin/fup-client" --plain --port "$dport" 127.0.0.1 "$mid" > /dev/null; t1=$(now)
    rate "$mid_size" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" >> "$work/dfup"
    if [ $have_nc = 1 ]; then
      p=$(free_port); out=$disk_dir/fup-bench/nc.out; rm -f "$out"; sync
      nc -l 127.0.0.1 "$p" > "$out" & rx=$!; wait_port "$p"
      t0=$(now); nc -N 127.0.0.1 "$p" < "$mid"; wait $rx; t1=$(now); sync "$out"; t2=$(now)
      rate "$mid_size" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" >> "$work/dnc"
      rate "$mid_size" "$(awk -v a="$t0" -v b="$t2" 'BEGIN { print b - a }')" >> "$work/dncs"
    fi
  done
  kill $dserver; wait $dserver 2>/dev/null
  echo
  echo "real disk ($fs, $disk_dir), 200 MiB, median of 3: fup (fsync file + directory) $(median < "$work/dfup") MiB/s"
  [ $have_nc = 1 ] && echo "  nc without fsync $(median < "$work/dnc") MiB/s, nc then sync $(median < "$work/dncs") MiB/s"
fi

if [ -z "$only" ] || [ "$only" = secure ]; then
# Secure mode: fup↔fup over TLS 1.3 against plain fup in the same rounds, each cipher
# suite, plain fup through an ssh -L tunnel (sshd on 127.0.0.1 only), and the probe's cost.
echo
: > "$work/s_plain"; : > "$work/s_secure"
for suite in aes128 aes256 chacha20; do : > "$work/s_$suite"; done
fup_run "$big" --secure > /dev/null  # uncounted: first contact pins the server here
for r in $(seq "$rounds"); do
  rate "$big_size" "$(fup_run "$big" --plain)" >> "$work/s_plain"
  rate "$big_size" "$(fup_run "$big" --secure)" >> "$work/s_secure"
  for suite in aes128 aes256 chacha20; do
    rate "$big_size" "$(FUP_TLS_SUITE=$suite fup_run "$big" --secure)" >> "$work/s_$suite"
  done
  printf 'secure round %s/%s: plain %s, secure %s (aes128 %s, aes256 %s, chacha20 %s) MiB/s\n' "$r" "$rounds" \
    "$(tail -1 "$work/s_plain")" "$(tail -1 "$work/s_secure")" "$(tail -1 "$work/s_aes128")" "$(tail -1 "$work/s_aes256")" "$(tail -1 "$work/s_chacha20")"
done
ssh_rows=""
if [ $have_ssh = 1 ]; then
  sdir=$work/ssh; mkdir -p "$sdir" /run/sshd
  ssh-keygen -q -t ed25519 -N '' -f "$sdir/host"; ssh-keygen -q -t ed25519 -N '' -f "$sdir/user"
  cp "$sdir/user.pub" "$sdir/authorized"
  sport=$(free_port)
  printf '%s\n' "ListenAddress 127.0.0.1" "Port $sport" "HostKey $sdir/host" "AuthorizedKeysFile $sdir/authorized" \
    "PasswordAuthentication no" "PermitRootLogin prohibit-password" "StrictModes no" "PidFile $sdir/pid" > "$sdir/config"
  /usr/sbin/sshd -f "$sdir/config" -E "$sdir/log" && wait_port "$sport"
  for cipher in default aes128-gcm@openssh.com; do
    tport=$(free_port); copt=(); [ $cipher != default ] && copt=(-c "$cipher")
    ssh -i "$sdir/user" -p "$sport" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes \
      "${copt[@]}" -N -L "$tport:127.0.0.1:$port" "$(id -un)@127.0.0.1" 2> /dev/null & tunnel=$!; pids+=($tunnel)
    wait_port "$tport"
    : > "$work/s_ssh"
    for r in $(seq 3); do rate "$big_size" "$(fup_run "$big" --plain "$tport")" >> "$work/s_ssh"; done
    kill -9 $tunnel 2> /dev/null; wait $tunnel 2> /dev/null
    ssh_rows+="| plain fup through ssh -L ($cipher; median of 3) | $(median < "$work/s_ssh") | secure/ssh = $(awk -v a="$(median < "$work/s_secure")" -v b="$(median < "$work/s_ssh")" 'BEGIN { printf "%.2f", a / b }') (target ≥ 2.5) |"$'\n'
  done
  kill "$(cat "$sdir/pid")" 2> /dev/null
fi
# The probe's cost: a 1-byte upload, by default (probe, closed, plain again) against --plain,
# to the Python server (one connection at a time, like every plain server), alternating; and
# the handshake's cost, secure against plain, to fup-server.
small=$work/small.bin; head -c 1 /dev/urandom > "$small"
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f\n", (b - a) * 1000 }'; }
small_run() {  # port args... -> milliseconds
  local p=$1 t0 t1; shift
  t0=$(now); "$bin/fup-client" "$@" --port "$p" 127.0.0.1 "$small" > /dev/null 2>&1; t1=$(now)
  ms "$t0" "$t1"
}
median_f() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
probe_rows=""
if [ $have_py = 1 ]; then
  p=$(free_port); pydir=$work/py-probe; mkdir -p "$pydir"
  (cd "$seed" && FUP_PORT=$p FUP_AUTO_ANSWER=yes exec python3 fup_server.py "$pydir") > /dev/null 2>&1 & py=$!; pids+=($py)
  wait_port "$p"
  : > "$work/p_default"; : > "$work/p_plain"
  for r in $(seq 21); do
    small_run "$p" >> "$work/p_default"; small_run "$p" --plain >> "$work/p_plain"
  done
  kill $py; wait $py 2> /dev/null
  probe_rows="| 1 B to the Python server by default (probe dropped, then plain) | $(median_f < "$work/p_default") ms | --plain $(median_f < "$work/p_plain") ms |"$'\n'
fi
: > "$work/h_secure"; : > "$work/h_plain"
for r in $(seq 21); do
  small_run "$port" --secure >> "$work/h_secure"; small_run "$port" --plain >> "$work/h_plain"
done
probe_rows+="| 1 B to fup-server, secure (probe, TLS 1.3 handshake, both keys) | $(median_f < "$work/h_secure") ms | --plain $(median_f < "$work/h_plain") ms |"$'\n'
server_rss=$(hwm "$server")
sp=$(median < "$work/s_plain"); ss_=$(median < "$work/s_secure")
echo
echo "| secure mode, 1 GiB | MiB/s (median of $rounds) | ratio |"
echo "|---|---:|---|"
echo "| plain fup, same rounds | $sp | |"
echo "| secure fup (this CPU: $(grep -qw aes /proc/cpuinfo && echo 'AES-128-GCM first' || echo 'ChaCha20 first')) | $ss_ | secure/plain = $(awk -v a="$ss_" -v b="$sp" 'BEGIN { printf "%.2f", a / b }') (target ≥ 0.5) |"
for suite in aes128 aes256 chacha20; do
  echo "| secure fup, $suite only | $(median < "$work/s_$suite") | |"
done
printf '%s' "$ssh_rows"
echo
echo "| small upload (median of 21, alternating) | time | beside it |"
echo "|---|---:|---|"
printf '%s' "$probe_rows"
echo
echo "peak RSS over every run: fup-server $server_rss MiB, fup-client $(awk -v k="$(cat "$work/client_rss")" 'BEGIN { printf "%.1f", k / 1024 }') MiB (target ≤ 16 each)"
fi

# Batches: many files and trees over one secure connection, against tar | nc, on a
# two-host network with a real round-trip time (../shared/netlab, root only: NETLAB=path),
# and into a real disk over loopback with every file durable when reported.
if [ -z "$only" ] || [ "$only" = batch ]; then
  echo
  tree=$work/batch; mkdir -p "$tree/small" "$tree/tree" "$tree/one" "$tree/disk"
  for i in $(seq -w 1 200); do head -c 4096 /dev/urandom > "$tree/small/f$i.bin"; done
  for d in $(seq -w 1 50); do
    mkdir -p "$tree/tree/d$d"
    for f in $(seq -w 1 40); do head -c 4096 /dev/urandom > "$tree/tree/d$d/f$f.bin"; done
  done
  head -c 100M /dev/urandom > "$tree/one/file.bin"
  for i in $(seq -w 1 1000); do head -c 4096 /dev/urandom > "$tree/disk/f$i.bin"; done
  secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", b - a }'; }
  netlab=${NETLAB:-$here/../shared/netlab/netlab}
  batch_rows=""
  if [ "$(id -u)" = 0 ] && [ -x "$netlab" ] && [ $have_nc = 1 ]; then
    "$netlab" up 25 100mbit > /dev/null
    nport=7500; nin=$work/net-in; tin=$work/net-tar
    FUP_CONFIG_DIR=$work/netserver "$netlab" server "$bin/fup-server" --yes --bind 10.200.0.1 --port $nport "$nin" > "$work/net.log" 2>&1 & nserver=$!
    for _ in $(seq 100); do "$netlab" server ss -Hltn "sport = :$nport" | grep -q . && break; sleep 0.05; done
    FUP_CONFIG_DIR=$work/netclient "$netlab" client "$bin/fup-client" -q 10.200.0.1:$nport /etc/hostname > /dev/null 2>&1
    for what in small tree one; do
      : > "$work/b_fup"; : > "$work/b_tar"
      for r in $(seq 3); do
        rm -rf "$nin"/* "$tin"; mkdir -p "$tin"
        t0=$(now); FUP_CONFIG_DIR=$work/netclient "$netlab" client "$bin/fup-client" -q 10.200.0.1:$nport "$tree/$what"; t1=$(now)
        secs "$t0" "$t1" >> "$work/b_fup"
        # One file goes through nc alone; a tree through tar.
        case $what in
          one) recv="nc -l 10.200.0.1 7600 > $tin/file.bin"; send="nc -N 10.200.0.1 7600 < $tree/one/file.bin" ;;
          *) recv="nc -l 10.200.0.1 7600 | tar x -C $tin"; send="tar c -C $tree $what | nc -N 10.200.0.1 7600" ;;
        esac
        "$netlab" server sh -c "$recv" & rx=$!
        for _ in $(seq 100); do "$netlab" server ss -Hltn "sport = :7600" | grep -q . && break; sleep 0.05; done
        t0=$(now); "$netlab" client sh -c "$send"; wait $rx; t1=$(now)
        secs "$t0" "$t1" >> "$work/b_tar"
      done
      f=$(sort -n "$work/b_fup" | sed -n 2p); t=$(sort -n "$work/b_tar" | sed -n 2p)
      n=$(find "$tree/$what" -type f | wc -l)
      batch_rows+="| $what ($n files, $(du -sh "$tree/$what" | cut -f1)) | $f s | $t s | $(awk -v f="$f" -v t="$t" 'BEGIN { printf "%.2f", t / f }')× |"$'\n'
    done
    kill $nserver 2> /dev/null; wait $nserver 2> /dev/null
    "$netlab" down
  else
    echo "skipped: the netlab rows (need root, nc and $netlab)"
  fi
  # Loopback into a real disk: 1,000 files of 4 KiB, each durable when reported stored.
  disk_rows=""
  if [ -n "$disk_dir" ] && mkdir -p "$disk_dir/fup-bench" 2> /dev/null; then
    din=$disk_dir/fup-bench/batch-in; dtar=$disk_dir/fup-bench/batch-tar
    dport=$(free_port)
    "$bin/fup-server" --yes --bind 127.0.0.1 --port "$dport" "$din" > /dev/null 2>&1 & ds=$!; pids+=($ds)
    wait_port "$dport"
    "$bin/fup-client" -q --port "$dport" 127.0.0.1 /etc/hostname > /dev/null 2>&1
    : > "$work/d_tree"; : > "$work/d_top"; : > "$work/d_tar"; : > "$work/d_tars"
    for r in $(seq 3); do
      rm -rf "$din"/*; sync
      t0=$(now); "$bin/fup-client" -q --port "$dport" 127.0.0.1 "$tree/disk"; t1=$(now); secs "$t0" "$t1" >> "$work/d_tree"
      rm -rf "$din"/*; sync
      t0=$(now); "$bin/fup-client" -q --port "$dport" 127.0.0.1 "$tree"/disk/*; t1=$(now); secs "$t0" "$t1" >> "$work/d_top"
      rm -rf "$dtar"; mkdir -p "$dtar"; sync
      p=$(free_port); (nc -l 127.0.0.1 "$p" | tar x -C "$dtar") & rx=$!; wait_port "$p"
      t0=$(now); tar c -C "$tree" disk | nc -N 127.0.0.1 "$p"; wait $rx; t1=$(now); sync; t2=$(now)
      secs "$t0" "$t1" >> "$work/d_tar"; secs "$t0" "$t2" >> "$work/d_tars"
    done
    kill $ds; wait $ds 2> /dev/null
    fps() { awk -v s="$(sort -n "$1" | sed -n 2p)" 'BEGIN { printf "%.0f", 1000 / s }'; }
    disk_rows="$(df --output=fstype "$disk_dir" | tail -1), 1,000 × 4 KiB over loopback, files/s (median of 3): fup one tree $(fps "$work/d_tree"), fup 1,000 files $(fps "$work/d_top"), tar | nc $(fps "$work/d_tar"), tar | nc then sync $(fps "$work/d_tars") (target for fup ≥ 2,000)"
  fi
  echo "| batch over netlab, 25 ms each way, 100 Mbit/s (median of 3) | fup | tar \\| nc (nc for one file) | fup speed / theirs |"
  echo "|---|---:|---:|---:|"
  printf '%s' "$batch_rows"
  [ -n "$disk_rows" ] && echo && echo "$disk_rows"
fi

# Resume and end-to-end verification. Verification's cost: the same secure 1 GiB upload
# with BLAKE3 on both sides and with it off (FUP_NO_VERIFY on both ends, a switch for this
# bench only), interleaved: over loopback with both ends sharing this machine's cores, with
# each end pinned to a core of its own (as two machines would be), and over netlab at
# 1 Gbit/s. Resume: the client killed once the server holds half of 1 GiB, then the same
# command again; how many of the file's bytes moved again, from the server's JSON log.
if [ -z "$only" ] || [ "$only" = resume ]; then
  echo
  nvport=$(free_port); nvin=$work/nv-in
  FUP_NO_VERIFY=1 "$bin/fup-server" --yes --bind 127.0.0.1 --port "$nvport" "$nvin" > /dev/null 2>&1 & nvs=$!; pids+=($nvs)
  wait_port "$nvport"
  v_run() {  # port inbox no-verify(0|1) cpu-or-empty -> MiB/s
    local t0 t1 pin=()
    [ -n "$4" ] && pin=(taskset -c "$4")
    rm -f "$2/big.bin"; prewarm "$big_size"
    t0=$(now)
    if [ "$3" = 1 ]; then FUP_NO_VERIFY=1 "${pin[@]}" "$bin/fup-client" --secure --port "$1" 127.0.0.1 "$big" > /dev/null
    else "${pin[@]}" "$bin/fup-client" --secure --port "$1" 127.0.0.1 "$big" > /dev/null; fi
    t1=$(now)
    cmp -s "$big" "$2/big.bin" || echo "WARNING: a different file was stored" >&2
    rm -f "$2/big.bin"
    rate "$big_size" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
  }
  v_run "$port" "$inbox" 0 "" > /dev/null; v_run "$nvport" "$nvin" 1 "" > /dev/null  # first contact, uncounted
  : > "$work/v_on"; : > "$work/v_off"; : > "$work/vp_on"; : > "$work/vp_off"
  for r in $(seq "$rounds"); do
    v_run "$port" "$inbox" 0 "" >> "$work/v_on"; v_run "$nvport" "$nvin" 1 "" >> "$work/v_off"
    printf 'verify round %s/%s, loopback: verified %s, unverified %s MiB/s\n' "$r" "$rounds" "$(tail -1 "$work/v_on")" "$(tail -1 "$work/v_off")"
  done
  # Each end on a core of its own: the servers' threads (and those they start) on core 1.
  if [ "$(nproc)" -ge 2 ] && command -v taskset > /dev/null; then
    taskset -a -cp 1 "$server" > /dev/null; taskset -a -cp 1 "$nvs" > /dev/null
    for r in $(seq "$rounds"); do
      v_run "$port" "$inbox" 0 0 >> "$work/vp_on"; v_run "$nvport" "$nvin" 1 0 >> "$work/vp_off"
      printf 'verify round %s/%s, one core each: verified %s, unverified %s MiB/s\n' "$r" "$rounds" "$(tail -1 "$work/vp_on")" "$(tail -1 "$work/vp_off")"
    done
    all=$(seq -s, 0 $(( $(nproc) - 1 )))
    taskset -a -cp "$all" "$server" > /dev/null; taskset -a -cp "$all" "$nvs" > /dev/null
  fi
  ratio() { awk -v a="$(median < "$1")" -v b="$(median < "$2")" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }'; }
  verify_rows="| loopback, both ends sharing $(nproc) cores (median of $rounds) | $(median < "$work/v_on") | $(median < "$work/v_off") | $(ratio "$work/v_on" "$work/v_off") |"$'\n'
  [ -s "$work/vp_on" ] && verify_rows+="| loopback, each end on a core of its own (median of $rounds) | $(median < "$work/vp_on") | $(median < "$work/vp_off") | $(ratio "$work/vp_on" "$work/vp_off") |"$'\n'
  netlab=${NETLAB:-$here/../shared/netlab/netlab}
  if [ "$(id -u)" = 0 ] && [ -x "$netlab" ]; then
    "$netlab" up 1 1gbit > /dev/null
    nin1=$work/n-on; nin2=$work/n-off
    FUP_CONFIG_DIR=$work/netserver "$netlab" server "$bin/fup-server" --yes --bind 10.200.0.1 --port 7501 "$nin1" > /dev/null 2>&1 & n1=$!
    FUP_NO_VERIFY=1 FUP_CONFIG_DIR=$work/netserver "$netlab" server "$bin/fup-server" --yes --bind 10.200.0.1 --port 7502 "$nin2" > /dev/null 2>&1 & n2=$!
    for p in 7501 7502; do for _ in $(seq 100); do "$netlab" server ss -Hltn "sport = :$p" | grep -q . && break; sleep 0.05; done; done
    for p in 7501 7502; do FUP_CONFIG_DIR=$work/netclient "$netlab" client "$bin/fup-client" -q 10.200.0.1:$p /etc/hostname > /dev/null 2>&1; done
    : > "$work/n_on"; : > "$work/n_off"
    for r in 1 2 3; do
      for p in 7501 7502; do
        rm -f "$nin1/big.bin" "$nin2/big.bin"
        t0=$(now)
        if [ $p = 7502 ]; then FUP_NO_VERIFY=1 FUP_CONFIG_DIR=$work/netclient "$netlab" client "$bin/fup-client" -q 10.200.0.1:$p "$big"
        else FUP_CONFIG_DIR=$work/netclient "$netlab" client "$bin/fup-client" -q 10.200.0.1:$p "$big"; fi
        t1=$(now)
        out=$work/n_on; [ $p = 7502 ] && out=$work/n_off
        rate "$big_size" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" >> "$out"
      done
    done
    kill $n1 $n2 2> /dev/null; wait $n1 $n2 2> /dev/null
    "$netlab" down
    verify_rows+="| netlab, 1 ms each way, 1 Gbit/s (median of 3) | $(median < "$work/n_on") | $(median < "$work/n_off") | $(ratio "$work/n_on" "$work/n_off") |"$'\n'
  else
    echo "skipped: the netlab row (need root and $netlab)"
  fi
  # Resume: killed at half, then the same command.
  rport=$(free_port); rin=$work/r-in
  "$bin/fup-server" --yes --json --bind 127.0.0.1 --port "$rport" "$rin" > "$work/r.log" 2>&1 & rs=$!; pids+=($rs)
  wait_port "$rport"
  "$bin/fup-client" -q --port "$rport" 127.0.0.1 /etc/hostname > /dev/null 2>&1
  : > "$work/r_kept"; : > "$work/r_moved"; : > "$work/r_secs"; : > "$work/r_full"
  for r in 1 2 3; do
    rm -f "$rin/big.bin"
    t0=$(now); "$bin/fup-client" -q --port "$rport" 127.0.0.1 "$big"; t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }' >> "$work/r_full"
    rm -f "$rin/big.bin"
    lines=$(wc -l < "$work/r.log")
    "$bin/fup-client" -q --port "$rport" 127.0.0.1 "$big" & c=$!
    for _ in $(seq 4000); do
      held=$(stat -c %s "$rin"/.fup-partial/*/data-0 2> /dev/null | head -1)
      [ "${held:-0}" -ge $((big_size / 2)) ] && break
      sleep 0.001
    done
    kill -9 $c; wait $c 2> /dev/null
    for _ in $(seq 500); do [ "$(wc -l < "$work/r.log")" -gt "$lines" ] && break; sleep 0.01; done
    tail -1 "$work/r.log" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("kept", 0))' >> "$work/r_kept"
    t0=$(now); "$bin/fup-client" -q --port "$rport" 127.0.0.1 "$big"; t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }' >> "$work/r_secs"
    cmp -s "$big" "$rin/big.bin" || echo "WARNING: the resumed file differs" >&2
    tail -1 "$work/r.log" | python3 -c 'import json,sys; print(json.load(sys.stdin)["received"])' >> "$work/r_moved"
    printf 'resume round %s/3: kept %s, moved again %s of %s bytes\n' "$r" "$(tail -1 "$work/r_kept")" "$(tail -1 "$work/r_moved")" "$big_size"
  done
  kill $rs; wait $rs 2> /dev/null
  pct() { awk -v a="$1" -v b="$big_size" 'BEGIN { printf "%.1f%%", 100 * a / b }'; }
  echo "| secure 1 GiB | verified MiB/s | unverified MiB/s | verified / unverified (target ≥ 0.9) |"
  echo "|---|---:|---:|---:|"
  printf '%s' "$verify_rows"
  echo
  echo "resume, 1 GiB, client killed once the server held half (median of 3): kept $(pct "$(sort -n "$work/r_kept" | sed -n 2p)"), moved again $(pct "$(sort -n "$work/r_moved" | sed -n 2p)") of the file (target ≤ 55%); the resumed run took $(sort -n "$work/r_secs" | sed -n 2p) s against $(sort -n "$work/r_full" | sed -n 2p) s for the whole file"
fi
