#!/usr/bin/env bash
# auth-demo.sh: access control in token mode, end to end, with real clients.
#
# Usage:
#   scripts/auth-demo.sh                  # uses target/release/oci-registry
#   OCI_REGISTRY=/usr/local/bin/oci-registry PORT=5055 scripts/auth-demo.sh
#   KEEP=1 scripts/auth-demo.sh           # leave the work directory behind
#
# Needs: htpasswd (Debian/Ubuntu: apache2-utils), podman, skopeo, curl.
# Build the registry first if needed: cargo build --release -p oci-registry-bin
#
# What it does, printing each step:
#   1. creates an htpasswd file with bcrypt entries (`htpasswd -B`) for two
#      users with random passwords: `admin` (may do everything) and `alice`
#      (may pull and push `team/**`, only pull everything else);
#   2. writes a configuration for token mode (`[auth] mode = "token"`, the
#      built-in token issuer at /auth/token) and starts `oci-registry serve`
#      with it on 127.0.0.1:$PORT (default 5055), storage in the work
#      directory;
#   3. shows the 401 challenge of `GET /v2/` and a token from /auth/token;
#   4. builds a one-file image with `podman import`, then `podman login`,
#      `podman push`, `podman pull` and `podman logout` as alice;
#   5. copies the image with `skopeo copy --src-creds/--dest-creds` and
#      reads it with `skopeo inspect --creds`;
#   6. shows that alice's push to a pull-only repository is refused;
#   7. stops the registry and removes everything it made (trap on exit,
#      also on Ctrl-C or a failure).
#
# Nothing outside a fresh temporary work directory is touched: podman runs
# with its own --root/--runroot (vfs) and --authfile there, so your images
# and logins are left alone. Plain HTTP on loopback, hence --tls-verify=false;
# in production serve HTTPS ([server.tls]). Passwords go to htpasswd and
# podman on stdin; skopeo's --creds puts them on the command line (visible
# in `ps`), fine for a demo, use --authfile for real.
set -euo pipefail

PORT="${PORT:-5055}"
HOST="127.0.0.1:${PORT}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${OCI_REGISTRY:-${ROOT}/target/release/oci-registry}"

step() { printf '\n== %s\n' "$*"; }
die() { printf 'auth-demo: %s\n' "$*" >&2; exit 1; }

for tool in htpasswd podman skopeo curl; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
[ -x "$BIN" ] || die "no registry binary at $BIN (cargo build --release -p oci-registry-bin, or set OCI_REGISTRY)"
if curl -s -o /dev/null "http://${HOST}/v2/"; then
    die "something already listens on ${HOST}; pick another PORT"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/oci-auth-demo.XXXXXX")"
REGISTRY_PID=""
cleanup() {
    set +e
    if [ -n "$REGISTRY_PID" ]; then
        kill "$REGISTRY_PID" 2>/dev/null && wait "$REGISTRY_PID" 2>/dev/null
    fi
    # vfs layers may hold read-only directories: let podman remove them.
    podman_ rmi --all --force >/dev/null 2>&1
    if [ "${KEEP:-0}" = 1 ]; then
        echo "auth-demo: work directory kept: $WORK"
    else
        podman_ system reset --force >/dev/null 2>&1
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

# podman with storage, auth file and temporary files in the work directory.
podman_() {
    TMPDIR="$WORK" podman --root "$WORK/podman/root" --runroot "$WORK/podman/run" \
        --storage-driver vfs --events-backend none "$@"
}
AUTHFILE="$WORK/auth.json"
remote=(--tls-verify=false --authfile "$AUTHFILE")

password() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }
ADMIN_PW="$(password)"
ALICE_PW="$(password)"

step "1. htpasswd -B: users admin and alice (bcrypt)"
printf '%s' "$ADMIN_PW" | htpasswd -B -i -c "$WORK/htpasswd" admin
printf '%s' "$ALICE_PW" | htpasswd -B -i "$WORK/htpasswd" alice
cut -d: -f1 "$WORK/htpasswd" | sed 's/^/   user: /'

step "2. configuration (token mode) and oci-registry serve"
cat > "$WORK/config.toml" <<EOF
[server]
listen = "${HOST}"

[storage]
url = "${WORK}/data"

