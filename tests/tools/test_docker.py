"""docker/: the compose file agrees with the settings the code reads, and the Dockerfile gives
workers Debian's Chromium and ffmpeg.

Most of it needs no Docker engine. The compose file is read with PyYAML (anchors and `<<` merges
resolved) and resolved here the way Compose resolves it -- `${VAR:-default}` interpolation, and
`NAME:` entries without a value taken from the environment or left unset -- once with the
defaults and once with every variable overridden, so that "the database URL carries the
postgres service's password" holds whatever an operator puts in docker/.env.
`docker compose config` runs only when the docker CLI has the compose plugin, and the image is
built only where a Docker engine answers (else those tests skip, saying why).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from cryptography.fernet import Fernet

from api.auth import is_loopback
from api.cli import build_parser
from services.settings import NOT_SETTINGS, Settings, setting_variables
from storage.objects import S3ObjectStore, open_store
from storage.sealing import load_key

ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = ROOT / "docker"
COMPOSE_FILE = DOCKER_DIR / "compose.yaml"
DOCKERFILE = DOCKER_DIR / "Dockerfile"
README = ROOT / "README.md"

GLASSBOX_SERVICES = ("api", "worker")
# Settings that must be the same in every Glassbox process of the deployment.
SHARED_SETTINGS = (
    "GLASSBOX_DATABASE_URL",
    "GLASSBOX_STORAGE_URL",
    "GLASSBOX_S3_ENDPOINT",
    "GLASSBOX_S3_ACCESS_KEY",
    "GLASSBOX_S3_SECRET_KEY",
    "GLASSBOX_S3_REGION",
    "GLASSBOX_S3_SECURE",
    "GLASSBOX_SECRET_KEY",
)
POSTGRES_PORT = 5432  # the postgres image's, unless PGPORT says otherwise
MINIO_PORT = 9000  # `minio server`'s S3 port, unless --address says otherwise


# --- Compose interpolation -----------------------------------------------------------------


class MissingVariable(KeyError):
    pass


_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """`$$`, `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`,
    `${VAR?error}`, `${VAR:+alt}` and `${VAR+alt}`, as Compose resolves them."""

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        value = env.get(name)
        unset_or_empty = not value
        if op in (":-", "-"):
            missing = unset_or_empty if op == ":-" else value is None
            return arg if missing else str(value)
        if op in (":?", "?"):
            missing = unset_or_empty if op == ":?" else value is None
            if missing:
                raise MissingVariable(f"{name}: {arg}")
            return str(value)
        if op in (":+", "+"):
            present = not unset_or_empty if op == ":+" else value is not None
            return arg if present else ""
        return value or ""

    return _INTERPOLATION.sub(replace, text)


def resolve(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(item, env) for item in node]
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    return node


def raw_compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict), "compose.yaml is not a mapping"
    return loaded


def variables_in_compose() -> set[str]:
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, str):
            for match in _INTERPOLATION.finditer(node):
                name = match.group("braced") or match.group("bare")
                if name:
                    names.add(name)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)

    walk(raw_compose())
    return names


SECRET_KEY = Fernet.generate_key().decode()
# Every variable the file reads, set to something that is not its default.
OVERRIDES = {
    "GLASSBOX_SECRET_KEY": SECRET_KEY,
    "GLASSBOX_WEBHOOK_SECRET": "hook-secret",
    "GLASSBOX_PUBLIC_URL": "https://glassbox.example.com",
    "POSTGRES_PASSWORD": "pg-password-override",
    "MINIO_ROOT_USER": "minio-user-override",
    "MINIO_ROOT_PASSWORD": "minio-password-override",
    "GLASSBOX_LLM_BASE_URL": "http://llm.example.com/v1",
    "GLASSBOX_LLM_API_KEY": "llm-key",
    "GLASSBOX_LLM_MODEL": "a-model",
}
ENVIRONMENTS = {
    "defaults": {"GLASSBOX_SECRET_KEY": SECRET_KEY},
    "overridden": OVERRIDES,
}


def resolve_compose(env: Mapping[str, str]) -> dict[str, Any]:
    """The compose file as Compose sees it with `env` (the shell plus docker/.env)."""
    resolved: dict[str, Any] = resolve(raw_compose(), env)
    for service in (resolved.get("services") or {}).values():
        environment = service.get("environment")
        if isinstance(environment, dict):
            # `NAME:` with no value: the operator's value if there is one, else unset.
            service["environment"] = {
                name: env[name] if value is None else value
                for name, value in environment.items()
                if value is not None or name in env
            }
    return resolved


@pytest.fixture(params=sorted(ENVIRONMENTS))
def compose(request: pytest.FixtureRequest) -> dict[str, Any]:
    return resolve_compose(ENVIRONMENTS[request.param])


def services(compose: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose.get("services")
    assert isinstance(found, dict), "compose.yaml has no services"
    return found


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) for item in env)
        return {pair[0]: (pair[1] if len(pair) > 1 else "") for pair in pairs}
    return {
        str(k): "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
        for k, v in env.items()
    }


def command(service: Mapping[str, Any]) -> list[str]:
    cmd = service.get("command")
    if cmd is None:
        return []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(part) for part in cmd]


def option(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def port_mappings(service: Mapping[str, Any]) -> list[tuple[str | None, int | None, int]]:
    """(host_ip, published, target) of every published port."""
    mappings: list[tuple[str | None, int | None, int]] = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            published = entry.get("published")
            mappings.append(
                (entry.get("host_ip"), int(published) if published else None, int(entry["target"]))
            )
            continue
        spec = str(entry).split("/", 1)[0]
        parts = spec.rsplit(":", 2)
        if len(parts) == 1:
            mappings.append((None, None, int(parts[0])))
        elif len(parts) == 2:
            mappings.append((None, int(parts[0]) if parts[0] else None, int(parts[1])))
        else:
            mappings.append((parts[0] or None, int(parts[1]) if parts[1] else None, int(parts[2])))
    return mappings


def dependencies(service: Mapping[str, Any]) -> dict[str, str]:
    """The services it waits for, with the condition."""
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):
        return {name: "service_started" for name in depends}
    return {
        name: (spec or {}).get("condition", "service_started") for name, spec in depends.items()
    }


def waits_for(all_services: Mapping[str, Any], name: str) -> dict[str, str]:
    """Every service `name` waits for, directly or through another, with the condition."""
    seen: dict[str, str] = {}
    todo = [name]
    while todo:
        for dep, condition in dependencies(all_services[todo.pop()]).items():
            if dep not in seen:
                seen[dep] = condition
                todo.append(dep)
    return seen


def known_variables() -> set[str]:
    """The settings, and the variables Glassbox reads that are no setting (the demo's port)."""
    return set(setting_variables()) | NOT_SETTINGS


@pytest.fixture
def glassbox_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No GLASSBOX_* variable of the machine running the tests leaks into the settings."""
    for name in list(os.environ):
        if name.startswith("GLASSBOX_"):
            monkeypatch.delenv(name)
    yield


# --- Dockerfile ----------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
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
        keyword, _, args = full.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, args in dockerfile_instructions():
        if keyword != "ENV":
            continue
        words = shlex.split(args)
        if words and "=" not in words[0]:  # legacy `ENV NAME value`
            env[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            name, _, value = word.partition("=")
            env[name] = value
    return env


def apt_packages() -> set[str]:
    packages: set[str] = set()
    for keyword, args in dockerfile_instructions():
        if keyword != "RUN":
            continue
        lexer = shlex.shlex(args, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        commands: list[list[str]] = [[]]
        for token in lexer:  # quotes respected; `&&`, `;`, `|` end a command
            if token and set(token) <= set("&;|()<>"):
                commands.append([])
            else:
                commands[-1].append(token)
        for words in commands:
            if len(words) >= 2 and words[0] in ("apt-get", "apt") and "install" in words:
                after = words[words.index("install") + 1 :]
                packages.update(w for w in after if not w.startswith("-"))
    return packages


# --- the compose file ----------------------------------------------------------------------


def test_compose_has_the_four_services(compose: dict[str, Any]) -> None:
    found = services(compose)
    for name in ("postgres", "minio", *GLASSBOX_SERVICES):
        assert name in found, f"compose.yaml has no {name} service (has {sorted(found)})"
    assert str(found["postgres"]["image"]).startswith("postgres:16")
    assert str(found["minio"]["image"]).split(":")[0] in ("minio/minio", "quay.io/minio/minio")


def test_every_glassbox_variable_is_a_real_setting() -> None:
    known = known_variables()
    readme = README.read_text()
    for path in (COMPOSE_FILE, DOCKERFILE):
        used = set(re.findall(r"GLASSBOX_[A-Z0-9_]+", path.read_text()))
        assert used, f"{path.name} names no GLASSBOX_* setting"
        unknown = sorted(used - known)
        assert not unknown, f"{path.name} uses {unknown}, which no Glassbox setting reads"
        undocumented = sorted(name for name in used if f"`{name}`" not in readme)
        assert not undocumented, f"{path.name} uses {undocumented}, not in the README"


def test_glassbox_services_run_from_the_dockerfile(compose: dict[str, Any]) -> None:
    all_services = services(compose)
    users = [name for name, s in all_services.items() if "build" in s]
    assert set(GLASSBOX_SERVICES) <= set(users)
    for name in users:
        build = all_services[name]["build"]
        context = (DOCKER_DIR / (build if isinstance(build, str) else build["context"])).resolve()
        dockerfile = context / (
            "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        )
        assert context == ROOT, f"{name}: the build context must be the repository root"
        assert dockerfile.resolve() == DOCKERFILE, f"{name}: builds {dockerfile}, not docker/"
    images = {all_services[name].get("image") for name in users}
    assert len(images) == 1, f"services built from the Dockerfile name different images: {images}"


def test_glassbox_commands_are_real_cli_commands(compose: dict[str, Any]) -> None:
    parser = build_parser()
    for name, service in services(compose).items():
        if "build" not in service:
            continue
        try:
            args = parser.parse_args(command(service))
        except SystemExit:
            pytest.fail(f"{name}: `glassbox {' '.join(command(service))}` is not a valid command")
        if name == "api":
            assert args.command == "serve"
            assert args.workers == 0, "the api service should leave runs to the worker service"
        elif name == "worker":
            assert args.command == "worker"
            assert args.concurrency and args.concurrency >= 1


def test_api_publishes_the_port_it_serves_on(compose: dict[str, Any]) -> None:
    api = services(compose)["api"]
    args = command(api)
    host, port = option(args, "--host"), option(args, "--port")
    env = environment(api)
    host = host or env.get("GLASSBOX_HOST", "127.0.0.1")
    port_number = int(port or env.get("GLASSBOX_PORT", "8000"))
    # Published ports reach the container's interface, never its loopback.
    assert not is_loopback(host), f"api listens on {host}: unreachable through a published port"
    mappings = port_mappings(api)
    assert mappings, "the api service publishes no port"
    targets = {target for _, _, target in mappings}
    assert targets == {port_number}, f"api serves on {port_number} but publishes {targets}"
    published = {p for _, p, _ in mappings}
    assert published == {port_number}, f"api is published on {published}, not {port_number}"
    public = env.get("GLASSBOX_PUBLIC_URL")
    if public and urlsplit(public).hostname in ("localhost", "127.0.0.1"):
        assert urlsplit(public).port == port_number
    health = api.get("healthcheck")
    if health:
        urls = re.findall(r"https?://[^\s'\"]+", " ".join(map(str, health["test"])))
        for url in urls:
            assert urlsplit(url).port == port_number, f"the healthcheck asks {url}"


def test_database_url_is_the_postgres_service(compose: dict[str, Any]) -> None:
    all_services = services(compose)
    pg_env = environment(all_services["postgres"])
    port = int(pg_env.get("PGPORT", POSTGRES_PORT))
    for name in GLASSBOX_SERVICES:
        url = urlsplit(environment(all_services[name])["GLASSBOX_DATABASE_URL"])
        assert url.scheme in ("postgresql", "postgres"), f"{name}: {url.geturl()}"
        assert url.hostname == "postgres", f"{name}: the database host is {url.hostname}"
        assert (url.port or POSTGRES_PORT) == port
        assert url.username == pg_env.get("POSTGRES_USER", "postgres")
        assert url.password == pg_env["POSTGRES_PASSWORD"]
        assert url.path.lstrip("/") == pg_env.get("POSTGRES_DB", url.username)


def test_s3_settings_are_the_minio_service(compose: dict[str, Any]) -> None:
    all_services = services(compose)
    minio = all_services["minio"]
    minio_env = environment(minio)
    args = command(minio)
    assert args[:1] == ["server"], f"minio runs {args}"
    address = option(args, "--address")
    minio_port = int(address.rsplit(":", 1)[1]) if address else MINIO_PORT
    for name in GLASSBOX_SERVICES:
        env = environment(all_services[name])
        assert urlsplit(env["GLASSBOX_STORAGE_URL"]).scheme == "s3"
        host, _, port = env["GLASSBOX_S3_ENDPOINT"].partition(":")
        assert host == "minio", f"{name}: S3 endpoint {env['GLASSBOX_S3_ENDPOINT']}"
        assert int(port or 443) == minio_port
        assert env["GLASSBOX_S3_ACCESS_KEY"] == minio_env["MINIO_ROOT_USER"]
        assert env["GLASSBOX_S3_SECRET_KEY"] == minio_env["MINIO_ROOT_PASSWORD"]
        assert env["GLASSBOX_S3_SECURE"].lower() in ("false", "0", "no", "off"), (
            "MinIO in the compose file has no TLS certificate"
        )


def test_glassbox_services_share_storage_and_secret_key(compose: dict[str, Any]) -> None:
    all_services = services(compose)
    glassbox = [name for name, s in all_services.items() if "build" in s]
    reference = environment(all_services["api"])
    for setting in SHARED_SETTINGS:
        assert reference.get(setting), f"api has no {setting}"
        for name in glassbox:
            value = environment(all_services[name]).get(setting)
            assert value == reference[setting], f"{name} has another {setting} than api"
    assert reference["GLASSBOX_SECRET_KEY"] == SECRET_KEY  # from docker/.env, never a default


def test_secret_key_must_come_from_the_operator() -> None:
    """No sealing key is baked into the file: without one, Compose refuses to start."""
    with pytest.raises(MissingVariable, match="GLASSBOX_SECRET_KEY"):
        resolve_compose({})
    assert "GLASSBOX_SECRET_KEY" in variables_in_compose()


def test_the_code_accepts_the_settings(compose: dict[str, Any], glassbox_env: None) -> None:
    """The settings classes read each service's environment (plus the image's) as intended."""
    image_env = {k: v for k, v in dockerfile_env().items() if k.startswith("GLASSBOX_")}
    all_services = services(compose)
    for name in GLASSBOX_SERVICES:
        env = {**image_env, **environment(all_services[name])}
        with pytest.MonkeyPatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            settings = Settings.load()
        storage, service, runner, llm = (
            settings.storage,
            settings.service,
            settings.runner,
            settings.llm,
        )
        # An empty value is not "unset": GLASSBOX_LLM_BASE_URL="" would be an empty endpoint.
        empty = sorted(k for k, v in env.items() if k.startswith("GLASSBOX_") and v == "")
        assert not empty, f"{name} sets {empty} to empty strings; leave them unset instead"
        assert storage.resolved_database_url == env["GLASSBOX_DATABASE_URL"]
        assert storage.s3_secure is False
        store = open_store(storage)
        assert isinstance(store, S3ObjectStore), f"{name} keeps artifacts in {store!r}"
        assert store.bucket == urlsplit(env["GLASSBOX_STORAGE_URL"]).netloc
        assert service.secret_key is not None
        assert load_key(service.secret_key.get_secret_value(), Path("/nonexistent")) == (
            SECRET_KEY.encode()
        )
        assert runner.chromium == "/usr/bin/chromium"
        assert runner.ffmpeg == env.get("GLASSBOX_FFMPEG")
        assert runner.auto_migrate is True
        if "GLASSBOX_LLM_BASE_URL" in env:
            assert llm.llm_base_url == env["GLASSBOX_LLM_BASE_URL"]


def test_dependencies_are_healthy_before_glassbox_starts(compose: dict[str, Any]) -> None:
    all_services = services(compose)
    for name in GLASSBOX_SERVICES:
        waited = waits_for(all_services, name)
        for dep in ("postgres", "minio"):
            assert waited.get(dep) == "service_healthy", f"{name} does not wait for {dep}"
    for name, service in all_services.items():
        for dep, condition in dependencies(service).items():
            assert dep in all_services, f"{name} depends on a missing service {dep}"
            if condition == "service_healthy":
                assert all_services[dep].get("healthcheck"), f"{dep} has no healthcheck"


def test_worker_is_fit_for_chromium(compose: dict[str, Any]) -> None:
    worker = services(compose)["worker"]
    assert worker.get("shm_size"), "Chromium needs more than Docker's 64 MB of /dev/shm"
    assert not port_mappings(worker), "workers serve nothing"


def test_data_lives_in_named_volumes(compose: dict[str, Any]) -> None:
    all_services = services(compose)
    volumes = compose.get("volumes") or {}
    for name, path in (("postgres", "/var/lib/postgresql/data"), ("minio", "/data")):
        mounts = [str(m) for m in all_services[name].get("volumes") or []]
        named = [m for m in mounts if m.split(":")[1:2] == [path]]
        assert named, f"{name} keeps {path} in no volume"
        assert named[0].split(":")[0] in volumes, f"{name}: {named[0]} is not a named volume"


# --- the Dockerfile ------------------------------------------------------------------------


def test_dockerfile_installs_debian_chromium_and_ffmpeg() -> None:
    instructions = dockerfile_instructions()
    base = next(args for keyword, args in instructions if keyword == "FROM")
    assert re.search(r"bookworm|trixie|debian", base), f"not a Debian image: {base}"
    packages = apt_packages()
    assert {"chromium", "ffmpeg"} <= packages, f"apt-get installs {sorted(packages)}"
    text = " ".join(args for _, args in instructions)
    assert "playwright install" not in text, "the browser comes from Debian, not Playwright"
    env = dockerfile_env()
    assert env.get("GLASSBOX_CHROMIUM") == "/usr/bin/chromium"
    if "GLASSBOX_FFMPEG" in env:
        assert env["GLASSBOX_FFMPEG"] == "/usr/bin/ffmpeg"


def test_dockerfile_python_and_packages_match_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    instructions = dockerfile_instructions()
    base = next(args for keyword, args in instructions if keyword == "FROM")
    match = re.search(r"python:(\d+)\.(\d+)", base)
    assert match, f"not a python image: {base}"
    minimum = re.search(r"(\d+)\.(\d+)", project["project"]["requires-python"])
    assert minimum
    assert (int(match[1]), int(match[2])) >= (int(minimum[1]), int(minimum[2]))
    copied = {
        source.rstrip("/")
        for keyword, args in instructions
        if keyword == "COPY" and not args.startswith("--")
        for source in shlex.split(args)[:-1]
    }
    for package in project["tool"]["setuptools"]["packages"]["find"]["include"]:
        top = package.rstrip("*").rstrip(".")
        assert (ROOT / top).is_dir(), f"pyproject packages {top}/, which does not exist"
        assert top in copied, f"the image does not copy {top}/ (copies {sorted(copied)})"
    entrypoint = next(args for keyword, args in instructions if keyword == "ENTRYPOINT")
    assert "glassbox" in entrypoint, "compose commands are glassbox sub-commands"
    # BuildKit reads docker/Dockerfile.dockerignore for this Dockerfile: what the image copies
    # must not be ignored.
    ignore = DOCKER_DIR / "Dockerfile.dockerignore"
    if ignore.exists():
        rules = [
            line.strip()
            for line in ignore.read_text().splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]
        if rules[:1] == ["*"]:
            for source in copied:
                assert f"!{source}" in rules or f"!{source}/" in rules, (
                    f"Dockerfile.dockerignore leaves {source} out of the build context"
                )


# --- docker compose itself -----------------------------------------------------------------


def _compose_cli() -> list[str]:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI on this machine")
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=60
    )
    if probe.returncode != 0:
        reason = (probe.stderr or probe.stdout).strip().splitlines()[:1]
        pytest.skip(f"the docker CLI has no compose plugin ({' '.join(reason)})")
    return [docker, "compose"]


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    """`docker compose config` reads and validates the file without an engine."""
    cli = _compose_cli()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLASSBOX_")}
    env["GLASSBOX_SECRET_KEY"] = SECRET_KEY
    result = subprocess.run(
        [*cli, "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    refused = subprocess.run(
        [*cli, "-f", str(COMPOSE_FILE), "--env-file", os.devnull, "config", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in env.items() if k != "GLASSBOX_SECRET_KEY"},
        cwd=tmp_path,
    )
    assert refused.returncode != 0
    assert "GLASSBOX_SECRET_KEY" in refused.stderr


# --- the image, built ----------------------------------------------------------------------

IMAGE_TAG = "glassbox:pytest"
BUILD_TIMEOUT_S = 1800
# What a build says when it cannot reach a registry, Debian's mirrors or PyPI.
_OFFLINE = re.compile(
    r"temporary failure (in name )?resolution|could not resolve|no such host|"
    r"network is unreachable|dial tcp|i/o timeout|tls handshake timeout|"
    r"failed to resolve source metadata|failed to fetch|pull access denied|"
    r"failed to establish a new connection|connection (refused|reset|timed out)",
    re.IGNORECASE,
)


def _docker_engine() -> str:
    """The docker CLI, once `docker info` shows its engine answers; else the test skips."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI on this machine")
    try:
        probe = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        pytest.skip("docker daemon unreachable: `docker info` did not answer within 30 s")
    if probe.returncode != 0 or not probe.stdout.strip():
        lines = [line for line in (probe.stderr or probe.stdout).splitlines() if line.strip()]
        pytest.skip(f"docker daemon unreachable: {lines[-1] if lines else 'docker info failed'}")
    return docker


