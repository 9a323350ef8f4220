"""Static checks of the deployment files: docker-compose.yml, Dockerfile, dagster.yaml, workspaces.

Docker is not needed: the files are parsed and their wiring (service names, ports, commands,
environment, the Dagster module) is checked against each other and against pyproject.toml.
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
import shutil
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {"postgres", "redis", "code-location", "dagster-webserver", "dagster-daemon", "serving-api"}
APP_SERVICES = ("code-location", "dagster-webserver", "dagster-daemon", "serving-api")
DAGSTER_CLIENTS = ("dagster-webserver", "dagster-daemon")
# what an operator might put in .env; the password is a sentinel we look for in the resolved URLs
OPERATOR_ENV = {"FS_PG_USER": "fs_user", "FS_PG_PASSWORD": "s3cret-sentinel", "FS_PG_DBNAME": "fs_db"}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


class MissingVariable(Exception):
    pass


_VAR = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_]\w*)"
)


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose-style ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$`` substitution."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        current = env.get(name)
        unset = not current if op and op.startswith(":") else current is None
        if op and op.endswith("-") and unset:
            return arg
        if op and op.endswith("?") and unset:
            raise MissingVariable(f"{name}: {arg}")
        return current or ""

    return _VAR.sub(replace, value)


def resolve(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(value, env) for value in node]
    return node


def argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def option(args: list[str], *flags: str) -> str:
    """The value of a command-line option (``-p 4000`` or ``--port=4000``)."""
    for index, arg in enumerate(args):
        if arg in flags:
            assert index + 1 < len(args), f"{arg} has no value in {args}"
            return args[index + 1]
        for flag in flags:
            if flag.startswith("--") and arg.startswith(flag + "="):
                return arg.split("=", 1)[1]
    raise AssertionError(f"none of {flags} in {args}")


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """Every (path, key, value) in a parsed YAML document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield f"{path}.{key}", key, value
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield f"{path}[{index}]", None, value
            yield from walk(value, f"{path}[{index}]")


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    return instructions


def dockerfile_copies() -> list[tuple[list[str], PurePosixPath]]:
    """(sources, absolute destination) of each COPY, destinations resolved against WORKDIR."""
    workdir = PurePosixPath("/")
    copies = []
    for keyword, args in dockerfile_instructions():
        if keyword == "WORKDIR":
            workdir = workdir / args
        elif keyword == "COPY":
            parts = [part for part in shlex.split(args) if not part.startswith("--")]
            copies.append((parts[:-1], workdir / parts[-1]))
    return copies


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, args in dockerfile_instructions():
        if keyword == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def image_path_to_repo(container_path: str) -> Path:
    """The repository file the Dockerfile copies to ``container_path`` in the image."""
    target = PurePosixPath(container_path)
    for sources, dest in reversed(dockerfile_copies()):
        for source in sources:
            if source.endswith("/"):  # a folder copied into dest
                if target.is_relative_to(dest):
                    return ROOT / source / target.relative_to(dest)
            elif target in (dest, dest / Path(source).name):
                return ROOT / source
    raise AssertionError(f"the Dockerfile copies nothing to {container_path}")


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def resolved(compose: dict[str, Any]) -> dict[str, Any]:
    """docker-compose.yml after interpolation with the operator's variables."""
    return resolve(compose, OPERATOR_ENV)


@pytest.fixture(scope="module")
def dagster_tool() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dagster"]


# --------------------------------------------------------------------------------------------
# docker-compose.yml
# --------------------------------------------------------------------------------------------


def test_all_services_are_defined(compose):
    assert set(compose["services"]) >= SERVICES, SERVICES - set(compose["services"])


