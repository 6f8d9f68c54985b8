#!/usr/bin/env bash
# Debian packages the tests use besides Python wheels: Prometheus (+promtool), PostgreSQL 15 (the
# job store; deploy/localinfra runs it, it is not on PATH), docker-compose (only to validate
# docker-compose.yml; no engine needed), Chromium + chromedriver (review page).
# Installs what is missing when run as root with apt; otherwise prints what to install.
set -euo pipefail
declare -A want=( [prometheus]=prometheus [promtool]=prometheus [docker-compose]=docker-compose
                  [chromium]=chromium [chromedriver]=chromium-driver )
missing=()
for cmd in "${!want[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${want[$cmd]}")
done
[ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql-15)
[ ${#missing[@]} -eq 0 ] && exit 0
pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian packages: $pkgs"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
else
  echo "warning: missing Debian packages: $pkgs (install them; tests that need them will say skipped)" >&2
fi
