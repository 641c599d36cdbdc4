#!/usr/bin/env bash
# Builds fup's release archives into dist/:
#
#   scripts/release.sh VERSION      # VERSION must be Cargo.toml's (2.2.0)
#
#   fup-VERSION-x86_64-unknown-linux-musl.tar.gz    static Linux, x86_64
#   fup-VERSION-aarch64-unknown-linux-musl.tar.gz   static Linux, ARM 64-bit
#   fup-VERSION-aarch64-apple-darwin.tar.gz         macOS 11 or later, Apple silicon
#   fup-VERSION-x86_64-apple-darwin.tar.gz          macOS 11 or later, Intel
#   fup-VERSION-x86_64-pc-windows-gnu.zip           Windows 10 or later, x86_64
#   fup_VERSION-1_amd64.deb, fup_VERSION-1_arm64.deb   Debian and Ubuntu (static programs)
#   SHA256SUMS
#
# Each archive holds the four programs, their man pages and shell completions (made by the
# programs themselves), the README and the licences. Installs what it needs (rustup targets,
# apt packages, zig, cargo-zigbuild, cargo-deb) and says what it installs.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
version=${1:-}
crate=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
if [ -z "$version" ]; then echo "usage: scripts/release.sh VERSION (Cargo.toml says $crate)" >&2; exit 2; fi
if [ "$version" != "$crate" ]; then echo "release.sh: version $version is not Cargo.toml's ($crate)" >&2; exit 2; fi
. scripts/platforms.sh
ensure_tools linux-musl aarch64 windows macos deb

programs=(fup-server fup-client echo-server echo-client)
echo "building $version for: $LINUX_TARGETS $MACOS_TARGETS $WINDOWS_TARGET"
cargo build --profile dist --quiet
for t in $LINUX_TARGETS $MACOS_TARGETS; do
  log=$(mktemp)
  # (zig links macOS without Apple's SDK; cargo's warning that it looked for one is noise.)
  cargo zigbuild --profile dist --quiet --target "$t" > "$log" 2>&1 || { cat "$log" >&2; exit 1; }
  rm -f "$log"
done
cargo build --profile dist --quiet --target "$WINDOWS_TARGET"

# Man pages and completions, made by the programs (the native build) for every archive.
assets=target/dist-assets
rm -rf "$assets"
mkdir -p "$assets"/{man,bash,zsh,fish,powershell}
for p in "${programs[@]}"; do
  "target/dist/$p" --man > "$assets/man/$p.1"
  "target/dist/$p" --completions bash > "$assets/bash/$p"
  "target/dist/$p" --completions zsh > "$assets/zsh/_$p"
  "target/dist/$p" --completions fish > "$assets/fish/$p.fish"
  "target/dist/$p" --completions powershell > "$assets/powershell/$p.ps1"
done

rm -rf dist
mkdir -p dist
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
# pack TARGET EXT: one archive of the programs, man pages, completions, README and licences.
pack() {
  local t=$1 ext=$2 name="fup-$version-$1" suffix=
  [ "$ext" = zip ] && suffix=.exe
  local d=$stage/$name
  mkdir -p "$d/completions"
  for p in "${programs[@]}"; do cp "target/$t/dist/$p$suffix" "$d/"; done
  cp README.md LICENSE-MIT LICENSE-APACHE "$d/"
  if [ "$ext" = zip ]; then
    cp "$assets"/powershell/* "$d/completions/"
    (cd "$stage" && zip -qr -X "$here/dist/$name.zip" "$name")
  else
    mkdir -p "$d/man"
    cp "$assets"/man/* "$d/man/"
    cp -r "$assets"/{bash,zsh,fish} "$d/completions/"
    # Owner and times fixed, so the same sources give the same bytes.
    tar -C "$stage" --owner=0 --group=0 --numeric-owner --mtime='2000-01-01 00:00Z' --sort=name -czf "dist/$name.tar.gz" "$name"
  fi
}
for t in $LINUX_TARGETS $MACOS_TARGETS; do pack "$t" tar.gz; done
pack "$WINDOWS_TARGET" zip

for t in $LINUX_TARGETS; do
  cargo deb --quiet --no-build --no-strip --profile dist --target "$t" --deb-version "$version-1" --output dist/ > /dev/null
done

(cd dist && sha256sum -- * > SHA256SUMS)
echo
(cd dist && for f in *; do printf '%-48s %8s\n' "$f" "$(du -h "$f" | cut -f1)"; done)