def test_app_services_share_one_image_built_from_the_dockerfile(compose):
    services = compose["services"]
    images = {services[name].get("image") for name in APP_SERVICES}
    assert len(images) == 1 and None not in images, images
    builders = [name for name in APP_SERVICES if "build" in services[name]]
    assert builders, "no application service builds the image"
    for name in builders:
        build = services[name]["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        assert (ROOT / context / dockerfile).is_file()


def test_app_services_use_the_shared_env_block(compose):
    shared = compose["x-fs-env"]
    for name in APP_SERVICES:
        assert compose["services"][name].get("environment") == shared, name


def test_env_block_points_at_the_compose_postgres_and_redis(compose, resolved):
    env = resolved["x-fs-env"]
    database, cache = urlparse(env["FS_DATABASE_URL"]), urlparse(env["FS_REDIS_URL"])

    assert database.scheme.startswith("postgresql")
    assert (database.hostname, database.port) == ("postgres", 5432)
    assert (database.username, database.password) == ("fs_user", OPERATOR_ENV["FS_PG_PASSWORD"])
    assert database.path == "/fs_db"
    assert (cache.scheme, cache.hostname, cache.port) == ("redis", "redis", 6379)
    assert {database.hostname, cache.hostname} <= set(compose["services"])

    # the FS_PG_* variables (dagster.yaml, dbt profiles.yml) describe the same database
    assert env["FS_PG_HOST"] == database.hostname
    assert env["FS_PG_PORT"] == str(database.port)
    assert env["FS_PG_USER"] == database.username
    assert env["FS_PG_PASSWORD"] == database.password
    assert env["FS_PG_DBNAME"] == database.path.lstrip("/")

    # ... and the credentials the postgres container is initialised with
    postgres_env = resolved["services"]["postgres"]["environment"]
    assert postgres_env["POSTGRES_USER"] == database.username
    assert postgres_env["POSTGRES_PASSWORD"] == database.password
    assert postgres_env["POSTGRES_DB"] == database.path.lstrip("/")


def test_env_block_matches_the_image_layout(resolved):
    env = resolved["x-fs-env"]
    assert env["DAGSTER_HOME"] == dockerfile_env()["DAGSTER_HOME"]
    assert "FS_API_KEYS" in env
    assert env["FS_HOME"].startswith("/")


#: settings whose built-in default is right inside the image (paths follow FS_HOME, the volume)
DEFAULT_IN_COMPOSE = {
    "FS_EARLIEST_EVENT_DATE",
    "FS_FUTURE_TOLERANCE_SECONDS",
    "FS_INBOX_DIR",
    "FS_ARCHIVE_DIR",
    "FS_DBT_TARGET",
    "FS_FEATURES_START_DATE",
    "FS_REDIS_PREFIX",
    "FS_REDIS_TIMEOUT_SECONDS",
    "FS_ONLINE_MAX_AGE_HOURS",
    "FS_ONLINE_CACHE_SIZE",
    "FS_ONLINE_CACHE_TTL_SECONDS",
    "FS_ONLINE_BUILD_TTL_SECONDS",
    "FS_ONLINE_GRACE_SECONDS",
    "FS_MODEL_REGISTRY_DIR",
    "FS_DBT_PROJECT_DIR",  # set by the Dockerfile, where the image keeps dbt_project/
    "FS_FEATURE_CUTOFF",  # set per partition run by the feature asset
    "FS_FEATURE_RANGE_START",  # set per range run by the feature asset
}
#: operator choices and secrets: passed through from .env, empty when unset, never a literal value
FROM_OPERATOR = ("FS_API_KEYS", "FS_ALERT_WEBHOOK_URL")
DERIVED = {"FS_PG_HOST", "FS_PG_PORT", "FS_PG_USER", "FS_PG_PASSWORD", "FS_PG_DBNAME"}


def test_every_setting_is_wired_or_defaulted_on_purpose(compose):
    """Each variable `fs-platform config` lists is set by the compose env block, or its default is
    known to be right in the image; a new setting fails here until someone decides which."""
    from fs_platform.infra.config import ENV_VARS

    env = compose["x-fs-env"]
    for name in ENV_VARS:
        if name.startswith("FS_TEST_"):
            assert name not in env, f"{name} is for tests only"
        else:
            assert name in env or name in DEFAULT_IN_COMPOSE, (
                f"{name} is neither set in x-fs-env nor listed as defaulted in the image"
            )
            assert not (name in env and name in DEFAULT_IN_COMPOSE), f"{name}: set and listed as default"
    # nothing in the block that the platform does not read (a typo would be silently ignored)
    assert set(env) <= set(ENV_VARS) | DERIVED, set(env) - set(ENV_VARS) - DERIVED
    example = (ROOT / ".env.example").read_text()
    for name in FROM_OPERATOR:
        assert env[name] == f"${{{name}:-}}", f"{name} must come from .env, empty by default: {env[name]}"
        assert re.search(rf"^{name}=$", example, re.MULTILINE), f".env.example lacks an empty {name}="


def test_fs_home_is_a_shared_named_volume(compose, resolved):
    fs_home = resolved["x-fs-env"]["FS_HOME"]
    for name in APP_SERVICES:
        mounts = [volume.split(":") for volume in compose["services"][name].get("volumes", [])]
        sources = [source for source, target, *_ in mounts if target == fs_home]
        assert sources == ["fs-data"], f"{name} does not mount fs-data at {fs_home}"
    assert "fs-data" in compose["volumes"]


def test_code_location_serves_the_dagster_module(compose, dagster_tool):
    args = argv(compose["services"]["code-location"]["command"])
    assert args[:3] == ["dagster", "code-server", "start"]
    assert option(args, "-p", "--port") == "4000"
    assert option(args, "-h", "--host") == "0.0.0.0"
    assert option(args, "-m", "--module-name") == dagster_tool["module_name"] == "fs_platform.definitions"


def test_webserver_and_daemon_load_the_grpc_workspace(compose, dagster_tool):
    code_location_port = int(option(argv(compose["services"]["code-location"]["command"]), "-p", "--port"))
    for name in DAGSTER_CLIENTS:
        args = argv(compose["services"][name]["command"])
        assert args[0] == name
        workspace_file = image_path_to_repo(option(args, "-w", "--workspace"))
        workspace = yaml.safe_load(workspace_file.read_text())
        (entry,) = workspace["load_from"]
        server = entry["grpc_server"]
        assert server["host"] == "code-location" and server["host"] in compose["services"]
        assert server["port"] == code_location_port == 4000
        assert server["location_name"] == dagster_tool["code_location_name"]


def test_published_ports(compose):
    services = compose["services"]

    def published(name: str) -> set[tuple[str, str]]:
        return {tuple(str(port).rsplit(":", 2)[-2:]) for port in services[name].get("ports", [])}

    assert ("3000", "3000") in published("dagster-webserver")
    assert ("8000", "8000") in published("serving-api")
    assert option(argv(services["dagster-webserver"]["command"]), "-p", "--port") == "3000"
    api = argv(services["serving-api"]["command"])
    assert api[:2] == ["fs-platform", "serve"]
    assert option(api, "--port") == "8000"
    assert option(api, "--host") == "0.0.0.0"
    # the databases are reachable only inside the compose network
    assert not services["postgres"].get("ports") and not services["redis"].get("ports")


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        ("postgres", ["pg_isready"]),
        ("redis", ["redis-cli", "ping"]),
        ("code-location", ["dagster", "api", "grpc-health-check", "4000"]),
        ("serving-api", ["localhost:8000/healthz"]),
    ],
)
def test_healthchecks(compose, service, expected):
    test = compose["services"][service]["healthcheck"]["test"]
    text = test if isinstance(test, str) else " ".join(test)
    assert isinstance(test, str) or test[0] in ("CMD", "CMD-SHELL")
    for word in expected:
        assert word in text, f"{service} healthcheck lacks {word!r}: {text}"


