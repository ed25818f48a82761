#!/usr/bin/env bash
# Assemble a local stand-in for the Dockerfile's base image where no registry can be reached
# (our CI): a Debian root file system made by mmdebstrap, with python3, venv and pip, imported
# into buildah's store under the name given. Only the machine's CA bundle and pip's `cert`
# setting go into it, so that the build stage reaches the package index the way this machine
# does; nothing of the kind goes into the Dockerfile.
#
#   deploy/image/local-base.sh localhost/wolkvox-base:bookworm
#
# Needs root, mmdebstrap and buildah (Debian packages). Takes about two minutes.
set -euo pipefail
name=${1:?usage: local-base.sh IMAGE-NAME}
release=${DEBIAN_RELEASE:-bookworm}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cert=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
hooks=()
if [ -f "$cert" ]; then
  # The machine's CA bundle (a TLS-inspecting proxy's root, if it has one) and pip's setting.
  cp "$cert" "$work/ca-bundle.crt"
  printf '[global]\ncert = /etc/ssl/certs/local-ca-bundle.crt\n' > "$work/pip.conf"
  hooks+=(--customize-hook="upload $work/ca-bundle.crt /etc/ssl/certs/local-ca-bundle.crt"
          --customize-hook="upload $work/pip.conf /etc/pip.conf")
fi

mmdebstrap --quiet --variant=apt --mode=root \
  --include=python3,python3-venv,python3-pip,ca-certificates \
  --customize-hook='chroot "$1" ln -sf python3 /usr/bin/python' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
  "${hooks[@]}" \
  "$release" "$work/rootfs.tar"

ctr=$(buildah from scratch)
buildah add --quiet "$ctr" "$work/rootfs.tar" / >/dev/null
buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --cmd python3 "$ctr"
buildah commit --quiet --rm "$ctr" "$name" >/dev/null
echo "$name"
