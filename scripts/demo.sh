#!/usr/bin/env bash
# The demo: builds knative-xds, installs Envoy into .venv if missing, starts the demo
# upstreams, the control plane and an Envoy gateway for one example, and prints curl lines.
#   scripts/demo.sh [examples/<name>] [--delta]       (default: examples/traffic-example)
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

example=examples/traffic-example
bootstrap=envoy/bootstrap.yaml
for arg in "$@"; do
    case "$arg" in
        --delta) bootstrap=envoy/bootstrap-delta.yaml ;;
        *) example="$arg" ;;
    esac
done
[ -d "$example" ] || { echo "no such example folder: $example" >&2; exit 2; }

envoy="$(scripts/install-envoy.sh)"
cargo build -p knative-xds -p demo-upstream

logs="$(mktemp -d)"
# Serve a copy, so the example can be edited live without touching the repository.
manifests="$logs/manifests"
cp -r "$example" "$manifests"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

target/debug/demo-upstream --manifests "$manifests" >"$logs/upstream.log" 2>&1 & pids+=($!)
target/debug/knative-xds serve --manifests "$manifests" 2>"$logs/knative-xds.log" & pids+=($!)
for _ in $(seq 100); do
    curl -fs http://127.0.0.1:9090/readyz >/dev/null && break
    sleep 0.1
done
"$envoy" -c "$bootstrap" --disable-hot-restart -l warning >"$logs/envoy.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do
    [ "$(curl -s http://127.0.0.1:9901/ready)" = "LIVE" ] && break
    sleep 0.1
done

cat <<MSG

knative-xds is serving $example to Envoy ($bootstrap).
  external listener  http://127.0.0.1:8080   internal listener  http://127.0.0.1:8081
  control plane      http://127.0.0.1:9090/debug/snapshot  /debug/proxies  /metrics
  Envoy admin        http://127.0.0.1:9901
  logs               $logs
Edit the files in $manifests (a copy of $example): Envoy follows within milliseconds.
Step files for the walkthroughs are in examples/steps/ (copy them into that folder).

Try:
MSG
sed -n '/^## Try/,$p' "$example/README.md" | sed '1d'
echo
echo "Ctrl-C to stop."
wait