def test_dependencies_wait_for_healthy_services(compose):
    services = compose["services"]
    required = {
        "code-location": {"postgres", "redis"},
        "dagster-webserver": {"postgres", "code-location"},
        "dagster-daemon": {"postgres", "code-location"},
        "serving-api": {"postgres", "redis"},
    }
    for name, needs in required.items():
        depends_on = services[name].get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: use the long depends_on form with conditions"
        for dependency in needs:
            assert depends_on.get(dependency, {}).get("condition") == "service_healthy", (name, dependency)
    for name, service in services.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            if spec.get("condition") == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits on {dependency} without one"


def test_no_literal_passwords(compose):
    references = 0
    for path, key, value in walk(compose):
        if isinstance(key, str) and "PASSWORD" in key.upper():
            assert isinstance(value, str) and re.fullmatch(r"\$\{[A-Z0-9_]+(:?\?[^}]*)?\}", value), (
                f"{path} must be a ${{VAR}} reference without a default, got {value!r}"
            )
            references += 1
        if isinstance(value, str) and "PASSWORD" in value.upper():
            for match in re.finditer(r"\$\{([^}]*PASSWORD[^}]*)\}", value):
                assert not re.search(r":?-", match.group(1).split("PASSWORD", 1)[1]), (
                    f"{path}: password reference with a default value: {match.group(0)}"
                )
            leftover = re.sub(r"\$\{[^}]*\}", "", value)
            assert "PASSWORD" not in leftover.upper(), f"{path}: literal password text {value!r}"
    assert references >= 2  # the shared env block and the postgres container


def test_password_is_required(compose):
    without_password = {key: value for key, value in OPERATOR_ENV.items() if key != "FS_PG_PASSWORD"}
    with pytest.raises(MissingVariable, match="FS_PG_PASSWORD"):
        resolve(compose["services"]["postgres"], without_password)
    with pytest.raises(MissingVariable, match="FS_PG_PASSWORD"):
        resolve(compose["x-fs-env"], without_password)


