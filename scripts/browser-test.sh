#!/usr/bin/env bash
# The upload page in a real browser: Debian's chromium and chromium-driver (installed with
# apt-get when missing: about 600 MB, which is why this is not part of .ci/run) and selenium
# in a private venv (target/browser-venv), driving headless Chromium through the page that
# fup-server serves on 127.0.0.1. Rows: files stored, the operator's no, https with the
# certificate accepted (and its fingerprint on the page), a resume checked by the page's own
# SHA-256, a folder, and a 200 MiB file's rate beside fup-client's over the same loopback.
# Saves the page's screenshot as docs/page.png. Usage: scripts/browser-test.sh
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
# Hangul in the screenshot needs a font that has it (fonts-nanum, 20 MB).
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ] || [ ! -d /usr/share/fonts/truetype/nanum ]; then
  echo "installing chromium, chromium-driver and fonts-nanum (Debian packages)"
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver fonts-nanum > /dev/null
fi
venv=$here/target/browser-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import selenium' 2> /dev/null; then
  echo "installing selenium in $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check selenium
fi
cargo build --release --locked --quiet --bin fup-server --bin fup-client --manifest-path "$here/Cargo.toml"
exec "$venv/bin/python" "$here/scripts/browser-test.py" "$here"
