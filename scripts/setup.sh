#!/usr/bin/env bash
# Set up a machine for clusterctl: the real servers it renders for (Debian packages) and a
# virtualenv with clusterctl and its test tools. Safe to run again; it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(haproxy nginx libnginx-mod-http-lua apache2 keepalived openssh-server openssh-client iproute2 curl wrk socat procps psmisc openssl util-linux sudo mariadb-server mariadb-client)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${missing[*]}; run: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Debian starts the packaged services on install where an init system runs; clusterctl's tests
# and lab start their own, so stop the system copies if any are running.
for svc in haproxy nginx apache2; do
  if pgrep -x "$svc" >/dev/null 2>&1 && command -v service >/dev/null; then
    service "$svc" stop >/dev/null 2>&1 || true
  fi
done

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
# Byte-compile clusterctl once: where PYTHONDONTWRITEBYTECODE is set, every command would
# otherwise compile its sources again (about 50 ms a command); a stale file is never used.
.venv/bin/python -m compileall -q clusterctl >/dev/null
