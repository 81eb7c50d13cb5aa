"""Where the OCI backend's registry credentials come from, as the Docker CLI finds them.

The credential helpers here are real programs speaking Docker's credential-helper protocol
(``docker-credential-<name> get``, the server on stdin, ``{"Username", "Secret"}`` JSON on stdout,
exit 1 with "credentials not found in native keychain" when there are none), put on PATH; they log
each question so the tests can see what was asked.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

import pytest

from hatch_flyte.errors import ImageError
from hatch_flyte.image.credentials import credentials_for

HELPER = """#!{python}
import json, os, sys
server = sys.stdin.read().strip()
with open(os.environ["HFTEST_LOG"], "a") as log:
    log.write(f"{name} {{sys.argv[1]}} {{server}}\\n")
{body}
"""
ANSWERING = """store = json.load(open(os.environ["HFTEST_STORE"]))
if server in store:
    user, secret = store[server]
    print(json.dumps({"ServerURL": server, "Username": user, "Secret": secret}))
    sys.exit(0)
print("credentials not found in native keychain")
sys.exit(1)
"""
FAILING = """print("error getting credentials - out: `GDBus.Error: no keyring`", file=sys.stderr)
sys.exit(3)
"""


def helper_env(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Under ``root``: an empty Docker config directory (``docker/``), helpers on PATH (``bin/``),
    their store and log; no credentials in the environment. Returns ``root``."""
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DOCKER_CONFIG", str(root / "docker"))
    monkeypatch.setenv("HFTEST_LOG", str(root / "asked.log"))
    monkeypatch.setenv("HFTEST_STORE", str(root / "store.json"))
    monkeypatch.delenv("HATCH_FLYTE_REGISTRY_USER", raising=False)
    monkeypatch.delenv("HATCH_FLYTE_REGISTRY_PASSWORD", raising=False)
    (root / "docker").mkdir()
    (root / "store.json").write_text("{}")
    return root


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return helper_env(tmp_path, monkeypatch)


def helper(env: Path, name: str, body: str = ANSWERING) -> None:
    path = env / "bin" / f"docker-credential-{name}"
    path.write_text(HELPER.format(python=sys.executable, name=name, body=body))
    path.chmod(0o755)


def config(env: Path, doc: dict[str, object]) -> None:
    (env / "docker" / "config.json").write_text(json.dumps(doc))


def store(env: Path, entries: dict[str, list[str]]) -> None:
    (env / "store.json").write_text(json.dumps(entries))


def asked(env: Path) -> list[str]:
    log = env / "asked.log"
    return log.read_text().splitlines() if log.exists() else []


def auth(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_environment_then_auths(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config(env, {"auths": {"https://reg.example:5000": auth("alice", "s3cret")}})
    creds = credentials_for("reg.example:5000", use_env=True)
    assert creds is not None and (creds.username, creds.password) == ("alice", "s3cret")
    assert credentials_for("elsewhere.io", use_env=True) is None
    monkeypatch.setenv("HATCH_FLYTE_REGISTRY_USER", "bob")
    monkeypatch.setenv("HATCH_FLYTE_REGISTRY_PASSWORD", "pw")
    creds = credentials_for("reg.example:5000", use_env=True)
    assert creds is not None and creds.username == "bob"
    creds = credentials_for("reg.example:5000", use_env=False)  # a base's registry: not the env's
    assert creds is not None and creds.username == "alice"


def test_cred_helpers_per_registry_then_creds_store(env: Path) -> None:
    helper(env, "ecr")
    helper(env, "desktop")
    store(env, {"123.dkr.ecr.example": ["AWS", "ecr-token"], "ghcr.io": ["carol", "ghp"]})
    config(env, {"credsStore": "desktop", "credHelpers": {"123.dkr.ecr.example": "ecr"}})
    creds = credentials_for("123.dkr.ecr.example", use_env=True)
    assert creds is not None and (creds.username, creds.password) == ("AWS", "ecr-token")
    assert creds.source == "docker-credential-ecr"
    creds = credentials_for("ghcr.io", use_env=True)
    assert creds is not None and (creds.username, creds.password, creds.source) == (
        "carol", "ghp", "docker-credential-desktop"
    )  # fmt: skip
    assert asked(env) == ["ecr get 123.dkr.ecr.example", "desktop get ghcr.io"]


def test_docker_hub_is_asked_by_its_config_key(env: Path) -> None:
    helper(env, "desktop")
    store(env, {"https://index.docker.io/v1/": ["dave", "hub-pat"]})
    config(env, {"credsStore": "desktop"})
    creds = credentials_for("docker.io", use_env=True)
    assert creds is not None and (creds.username, creds.password) == ("dave", "hub-pat")
    assert asked(env) == ["desktop get https://index.docker.io/v1/"]


def test_helper_without_credentials_falls_back_to_auths(env: Path) -> None:
    helper(env, "desktop")
    config(env, {"credsStore": "desktop", "auths": {"reg.example:5000": auth("erin", "pw")}})
    creds = credentials_for("reg.example:5000", use_env=True)
    assert creds is not None and (creds.username, creds.source) == (
        "erin",
        str(env / "docker" / "config.json"),
    )
    assert credentials_for("nothing.example", use_env=True) is None
    assert asked(env) == ["desktop get reg.example:5000", "desktop get nothing.example"]


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (
            "missing",
            r"credential helper 'docker-credential-pass' for reg\.example:5000, and it is not installed",
        ),
        ("failing", r"docker-credential-pass' .*failed \(exit 3\): error getting credentials .*no keyring"),
        ("garbage", r"answered no Username/Secret JSON"),
        ("token", r"holds an identity token"),
    ],
)
def test_helper_faults_are_clear_errors(env: Path, setup: str, expected: str) -> None:
    config(env, {"credHelpers": {"reg.example:5000": "pass"}})
    if setup == "failing":
        helper(env, "pass", FAILING)
    elif setup == "garbage":
        helper(env, "pass", 'print("<html>oops</html>")\n')
    elif setup == "token":
        helper(env, "pass")
        store(env, {"reg.example:5000": ["<token>", "refresh-token"]})
    with pytest.raises(ImageError, match=expected) as error:
        credentials_for("reg.example:5000", use_env=True)
    message = str(error.value)
    assert str(env / "docker" / "config.json") in message
    assert "refresh-token" not in message  # never the secret
