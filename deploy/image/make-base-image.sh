#!/bin/sh
# A stand-in for the official Node image, for machines that cannot pull images:
# a minimal Debian bookworm root (debootstrap --variant=minbase, from the apt
# mirror this machine already uses), this machine's node and npm under
# /usr/local as the official image has them, and its `node` user (uid 1000),
# imported into Docker under IMAGE (for example node:20-bookworm-slim).
# It trusts the CA bundle this machine trusts (NODE_EXTRA_CA_CERTS), so that npm
# inside a build reaches the registry the way npm on this machine does.
#   sudo deploy/image/make-base-image.sh node:20-bookworm-slim
# Needs: debootstrap (Debian package), docker, node and npm on PATH; about 3 min.
set -eu
image=${1:?usage: make-base-image.sh IMAGE (for example node:20-bookworm-slim)}
command -v debootstrap >/dev/null || { echo "make-base-image: debootstrap is missing: apt-get install -y debootstrap" >&2; exit 1; }
mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[ -n "$mirror" ] || mirror=$(awk '/^deb / { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
[ -n "$mirror" ] || { echo "make-base-image: no Debian mirror found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list" >&2; exit 1; }
root=$(mktemp -d /tmp/debughost-base-XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 || { tail -5 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"
mkdir -p "$root/usr/local/bin" "$root/usr/local/lib/node_modules"
cp "$(command -v node)" "$root/usr/local/bin/node"
cp -a "$(npm root -g)/npm" "$root/usr/local/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
mkdir -p "$root/etc/ssl/certs"
[ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
chroot "$root" groupadd --gid 1000 node
chroot "$root" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log
tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["node"]' \
  - "$image" >/dev/null
echo "make-base-image: imported $image (node $(node --version), npm $(npm --version), Debian bookworm minbase)"
