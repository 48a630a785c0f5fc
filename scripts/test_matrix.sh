#!/usr/bin/env bash
# Run the unit and dag.test() suites against every Airflow 3 line the package claims.
#
#   scripts/test_matrix.sh                 # 3.0.6 3.1.8 3.2.2 (3.3.x is the main .venv: `make test`)
#   scripts/test_matrix.sh 3.1.8           # just one release
#   AIRFLOW_VERSIONS="3.0.6 3.2.2" PYTEST_ARGS="-x" scripts/test_matrix.sh
#
# One venv per release, created with uv and reused between runs (re-synced each time, a few seconds).
# Versions run one after the other: each pytest run already uses every core (-n auto).
# Tests that need a real deployment or a browser (tests/e2e*, tests/ui*; markers e2e, ui) are left out.
# Exit status: 0 only if every release passed.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

PY="${PY:-python3}"
VERSIONS="${*:-${AIRFLOW_VERSIONS:-3.0.6 3.1.8 3.2.2}}"
# venvs live outside the checkout (ruff, mypy and hatch never see them); keyed by checkout path so two
# clones never share an editable install
ROOT_KEY="$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)"
MATRIX_DIR="${MATRIX_DIR:-${TMPDIR:-/tmp}}"
LOG_DIR="${MATRIX_LOG_DIR:-$MATRIX_DIR/matrix-logs-$ROOT_KEY}"
# tests that need a real deployment or a browser: by folder and by marker
NEEDS_DEPLOYMENT_GLOBS=("tests/e2e*" "tests/ui*" "tests/deployment*")
# tests whose code under test never touches Airflow: the fake server, the fault proxy and the test
# harness (no Airflow import), and the pure rules of retry, validation and connection settings.
# They run once, in `make test`; the exception classes they raise derive from Airflow's per line,
# which tests/unit/test_protocol.py checks on every line
AIRFLOW_FREE_GLOBS=("tests/unit/testing" "tests/harness" "tests/unit/test_retry.py"
    "tests/unit/test_validation.py" "tests/unit/test_connection.py" "tests/unit/test_results.py")
NEEDS_DEPLOYMENT_MARKERS="not e2e and not ui"
# word-split on purpose: extra pytest arguments
read -r -a EXTRA_PYTEST <<<"${PYTEST_ARGS:-}"

if command -v uv >/dev/null 2>&1; then
    UV=(uv)
elif "$PY" -m uv --version >/dev/null 2>&1; then
    UV=("$PY" -m uv)
else
    "$PY" -m pip install --quiet uv && UV=("$PY" -m uv)
fi
# without .pyc files every `import airflow` costs twice as long (PYTHONDONTWRITEBYTECODE is set here)
export UV_COMPILE_BYTECODE=1

# What each Airflow line needs besides `apache-airflow==X` (what its constraints file would pin; those
# files are not reachable from the project's machines): apache-airflow 3.0.x and 3.2.x put no upper
# bound on fastapi, and newer fastapi breaks the in-process Execution API that dag.test() runs tasks
# against (3.2 with fastapi 0.165:
# "PydanticUserError: Model 'TITerminalStatePayload' needs a discriminator field"; 3.0 with
# fastapi 0.136: every task start answered 422). 3.0 gets the cap 3.1 declares itself (<0.118), 3.2
# the one 3.3 declares (<0.137). 3.0 also lets universal-pathlib 0.3 in, with which its
# ObjectStoragePath refuses even file:// ("detected protocol file which is incompatible"); 3.1
# declares <0.3. wtforms on 3.0: its UI renders a provider's connection form only when wtforms
# (brought by the FAB provider) is installed; with it the form test runs instead of skipping.
pins_for() {
    case "$1" in
        3.0.*) echo "fastapi<0.118 universal-pathlib<0.3 wtforms" ;;
        3.2.*) echo "fastapi<0.137" ;;
        *) echo "" ;;
    esac
}

IGNORES=()
for glob in "${NEEDS_DEPLOYMENT_GLOBS[@]}" "${AIRFLOW_FREE_GLOBS[@]}"; do
    for dir in $glob; do
        [[ -e "$dir" ]] && IGNORES+=("--ignore=$dir")
    done
done

mkdir -p "$LOG_DIR"
declare -a SUMMARY=()
status=0
matrix_start=$(date +%s)

for version in $VERSIONS; do
    venv="$MATRIX_DIR/matrix-airflow-$version-$ROOT_KEY"
    log="$LOG_DIR/airflow-$version.log"
    echo "=== Airflow $version: venv $venv, log $log"
    start=$(date +%s)
    read -r -a pins <<<"$(pins_for "$version")"
    if ! { "${UV[@]}" venv --quiet --allow-existing -p "$PY" "$venv" &&
        "${UV[@]}" pip install --quiet -p "$venv/bin/python" -e ".[dev]" "apache-airflow==$version" "${pins[@]}"; } \
        >"$log" 2>&1; then
        cat "$log"
        SUMMARY+=("$(printf '%-8s %-8s %s' "$version" "INSTALL" "failed, see $log")")
        status=1
        continue
    fi
    installed=$(date +%s)
    "$venv/bin/python" -c 'import airflow, sys; print("airflow", airflow.__version__, "python", sys.version.split()[0])' \
        | tee -a "$log"
    # -p no:cacheprovider: runs of different releases in one checkout must not share --lf state
    "$venv/bin/python" -m pytest -n auto -q -p no:cacheprovider -m "$NEEDS_DEPLOYMENT_MARKERS" \
        "${IGNORES[@]}" "${EXTRA_PYTEST[@]}" tests \
        2>&1 | tee -a "$log"
    rc=${PIPESTATUS[0]}
    end=$(date +%s)
    # pytest's last line: "== 3 failed, 250 passed, 2 xfailed in 95.01s (0:01:35) =="
    counts=$(grep -E '(passed|failed|error|no tests ran)' "$log" | tail -n 1 | sed -E 's/=+//g; s/ in [0-9.]+s.*//; s/^ +//')
    result=PASS
    if [[ $rc -ne 0 ]]; then
        result=FAIL
        status=1
    fi
    SUMMARY+=("$(printf '%-8s %-5s %-45s install %3ss, tests %4ss' \
        "$version" "$result" "$counts" "$((installed - start))" "$((end - installed))")")
done

echo
echo "=== Airflow test matrix ($(uname -m), $("$PY" --version 2>&1))"
printf '%s\n' "${SUMMARY[@]}"
echo "matrix finished in $(($(date +%s) - matrix_start)) s"
exit $status
