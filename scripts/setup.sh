#!/usr/bin/env bash
# setup.sh prepares a host (Debian 12 or Ubuntu 24.04, as root) to build, test
# and run sbx:
#   1. the apt packages sbx and its tests need (skipped when all are present);
#   2. Go >= 1.26 (the official toolchain, only when go is missing or older);
#   3. runc v1.5.2 built with seccomp, at /usr/local/lib/sbx/runc (Debian's
#      runc is too old, and sbx refuses to run boxes without seccomp);
#   4. gVisor's runsc, pinned, patched and built static by
#      scripts/build-runsc.sh, at /usr/local/lib/sbx/runsc;
#   5. on cgroup v1 (hybrid) hosts only: Debian's kernel and modules,
#      unpacked (not installed) under /usr/local/lib/sbx/vm, for the test VM
#      that runs sbx on a pure cgroup v2 system (tests/vm);
#   6. SeaweedFS's weed, pinned, built static, at /usr/local/lib/sbx/weed:
#      the S3-compatible server the object storage tests run against
#      (tests/harness starts it; setup.sh does not).
# It is idempotent and takes seconds when everything is already in place. It
# starts nothing: no daemons, no services.
#
# setup.sh --run prepares a host to build and run sbx only (what
# scripts/install.sh needs): it leaves out what only the tests use, the
# packages marked so below, the test VM's kernel (5) and weed (6).
set -euo pipefail

tests=1
case "${1:-}" in
--run) tests=0 ;;
"") ;;
*) echo "usage: setup.sh [--run]" >&2; exit 2 ;;
esac

GO_MIN_MINOR=26 # Go 1.26 or newer
GO_TOOLCHAIN_URL="https://proxy.golang.org/golang.org/toolchain/@v/v0.0.1-go1.26.8.linux-amd64.zip"
RUNC_VERSION=1.5.2
RUNC_DIR=/usr/local/lib/sbx
RUNC_BIN="$RUNC_DIR/runc"
# gVisor publishes no Go module tags; the go branch's pseudo-version pins it.
RUNSC_VERSION=v0.0.0-20260905035102-160fafc42237
RUNSC_BIN="$RUNC_DIR/runsc"
# SeaweedFS publishes Go module pseudo-versions; this one is pinned.
WEED_VERSION=v0.0.0-20261109003541-7506e5f91cd6
WEED_BIN="$RUNC_DIR/weed"

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root"

# --- 1. apt packages --------------------------------------------------------
pkgs=(debootstrap debian-archive-keyring libseccomp-dev pkg-config gcc git
	ca-certificates curl iproute2 protobuf-compiler libprotobuf-dev e2fsprogs mount
	dpkg-dev)
if [ "$tests" = 1 ]; then
	pkgs+=(
		# tests/vm boots a cgroup v2 guest under QEMU.
		qemu-system-x86
		# internal/interp's unit tests run the code interpreter's server
		# against a real ipykernel on the host (the template has its own).
		python3-ipykernel python3-matplotlib python3-pandas
		# ... and against a real IRkernel for R contexts.
		r-base-core r-cran-irkernel
		# The store's tests, and the e2e tests of sbx serve --store
		# postgres://, run a private PostgreSQL cluster (internal/pgtest)
		# from these binaries.
		postgresql
		# tests/dashboard drives the web dashboard in Debian's headless
		# Chromium through playwright-core (which downloads no browser).
		chromium)
fi
# nodejs/npm only when there is no node at all: hosts with a newer node from
# elsewhere (nodesource, nvm) keep it.
if ! command -v node >/dev/null 2>&1; then
	pkgs+=(nodejs npm)
fi
missing=()
for p in "${pkgs[@]}"; do
	if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
		missing+=("$p")
	fi
done
if [ "${#missing[@]}" -gt 0 ]; then
	log "installing packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# Debian's postgresql package makes and starts a "main" cluster unless
	# told not to; the tests start their own, and this script starts nothing.
	if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
		mkdir -p /etc/postgresql-common/createcluster.d
		printf 'create_main_cluster = false\n' >/etc/postgresql-common/createcluster.d/sbx.conf
	fi
	apt-get update -qq >&2
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
else
	log "packages: all present"
fi

# --- 2. Go ------------------------------------------------------------------
# go_ok succeeds when the go on PATH (or in /usr/local/go) is >= 1.$GO_MIN_MINOR.
export PATH="$PATH:/usr/local/go/bin"
go_ok() {
	local v
	command -v go >/dev/null 2>&1 || return 1
	v="$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null)" || return 1 # e.g. go1.26.8
	v="${v#go}"
	local major="${v%%.*}" rest="${v#*.}"
	local minor="${rest%%[!0-9]*}"
	[ "$major" -gt 1 ] || { [ "$major" -eq 1 ] && [ "${minor:-0}" -ge "$GO_MIN_MINOR" ]; }
}
if go_ok; then
	log "go: $(GOTOOLCHAIN=local go env GOVERSION) ok"
