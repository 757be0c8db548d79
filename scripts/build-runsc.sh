#!/usr/bin/env bash
# build-runsc.sh VERSION OUT builds gVisor's runsc at the Go module
# pseudo-version VERSION (gvisor.dev/gvisor publishes no tags), with sbx's
# patches applied, into the file OUT:
#   1. downloads the module source through the module proxy (go mod
#      download; nothing when it is already in the module cache) and copies
#      it to a temporary directory;
#   2. applies scripts/patches/gvisor-*.patch: today gvisor-task-limit.patch,
#      which gives the Sentry a task limit read from the OCI annotation
#      dev.sbx.pids.max (the host's pids cgroup cannot bound a gVisor box's
#      tasks: they are goroutines of the Sentry);
#   3. builds runsc static (CGO_ENABLED=0: runsc re-executes itself after
#      chrooting into an empty directory, where a dynamically linked runsc
#      finds no loader) and stamps its version VERSION+PATCHLEVEL, which
#      `runsc --version` reports and sbx checks for (it refuses a runsc
#      without "+sbx").
# It writes OUT only once the build succeeded (OUT.new, then a rename).
# The build takes minutes; progress goes to stderr.
#
# build-runsc.sh --version VERSION prints the version a build of VERSION
# gets stamped with, and builds nothing (setup.sh compares it with the
# installed runsc's).
set -euo pipefail

# PATCHLEVEL names the patch set: bump it whenever a patch changes, so that
# setup.sh replaces a runsc built with the previous ones.
PATCHLEVEL=sbx1

log() { printf 'build-runsc: %s\n' "$*" >&2; }
die() { printf 'build-runsc: error: %s\n' "$*" >&2; exit 1; }
usage() { echo "usage: build-runsc.sh VERSION OUT | --version VERSION" >&2; exit 2; }

if [ "${1:-}" = "--version" ]; then
	[ $# -eq 2 ] || usage
	printf '%s+%s\n' "$2" "$PATCHLEVEL"
	exit 0
fi
[ $# -eq 2 ] || usage
version=$1
out=$2
stamp="$version+$PATCHLEVEL"
patches="$(cd "$(dirname "$0")" && pwd)/patches"
command -v go >/dev/null 2>&1 || die "go is not installed: run scripts/setup.sh"
command -v git >/dev/null 2>&1 || die "git is not installed: run scripts/setup.sh"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

log "1/3 fetching gvisor.dev/gvisor@$version"
src="$(cd "$tmp" && GOFLAGS= GOTOOLCHAIN=local go mod download -json "gvisor.dev/gvisor@$version" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[ -n "$src" ] && [ -d "$src" ] || die "go mod download gvisor.dev/gvisor@$version gave no source directory"
cp -r "$src" "$tmp/src"
chmod -R u+w "$tmp/src"

log "2/3 applying patches"
shopt -s nullglob
n=0
for p in "$patches"/gvisor-*.patch; do
	log "  $(basename "$p")"
	(cd "$tmp/src" && git apply -p1 "$p") || die "$(basename "$p") does not apply to gvisor.dev/gvisor@$version"
	n=$((n + 1))
done
[ "$n" -gt 0 ] || die "no patches in $patches"

log "3/3 building runsc $stamp (static; several minutes)"
# go build -v names each package as it compiles it: count them here, and
# pass anything else (compiler errors) through.
(cd "$tmp/src" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false \
	go build -v -trimpath -o "$tmp/runsc" \
	-ldflags "-X gvisor.dev/gvisor/runsc/version.version=$stamp" ./runsc 2>&1) |
	awk '/^[A-Za-z0-9._~\/-]+$/ { n++; if (n % 100 == 0) { printf "build-runsc:   %d packages compiled\n", n > "/dev/stderr" }; next }
	     { print > "/dev/stderr" }'
[ -x "$tmp/runsc" ] || die "go build of runsc failed"
got="$("$tmp/runsc" --version 2>/dev/null | sed -n '1s/^runsc version //p')"
[ "$got" = "$stamp" ] || die "the built runsc reports version \"$got\", want \"$stamp\""
if readelf -l "$tmp/runsc" 2>/dev/null | grep -q INTERP; then
	die "the built runsc is not static"
fi

install -d "$(dirname "$out")"
install -m 0755 "$tmp/runsc" "$out.new"
mv -f "$out.new" "$out"
log "built $out ($stamp)"
