#!/usr/bin/env bash
# Installs the real peers that the end-to-end tests (e2e_test.go) run against:
# prometheus (server and Agent mode) and vmagent, from the Debian/Ubuntu
# packages "prometheus" and "victoria-metrics".
#
# The packages' postinst scripts start system services on the default ports
# (9090, 8428). With systemd that is harmless: a failed start is ignored, and
# the tests run every peer on free ports with their own config and data
# directories. Without systemd (containers), postinst starts the SysV init
# script and fails the install if that start fails, so there, unless a
# /usr/sbin/policy-rc.d already decides, a temporary one (exit 101, the Debian
# convention for "do not start services") is in place during the install.
set -euo pipefail

packages=(prometheus victoria-metrics)

have_peers() {
	command -v prometheus >/dev/null 2>&1 && command -v vmagent >/dev/null 2>&1
}

if have_peers; then
	echo "test peers present: $(command -v prometheus) $(command -v vmagent)"
	exit 0
fi

if [[ ${EUID} -ne 0 ]]; then
	echo "test peers missing (prometheus, vmagent); install them with:" >&2
	echo "  sudo apt-get update && sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y ${packages[*]}" >&2
	echo "or run this script as root: sudo $0" >&2
	exit 1
fi

if [[ ! -d /run/systemd/system && ! -e /usr/sbin/policy-rc.d ]]; then
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
fi

apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"

if ! have_peers; then
	echo "installed ${packages[*]}, but prometheus or vmagent is still not on PATH" >&2
	exit 1
fi
echo "test peers installed: $(command -v prometheus) $(command -v vmagent)"
