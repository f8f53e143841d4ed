#!/usr/bin/env bash
# The deploy workflow's steps after `osls deploy` (.github/workflows/deploy.yml), for stage $STAGE:
#   scripts/ci_deploy_check.sh migrate   invoke the `migrate` function; it must answer {"status": "ok", ...}
#   scripts/ci_deploy_check.sh health    GET /api/v1/health/db on the deployed URL (the stack's HttpApiUrl) -> 200
# Needs AWS credentials for the stage's account (the workflow's OIDC role).
set -euo pipefail
cd "$(dirname "$0")/.."
stage=${STAGE:?set STAGE (dev or prod)}
osls=node_modules/.bin/osls

case "${1:-}" in
    migrate)
        out=$("$osls" invoke -f migrate --stage "$stage")
        echo "$out"
        # osls prints the function's result as JSON; a failed migration raises, which osls reports as an error.
        python3 -c '
import json, sys
text = sys.argv[1]
result = json.loads(text[text.index("{"):text.rindex("}") + 1])
sys.exit(0 if result.get("status") == "ok" else f"migrate answered {result}")' "$out"
        ;;
    health)
        url=$("$osls" info --stage "$stage" --verbose | awk '$1 == "HttpApiUrl:" {print $2}')
        [ -n "$url" ] || { echo "no HttpApiUrl in the stack outputs of stage $stage" >&2; exit 1; }
        # A Neon compute that scaled to zero answers 503 while it wakes: curl retries 5xx a few times.
        code=$(curl -sS -o /tmp/health-db.json -w '%{http_code}' --retry 5 --retry-delay 3 --max-time 30 \
            "$url/api/v1/health/db")
        cat /tmp/health-db.json; echo
        [ "$code" = 200 ] || { echo "$url/api/v1/health/db answered $code" >&2; exit 1; }
        ;;
    *)
        echo "usage: STAGE=dev $0 migrate|health" >&2
        exit 2
        ;;
esac