def test_env_example_lists_every_required_variable(compose):
    text = (ROOT / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{([A-Z0-9_]+):?\?", text))
    assert "FS_PG_PASSWORD" in required
    listed = {
        line.split("=", 1)[0].strip()
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
    assert required <= listed, required - listed


# --------------------------------------------------------------------------------------------
# dagster.yaml and workspaces
# --------------------------------------------------------------------------------------------


def test_dagster_yaml_uses_postgres_from_env():
    config = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    database = config["storage"]["postgres"]["postgres_db"]
    assert database["scheme"] == "postgresql+psycopg2"
    for field, variable in {
        "username": "FS_PG_USER",
        "password": "FS_PG_PASSWORD",
        "hostname": "FS_PG_HOST",
        "db_name": "FS_PG_DBNAME",
        "port": "FS_PG_PORT",
    }.items():
        assert database[field] == {"env": variable}, field
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["run_coordinator"]["config"]["max_concurrent_runs"] == 4
    assert config["telemetry"]["enabled"] is False
    for daemon in ("schedules", "sensors"):
        assert config[daemon] == {"use_threads": True, "num_workers": 2}


@pytest.mark.parametrize("password", ["s3cret", ""])
def test_dagster_yaml_is_a_valid_instance_config(tmp_path, monkeypatch, password):
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster_postgres import DagsterPostgresStorage
    from dagster_postgres.utils import pg_url_from_config

    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    for name, value in {
        "FS_PG_USER": "fs",
        "FS_PG_PASSWORD": password,
        "FS_PG_HOST": "postgres",
        "FS_PG_DBNAME": "fs",
        "FS_PG_PORT": "5432",
    }.items():
        monkeypatch.setenv(name, value)

    config, _ = dagster_instance_config(str(tmp_path))  # raises on schema errors

    storage = process_config(DagsterPostgresStorage.config_type(), config["storage"]["postgres"])
    assert storage.success, storage.errors
    userinfo = f"fs:{password}" if password else "fs"
    assert pg_url_from_config(storage.value) == f"postgresql+psycopg2://{userinfo}@postgres:5432/fs"

    coordinator = config["run_coordinator"]
    cls = getattr(importlib.import_module(coordinator["module"]), coordinator["class"])
    checked = process_config(cls.config_type(), coordinator["config"])
    assert checked.success, checked.errors


def test_local_workspace_loads_the_definitions_module(dagster_tool):
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    (entry,) = workspace["load_from"]
    module = entry["python_module"]
    assert module["module_name"] == dagster_tool["module_name"] == "fs_platform.definitions"
    assert module["location_name"] == dagster_tool["code_location_name"]


# --------------------------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------------------------


def test_dockerfile_installs_the_project():
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    copies = dockerfile_copies()
    sources = {source.rstrip("/") for srcs, _ in copies for source in srcs}
    assert {"pyproject.toml", "README.md", "fs_platform", "dbt_project", "dagster.yaml", "deploy"} <= sources

    installs = [
        index
        for index, (keyword, args) in enumerate(instructions)
        if keyword == "RUN" and re.search(r"pip install\b.*\s\.(\s|$)", args)
    ]
    assert installs, "no `pip install .`"
    copy_index = {
        source.rstrip("/"): index
        for index, (keyword, args) in enumerate(instructions)
        if keyword == "COPY"
        for source in shlex.split(args)[:-1]
    }
    for needed in ("pyproject.toml", "README.md", "fs_platform"):
        assert copy_index[needed] < installs[0], f"{needed} is copied after pip install"
    assert any(keyword == "RUN" and "dbt parse" in args for keyword, args in instructions)


def test_dockerfile_copy_sources_exist():
    for sources, _ in dockerfile_copies():
        for source in sources:
            assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which is not in the repository"


def test_dockerfile_puts_dagster_yaml_in_dagster_home():
    dagster_home = PurePosixPath(dockerfile_env()["DAGSTER_HOME"])
    assert image_path_to_repo(str(dagster_home / "dagster.yaml")) == ROOT / "dagster.yaml"


def test_dockerfile_default_command_and_ports(compose):
    instructions = dockerfile_instructions()
    (cmd,) = [json.loads(args) for keyword, args in instructions if keyword == "CMD"]
    assert cmd == argv(compose["services"]["code-location"]["command"])
    exposed = {port for keyword, args in instructions if keyword == "EXPOSE" for port in args.split()}
    assert {"4000", "3000", "8000"} <= exposed
    assert ("WORKDIR", "/app") in instructions
    # the dbt project is read from the copy in the image, not next to the installed package
    dbt_dir = dockerfile_env().get("FS_DBT_PROJECT_DIR")
    assert (
        dbt_dir
        and image_path_to_repo(dbt_dir + "/dbt_project.yml") == ROOT / "dbt_project" / "dbt_project.yml"
    )
