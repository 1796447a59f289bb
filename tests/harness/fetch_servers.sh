#!/usr/bin/env bash
# Unpack Cyrus IMAP 3.6 and Courier-IMAP 5 into .cache/servers/{cyrus,courier} without
# installing them: their Debian packages conflict with dovecot-imapd (all provide imap-server),
# so `apt-get install` would remove Dovecot. Only the shared libraries and SASL tools it needs are installed, after `apt-get -s`
# has shown that installing them removes nothing. Idempotent (run by `make install`).
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=.cache/servers
DEPENDENCIES="libclamav12 libical3 libxapian30 libzephyr4 libpcre3 libsasl2-modules sasl2-bin
  libgamin0 libidn12"
declare -A PACKAGES=([cyrus]="cyrus-common cyrus-imapd" [courier]="courier-imap courier-authlib libcourier-unicode4")

missing=""
for p in $DEPENDENCIES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  apt-get update -qq
  if apt-get -s install --no-install-recommends $missing | grep -q '^Remv '; then
    echo "installing$missing would remove packages; not installing them" >&2
    exit 1
  fi
  echo "installing Debian packages:$missing"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
fi
unpack() {  # unpack NAME MARKER: the packages of NAME, unless MARKER is there already
  local name=$1 marker=$2
  [ -e "$CACHE/$name/$marker" ] && return 0
  echo "unpacking ${PACKAGES[$name]} into $CACHE/$name"
  rm -rf "$CACHE/debs.$name" "$CACHE/$name.new"
  mkdir -p "$CACHE/debs.$name" "$CACHE/$name.new"
  chmod 777 "$CACHE/debs.$name"  # apt-get download runs as _apt where it can
  ( cd "$CACHE/debs.$name" && apt-get download -qq ${PACKAGES[$name]} )
  for deb in "$CACHE/debs.$name"/*.deb; do
    dpkg-deb -x "$deb" "$CACHE/$name.new"
  done
  rm -rf "$CACHE/$name"
  mv "$CACHE/$name.new" "$CACHE/$name"
}
unpack cyrus usr/lib/cyrus/bin/master
unpack courier usr/bin/imapd
