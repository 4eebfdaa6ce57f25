#!/usr/bin/env bash
# Makes the local Debian base image the Dockerfiles build from where no image
# registry is reachable (these dev machines reach package mirrors only).
#
#   scripts/docker-base.sh [IMAGE]     default IMAGE: hs-debian:bookworm
#
# debootstrap (minbase variant: apt, dpkg, bash, coreutils) of Debian bookworm from
# the mirror apt already uses, then `docker import`. About a minute. Operators with
# internet need none of this: the Dockerfiles default to the official images.
# Idempotent: an existing image is kept (remove it with `docker rmi` to rebuild).

set -euo pipefail

IMAGE=${1:-hs-debian:bookworm}
SUITE=bookworm

say() { printf 'docker-base: %s\n' "$*" >&2; }
die() { printf 'docker-base: error: %s\n' "$*" >&2; exit 1; }

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    say "$IMAGE already exists"
    exit 0
fi
((EUID == 0)) || die "debootstrap needs root"
command -v debootstrap >/dev/null || {
    say "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
}

# The mirror apt uses: deb822 sources first, then the one-line format.
mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -v security | head -n 1 || true)
if [[ -z $mirror ]]; then
    mirror=$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
fi
[[ -n $mirror ]] || mirror=http://deb.debian.org/debian
say "debootstrap --variant=minbase $SUITE from $mirror"

rootfs=$(mktemp -d /tmp/hs-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
    tail -n 20 "$rootfs.log" >&2
    die "debootstrap failed (log $rootfs.log)"
}
rm -f "$rootfs.log"
# The same slimming as the official debian:*-slim images: no apt lists, no docs.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
tar -C "$rootfs" -c . | docker import --change 'CMD ["bash"]' - "$IMAGE" >/dev/null
say "made $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
