#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, unit, golden, CLI and end-to-end tests
# (the latter against a real Envoy 1.40, installed into .venv by scripts/install-envoy.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-envoy.sh >/dev/null
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
