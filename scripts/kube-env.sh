#!/usr/bin/env bash
# Provides a real etcd + kube-apiserver for the Kubernetes-source tests (tests/common/kube.rs).
#
# No registry reachable from CI ships a kube-apiserver, so it is built from Debian bookworm's own
# `kubernetes` source package (upstream v1.20.2 with vendor/), see docs in
# ../shared/docs/test-environment.md ("A real kube-apiserver"):
#   - apt installs etcd-server etcd-client golang-go rsync jq openssl
#     golang-github-modern-go-reflect2-dev (plus make/curl/kubectl when absent), only what is missing;
#   - the source is fetched with apt's ordinary client through a private deb-src list (the system's
#     apt configuration is not touched), the vendored reflect2 1.0.1 (crashes under Go >= 1.18) is
#     replaced by Debian's 1.0.2, and `make WHAT=cmd/kube-apiserver` builds the binary;
#   - the result is cached outside the repository in
#     ${XDG_CACHE_HOME:-$HOME/.cache}/knative-xds/kube-1.20.2/ (kube-apiserver, etcd, etcdctl),
#     a folder usable as KUBEBUILDER_ASSETS. The build runs only when the binary is missing, in a
#     temporary folder; the binary is moved into place only after a successful build.
#
# Honours KUBEBUILDER_ASSETS: when it names a folder holding `etcd` and `kube-apiserver`, nothing
# is installed and that folder is printed.
#
# Idempotent. Progress goes to stderr; the last line on stdout is the assets folder.
set -euo pipefail

KUBE_VERSION=1.20.2
DEB_SOURCE_VERSION=1.20.5+really1.20.2-1.1+deb12u1
DEB_MIRROR="${DEB_MIRROR:-http://deb.debian.org/debian}"
DEB_SUITE=bookworm

log() { echo "kube-env: $*" >&2; }

# 1. Bring-your-own binaries (the envtest convention).
if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
    if [ -x "$KUBEBUILDER_ASSETS/etcd" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ]; then
        echo "$KUBEBUILDER_ASSETS"
        exit 0
    fi
    log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks etcd or kube-apiserver; using the cache instead"
fi

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/knative-xds"
assets="$cache_root/kube-$KUBE_VERSION"

if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
export DEBIAN_FRONTEND=noninteractive

# 2. Debian packages, only those missing.
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

need=(etcd-server etcd-client openssl jq)
if [ ! -x "$assets/kube-apiserver" ]; then
    # Only the build needs these.
    need+=(golang-go rsync golang-github-modern-go-reflect2-dev make)
fi
missing=()
for p in "${need[@]}"; do
    installed "$p" || missing+=("$p")
done
# The harness shells out to kubectl and curl; any kubectl will do (Debian's is 1.20.2).
command -v kubectl >/dev/null 2>&1 || installed kubernetes-client || missing+=(kubernetes-client)
command -v curl >/dev/null 2>&1 || installed curl || missing+=(curl)

if [ "${#missing[@]}" -gt 0 ]; then
    # apt-get update only when some package has no install candidate (e.g. empty lists on a
    # fresh container).
    for p in "${missing[@]}"; do
        cand="$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')"
        if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
            log "apt-get update (no candidate for $p)"
            "${sudo[@]}" apt-get update -qq >&2
            break
        fi
    done
    log "apt-get install ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

mkdir -p "$assets"

# 3. kube-apiserver, built from Debian's source package when missing. One build at a time.
if [ ! -x "$assets/kube-apiserver" ]; then
    exec 9>"$cache_root/build.lock"
    flock 9
