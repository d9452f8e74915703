#!/usr/bin/env bash
# Create the orchestration benchmark's own virtual environment (benchmarks/.venv, ignored by
# git): forgeline in editable mode plus the tools it is compared with. None of these is a
# dependency of forgeline itself.
#
#   benchmarks/orchestration/setup.sh          create or update benchmarks/.venv
#   PYTHON=python3.12 benchmarks/orchestration/setup.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=benchmarks/.venv
if [ ! -x "$VENV/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e . \
    "langgraph>=1.2,<2" \
    "langgraph-checkpoint-sqlite>=3.1,<4" \
    "langgraph-checkpoint-postgres>=3.2,<4" \
    "psycopg[binary,pool]>=3.2,<4" \
    "eventsourcing[postgres]>=9.5,<10" \
    "dbos>=3.4,<4" \
    "psutil>=6,<8" \
    "pyinstrument>=5,<6"
"$VENV/bin/python" -m pip list 2>/dev/null |
    grep -i -E '^(forgeline|langgraph|langgraph-checkpoint-sqlite|langgraph-checkpoint-postgres|eventsourcing|dbos|psycopg) ' || true
echo "ready: $VENV (python -m benchmarks.orchestration picks it up for the competitors)"
