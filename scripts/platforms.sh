# The targets fup is built for, and what building (and running) them here needs; sourced by
# scripts/release.sh and scripts/cross-test.sh. Everything it installs, it says first.
#
#   ensure_tools linux-musl aarch64 windows macos deb   # what the caller needs
#   build_all                                           # every target into target/TRIPLE/release

# Static Linux (musl) for x86_64 and aarch64, Windows (MinGW), macOS for both CPUs.
LINUX_TARGETS="x86_64-unknown-linux-musl aarch64-unknown-linux-musl"
WINDOWS_TARGET=x86_64-pc-windows-gnu
MACOS_TARGETS="aarch64-apple-darwin x86_64-apple-darwin"
# The oldest macOS the builds run on.
export MACOSX_DEPLOYMENT_TARGET=${MACOSX_DEPLOYMENT_TARGET:-11.0}
# The wine prefix (Debian's wine needs one DLL added for Rust programs: see its header).
WINE_SETUP=${WINE_SETUP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/shared/wine/setup}

installing() { echo "installing: $*" >&2; }

apt_install() {
  installing "$* (apt-get)"
  if [ "$(id -u)" != 0 ]; then echo "need root to install $* (or install them yourself)" >&2; return 1; fi
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@") > /dev/null
}

ensure_tools() {
  local want=" $* " targets=() pkgs=()
  case $want in *" linux-musl "*) targets+=(x86_64-unknown-linux-musl) ;; esac
  case $want in *" aarch64 "*) targets+=(aarch64-unknown-linux-musl) ;; esac
  case $want in *" windows "*) targets+=("$WINDOWS_TARGET") ;; esac
  case $want in *" macos "*) targets+=($MACOS_TARGETS) ;; esac
  local installed
  installed=$(rustup target list --installed)
  for t in "${targets[@]}"; do
    grep -qx "$t" <<<"$installed" || { installing "rustup target $t"; rustup target add "$t" > /dev/null 2>&1 || return 1; }
  done
  command -v file > /dev/null || pkgs+=(file)
  case $want in *" windows "*)
    command -v x86_64-w64-mingw32-gcc > /dev/null || pkgs+=(gcc-mingw-w64-x86-64)
    command -v zip > /dev/null || pkgs+=(zip)
    ;; esac
  case $want in *" run-windows "*) [ -x /usr/lib/wine/wine64 ] || pkgs+=(wine64) ;; esac
  case $want in *" run-aarch64 "*) command -v qemu-aarch64-static > /dev/null || pkgs+=(qemu-user-static) ;; esac
  if [ ${#pkgs[@]} -gt 0 ]; then apt_install "${pkgs[@]}" || return 1; fi
  # zig (from PyPI) links the musl and macOS targets; cargo-zigbuild drives it.
  if ! python3 -m ziglang version > /dev/null 2>&1 && ! command -v zig > /dev/null; then
    installing "ziglang (pip)"
    python3 -m pip install -q ziglang 2>/dev/null || python3 -m pip install -q --break-system-packages ziglang || return 1
  fi
  command -v cargo-zigbuild > /dev/null || { installing "cargo-zigbuild (cargo install)"; cargo install -q --locked cargo-zigbuild || return 1; }
  case $want in *" deb "*)
    command -v cargo-deb > /dev/null || { installing "cargo-deb (cargo install)"; cargo install -q --locked cargo-deb || return 1; }
    ;; esac
  case $want in *" run-windows "*)
    [ -f "${WINEPREFIX:-/var/tmp/fup-wine}/system.reg" ] && [ -f "${WINEPREFIX:-/var/tmp/fup-wine}/drive_c/windows/system32/bcryptprimitives.dll" ] || {
      [ -x "$WINE_SETUP" ] || { echo "no wine setup script at $WINE_SETUP (set WINE_SETUP)" >&2; return 1; }
      installing "a wine prefix in ${WINEPREFIX:-/var/tmp/fup-wine} ($WINE_SETUP)"
      "$WINE_SETUP" "${WINEPREFIX:-/var/tmp/fup-wine}" > /dev/null || return 1
    }
    ;; esac
  return 0
}

# Every target, release profile, into target/TRIPLE/release.
build_all() {
  cargo build --release --quiet || return 1
  local log
  log=$(mktemp)
  for t in $LINUX_TARGETS $MACOS_TARGETS; do
    # (zig links macOS without Apple's SDK; cargo's warning that it looked for one is noise.)
    cargo zigbuild --release --quiet --target "$t" > "$log" 2>&1 || { cat "$log" >&2; rm -f "$log"; echo "build for $t failed" >&2; return 1; }
  done
  rm -f "$log"
  cargo build --release --quiet --target "$WINDOWS_TARGET" || return 1
}