def _offline_reason(docker: str, output: str) -> str | None:
    """Why a failed build is the network's fault (then the test skips), or None."""
    found = _OFFLINE.search(output)
    if found is None:
        return None
    line = next(line for line in output.splitlines() if found.group(0) in line).strip()
    base = next(args for keyword, args in dockerfile_instructions() if keyword == "FROM")
    image = base.split()[0]
    local = subprocess.run(
        [docker, "image", "inspect", image], capture_output=True, text=True, timeout=60
    )
    if local.returncode != 0:
        return f"base image {image} not available offline ({line[:300]})"
    return f"the build needs the network for its packages ({line[:300]})"


@pytest.mark.timeout(BUILD_TIMEOUT_S + 120)
def test_the_image_builds_and_runs_glassbox() -> None:
    """`docker build -f docker/Dockerfile .` as docker/README.md says, then the image's CLI."""
    docker = _docker_engine()
    built = subprocess.run(
        [docker, "build", "-f", str(DOCKERFILE), "-t", IMAGE_TAG, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        cwd=ROOT,
    )
    output = built.stdout + built.stderr
    if built.returncode != 0:
        reason = _offline_reason(docker, output)
        if reason:
            pytest.skip(reason)
        pytest.fail(f"docker build failed:\n{output[-6000:]}", pytrace=False)
    ran = subprocess.run(
        [docker, "run", "--rm", IMAGE_TAG, "--help"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr
    for command in ("run", "serve", "worker", "apikey", "db"):
        assert command in ran.stdout, f"`glassbox --help` in the image lacks {command}"
    probe = subprocess.run(
        [
            docker,
            "run",
            "--rm",
            "--entrypoint",
            "python",
            IMAGE_TAG,
            "-c",
            "import api.app, runner.worker, storage.migrate; from ui.routes import PAGES, STATIC; "
            "assert (STATIC / 'run.js').is_file() and (PAGES / 'run.html').is_file()",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert probe.returncode == 0, probe.stderr
