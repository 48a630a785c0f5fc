#!/usr/bin/env bash
# Install what the UI tests (tests/ui, `make ui-test`) need, idempotently, and say what was done:
#   - Debian's `chromium` package (/usr/bin/chromium). Playwright drives this binary; it never
#     downloads a browser of its own (`playwright install` is never run).
#   - the `playwright` Python package in the dev venv (normally already there through the `dev` extra).
#
# Usage: scripts/install_ui_deps.sh [path/to/venv/python]     (default: .venv/bin/python)
# Needs root (or sudo) for apt-get when chromium is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${1:-.venv/bin/python}"
CHROMIUM=/usr/bin/chromium
# keep in step with the `dev` extra in pyproject.toml
PLAYWRIGHT_SPEC="${PLAYWRIGHT_SPEC:-playwright==1.65.2}"

say() { echo "install_ui_deps: $*"; }

# --- Chromium (Debian package) ----------------------------------------------------------------
if [ -x "$CHROMIUM" ]; then
    say "chromium already installed: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
else
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { say "need root or sudo to apt-get install chromium" >&2; exit 1; }
        SUDO="sudo"
    fi
    say "installing Debian package chromium (apt-get update && apt-get install -y chromium)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
    [ -x "$CHROMIUM" ] || { say "apt-get finished but $CHROMIUM is missing" >&2; exit 1; }
    say "installed chromium: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
fi

# --- Playwright for Python (in the venv; no browser download) ----------------------------------
if [ ! -x "$PYTHON" ]; then
    say "no Python at $PYTHON (run 'make venv' first)" >&2
    exit 1
fi
if "$PYTHON" -c "import playwright.sync_api" >/dev/null 2>&1; then
    say "playwright already installed in $PYTHON: $("$PYTHON" -c 'import importlib.metadata as m; print(m.version("playwright"))')"
else
    say "installing $PLAYWRIGHT_SPEC into $PYTHON"
    # the venv is made by uv and has no pip of its own: use uv (as the Makefile does), else pip
    if command -v uv >/dev/null 2>&1; then
        uv pip install --quiet -p "$PYTHON" "$PLAYWRIGHT_SPEC"
    elif python3 -m uv --version >/dev/null 2>&1; then
        python3 -m uv pip install --quiet -p "$PYTHON" "$PLAYWRIGHT_SPEC"
    else
        "$PYTHON" -m pip install --quiet "$PLAYWRIGHT_SPEC"
    fi
    say "installed playwright $("$PYTHON" -c 'import importlib.metadata as m; print(m.version("playwright"))')"
fi
say "done (Playwright uses $CHROMIUM via executable_path; no browser download)"
