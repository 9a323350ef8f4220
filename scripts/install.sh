#!/usr/bin/env bash
# `make install`: the virtualenv, the project with its dev extras, and a parsed dbt project, with one
# progress line per step and per package (pip's own output goes to .venv/install.log; on failure its
# tail is printed).
set -euo pipefail
python="${1:-python3}"
venv="${2:-.venv}"
log="$venv/install.log"
started=$SECONDS

step() { printf '[install %s] %s\n' "$1" "$2"; }

step "1/3" "virtualenv $venv"
test -x "$venv/bin/python" || "$python" -m venv "$venv"
: >"$log"

step "2/3" "Python packages (a few minutes on a fresh machine; full log: $log)"
"$venv/bin/python" -m pip install --upgrade pip >>"$log" 2>&1
set +e
"$venv/bin/python" -m pip install --progress-bar off -e ".[dev]" 2>&1 | tee -a "$log" |
  awk '/^Collecting /{ n++; printf "  %3d  %s\n", n, $2; fflush() }
       /^Installing collected packages/{ print "  installing..."; fflush() }'
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
  echo "pip failed (exit $status); the end of $log:" >&2
  tail -n 30 "$log" >&2
  exit "$status"
fi

step "3/3" "dbt parse (no connection needed)"
(cd dbt_project && "../$venv/bin/dbt" parse --profiles-dir . --quiet)
echo "installed in $((SECONDS - started))s"
