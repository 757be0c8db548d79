#!/usr/bin/env bash
# install.sh installs sbx on this host (Debian 12 or Ubuntu 24.04, as root)
# and starts `sbx serve` with its defaults on 127.0.0.1:49982:
#   1. scripts/setup.sh --run: packages, Go, runc, runsc (not what only the
#      tests need);
#   2. builds the web dashboard, then sbx and sbx-agent into /usr/local/bin;
#   3. starts sbx serve (a systemd unit where systemd runs, else a background
#      process logging to /var/log/sbx.log) and waits until it is ready: the
#      first start builds the base template (about a minute);
#   4. on first start, prints the admin API key once. It is not stored
#      anywhere but as a hash in sbx's database.
# Re-running it upgrades the binaries and restarts the server; sandboxes keep
# running.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "install: must run as root" >&2; exit 1; }

./scripts/setup.sh --run
export PATH="$PATH:/usr/local/go/bin"
./scripts/build-dashboard.sh # the web dashboard, embedded in sbx
./scripts/build.sh /usr/local/bin

data_dir="${SBX_DATA_DIR:-/var/lib/sbx}"
listen="${SBX_LISTEN:-127.0.0.1:49982}"
key=""
if [ ! -e "$data_dir/sbx.db" ] && [ -z "${SBX_API_KEY:-}" ]; then
	key="e2b_$(od -An -tx1 -N20 /dev/urandom | tr -d ' \n')"
fi

if [ -d /run/systemd/system ]; then
	cat >/etc/systemd/system/sbx.service <<UNIT
[Unit]
Description=sbx sandbox server
After=network-online.target

[Service]
ExecStart=/usr/local/bin/sbx serve --listen $listen --data-dir $data_dir
# Sandboxes are not children of the server: stopping or restarting it must
# not kill them.
KillMode=process
Restart=on-failure
LimitNOFILE=1048576

[Install]
WantedBy=multi-user.target
UNIT
	if [ -n "$key" ]; then
		# First start only: the key lives in /run (tmpfs) until sbx has
		# stored its hash.
		mkdir -p /run/systemd/system/sbx.service.d
		printf '[Service]\nEnvironment=SBX_API_KEY=%s\n' "$key" >/run/systemd/system/sbx.service.d/first-key.conf
	fi
	systemctl daemon-reload
	systemctl enable sbx.service >/dev/null 2>&1 || true
	systemctl restart sbx.service
	follow="journalctl -fu sbx"
else
	if [ -f /run/sbx.pid ] && kill -0 "$(cat /run/sbx.pid)" 2>/dev/null; then
		kill "$(cat /run/sbx.pid)"
		while kill -0 "$(cat /run/sbx.pid)" 2>/dev/null; do sleep 0.2; done
	fi
	SBX_API_KEY="${key:-${SBX_API_KEY:-}}" nohup /usr/local/bin/sbx serve --listen "$listen" --data-dir "$data_dir" >>/var/log/sbx.log 2>&1 &
	echo $! >/run/sbx.pid
	follow="tail -f /var/log/sbx.log"
fi

echo "install: waiting for sbx serve to be ready (the first start builds the base template; follow with: $follow)" >&2
for _ in $(seq 1 900); do
	if curl -fsS "http://$listen/health" >/dev/null 2>&1; then
		rm -f /run/systemd/system/sbx.service.d/first-key.conf
		echo "install: sbx is ready at http://$listen" >&2
		if [ -n "$key" ]; then
			printf '\nAdmin API key (shown only this once):\n\n  export SBX_URL=http://%s\n  export SBX_API_KEY=%s\n\n' "$listen" "$key"
		fi
		exit 0
	fi
	sleep 1
done
echo "install: sbx did not become ready in 15 minutes; see: $follow" >&2
exit 1
