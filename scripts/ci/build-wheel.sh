#!/usr/bin/env bash
# Builds the project wheel once, with a version that identifies the commit, for every deploy:
#
#   bash build-wheel.sh [OUT_DIR]        (default: dist)
#
# The version is pyproject's version plus a PEP 440 local label naming the commit,
# e.g. 0.1.0+g1a2b3c4d5e6f (commit from BUILD_SOURCEVERSION on Azure Pipelines, else
# `git rev-parse HEAD`; "+local" outside a git checkout). pyproject.toml is not modified: the
# wheel is built from a temporary copy of pyproject.toml, README.md and src/. OUT_DIR is emptied
# first (one wheel, so `dist/*.whl` matches exactly it), and OUT_DIR/SHA256SUMS records the wheel's
# sha256 for scripts/ci/bundle-deploy-and-run.sh to check and print.
#   bash build-wheel.sh --print-version   prints the version only.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$CI_ROOT"

base="$(sed -nE 's/^version *= *"([^"+]+)".*/\1/p' pyproject.toml | head -n 1)"
[ -n "$base" ] || ci_die "no static version = \"...\" in pyproject.toml"
commit="${BUILD_SOURCEVERSION:-}"
ci_is_set "$commit" || commit="$(git rev-parse HEAD 2>/dev/null || true)"
if [[ "$commit" =~ ^[0-9a-fA-F]{7,40}$ ]]; then
  version="$base+g$(printf '%s' "${commit:0:12}" | tr 'A-F' 'a-f')"
else
  version="$base+local"
fi
if [ "${1:-}" = "--print-version" ]; then echo "$version"; exit 0; fi

out="${1:-dist}"
case "$out" in /*) ;; *) out="$CI_ROOT/$out" ;; esac
py="$(ci_python)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -R pyproject.toml src "$work/"
[ -f README.md ] && cp README.md "$work/"
find "$work" -name '__pycache__' -type d -prune -exec rm -rf {} +
sed -i.orig -E "s/^version *= *\"[^\"]*\"/version = \"$version\"/" "$work/pyproject.toml"

ci_section "build the wheel spark-mlops $version"
rm -rf "$out"
mkdir -p "$out"
"$py" -m pip wheel --no-deps --disable-pip-version-check -q -w "$out" "$work"
shopt -s nullglob
wheels=("$out"/spark_mlops-*.whl)
shopt -u nullglob
[ "${#wheels[@]}" -eq 1 ] || ci_die "expected one wheel in $out, found ${#wheels[@]}"
case "$(basename "${wheels[0]}")" in
  "spark_mlops-${version}-"*) ;;
  *) ci_die "built $(basename "${wheels[0]}"), expected version $version" ;;
esac
(cd "$out" && sha256sum "$(basename "${wheels[0]}")" > SHA256SUMS)
ci_show_wheel "$out"
