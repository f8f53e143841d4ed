#!/usr/bin/env bash
# The preview workflow's steps (.github/workflows/preview.yml): what a pull request's Neon branch goes through.
#
#   PREVIEW_DATABASE_URL_DIRECT=... PREVIEW_DATABASE_URL_POOLED=... scripts/ci_preview.sh   # CI: a Neon branch
#   scripts/ci_preview.sh                                                                  # locally
#
# Without the two URLs it starts an embedded PostgreSQL of its own (a temporary folder, removed at the end) and
# uses it as both: the "pooled" one with DB_POOLER=true, so the app takes its pooler path (DB_POOL=auto picks
# `single`); there is no pooler in between locally.
#
# 1. migrate: alembic upgrade head, then alembic check, on the direct URL (Neon: migrations never through the
#    pooler), i.e. on the branch's copy of the parent branch's data;
# 2. smoke: the app through the Lambda handler on the pooled URL, with production settings (scripts/smoke_api.py);
# 3. suite: `make test` with TEST_DATABASE_URL = the direct URL. Last, because the suite rebuilds the schema and
#    empties the tables: the first two steps see the copied data, this one leaves nothing of it.
# The result is a Markdown summary in $PREVIEW_SUMMARY (default .ci/preview-summary.md) that the workflow posts.
# The URLs hold the branch's password: they are passed in the environment and never printed.
set -uo pipefail
cd "$(dirname "$0")/.."

summary=${PREVIEW_SUMMARY:-.ci/preview-summary.md}
mkdir -p "$(dirname "$summary")"
python=.venv/bin/python
# The suite's slow groups that do not depend on the database they are given (they start their own servers or
# only package the zip) run in ci.yml, and so do the workflow checks and this script's own test (it would start
# this script again); here the point is the branch.
suite_args=${PREVIEW_PYTEST_ARGS:--m "not packaging and not offline and not pooler and not load and not fuzz" \
--ignore=tests/test_workflows.py --ignore=tests/test_ci_preview.py}

make install >/dev/null || { echo "make install failed" >&2; exit 1; }

local_dir=""
direct=${PREVIEW_DATABASE_URL_DIRECT:-}
pooled=${PREVIEW_DATABASE_URL_POOLED:-}
pooler_flag=false
if [ -z "$direct" ] || [ -z "$pooled" ]; then
    local_dir=$(mktemp -d -t task-api-preview-XXXXXX)
    trap '"$python" -c "import sys; from app.dev.embedded import EmbeddedPostgres, running_port; from pathlib import Path; d = Path(sys.argv[1]); p = running_port(d); p and EmbeddedPostgres(d, p).stop()" "$local_dir/pgdata"; rm -rf "$local_dir"' EXIT
    direct=$(EMBEDDED_PG_FAST=1 "$python" -c '
import sys
from pathlib import Path
from app.dev.embedded import ensure_running, free_port
print(ensure_running(Path(sys.argv[1]), port=free_port(), database="preview").url("preview"))' "$local_dir/pgdata") || exit 1
    pooled=$direct
    pooler_flag=true
    where="embedded PostgreSQL (local run; pooled = the same server with DB_POOLER=true)"
else
    where="Neon branch ${PREVIEW_BRANCH_ID:-?}"
    # Neon's console shows its URLs with channel_binding=require, which makes the app verify the certificate and
    # host name (docs/connections.md: TLS); the action's URLs have sslmode only. Smoke what users paste.
    case "$pooled" in
        *channel_binding=*) ;;
        *\?*) pooled="$pooled&channel_binding=require" ;;
        *) pooled="$pooled?sslmode=require&channel_binding=require" ;;
    esac
fi

results=()
status=0
run_step() {  # run_step NAME COMMAND...: its output to the log, one row to the summary
    local name=$1 log rc
    shift
    log=$(mktemp)
    echo "::group::$name"
    "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    echo "::endgroup::"
    local last
    last=$(grep -E '[0-9]+ (passed|failed)|^(ok|FAIL) |pool:|revision|No new upgrade|Target database' "$log" | tail -n 3 | tr '\n' ' ' | sed 's/|/\\|/g')
    if [ "$rc" = 0 ]; then results+=("| $name | ✅ | ${last} |"); else results+=("| $name | ❌ exit $rc | ${last} |"); status=1; fi
    rm -f "$log"
    return "$rc"
}

migrate() {
    DATABASE_URL=$direct DATABASE_URL_DIRECT=$direct "$python" scripts/alembic_cli.py upgrade head &&
        DATABASE_URL=$direct DATABASE_URL_DIRECT=$direct "$python" scripts/alembic_cli.py check
}
smoke() {
    env -u DATABASE_URL_DIRECT DATABASE_URL="$pooled" DB_POOLER=$pooler_flag "$python" scripts/smoke_api.py
}
suite() {
    eval "set -- $suite_args"
    env -u DATABASE_URL -u DATABASE_URL_DIRECT TEST_DATABASE_URL="$direct" make test PYTEST_ARGS="$(printf '%q ' "$@")"
}

if run_step "Migrations (direct URL)" migrate; then
    run_step "Smoke through the Lambda handler (pooled URL)" smoke
    run_step "Test suite (TEST_DATABASE_URL = direct URL)" suite
else
    results+=("| Smoke, test suite | skipped: the migrations failed | |")
fi

{
    echo "### Preview: $where"
    echo
    echo "| Step | Result | Last lines |"
    echo "|---|---|---|"
    printf '%s\n' "${results[@]}"
    echo
    echo "Commit \`${GITHUB_SHA:-$(git rev-parse --short HEAD)}\`; suite: \`pytest $suite_args\`."
} >"$summary"
cat "$summary"
exit $status
