#!/usr/bin/env sh
# Install the FinOps Foundation's focus-validator into its own virtualenv, .venv-focus-validator/,
# for the tests that check costeff's generated FOCUS files against it.
#
# Why a separate environment: focus-validator 1.0.0 (the only release) requires numpy<2 and
# pandas<3, while costeff's environment has numpy 2 and pandas 3 (onnxruntime, OpenVINO, MLServer).
# Installing it there would downgrade both. Its pandera 0.17 also breaks with multimethod 2
# ("cannot import name 'overload'"), hence the pin below.
set -eu
PYTHON="${PYTHON:-python3}"
DEST="${1:-.venv-focus-validator}"
if [ -x "$DEST/bin/focus-validator" ]; then
    exit 0
fi
echo "installing focus-validator into $DEST (used by the FOCUS import tests)..." >&2
"$PYTHON" -m venv "$DEST"
"$DEST/bin/pip" install -q 'focus-validator==1.0.0' 'multimethod<1.11'
"$DEST/bin/focus-validator" --supported-versions >/dev/null
