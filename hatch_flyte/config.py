"""Reading and validating the ``[tool.flyte]`` table of pyproject.toml.

All problems in one file are collected and raised as a single :class:`ConfigError`, each naming
the dotted key, what was found and what is expected.
"""

from __future__ import annotations

import difflib
import posixpath
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from hatch_flyte.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

Compression = Literal["fast", "compatible"]
SecretsPolicy = Literal["warn", "error", "off"]
Discovery = Literal["static", "import"]
CopyStyle = Literal["all", "loaded-modules", "none"]

COMPRESSIONS: tuple[str, ...] = ("fast", "compatible")
SECRETS_POLICIES: tuple[str, ...] = ("warn", "error", "off")
DISCOVERIES: tuple[str, ...] = ("static", "import")
COPY_STYLES: tuple[str, ...] = ("all", "loaded-modules", "none")

_ENV_REF = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class BundleConfig:
    """``[tool.flyte.bundle]``: how the fast-registration code bundle is made."""

    #: ``all``: every file under the root the ignore rules keep; ``loaded-modules``: the files of
    #: the modules the environments' modules import (flyte deploy's default); ``none``: no bundle.
    copy_style: CopyStyle = "all"
    ignores: tuple[str, ...] = ()
    keep_default_ignores: bool = True
    include: tuple[str, ...] = ()
    compression: Compression = "fast"
    secrets: SecretsPolicy = "warn"