fi
if [ ! -x "$assets/kube-apiserver" ]; then
    start=$(date +%s)
    work="$(mktemp -d "$cache_root/build.XXXXXX")"
    if [ -z "${KUBE_ENV_KEEP_BUILD:-}" ]; then
        # Go's module cache is read-only; make it removable.
        trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
    else
        log "keeping build folder $work"
    fi
    log "building kube-apiserver v$KUBE_VERSION in $work (takes several minutes)"

    # Private apt configuration: one deb-src line, its own lists folder.
    aptdir="$work/apt"
    mkdir -p "$aptdir/lists/partial" "$work/src"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $DEB_MIRROR $DEB_SUITE main" \
        >"$aptdir/sources.list"
    apt_opts=(-o "Dir::Etc::SourceList=$aptdir/sources.list" -o Dir::Etc::SourceParts=/dev/null
              -o "Dir::State::Lists=$aptdir/lists")
    # As root, apt would drop to user _apt, who cannot enter $HOME/.cache: say so up front
    # instead of getting a warning.
    [ "$(id -u)" -ne 0 ] || apt_opts+=(-o APT::Sandbox::User=root)
    apt-get "${apt_opts[@]}" update -qq >&2
    (
        cd "$work/src"
        if ! apt-get "${apt_opts[@]}" source --download-only "kubernetes=$DEB_SOURCE_VERSION" >&2; then
            log "kubernetes=$DEB_SOURCE_VERSION not found; trying the current kubernetes source package"
            apt-get "${apt_opts[@]}" source --download-only kubernetes >&2
        fi
    )
    orig="$(ls "$work"/src/kubernetes_*really"$KUBE_VERSION".orig.tar.* 2>/dev/null | head -n1 || true)"
    [ -n "$orig" ] || { log "no kubernetes_*really$KUBE_VERSION.orig tarball downloaded"; exit 1; }
    mkdir "$work/tree"
    tar -xf "$orig" -C "$work/tree" --strip-components=1
    tree="$work/tree"

    # Required fix: vendored reflect2 1.0.1 faults under Go >= 1.18 on the first CR write.
    r2src=/usr/share/gocode/src/github.com/modern-go/reflect2
    r2dst="$tree/vendor/github.com/modern-go/reflect2"
    [ -d "$r2src" ] || { log "$r2src missing (golang-github-modern-go-reflect2-dev)"; exit 1; }
    rm -rf "$r2dst"
    mkdir -p "$r2dst"
    for f in "$r2src"/*.go "$r2src"/*.s; do
        [ -e "$f" ] || continue
        case "$f" in *_test.go) continue ;; esac
        cp "$f" "$r2dst/"
    done

    (
        cd "$tree"
        export GOCACHE="$work/gocache" GOPATH="$work/gopath" GOFLAGS=-mod=vendor GOPROXY=off
        export CGO_ENABLED=0
        # No .git in the tarball: state the version (else it reads v0.0.0-master).
        cat >"$work/version.env" <<EOV
KUBE_GIT_COMMIT=''
KUBE_GIT_TREE_STATE=clean
KUBE_GIT_VERSION=v$KUBE_VERSION
KUBE_GIT_MAJOR=${KUBE_VERSION%%.*}
KUBE_GIT_MINOR=$(echo "$KUBE_VERSION" | cut -d. -f2)
EOV
        export KUBE_GIT_VERSION_FILE="$work/version.env"
        make WHAT=cmd/kube-apiserver GOLDFLAGS="-s -w" >&2
    )
    built="$tree/_output/bin/kube-apiserver"
    [ -x "$built" ] || { log "build produced no $built"; exit 1; }
    "$built" --version >&2
    # Same filesystem as $assets: the rename is atomic, so no half binary is ever visible.
    mv "$built" "$assets/kube-apiserver.tmp"
    mv "$assets/kube-apiserver.tmp" "$assets/kube-apiserver"
    log "built kube-apiserver in $(( $(date +%s) - start )) s"
fi

# 4. etcd / etcdctl next to it, so the folder works as KUBEBUILDER_ASSETS.
for b in etcd etcdctl; do
    src="$(command -v "$b" || true)"
    [ -n "$src" ] || src="/usr/bin/$b"
    [ -x "$src" ] || { log "$b not found"; exit 1; }
    if [ "$(readlink "$assets/$b" 2>/dev/null)" != "$src" ]; then
        ln -sfn "$src" "$assets/$b"
    fi
done

echo "$assets"