else
	log "go: installing go1.26.8 into /usr/local/go"
	command -v unzip >/dev/null 2>&1 || {
		export DEBIAN_FRONTEND=noninteractive
		apt-get install -y -qq --no-install-recommends unzip >&2 ||
			{ apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends unzip >&2; }
	}
	tmp="$(mktemp -d)"
	trap 'rm -rf "$tmp"' EXIT
	curl -fsSL -o "$tmp/go.zip" "$GO_TOOLCHAIN_URL"
	unzip -q "$tmp/go.zip" -d "$tmp/x"
	# A module zip holds golang.org/toolchain@v0.0.1-go1.26.8.linux-amd64/{bin,src,...}
	# and carries no file modes, so the executables get theirs back below.
	src="$tmp/x/golang.org/toolchain@${GO_TOOLCHAIN_URL##*/@v/}"
	src="${src%.zip}"
	[ -x "$src/bin/go" ] || die "unexpected toolchain zip layout"
	chmod -R u+w "$src"
	chmod 0755 "$src/bin/"* "$src/pkg/tool/"*/* 2>/dev/null || true
	rm -rf /usr/local/go.new /usr/local/go.old
	mv "$src" /usr/local/go.new
	[ -d /usr/local/go ] && mv /usr/local/go /usr/local/go.old
	mv /usr/local/go.new /usr/local/go
	rm -rf /usr/local/go.old
	go_ok || die "go still missing or too old after install"
	log "go: $(go env GOVERSION) installed (add /usr/local/go/bin to PATH)"
fi

# --- 3. runc ----------------------------------------------------------------
runc_ok() {
	[ -x "$RUNC_BIN" ] || return 1
	local out
	out="$("$RUNC_BIN" --version 2>/dev/null)" || return 1
	grep -q "^runc version $RUNC_VERSION\$" <<<"$out" || return 1
	# A runc built without the seccomp tag prints no libseccomp line and would
	# silently ignore the seccomp profile sbx gives every box.
	grep -q '^libseccomp: ' <<<"$out"
}
if runc_ok; then
	log "runc: $RUNC_VERSION with seccomp ok"
else
	log "runc: building v$RUNC_VERSION with seccomp into $RUNC_BIN"
	gobin="$(mktemp -d)"
	# Built outside any module so the caller's go.mod cannot interfere.
	(cd "$gobin" && CGO_ENABLED=1 GOBIN="$gobin" GOTOOLCHAIN=local GOFLAGS= \
		go install -tags seccomp "github.com/opencontainers/runc@v$RUNC_VERSION") >&2
	install -d -m 0755 "$RUNC_DIR"
	install -m 0755 "$gobin/runc" "$RUNC_BIN.new"
	mv -f "$RUNC_BIN.new" "$RUNC_BIN"
	rm -rf "$gobin"
	runc_ok || die "runc at $RUNC_BIN does not report $RUNC_VERSION with seccomp"
	log "runc: installed"
fi

# --- 4. runsc (gVisor) ------------------------------------------------------
# scripts/build-runsc.sh builds it from the module source with sbx's patches
# (scripts/patches: the Sentry's task limit, which enforces a box's pids
# limit) and stamps its version RUNSC_VERSION+sbxN, which sbx requires. It
# is static (CGO_ENABLED=0): runsc re-executes itself (/proc/self/exe)
# after chrooting into an empty directory, where a dynamically linked runsc
# finds no loader and fails with "fork/exec /proc/self/exe: no such file or
# directory". The installed version is also recorded beside the binary.
# A runsc of another version, or unpatched (an older setup.sh's, which
# reports plain RUNSC_VERSION or VERSION_MISSING), is replaced.
runsc_want="$("$(dirname "$0")/build-runsc.sh" --version "$RUNSC_VERSION")"
runsc_ok() {
	[ -x "$RUNSC_BIN" ] || return 1
	[ "$(cat "$RUNSC_BIN.version" 2>/dev/null)" = "$runsc_want" ] || return 1
	[ "$("$RUNSC_BIN" --version 2>/dev/null | sed -n '1s/^runsc version //p')" = "$runsc_want" ] || return 1
	# Must be static: no program interpreter (readelf is binutils, which gcc
	# above pulls in).
	! readelf -l "$RUNSC_BIN" 2>/dev/null | grep -q 'INTERP'
}
if runsc_ok; then
	log "runsc: $runsc_want ok"
else
	log "runsc: building $runsc_want (patched, static) into $RUNSC_BIN (about 6 minutes)"
	install -d -m 0755 "$RUNC_DIR"
	# build-runsc.sh writes OUT.new and renames it: running boxes keep
	# their binary, and new ones never see a partial file.
	"$(dirname "$0")/build-runsc.sh" "$RUNSC_VERSION" "$RUNSC_BIN"
	printf '%s\n' "$runsc_want" >"$RUNSC_BIN.version.new"
	mv -f "$RUNSC_BIN.version.new" "$RUNSC_BIN.version"
	runsc_ok || die "runsc at $RUNSC_BIN does not run, does not report $runsc_want or is not static"
	log "runsc: installed"
fi

# --- 5. test VM kernel ------------------------------------------------------
# tests/vm boots this kernel under QEMU (TCG) with a cgroup v2 hierarchy. It
# is unpacked from Debian's package, never installed: the host's boot set-up
# is not touched.
# On a cgroup v2 host the whole suite already runs on v2 and tests/vm says
# so instead of booting a guest.
VM_DIR=/usr/local/lib/sbx/vm
if [ "$tests" = 0 ]; then
	log "vm kernel: skipped (--run)"
elif [ -f /sys/fs/cgroup/cgroup.controllers ]; then
	log "vm kernel: not needed (this host is cgroup v2)"
elif [ -f "$VM_DIR/vmlinuz" ] && [ -d "$VM_DIR/lib/modules" ]; then
	log "vm kernel: $(cat "$VM_DIR/version" 2>/dev/null) ok"
else
	pkg="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
	[ -n "$pkg" ] || { apt-get update -qq >&2; pkg="$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"; }
	[ -n "$pkg" ] || die "cannot find Debian's linux-image-amd64 package (the cgroup v2 test VM needs it on cgroup v1 hosts)"
	log "vm kernel: fetching $pkg"
	tmp="$(mktemp -d)"
	(cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$pkg" >&2)
	dpkg-deb -x "$tmp"/linux-image-*.deb "$tmp/x"
	ver="$(ls "$tmp/x/lib/modules")"
	rm -rf "$VM_DIR.new"
	install -d -m 0755 "$VM_DIR.new/lib/modules"
	mv "$tmp/x/boot/vmlinuz-$ver" "$VM_DIR.new/vmlinuz"
	mv "$tmp/x/lib/modules/$ver" "$VM_DIR.new/lib/modules/$ver"
	echo "$ver" >"$VM_DIR.new/version"
	rm -rf "$VM_DIR" "$tmp"
	mv "$VM_DIR.new" "$VM_DIR"
	log "vm kernel: $ver installed"
fi

# --- 6. weed (SeaweedFS) ---------------------------------------------------
# `go install weed@VERSION` refuses the module: its go.mod has a replace
# directive. So the module's source is fetched through the module proxy and
# built as the main module, where its go.mod and go.sum apply as its
# authors meant. Static, like runsc. The version is recorded beside it.
weed_ok() {
	[ -x "$WEED_BIN" ] || return 1
	[ "$(cat "$WEED_BIN.version" 2>/dev/null)" = "$WEED_VERSION" ] || return 1
	"$WEED_BIN" version >/dev/null 2>&1
}
if [ "$tests" = 0 ]; then
	log "weed: skipped (--run)"
elif weed_ok; then
	log "weed: $WEED_VERSION ok"
else
	log "weed: building github.com/seaweedfs/seaweedfs/weed@$WEED_VERSION (static) into $WEED_BIN (several minutes)"
	tmp="$(mktemp -d)"
	src="$(cd "$tmp" && GOFLAGS= GOTOOLCHAIN=local go mod download -json "github.com/seaweedfs/seaweedfs@$WEED_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
	[ -d "$src" ] || die "cannot download github.com/seaweedfs/seaweedfs@$WEED_VERSION"
	cp -r "$src" "$tmp/src"
	chmod -R u+w "$tmp/src"
	log "weed: compiling"
	(cd "$tmp/src" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod \
		go build -o "$tmp/weed" ./weed) >&2
	install -d -m 0755 "$RUNC_DIR"
	install -m 0755 "$tmp/weed" "$WEED_BIN.new"
	mv -f "$WEED_BIN.new" "$WEED_BIN"
	printf '%s\n' "$WEED_VERSION" >"$WEED_BIN.version"
	rm -rf "$tmp"
	weed_ok || die "weed at $WEED_BIN does not run"
	log "weed: installed"
fi

log "done"
