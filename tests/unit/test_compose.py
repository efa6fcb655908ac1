"""The container setup: docker-compose.yml, Dockerfile and .dockerignore.

Docker is not needed: the files are read and checked against the project
itself (its CLI, its packages, its Redis key names, its routes), and the
healthcheck one-liners are executed against stand-ins.
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import shlex
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import fakeredis
import pytest
import redis
import yaml

from profile_status.cli import _parser
from shared.redis_store.keys import Keys
from shared.redis_store.records import Heartbeat

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# The image installs the hash-checked runtime lock (what CI tested, without the
# embedded servers), then the package itself without dependencies and without
# `-e` (an editable install is for a working tree, not for an image).
DEPENDENCIES_INSTALL = (
    "pip install --require-hashes --no-deps -r /tmp/requirements/runtime.txt -r /tmp/requirements/build.txt"
)
PACKAGE_INSTALL = "pip install --no-deps --no-build-isolation ."
LOCKS_IN_IMAGE = ("requirements/runtime.txt", "requirements/build.txt")

EXPECTED_SERVICES = {"postgres", "redis", "roles", "migrate", "projector", "api", "simulator"}
APP_SERVICES = {"migrate", "projector", "api", "simulator"}
WITHOUT_HEALTHCHECK = {"roles", "migrate", "simulator"}
DEPLOY = ROOT / "deploy"
ACL_FILE = DEPLOY / "redis" / "users.acl"
ROLES_SCRIPT = DEPLOY / "postgres" / "roles.sh"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = _parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("profile-status has no subcommands")


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    if command is None:
        return []
    return shlex.split(command) if isinstance(command, str) else [str(word) for word in command]


def _healthcheck_code(service: dict[str, Any]) -> str:
    """The program of a `python -c` healthcheck."""
    test = service["healthcheck"]["test"]
    assert isinstance(test, list) and test[0] == "CMD", test
    assert test[1:3] == ["python", "-c"], test
    return str(test[3])


def _run_healthcheck(code: str) -> int:
    """Exit status of a `python -c` program, as the container would see it."""
    try:
        exec(compile(code, "<healthcheck>", "exec"), {"__name__": "__main__"})
    except SystemExit as exc:
        return 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
    except Exception:
        return 1  # an uncaught exception: Python exits with status 1
    return 0


# -- docker-compose.yml -----------------------------------------------------------


def test_compose_file_is_compose_spec(compose: dict[str, Any]) -> None:
    assert "version" not in compose, "the Compose spec has no `version:` key"
    assert isinstance(compose.get("services"), dict)


def test_every_service_exists(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= EXPECTED_SERVICES, EXPECTED_SERVICES - set(services)


@pytest.mark.parametrize(("service", "repository", "major"), [("postgres", "postgres", "16"), ("redis", "redis", "7")])
def test_server_image_versions(services: dict[str, dict[str, Any]], service: str, repository: str, major: str) -> None:
    name, _, tag = services[service]["image"].partition(":")
    assert name in (repository, f"docker.io/library/{repository}"), services[service]["image"]
    assert re.fullmatch(rf"{major}(?:[.-].*)?", tag), f"{service} must run {repository} {major}, not {tag!r}"


def test_healthchecks_everywhere_but_one_shots(services: dict[str, dict[str, Any]]) -> None:
    missing = []
    for name, service in services.items():
        if name in WITHOUT_HEALTHCHECK:
            continue
        check = service.get("healthcheck") or {}
        if check.get("disable") or not check.get("test") or check["test"] in (["NONE"], "NONE"):
            missing.append(name)
    assert not missing, f"services without a healthcheck: {missing}"


def test_migrate_is_one_shot(services: dict[str, dict[str, Any]]) -> None:
    migrate = services["migrate"]
    assert migrate.get("restart") == "no", "migrate must run once, not be restarted"
    assert _command(migrate)[:1] == ["migrate"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", ["projector", "api"])
def test_long_running_services_wait_for_migrate_and_redis(services: dict[str, dict[str, Any]], name: str) -> None:
    service = services[name]
    depends = service.get("depends_on")
    assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
    assert depends.get("migrate", {}).get("condition") == "service_completed_successfully"
    assert depends.get("redis", {}).get("condition") == "service_healthy"
    assert service.get("restart") == "unless-stopped"


def _published(port: Any) -> tuple[str | None, int]:
    """(host port or range or None, container port) of one `ports` entry."""
    if isinstance(port, dict):
        published = port.get("published")
        return (None if published in (None, "") else str(published)), int(port["target"])
    text = str(port).split("/")[0]
    parts = text.rsplit(":", 2)
    container = int(parts[-1])
    host = parts[-2] if len(parts) >= 2 else ""
    return (host or None), container


def test_api_publishes_8000_and_can_scale(services: dict[str, dict[str, Any]]) -> None:
    api = services["api"]
    assert "container_name" not in api, "a fixed container_name forbids `--scale api=N`"
    ports = [_published(port) for port in api.get("ports", [])]
    assert any(container == 8000 for _, container in ports), f"api does not publish 8000: {api.get('ports')}"
    fixed = [host for host, _ in ports if host is not None and "-" not in host]
    assert not fixed, f"a fixed host port forbids `--scale api=N`: {fixed}"
    assert not any(s.get("container_name") for n, s in services.items() if n in APP_SERVICES)


def test_api_serves_on_all_interfaces_at_the_published_port(services: dict[str, dict[str, Any]]) -> None:
    args = _subcommands()["api"].parse_args(_command(services["api"])[1:])
    assert args.host == "0.0.0.0", "inside a container, 127.0.0.1 is unreachable from outside"
    assert any(container == args.port for _, container in map(_published, services["api"]["ports"]))


def test_build_contexts_and_dockerfiles_exist(services: dict[str, dict[str, Any]]) -> None:
    built = {name: s["build"] for name, s in services.items() if "build" in s}
    assert set(built) >= APP_SERVICES, f"app services without `build`: {APP_SERVICES - set(built)}"
    images = {services[name].get("image") for name in built}
    assert len(images) == 1, f"the app services must share one image: {images}"
    for name, build in built.items():
        if isinstance(build, str):
            build = {"context": build}
        context = (ROOT / build.get("context", ".")).resolve()
        assert context.is_dir(), f"{name}: no build context {context}"
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"{name}: no Dockerfile {dockerfile}"


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_app_command_is_a_real_subcommand(services: dict[str, dict[str, Any]], name: str) -> None:
    command = _command(services[name])
    subcommands = _subcommands()
    assert command, f"{name} has no command"
    assert command[0] in subcommands, f"{name}: `profile-status {command[0]}` does not exist ({sorted(subcommands)})"
    try:
        _parser().parse_args(command)
    except SystemExit as exc:
        pytest.fail(f"{name}: `profile-status {' '.join(command)}` is rejected by the CLI (exit {exc.code})")


def test_simulator_is_opt_in(services: dict[str, dict[str, Any]]) -> None:
    assert services["simulator"].get("profiles") == ["simulator"]
    assert not any(services[name].get("profiles") for name in EXPECTED_SERVICES - {"simulator"})


def _roles_default(variable: str) -> str:
    """The role name roles.sh uses unless told otherwise."""
    match = re.search(rf"\${{{variable}:-([a-z_]+)}}", ROLES_SCRIPT.read_text())
    assert match, f"roles.sh has no default for {variable}"
    return match.group(1)


def _acl_users() -> dict[str, str]:
    """User name -> its rules, from deploy/redis/users.acl."""
    users = {}
    for line in ACL_FILE.read_text().splitlines():
        if line.startswith("user "):
            _, name, rules = line.split(" ", 2)
            users[name] = rules
    return users


# Which database role and Redis user each app service runs as.
IDENTITIES = {
    "migrate": ("PROFILE_STATUS_OWNER_ROLE", None),
    "simulator": ("PROFILE_STATUS_OWNER_ROLE", None),
    "projector": ("PROFILE_STATUS_PROJECTOR_ROLE", "profile_status_projector"),
    "api": ("PROFILE_STATUS_API_ROLE", "profile_status_api"),
}


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_app_services_reach_the_compose_servers_as_their_own_roles(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    postgres = services["postgres"]["environment"]
    environment = services[name]["environment"]
    role_variable, redis_user = IDENTITIES[name]
    database = urlsplit(environment["DATABASE_URL"])
    assert database.scheme in ("postgresql", "postgres")
    assert (database.hostname, database.port or 5432) == ("postgres", 5432)
    assert database.path.lstrip("/") == postgres["POSTGRES_DB"]
    assert database.username == _roles_default(role_variable) != postgres["POSTGRES_USER"], "never the superuser"
    if redis_user is None:
        assert "REDIS_URL" not in environment, f"{name} has no business with Redis"
        return
    cache = urlsplit(environment["REDIS_URL"])
    assert (cache.scheme, cache.hostname, cache.port or 6379) == ("redis", "redis", 6379)
    assert cache.username == redis_user and redis_user in _acl_users()


def test_no_password_in_urls_environment_or_images(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    declared = compose.get("secrets") or {}
    for name, service in services.items():
        environment = service.get("environment") or {}
        for key, value in environment.items():
            assert not ("PASSWORD" in key and not key.endswith("_FILE")), f"{name}: {key} holds a password"
            if key.endswith("_URL"):
                assert urlsplit(str(value)).password is None, f"{name}: a password in {key}"
            if key.endswith("_FILE") and "PASSWORD" in key:
                secret = str(value).removeprefix("/run/secrets/")
                assert secret in (service.get("secrets") or []), f"{name}: {value} is not a secret it mounts"
        for secret in service.get("secrets") or []:
            assert secret in declared, f"{name}: undeclared secret {secret}"
    for secret, spec in declared.items():
        assert set(spec) == {"file"} and spec["file"].startswith("./secrets/"), secret
    ignored = [line.strip().strip("/") for line in (ROOT / ".gitignore").read_text().splitlines()]
    assert "secrets" in ignored, "./secrets/ must never be committed"
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert _ignored("secrets/pg_owner_password", patterns), "./secrets/ would go into the image's build context"
    make = (DEPLOY / "make-secrets.sh").read_text()
    assert all(secret in make for secret in declared), "make-secrets.sh must create every secret"


def test_migrate_grants_the_roles_the_services_run_as(services: dict[str, dict[str, Any]]) -> None:
    args = _subcommands()["migrate"].parse_args(_command(services["migrate"])[1:])
    assert args.projector_role == _roles_default("PROFILE_STATUS_PROJECTOR_ROLE")
    assert args.api_role == _roles_default("PROFILE_STATUS_API_ROLE")
    assert args.capture_owner == _roles_default("PROFILE_STATUS_CAPTURE_ROLE")
    assert services["migrate"]["depends_on"]["roles"]["condition"] == "service_completed_successfully"
    roles = services["roles"]
    assert roles["image"] == services["postgres"]["image"], "roles.sh runs with the server's own psql"
    assert roles.get("restart") == "no"
    assert any(str(v).startswith("./deploy/postgres:") for v in roles["volumes"])


def test_redis_runs_with_the_acl_users(services: dict[str, dict[str, Any]]) -> None:
    redis_service = services["redis"]
    assert redis_service["entrypoint"] == ["sh", "/deploy/redis/start.sh"]
    assert any(str(v).startswith("./deploy/redis:/deploy/redis") for v in redis_service["volumes"])
    users = _acl_users()
    assert users["default"].split()[-2:] == ["-@all", "+ping"], "unauthenticated clients may only ping"
    for user in ("profile_status_projector", "profile_status_api"):
        rules = users[user].split()
        assert "-@all" in rules and "+@all" not in rules and not any(r.startswith("+@") for r in rules), user
        assert not any(r in rules for r in ("+flushdb", "+flushall", "+config", "+keys", "+acl", "+script")), user


def test_servers_keep_their_data_in_named_volumes(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, target in (("postgres", "/var/lib/postgresql/data"), ("redis", "/data")):
        mounts = {
            (v["target"] if isinstance(v, dict) else v.split(":")[1]): (
                v.get("source") if isinstance(v, dict) else v.split(":")[0]
            )
            for v in services[name].get("volumes", [])
        }
        assert target in mounts, f"{name}: nothing mounted at {target}"
        assert mounts[target] in declared, f"{name}: {mounts[target]} is not a named volume"


def test_redis_persists_and_never_evicts(services: dict[str, dict[str, Any]]) -> None:
    command = _command(services["redis"])
    assert command[0] == "redis-server"
    options = dict(zip(command[1::2], command[2::2], strict=False))
    assert options.get("--appendonly") == "yes"
    assert options.get("--maxmemory-policy") == "noeviction", "the active-queue structures must never be evicted"


def test_postgres_healthcheck_uses_pg_isready(services: dict[str, dict[str, Any]]) -> None:
    test = services["postgres"]["healthcheck"]["test"]
    assert "pg_isready" in " ".join(test if isinstance(test, list) else [test])


def test_redis_healthcheck_pings(services: dict[str, dict[str, Any]]) -> None:
    test = services["redis"]["healthcheck"]["test"]
    assert "redis-cli ping" in " ".join(test if isinstance(test, list) else [test])


@pytest.mark.parametrize("prefix", [None, "other:"])
def test_projector_healthcheck_follows_the_heartbeat(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prefix: str | None
) -> None:
    code = _healthcheck_code(services["projector"])
    server = fakeredis.FakeServer()
    seen: list[str] = []

    def from_url(url: str, **kwargs: Any) -> fakeredis.FakeRedis:
        seen.append(url)
        return fakeredis.FakeRedis(server=server)

    monkeypatch.setattr(redis.Redis, "from_url", from_url)
    environment = services["projector"]["environment"]
    monkeypatch.setenv("REDIS_URL", environment["REDIS_URL"])
    secret = tmp_path / "redis_projector_password"
    secret.write_text("p@ss/w:rd\n")
    monkeypatch.setenv("PROFILE_STATUS_REDIS_PASSWORD_FILE", str(secret))
    monkeypatch.delenv("PROFILE_STATUS_DATABASE_PASSWORD_FILE", raising=False)
    if prefix is None:
        monkeypatch.delenv("PROFILE_STATUS_KEY_PREFIX", raising=False)
        keys = Keys()
    else:
        monkeypatch.setenv("PROFILE_STATUS_KEY_PREFIX", prefix)
        keys = Keys(prefix)
    client = fakeredis.FakeRedis(server=server)

    beat = Heartbeat(at=1.0, active=True).model_dump_json()
    assert _run_healthcheck(code) != 0, "healthy without a heartbeat"
    client.set(f"{keys.heartbeat}:standby:1", beat, ex=30)
    assert _run_healthcheck(code) != 0, "a standby's beat is not the active projector's"
    client.set(keys.heartbeat, b"{}", ex=30)
    assert _run_healthcheck(code) != 0, "an unreadable beat is no heartbeat"
    client.set(keys.heartbeat, beat, ex=30)
    assert _run_healthcheck(code) == 0, "unhealthy despite a heartbeat"
    # It logs in as the projector's Redis user, with the password from its secret.
    assert seen and all(redis.connection.parse_url(url) == {
        **redis.connection.parse_url(environment["REDIS_URL"]), "password": "p@ss/w:rd"
    } for url in seen)


def test_api_healthcheck_asks_readyz(services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    from api.app import create_app
    from shared.settings import Settings

    code = _healthcheck_code(services["api"])
    port = _subcommands()["api"].parse_args(_command(services["api"])[1:]).port
    asked: list[str] = []
    answer: dict[str, int] = {}

    class Response:
        @property
        def status(self) -> int:
            return answer["status"]

    def urlopen(url: str, *args: Any, **kwargs: Any) -> Response:
        asked.append(url)
        if answer["status"] >= 400:
            raise urllib.error.HTTPError(url, answer["status"], "Service Unavailable", None, None)  # type: ignore[arg-type]
        return Response()

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    answer["status"] = 200
    assert _run_healthcheck(code) == 0
    answer["status"] = 503
    assert _run_healthcheck(code) != 0
    url = urlsplit(asked[0])
    assert (url.hostname, url.port) == ("127.0.0.1", port)
    assert url.path in {route.path for route in create_app(Settings()).routes}, f"no route {url.path}"
    assert url.path == "/readyz"


# -- Dockerfile -------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        if full:
            keyword, _, rest = full.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def _shell_commands(run: str) -> list[str]:
    """The simple commands of a RUN line, normalized to single spaces."""
    return [" ".join(part.split()) for part in re.split(r"&&|\|\||;", run) if part.strip()]


def test_dockerfile_base_image() -> None:
    froms = [args for keyword, args in _instructions() if keyword == "FROM"]
    assert froms and froms[-1].split()[0] == "python:3.11-slim", froms


def test_dockerfile_installs_the_runtime_lock_then_the_package() -> None:
    runs = [command for keyword, args in _instructions() if keyword == "RUN" for command in _shell_commands(args)]
    installs = [command for command in runs if re.search(r"\bpip install\b", command)]
    assert installs == [DEPENDENCIES_INSTALL, PACKAGE_INSTALL], f"the image installs with {installs}"


def test_dockerfile_dependencies_are_a_layer_before_the_source() -> None:
    """A change to the source must not reinstall the dependencies: their layer comes first and copies only the locks."""
    instructions = _instructions()
    copies = [(i, args.split()) for i, (keyword, args) in enumerate(instructions) if keyword == "COPY"]
    locks = [i for i, words in copies if words[:-1] == list(LOCKS_IN_IMAGE)]
    source = [i for i, words in copies if words[0] == "."]
    assert locks and source, f"expected a COPY of {LOCKS_IN_IMAGE} and a COPY of the source: {copies}"
    dependencies = next(
        i for i, (keyword, args) in enumerate(instructions) if keyword == "RUN" and DEPENDENCIES_INSTALL in " ".join(args.split())
    )
    package = next(
        i for i, (keyword, args) in enumerate(instructions) if keyword == "RUN" and PACKAGE_INSTALL in " ".join(args.split())
    )
    assert locks[0] < dependencies < source[0] < package


def test_dockerfile_runs_profile_status_as_non_root() -> None:
    instructions = _instructions()
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users, "the image runs as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    entrypoints = [args for keyword, args in instructions if keyword == "ENTRYPOINT"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoints and yaml.safe_load(entrypoints[-1]) == ["profile-status"], "ENTRYPOINT must be exec form"
    assert "profile-status" in scripts
    cmds = [args for keyword, args in instructions if keyword == "CMD"]
    assert cmds, "no default CMD"
    default = yaml.safe_load(cmds[-1])
    assert isinstance(default, list) and default[0] in _subcommands()
    _parser().parse_args(default)


def test_dockerfile_exposes_the_api_port_and_is_unbuffered() -> None:
    instructions = _instructions()
    exposed = {port.split("/")[0] for keyword, args in instructions if keyword == "EXPOSE" for port in args.split()}
    assert "8000" in exposed
    env = " ".join(args for keyword, args in instructions if keyword == "ENV")
    assert re.search(r"\bPYTHONUNBUFFERED=1\b", env), "logs must not sit in a buffer"


# -- what goes into the image -----------------------------------------------------


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps `path` (or a folder above it) out of the build context."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if pattern.startswith("**/"):
            matches = any(fnmatch.fnmatch(c.rsplit("/", 1)[-1], pattern[3:]) for c in candidates)
        else:
            matches = any(fnmatch.fnmatch(c, pattern) for c in candidates)
        if matches:
            ignored = not negate
    return ignored


def _package_dirs() -> list[Path]:
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    tops = {pattern.rstrip("*").rstrip(".") for pattern in find["include"]}
    return sorted(ROOT / top for top in tops if (ROOT / top / "__init__.py").is_file())


def test_dockerignore_keeps_the_junk_out_and_the_package_in() -> None:
    patterns = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    for junk in (".git", ".venv", "shared/__pycache__", "tests", ".pytest_cache", "profile_status.egg-info", "build"):
        assert _ignored(junk, patterns), f"{junk} would be sent into the build context"
    needed = ["pyproject.toml", "README.md", *LOCKS_IN_IMAGE]
    for package in _package_dirs():
        needed += [
            str(f.relative_to(ROOT))
            for f in package.rglob("*")
            if f.is_file() and "__pycache__" not in f.parts and f.suffix not in (".pyc", ".pyo")
        ]
    kept_out = [path for path in needed if _ignored(path, patterns)]
    assert not kept_out, f".dockerignore keeps out what the image build needs: {kept_out}"


def test_non_editable_install_ships_every_data_file() -> None:
    """`pip install .` copies only .py files and package-data: every other file the packages hold must match it."""
    package_data: dict[str, list[str]] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"].get(
        "package-data", {}
    )
    missing = []
    for top in _package_dirs():
        for file in top.rglob("*"):
            if not file.is_file() or "__pycache__" in file.parts or file.suffix in (".py", ".pyc", ".pyo"):
                continue
            owner = file.parent
            while not (owner / "__init__.py").is_file():
                owner = owner.parent
            name = ".".join(owner.relative_to(ROOT).parts)
            patterns = package_data.get(name, []) + package_data.get("*", [])
            if not any(file in set(owner.glob(pattern)) for pattern in patterns):
                missing.append(str(file.relative_to(ROOT)))
    assert not missing, f"not in a non-editable install (add them to [tool.setuptools.package-data]): {missing}"
