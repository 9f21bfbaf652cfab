#!/usr/bin/env bash
# Builds the Prometheus 3.x peer of the end-to-end tests (e2e_prom3_test.go)
# from its Go module and prints the binary's path. Debian ships only 2.x.
#
#   bash scripts/build-prometheus3.sh      # -> ~/.cache/fedgate/prometheus-3.5.0/prometheus
#
# Idempotent: when the binary exists it is only printed. Prometheus 3.X.Y is
# the Go module version v0.3XX.Y; v0.305.0 (3.5.0) is the version fedgate's
# go.mod already requires, so a warm module cache needs no download. Anything
# else comes through the Go module proxy, nothing from elsewhere.
#
# The build is a throwaway module in a temp dir that requires
# github.com/prometheus/prometheus as a tool, with the replace directives of
# Prometheus' own go.mod (ignored in a dependency), so the build list is the
# release's. The web UI assets are not embedded (no builtinassets tag): the
# tests use only the remote-write sender and the HTTP API.
#
# Environment: FEDGATE_CACHE (default ~/.cache/fedgate), GO (default go),
# PROMETHEUS3_MODULE_VERSION (default v0.305.0; the test expects this one
# unless FEDGATE_PROMETHEUS3 names the binary).
set -euo pipefail

GO=${GO:-go}
module_version=${PROMETHEUS3_MODULE_VERSION:-v0.305.0}

if [[ ! ${module_version} =~ ^v0\.(3[0-9][0-9])\.([0-9]+)$ ]]; then
	echo "PROMETHEUS3_MODULE_VERSION=${module_version}: want v0.3XX.Y (Prometheus 3.XX.Y)" >&2
	exit 1
fi
minor=$((10#${BASH_REMATCH[1]} - 300))
prom_version="3.${minor}.${BASH_REMATCH[2]}"

cache=${FEDGATE_CACHE:-${HOME}/.cache/fedgate}
dest_dir="${cache}/prometheus-${prom_version}"
bin="${dest_dir}/prometheus"

if [[ -x ${bin} ]]; then
	echo "${bin}"
	exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/fedgate-prometheus3-XXXXXX")
trap 'rm -rf "${work}"' EXIT

echo "building Prometheus ${prom_version} (github.com/prometheus/prometheus@${module_version}) into ${bin}; this takes a few minutes" >&2
cd "${work}"
"${GO}" mod init fedgate.invalid/prometheus3-build >/dev/null 2>&1
# Prometheus pins fsnotify (see its go.mod); a replace in a dependency is
# ignored, so it is repeated here.
"${GO}" mod edit -replace=github.com/fsnotify/fsnotify@v1.8.0=github.com/fsnotify/fsnotify@v1.7.0
"${GO}" get -tool "github.com/prometheus/prometheus/cmd/prometheus@${module_version}"

version_pkg=github.com/prometheus/common/version
"${GO}" build -trimpath -o "${work}/prometheus" \
	-ldflags "-X ${version_pkg}.Version=${prom_version} \
		-X ${version_pkg}.Revision=module-${module_version} \
		-X ${version_pkg}.Branch=go-module \
		-X ${version_pkg}.BuildUser=fedgate/scripts/build-prometheus3.sh \
		-X ${version_pkg}.BuildDate=$(date -u +%Y%m%d-%H:%M:%S)" \
	github.com/prometheus/prometheus/cmd/prometheus
"${work}/prometheus" --version >&2

# Only a complete, working binary reaches the cache path.
mkdir -p "${dest_dir}"
mv "${work}/prometheus" "${bin}.tmp"
mv "${bin}.tmp" "${bin}"
echo "${bin}"
