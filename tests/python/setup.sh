#!/usr/bin/env bash
# Creates the Python virtual environment the broker interop tests run real Celery from:
# target/celery-venv, with the pinned Celery and its Redis transport. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="${CRM_CELERY_VENV:-target/celery-venv}"
pins="celery[redis]==5.5.3"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import celery, redis; assert celery.__version__ == "5.5.3"' 2>/dev/null; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "$pins"
"$venv/bin/python" -c 'import celery, kombu, redis; print("celery", celery.__version__, "kombu", kombu.__version__, "redis", redis.__version__)'
