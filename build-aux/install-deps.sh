#!/bin/sh
# Installs the Debian 12 packages Natter needs to build, test and run its demo.
# Idempotent and quick when everything is present: only missing packages are installed.
set -eu

PACKAGES="
  build-essential pkg-config cmake gettext
  libgtk-4-dev libadwaita-1-dev
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-pipewire gstreamer1.0-pulseaudio
  gstreamer1.0-tools
  libssl-dev libsqlite3-dev sqlite3
  prosody lua-unbound lua-sec lua-event lua-zlib openssl
  xvfb xdotool x11-utils imagemagick dbus dbus-x11 fonts-noto-color-emoji
  desktop-file-utils appstream libglib2.0-bin
  python3 python3-slixmpp python3-aiortc python3-gi
  coturn
"

missing=""
for p in $PACKAGES; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  case "$status" in
    *"install ok installed"*) ;;
    *) missing="$missing $p" ;;
  esac
done

if [ -n "$missing" ]; then
  echo "Installing:$missing"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
  # The Debian package starts a system-wide Prosody on 5222; Natter's tests and demo run
  # their own on free ports, so the system one is not needed.
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now prosody 2>/dev/null || true; fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install the Rust toolchain (rustup, or Debian's cargo)" >&2
  exit 1
fi
for c in clippy rustfmt; do
  if ! cargo "$( [ "$c" = rustfmt ] && echo fmt || echo "$c")" --version >/dev/null 2>&1; then
    command -v rustup >/dev/null 2>&1 && rustup component add "$c" || true
  fi
done
