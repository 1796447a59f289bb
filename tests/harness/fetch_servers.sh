#!/usr/bin/env bash
# Unpack Cyrus IMAP 3.6 into .cache/servers/cyrus without installing it: its Debian package
# conflicts with dovecot-imapd (both provide imap-server), so `apt-get install` would remove
# Dovecot. Only the shared libraries and SASL tools it needs are installed, after `apt-get -s`
# has shown that installing them removes nothing. Idempotent (run by `make install`).
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=.cache/servers
DEPENDENCIES="libclamav12 libical3 libxapian30 libzephyr4 libpcre3 libsasl2-modules sasl2-bin"
PACKAGES="cyrus-common cyrus-imapd"

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
[ -x "$CACHE/cyrus/usr/lib/cyrus/bin/master" ] && exit 0
echo "unpacking $PACKAGES into $CACHE/cyrus"
rm -rf "$CACHE/debs" "$CACHE/cyrus.new"
mkdir -p "$CACHE/debs" "$CACHE/cyrus.new"
chmod 777 "$CACHE/debs"  # apt-get download runs as _apt where it can
( cd "$CACHE/debs" && apt-get download -qq $PACKAGES )
for deb in "$CACHE"/debs/*.deb; do
  dpkg-deb -x "$deb" "$CACHE/cyrus.new"
done
rm -rf "$CACHE/cyrus"
mv "$CACHE/cyrus.new" "$CACHE/cyrus"