[auth]
mode = "token"
htpasswd = "${WORK}/htpasswd"

[auth.token]
service = "oci-registry"
ttl = "5m"

[access]
admins = ["admin"]

[[access.rules]]
repositories = ["team/**"]
users = ["alice"]
actions = ["pull", "push"]

[[access.rules]]
repositories = ["**"]
authenticated = true
actions = ["pull"]
EOF
sed 's/^/   /' "$WORK/config.toml"
"$BIN" config check "$WORK/config.toml" >/dev/null
"$BIN" serve --config "$WORK/config.toml" >"$WORK/registry.log" 2>&1 &
REGISTRY_PID=$!
for _ in $(seq 100); do
    code="$(curl -s -o /dev/null -w '%{http_code}' "http://${HOST}/v2/" || true)"
    [ "$code" = 401 ] && break
    kill -0 "$REGISTRY_PID" 2>/dev/null || { cat "$WORK/registry.log"; die "the registry exited"; }
    sleep 0.1
done
[ "$code" = 401 ] || die "the registry did not answer on ${HOST}"
echo "   registry pid $REGISTRY_PID on http://${HOST} (log: $WORK/registry.log)"

step "3. the challenge, and a token from the built-in issuer"
curl -s -o /dev/null -D - "http://${HOST}/v2/team/demo/tags/list" | grep -i '^www-authenticate' | sed 's/^/   /'
token_json="$(curl -s -u "alice:${ALICE_PW}" \
    "http://${HOST}/auth/token?service=oci-registry&scope=repository:team/demo:pull,push")"
echo "   /auth/token answered: ${token_json:0:60}..."

step "4. podman: import an image, login, push, pull, logout (as alice)"
mkdir -p "$WORK/rootfs"
echo "hello from the auth demo" > "$WORK/rootfs/hello.txt"
tar -C "$WORK/rootfs" -cf "$WORK/rootfs.tar" hello.txt
podman_ import "$WORK/rootfs.tar" localhost/auth-demo:v1 >/dev/null
printf '%s' "$ALICE_PW" | podman_ login "${remote[@]}" --username alice --password-stdin "$HOST"
podman_ push "${remote[@]}" localhost/auth-demo:v1 "${HOST}/team/demo:v1"
podman_ rmi --all --force >/dev/null
podman_ pull "${remote[@]}" "${HOST}/team/demo:v1" >/dev/null
podman_ images --format '   pulled back: {{.Repository}}:{{.Tag}} {{.Digest}}'
podman_ logout --authfile "$AUTHFILE" "$HOST"
if podman_ pull "${remote[@]}" "${HOST}/team/demo:v1" >/dev/null 2>&1; then
    die "a pull after logout succeeded"
fi
echo "   after logout, a pull is refused (as it should be)"

step "5. skopeo: copy and inspect with --src-creds/--dest-creds/--creds"
skopeo --insecure-policy copy --src-tls-verify=false --dest-tls-verify=false \
    --src-creds "alice:${ALICE_PW}" --dest-creds "alice:${ALICE_PW}" \
    "docker://${HOST}/team/demo:v1" "docker://${HOST}/team/demo-copy:v1"
skopeo inspect --tls-verify=false --creds "alice:${ALICE_PW}" \
    --format '   team/demo-copy:v1 is {{.Digest}}' "docker://${HOST}/team/demo-copy:v1"
skopeo --insecure-policy copy --src-tls-verify=false --dest-tls-verify=false \
    --src-creds "alice:${ALICE_PW}" --dest-creds "admin:${ADMIN_PW}" \
    "docker://${HOST}/team/demo:v1" "docker://${HOST}/library/demo:v1"
echo "   admin copied it to library/demo:v1"

step "6. alice may only pull library/**: her push is refused"
if skopeo --insecure-policy copy --src-tls-verify=false --dest-tls-verify=false \
    --src-creds "alice:${ALICE_PW}" --dest-creds "alice:${ALICE_PW}" \
    "docker://${HOST}/team/demo:v1" "docker://${HOST}/library/demo:v2" 2>"$WORK/denied.txt"; then
    die "alice's push to library/demo succeeded"
fi
echo "   refused: $(tail -n1 "$WORK/denied.txt" | cut -c1-140)"

step "7. done: stopping the registry and removing $WORK"
