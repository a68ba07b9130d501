#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, unit, golden, CLI and end-to-end tests
# against a real Envoy 1.40 (installed into .venv by scripts/install-envoy.sh) and a real
# kube-apiserver + etcd (built once into ~/.cache by scripts/kube-env.sh, or taken from
# $KUBEBUILDER_ASSETS).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-envoy.sh >/dev/null
scripts/kube-env.sh >/dev/null
cargo fmt --all --check
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --workspace --all-targets --features knative-xds/testing --locked 2>&1 | tee "$log"
# One summary line over every test binary (the last binary alone may have none).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
