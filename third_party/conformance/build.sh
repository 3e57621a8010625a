#!/usr/bin/env bash
# Builds the official OCI distribution-spec conformance suite (v1.1.1) from
# the sources vendored beside this script plus Debian's Go packages, offline
# apart from apt. Prints the path of the built `conformance.test` as the
# only line on stdout (progress goes to stderr), so:
#
#   OCI_CONFORMANCE_BIN=$(bash third_party/conformance/build.sh)
#
# Output: $CARGO_TARGET_DIR (else <repo>/target) /conformance-suite/
# conformance.test, with the Go build cache in go-cache/ next to it.
# See README.md in this folder for what is vendored and why.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
out="$target/conformance-suite"

# Debian provides the Go toolchain and every dependency not vendored here
# (found with `go list -test -deps` on the conformance package).
packages=(
    golang-go
    golang-github-asaskevich-govalidator-dev
    golang-github-go-logr-logr-dev
    golang-github-go-resty-resty-dev
    golang-github-google-go-cmp-dev
    golang-github-google-uuid-dev
    golang-github-mitchellh-mapstructure-dev
    golang-github-opencontainers-go-digest-dev
    golang-golang-x-net-dev
    golang-golang-x-sys-dev
    golang-golang-x-text-dev
    golang-gopkg-yaml.v3-dev
)
missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "conformance build: installing ${missing[*]}" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        "${missing[@]}" >&2
fi

go=go
if ! command -v go >/dev/null; then go=/usr/lib/go/bin/go; fi

mkdir -p "$out"
echo "conformance build: $("$go" version)" >&2
# GOPATH mode: the vendored tree first, then Debian's Go sources. Nothing is
# downloaded (GOPROXY=off) and nothing is written outside $out.
cd "$here/src/github.com/opencontainers/distribution-spec/conformance"
env GO111MODULE=off GOFLAGS= GOPROXY=off GOTOOLCHAIN=local \
    GOPATH="$here:/usr/share/gocode" GOCACHE="$out/go-cache" \
    CGO_ENABLED=0 \
    "$go" test -c -o "$out/conformance.test" . >&2
echo "$out/conformance.test"