@dataclass(frozen=True)
class ImageConfig:
    """``[tool.flyte.image]``: the full-build image (code baked in, no fast registration)."""

    backend: str = "docker"
    #: Base image reference; default: ``python:<X.Y>-slim-bookworm`` for the building Python (or the
    #: oldest series the project's ``Requires-Python`` allows).
    base: str | None = None
    registry: str | None = None
    #: Repository name; default: the project name.
    name: str | None = None
    #: Default: a content-derived tag and the project version.
    tags: tuple[str, ...] | None = None
    #: ``linux/amd64`` style; default: the Docker engine's own platform.
    platform: str | None = None
    push: bool = False
    #: Interpreter inside the base image; default: the first of python3/python found in it.
    python: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    #: Made writable by every user id (mode 1777): pods may run as any user, and fast registration
    #: extracts the bundle into it. ``/home/flyte`` as in flyte's own images.
    workdir: str = "/home/flyte"
    #: Also copy the bundle's source files to /opt/hatch-flyte/source (not on sys.path), for debugging.
    source: bool = False
    extra_packages: tuple[str, ...] = ()
    #: A pip constraints/requirements file (project-relative) pinning the image's dependencies.
    constraints: str | None = None
    #: Pin the image's dependencies to the project's pylock.toml or uv.lock (unless ``constraints``).
    lock: bool = True
    #: False: a dependency-only image (Python, the runtime dependencies and flyte, not the project),
    #: run with a code bundle (fast registration).
    include_project: bool = True
    #: A Dockerfile (project-relative) built as the base; mutually exclusive with ``base``.
    dockerfile: str | None = None
    #: The Dockerfile's build context (project-relative); default: the Dockerfile's directory.
    context: str | None = None
    #: ``ARG`` values for the Dockerfile's build.
    build_args: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class FlyteConfig:
    """The whole ``[tool.flyte]`` table, validated. Paths stay as written (project-relative)."""

    package: str | None = None
    root_dir: str | None = None
    environments: tuple[str, ...] | None = None
    discovery: Discovery = "static"
    python: str | None = None
    discovery_timeout: float = 300.0
    #: Unresolved environments (and files that look like secrets) are errors, not warnings.
    strict: bool = False
    bundle: BundleConfig = field(default_factory=BundleConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    #: False when pyproject.toml has no ``[tool.flyte]`` table (all defaults).
    present: bool = False


def load_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, turning syntax errors into a :class:`ConfigError` with line and column."""
    try:
        with path.open("rb") as f:
            data: dict[str, Any] = tomllib.load(f)
            return data
    except FileNotFoundError:
        raise ConfigError(
            str(path), ["file not found: create it or point at the project directory"]
        ) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(path), [f"malformed TOML: {e}"]) from None
    except OSError as e:
        raise ConfigError(str(path), [f"cannot read the file: {e.strerror or e}"]) from None


def load_config(pyproject: Path) -> FlyteConfig:
    """Load and validate ``[tool.flyte]`` from ``pyproject``."""
    data = load_toml(pyproject)
    return parse_config(data, pyproject)


def parse_config(data: Mapping[str, Any], pyproject: Path) -> FlyteConfig:
    """Validate the ``[tool.flyte]`` part of an already parsed pyproject.toml."""
    tool = data.get("tool", {})
    raw = tool.get("flyte") if isinstance(tool, Mapping) else None
    if raw is None:
        return FlyteConfig()
    checker = _Checker(pyproject.parent)
    if not isinstance(raw, Mapping):
        raise ConfigError(str(pyproject), [f"`tool.flyte` must be a table, got {_kind(raw)}"])
    cfg = checker.table(raw, "tool.flyte", _TOP_KEYS)
    sub_tables: dict[str, dict[str, Any]] = {}
    for name, keys in (("bundle", _BUNDLE_KEYS), ("image", _IMAGE_KEYS)):
        sub_raw = raw.get(name, {})
        if isinstance(sub_raw, Mapping):
            sub_tables[name] = checker.table(sub_raw, f"tool.flyte.{name}", keys)
        else:
            checker.problems.append(f"`tool.flyte.{name}` must be a table, got {_kind(sub_raw)}")
    bundle = sub_tables.get("bundle", {})
    if bundle.get("copy_style") == "none" and bundle.get("include"):
        checker.problems.append(
            '`tool.flyte.bundle.include` is set but `tool.flyte.bundle.copy-style` is "none", so no bundle '
            'is made to hold it; remove `include`, or choose copy-style "all" or "loaded-modules"'
        )
    if "image" in sub_tables:
        _check_image(checker, sub_tables["image"], raw.get("image", {}))
        if sub_tables["image"].get("include_project") is False and bundle.get("copy_style") == "none":
            checker.problems.append(
                '`tool.flyte.image.include-project` = false with `tool.flyte.bundle.copy-style` = "none": '
                "the image holds no code and no bundle is made to bring it, so no task could run; include "
                'the project in the image, or choose copy-style "all" or "loaded-modules"'
            )
    if checker.problems:
        raise ConfigError(str(pyproject), checker.problems)
    cfg.pop("bundle", None)
    cfg.pop("image", None)
    return FlyteConfig(
        bundle=BundleConfig(**sub_tables["bundle"]),
        image=ImageConfig(**sub_tables["image"]),
        present=True,
        **cfg,
    )


# --- validation ------------------------------------------------------------------------------

Validator = Callable[["_Checker", Any, str], Any]


def _kind(value: Any) -> str:
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a number", list: "an array"}
    for t, name in names.items():
        if type(value) is t:
            return f"{name} ({value!r})" if t is not list else name
    if isinstance(value, Mapping):
        return "a table"
    return type(value).__name__


class _Checker:
    def __init__(self, project_dir: Path) -> None:
        self.project_dir = project_dir.resolve()
        self.problems: list[str] = []

    def table(
        self, raw: Mapping[str, Any], prefix: str, keys: Mapping[str, tuple[str, Validator]]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in raw.items():
            dotted = f"{prefix}.{key}"
            if key not in keys:
                near = difflib.get_close_matches(key, list(keys), n=1, cutoff=0.6)
                hint = f"; did you mean `{near[0]}`?" if near else f"; valid keys: {', '.join(sorted(keys))}"
                self.problems.append(f"unknown key `{dotted}`{hint}")
                continue
            attr, validator = keys[key]
            before = len(self.problems)
            checked = validator(self, value, dotted)
            if len(self.problems) == before:
                out[attr] = checked
        return out

    # Each validator appends to self.problems and returns the converted value.
    def string(self, value: Any, key: str) -> Any:
        if not isinstance(value, str) or not value.strip():
            self.problems.append(f"`{key}` must be a non-empty string, got {_kind(value)}")
        return value

    def boolean(self, value: Any, key: str) -> Any:
        if not isinstance(value, bool):
            self.problems.append(f"`{key}` must be true or false, got {_kind(value)}")
        return value

    def positive_number(self, value: Any, key: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            self.problems.append(f"`{key}` must be a positive number of seconds, got {_kind(value)}")
            return value
        return float(value)

    def string_list(self, value: Any, key: str) -> Any:
        if not isinstance(value, list):
            self.problems.append(f"`{key}` must be an array of strings, got {_kind(value)}")
            return value
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                self.problems.append(f"`{key}[{i}]` must be a non-empty string, got {_kind(item)}")
        return tuple(value)

    def project_path(self, value: Any, key: str) -> Any:
        """A path relative to the project directory that must stay inside it."""
        if not isinstance(value, str) or not value.strip():
            self.problems.append(f"`{key}` must be a non-empty path string, got {_kind(value)}")
            return value
        self._check_inside(value, key)
        return value

    def project_path_list(self, value: Any, key: str) -> Any:
        items = self.string_list(value, key)
        if isinstance(items, tuple):
            for i, item in enumerate(items):
                if isinstance(item, str) and item.strip():
                    self._check_inside(item, f"{key}[{i}]")
        return items

    def _check_inside(self, value: str, key: str) -> None:
        if not self._inside(value):
            self.problems.append(
                f"`{key}` = {value!r} escapes the project directory {self.project_dir}; "
                "use a path relative to the directory of pyproject.toml that stays inside it"
            )

    def environment_refs(self, value: Any, key: str) -> Any:
        items = self.string_list(value, key)
        if isinstance(items, tuple):
            for i, item in enumerate(items):
                if isinstance(item, str) and not _ENV_REF.match(item):
                    self.problems.append(
                        f"`{key}[{i}]` = {item!r} is not of the form 'package.module:attribute'"
                    )
        return items

    def _inside(self, value: str) -> bool:
        target = (self.project_dir / value).resolve()
        return target == self.project_dir or self.project_dir in target.parents


def _enum(choices: tuple[str, ...]) -> Validator:
    def check(checker: _Checker, value: Any, key: str) -> Any:
        if value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            near = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            checker.problems.append(f"`{key}` must be one of {allowed}, got {_kind(value)}{hint}")
        return value

    return check


def _package_name(checker: _Checker, value: Any, key: str) -> Any:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", value):
        checker.problems.append(
            f"`{key}` must be an importable package name such as 'my_pkg', got {_kind(value)}"
        )
    return value


def _table_marker(checker: _Checker, value: Any, key: str) -> Any:
    return value  # validated separately, as its own table


_TOP_KEYS: dict[str, tuple[str, Validator]] = {
    "package": ("package", _package_name),
    "root-dir": ("root_dir", _Checker.project_path),
    "environments": ("environments", _Checker.environment_refs),
    "discovery": ("discovery", _enum(DISCOVERIES)),
    "python": ("python", _Checker.string),
    "discovery-timeout": ("discovery_timeout", _Checker.positive_number),
    "strict": ("strict", _Checker.boolean),
    "bundle": ("bundle", _table_marker),
    "image": ("image", _table_marker),
}

_BUNDLE_KEYS: dict[str, tuple[str, Validator]] = {
    "copy-style": ("copy_style", _enum(COPY_STYLES)),
    "ignores": ("ignores", _Checker.string_list),
    "keep-default-ignores": ("keep_default_ignores", _Checker.boolean),
    "include": ("include", _Checker.project_path_list),
    "compression": ("compression", _enum(COMPRESSIONS)),
    "secrets": ("secrets", _enum(SECRETS_POLICIES)),
}


def as_compression(value: str) -> Compression:
    """Narrow a CLI string to :data:`Compression` (argparse already restricts the choices)."""
    if value not in COMPRESSIONS:
        raise ValueError(value)
    return cast(Compression, value)


def _string_table(checker: _Checker, value: Any, key: str, what: str = "environment variable") -> Any:
    if not isinstance(value, Mapping):
        checker.problems.append(f"`{key}` must be a table of strings, got {_kind(value)}")
        return value
    for k, v in value.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(k)):
            checker.problems.append(f"`{key}.{k}` is not a valid {what} name")
        if not isinstance(v, str):
            checker.problems.append(f"`{key}.{k}` must be a string, got {_kind(v)}")
    return tuple(sorted((str(k), str(v)) for k, v in value.items()))


def _build_args(checker: _Checker, value: Any, key: str) -> Any:
    return _string_table(checker, value, key, "build argument")


def _relative_path(checker: _Checker, value: Any, key: str) -> Any:
    """A path relative to the project directory; it may lie outside it (a monorepo's Dockerfile)."""
    if not isinstance(value, str) or not value.strip():
        checker.problems.append(f"`{key}` must be a non-empty path string, got {_kind(value)}")
    return value


def _check_image(checker: _Checker, image: Mapping[str, Any], raw: Mapping[str, Any]) -> None:
    """Keys of ``[tool.flyte.image]`` that only make sense together, or never together."""
    p = "tool.flyte.image"
    dockerfile = image.get("dockerfile")
    if dockerfile is not None and "base" in image:
        checker.problems.append(
            f"`{p}.dockerfile` and `{p}.base` are mutually exclusive: the Dockerfile builds the base. "
            "Remove `base`, or remove `dockerfile` and point `base` at the image it builds"
        )
    if dockerfile is not None and image.get("backend") == "oci":
        checker.problems.append(
            f'`{p}.dockerfile` needs `{p}.backend = "docker"`: the oci backend runs no Dockerfile. Build '
            'it with Docker and bring the result as `base = "oci:DIR[:TAG]"` (an OCI layout) or '
            '`base = "docker-archive:FILE.tar"` (`docker save`), or a registry reference'
        )
    for key in ("context", "build-args"):
        if key in raw and dockerfile is None and "dockerfile" not in raw:
            checker.problems.append(f"`{p}.{key}` applies to `{p}.dockerfile`, which is not set")
    if image.get("source") and image.get("include_project") is False:
        checker.problems.append(
            f"`{p}.source` = true copies the code into the image, and `{p}.include-project` = false "
            "keeps it out (the code comes with the bundle): remove one of them"
        )


def _platform(checker: _Checker, value: Any, key: str) -> Any:
    if not isinstance(value, str) or not re.fullmatch(r"linux/(amd64|arm64|arm/v7|ppc64le|s390x|386)", value):
        checker.problems.append(
            f"`{key}` must be a platform such as 'linux/amd64' or 'linux/arm64', got {_kind(value)}"
        )
    return value


def _workdir(checker: _Checker, value: Any, key: str) -> Any:
    if not isinstance(value, str) or not value.startswith("/"):
        checker.problems.append(
            f"`{key}` must be an absolute path inside the image such as '/home/flyte', got {_kind(value)}"
        )
    elif (
        value == "/"
        or value.startswith("//")
        or posixpath.normpath(value) != value
        or any(c < " " for c in value)
    ):
        # The directory is made writable by every user: never the image's root, never a path that
        # names another directory than it spells.
        checker.problems.append(
            f"`{key}` = {value!r} must be a normalized absolute path below '/' (such as '/home/flyte')"
        )
    return value


def _tag_list(checker: _Checker, value: Any, key: str) -> Any:
    items = checker.string_list(value, key)
    if isinstance(items, tuple):
        for i, item in enumerate(items):
            if isinstance(item, str) and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", item):
                checker.problems.append(f"`{key}[{i}]` = {item!r} is not a valid image tag")
    return items


_IMAGE_KEYS: dict[str, tuple[str, Validator]] = {
    "backend": ("backend", _enum(("docker", "oci"))),
    "base": ("base", _Checker.string),
    "registry": ("registry", _Checker.string),
    "name": ("name", _Checker.string),
    "tags": ("tags", _tag_list),
    "platform": ("platform", _platform),
    "push": ("push", _Checker.boolean),
    "python": ("python", _Checker.string),
    "env": ("env", _string_table),
    "workdir": ("workdir", _workdir),
    "source": ("source", _Checker.boolean),
    "extra-packages": ("extra_packages", _Checker.string_list),
    "constraints": ("constraints", _Checker.project_path),
    "lock": ("lock", _Checker.boolean),
    "include-project": ("include_project", _Checker.boolean),
    "dockerfile": ("dockerfile", _relative_path),
    "context": ("context", _relative_path),
    "build-args": ("build_args", _build_args),
}
