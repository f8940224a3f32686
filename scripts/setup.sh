#!/usr/bin/env bash
# Sets up everything docvl needs on a fresh Debian/Ubuntu machine with Python 3.11:
# system packages (poppler for pdf2image, LibreOffice for slides, chromium for the report tests), a venv, torch pinned FIRST, docvl.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}

need_apt=()
command -v pdftoppm >/dev/null 2>&1 || need_apt+=(poppler-utils)
command -v soffice >/dev/null 2>&1 || need_apt+=(libreoffice-impress)
# the HTML report's browser tests (tests/test_review.py) drive it through Playwright
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/pip"
"$PIP" install -q --upgrade pip
# torch first and pinned: anything unpinned would pull a multi-GB CUDA build.
"$VENV/bin/python" -c "import torch" 2>/dev/null || "$PIP" install -q "torch==2.13.0"
"$PIP" install -q -e ".[dev]"
echo "setup: ok ($("$VENV/bin/python" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
