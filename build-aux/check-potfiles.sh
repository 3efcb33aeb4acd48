#!/bin/sh
# Every Rust file that calls tr()/gettext must be listed in po/POTFILES.in, and every
# listed file must exist.
set -eu
cd "$(dirname "$0")/.."
status=0
for f in $(grep -rlE '\btr\(|gettext\(' src --include='*.rs'); do
  case "$f" in src/i18n.rs) continue ;; esac
  grep -qx "$f" po/POTFILES.in || { echo "missing from po/POTFILES.in: $f"; status=1; }
done
for f in $(grep -v '^#' po/POTFILES.in | sed '/^$/d'); do
  [ -e "$f" ] || { echo "listed in po/POTFILES.in but missing: $f"; status=1; }
done
exit $status
