#!/usr/bin/env bash
# build-dashboard.sh builds the web dashboard (web/dashboard: TypeScript,
# Preact, built by Vite from the npm registry, pinned by its lockfile) into
# internal/dashboard/dist, which sbx embeds and serves at /dashboard/:
#   1. nothing to do when dist/index.html is newer than every source file,
#      the lockfile and this script;
#   2. `npm ci` when node_modules is missing or older than the lockfile;
#   3. type-checks (tsc --noEmit) and builds (vite build);
#   4. prints the gzipped size of the JavaScript and fails above the budget.
# A checkout without Node still builds a server: it answers /dashboard/ with
# 503 and a pointer to this script.
set -euo pipefail
cd "$(dirname "$0")/.."
src=web/dashboard
dist=internal/dashboard/dist
budget=$((250 * 1024)) # bytes of gzipped JavaScript, all chunks together

log() { printf 'build-dashboard: %s\n' "$*" >&2; }
die() { printf 'build-dashboard: error: %s\n' "$*" >&2; exit 1; }

if [ -f "$dist/index.html" ] &&
	[ -z "$(find "$src" "$0" -path "$src/node_modules" -prune -o -type f -newer "$dist/index.html" -print -quit)" ]; then
	log "up to date ($dist)"
	exit 0
fi

command -v node >/dev/null 2>&1 || die "node is not installed: run scripts/setup.sh"
command -v npm >/dev/null 2>&1 || die "npm is not installed: run scripts/setup.sh"
# Vite 6 runs on Node 18 (Debian 12's and Ubuntu 24.04's) and newer.
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' ||
	die "node $(node --version) is too old: Vite needs 18 or newer"

if [ ! -f "$src/node_modules/.package-lock.json" ] || [ "$src/package-lock.json" -nt "$src/node_modules/.package-lock.json" ]; then
	log "npm ci in $src"
	(cd "$src" && npm ci --no-audit --no-fund --loglevel=error) >&2
fi
log "type-checking"
(cd "$src" && ./node_modules/.bin/tsc --noEmit -p .) >&2
log "vite build into $dist"
(cd "$src" && ./node_modules/.bin/vite build --logLevel warn) >&2
[ -f "$dist/index.html" ] || die "vite wrote no $dist/index.html"

total=0
for f in "$dist"/assets/*.js; do
	n="$(gzip -9c "$f" | wc -c)"
	total=$((total + n))
	log "$(printf '%-48s %7d bytes gzipped' "${f#"$dist"/}" "$n")"
done
log "JavaScript: $((total / 1024)) KiB gzipped (budget $((budget / 1024)) KiB)"
[ "$total" -le "$budget" ] || die "the dashboard's JavaScript is over its budget"
touch "$dist/index.html"
