"""Every setting of hatch-flyte, in one place: ``[tool.flyte]``, the build hook's and the hatch
target's own options, and the command-line flags that set a key.

To add a key, add a field to its table here: its type (with constraints, see :mod:`.fields`), its
default and its documentation. Validation (:mod:`.convert`), the README's reference tables
(``python -m hatch_flyte.config.docs --write README.md``; a test fails until they match), the JSON
Schema of ``[tool.flyte]`` (``python -m hatch_flyte.config.schema --write``; likewise) and the
command line's choices follow from it; code reads the new attribute of the loaded table.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Annotated, Literal

from hatch_flyte.config.fields import (
    AnyText,
    NonEmpty,
    Pattern,
    Positive,
    ProjectPath,
    internal,
    setting,
    table,
)

Compression = Literal["fast", "compatible"]
SecretsPolicy = Literal["warn", "error", "off"]
Discovery = Literal["static", "import"]
CopyStyle = Literal["all", "loaded-modules", "none"]
Backend = Literal["docker", "oci"]

_IDENT = r"[A-Za-z_]\w*"
PackageName = Annotated[
    str, Pattern(rf"{_IDENT}(\.{_IDENT})*", "an importable package name such as 'my_pkg'")
]
EnvironmentRef = Annotated[
    str,
    Pattern(
        rf"{_IDENT}(\.{_IDENT})*:{_IDENT}", "of the form 'package.module:attribute'", '`"module:attribute"`'
    ),
]
RelPath = Annotated[str, ProjectPath()]
ImageTag = Annotated[str, Pattern(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", "a valid image tag")]
Platform = Annotated[
    str,
    Pattern(
        r"linux/(amd64|arm64|arm/v7|ppc64le|s390x|386)",
        "a platform such as 'linux/amd64' or 'linux/arm64'",
        "`linux/amd64`, `linux/arm64`...",
    ),
]
ImagePath = Annotated[
    # Any characters after the "/": ImageConfig.conflicts names a path that is not normalized.
    str, Pattern(r"/[\s\S]*", "an absolute path inside the image such as '/home/flyte'", "absolute path")
]
EnvName = Annotated[str, Pattern(r"[A-Za-z_][A-Za-z0-9_]*", "a valid environment variable name")]
BuildArgName = Annotated[str, Pattern(r"[A-Za-z_][A-Za-z0-9_]*", "a valid build argument name")]
#: A path relative to the project directory that may lie outside it (a monorepo's Dockerfile).
OutsidePath = Annotated[str, ProjectPath(inside=False)]


@dataclass(frozen=True)
class BundleConfig:
    """``[tool.flyte.bundle]``: how the fast-registration code bundle is made."""

    copy_style: CopyStyle = setting(
        "all",
        "What goes in. `all`: every file under the root that the ignore rules keep (flyte's "
        "`--copy-style all`). `loaded-modules`: the module files the environments' modules load "
        "when imported, plus `include` (flyte's `loaded_modules`, the default of `flyte deploy`; "
        "see [below](#copy-style-loaded-modules)). `none`: no bundle (the full-build pattern: the "
        "image carries the code); `hatch build -t flyte`, `hatch-flyte build` and `hatch-flyte "
        'bundle` say so, succeed and write none, and the manifest has `"bundle": null`. (flyte\'s '
        "own deploy with `none` still uploads the environments' `include=` files as a bundle of "
        "their own; hatch-flyte warns instead: make them package data.)",
    )
    ignores: tuple[str, ...] = setting(
        (), "Extra gitignore-style patterns (relative to the root) on top of flyte's rules."
    )
    keep_default_ignores: bool = setting(
        True,
        "`false` turns off flyte's standard list (`.venv`, `__pycache__`, `*.pyc`, top-level "
        "`dist`/`build`/`env`/`.env`...). `.gitignore` and `.flyteignore` still apply.",
    )
    include: tuple[RelPath, ...] = setting(
        (),
        "Files, directories or globs added on top of the ignore rules (like flyte's "
        "`Environment.include`); must be under the root. Environments' own `include=` entries are "
        "added too. With `loaded-modules` the only way, beside the environments' `include=`, to "
        'bundle data files. An error with `copy-style = "none"`.',
    )
    compression: Compression = setting(
        "fast",
        "`compatible`: the `.tar.gz` is byte-identical to flyte's on a machine without pigz. `fast`: the "
        "same tar, compressed with ISA-L (about 40x faster than flyte's gzip level 9; any gzip reader, "
        "`tar -xzf` included, reads it).",
    )
    secrets: SecretsPolicy = setting(
        "warn",
        "Files that look like credentials (`.env` below the top level, which flyte does bundle, "
        "`*.pem`, `*.key`, `id_rsa*`, `.netrc`, ...) are named in a warning; `error` (or `--strict`) "
        "refuses to build.",
    )

    def conflicts(self, table: str) -> list[str]:
        """Problems between keys (each key alone is fine)."""
        if self.copy_style == "none" and self.include:
            return [
                f'`{table}.include` is set but `{table}.copy-style` is "none", so no bundle is made to '
                'hold it; remove `include`, or choose copy-style "all" or "loaded-modules"'
            ]
        return []


@dataclass(frozen=True)
class ImageConfig:
    """``[tool.flyte.image]``: the full-build image (code baked in, no fast registration)."""

    backend: Backend = setting("docker", "`oci` builds without a daemon (see below).")
    base: str | None = setting(
        None,
        "Base image; must have Python (with `venv`) and `tar`. With `oci` also `oci:/path/to/layout[:tag]` "
        "or `docker-archive:/path/to/save.tar`.",
        default_doc="`python:X.Y-slim-bookworm`: the building Python's series, or the oldest the wheel's "
        "`Requires-Python` allows",
    )
    registry: str | None = setting(None, "Registry host (and path) prefixed to `name`.", default_doc="none")
    name: str | None = setting(None, "Repository name.", default_doc="project name")
    tags: Annotated[tuple[ImageTag, ...], NonEmpty("leave `tags` out for the default tags")] | None = setting(
        None,
        "The first tag is the image's reference, written into `ENV _F_IMG_ID` as flyte's own "
        "image builder does (flyte 2.12 writes it and reads it nowhere: it names the image for "
        "whoever inspects a container).",
        default_doc="content tag + project version",
    )
    platform: Platform | None = setting(
        None,
        "Checked against the built image's architecture (the classic builder cannot cross-build).",
        default_doc="the engine's",
    )
    push: bool = setting(
        False,
        "Push every tag; credentials from `~/.docker/config.json` or "
        "`HATCH_FLYTE_REGISTRY_USER`/`_PASSWORD`.",
    )
    python: str | None = setting(
        None,
        "Interpreter that creates `/opt/venv`.",
        default_doc="`python3`, else `python`, found in the base",
    )
    env: tuple[tuple[EnvName, Annotated[str, AnyText()]], ...] = setting((), "Extra `ENV` in the image.")
    workdir: ImagePath = setting(
        "/home/flyte",
        "Working directory, as in flyte's own images; made writable by every user id (mode 1777, "
        "like `/tmp`), since pods may run as any user and fast registration extracts the bundle "
        "into it. Not `/`.",
    )
    source: bool = setting(
        False,
        "Also copy the bundle's files to `/opt/hatch-flyte/source` (never on `sys.path`), for debugging.",
    )
    extra_packages: tuple[str, ...] = setting((), "Extra requirements installed into the image.")
    constraints: RelPath | None = setting(
        None, "pip constraints/lock file pinning the image's dependencies.", default_doc="none"
    )
    lock: bool = setting(
        True,
        "Pin the image's dependencies to the project's `pylock.toml` (PEP 751) or `uv.lock` (its own, or "
        "its uv workspace's up to the repository root), when it has one and no `constraints` is given.",
    )
    include_project: bool = setting(
        True,
        "`false`: a **dependency-only image** (Python, the locked runtime dependencies and "
        "flyte's `a0`, not the project), run with the code bundle (fast registration, flytekit's "
        "`pyflyte build --fast` pattern). See below. Not with `source = true` nor with "
        '`[tool.flyte.bundle] copy-style = "none"` (no code would reach the task).',
    )
    dockerfile: OutsidePath | None = setting(
        None,
        "A Dockerfile (relative to `pyproject.toml`; it may lie outside the project) built as the "
        "**base** with the engine's normal network; hatch-flyte's layers go on top. `docker` "
        "backend only; not with `base`. See below.",
        default_doc="none",
    )
    context: OutsidePath | None = setting(
        None,
        "The Dockerfile's build context (its `.dockerignore` applies). Only with `dockerfile`.",
        default_doc="the Dockerfile's directory",
    )
    build_args: tuple[tuple[BuildArgName, Annotated[str, AnyText()]], ...] = setting(
        (),
        "`ARG` values for the Dockerfile's build (`[tool.flyte.image.build-args]`). Only with `dockerfile`.",
    )

    def conflicts(self, table: str) -> list[str]:
        """Keys that only make sense together, or never together (and the workdir's form)."""
        out = []
        workdir = self.workdir
        if (
            workdir == "/"
            or workdir.startswith("//")
            or posixpath.normpath(workdir) != workdir
            or any(c < " " for c in workdir)
        ):
            # Made writable by every user: never the image's root, never a path that names another
            # directory than it spells.
            out.append(
                f"`{table}.workdir` = {workdir!r} must be a normalized absolute path below '/' (such as "
                "'/home/flyte')"
            )
        if self.dockerfile is not None and self.base is not None:
            out.append(
                f"`{table}.dockerfile` and `{table}.base` are mutually exclusive: the Dockerfile builds the "
                "base. Remove `base`, or remove `dockerfile` and point `base` at the image it builds"
            )
        if self.dockerfile is not None and self.backend == "oci":
            out.append(
                f'`{table}.dockerfile` needs `{table}.backend = "docker"`: the oci backend runs no '
                'Dockerfile. Build it with Docker and bring the result as `base = "oci:DIR[:TAG]"` (an OCI '
                'layout) or `base = "docker-archive:FILE.tar"` (`docker save`), or a registry reference'
            )
        if self.dockerfile is None:
            if self.context is not None:
                out.append(f"`{table}.context` applies to `{table}.dockerfile`, which is not set")
            if self.build_args:
                out.append(f"`{table}.build-args` applies to `{table}.dockerfile`, which is not set")
        if self.source and not self.include_project:
            out.append(
                f"`{table}.source` = true copies the code into the image, and `{table}.include-project` = "
                "false keeps it out (the code comes with the bundle): remove one of them"
            )
        return out


@dataclass(frozen=True)
class FlyteConfig:
    """``[tool.flyte]``, validated. Paths stay as written (project-relative)."""

    package: PackageName | None = setting(
        None,
        "Import name of the package (see [Project shapes](#project-shapes)). Inferred from "
        "hatch's `packages` or uv_build's `module-name`, else the packages under the root: the "
        "only one, or the one named after the project.",
        default_doc="inferred",
    )
    root_dir: RelPath | None = setting(
        None,
        "Bundle root; module names are dotted paths relative to it (`my_pkg.tasks`). A root that "
        'does not match the layout (`"."` in a src layout) is an error naming the fix.',
        default_doc="`src` if it exists (the parent of hatch's `packages` or uv_build's `module-root` "
        "when given), else `.`",
    )
    environments: tuple[EnvironmentRef, ...] | None = setting(
        None, "Explicit environments; each must exist.", default_doc="discovered"
    )
    discovery: Discovery = setting(
        "static",
        "`static` parses modules with `ast` (imports nothing, flyte not needed; only modules "
        "whose source names an environment class, an alias of one, `clone_with`, `from_task` or "
        "`add_dependency`, and what they import, so a broken module that defines no environment "
        "is not read); `import` imports every module in a subprocess and reads flyte's registry.",
    )
    python: str | None = setting(
        None,
        'Interpreter for `discovery = "import"` and `copy-style = "loaded-modules"`; it needs '
        "flyte and the project's dependencies (under `hatch build`, whose build environment has "
        "neither, point it at the project's environment).",
        default_doc="running interpreter",
    )
    discovery_timeout: Annotated[float, Positive("seconds")] = setting(
        300.0,
        'Bound on import discovery and on the import of `copy-style = "loaded-modules"`.',
        type_doc="number (s)",
    )
    strict: bool = setting(
        False,
        "Environments discovery cannot resolve, and files that look like secrets, are errors "
        "instead of warnings (as `--strict` on every command).",
    )
    bundle: BundleConfig = table(BundleConfig, "How the code bundle is made.")
    image: ImageConfig = table(ImageConfig, "The full-build image.")
    #: False when pyproject.toml has no ``[tool.flyte]`` table (all defaults).
    present: bool = internal(False)

    def conflicts(self, table: str) -> list[str]:
        """Keys of different tables that rule each other out."""
        if not self.image.include_project and self.bundle.copy_style == "none":
            return [
                f'`{table}.image.include-project` = false with `{table}.bundle.copy-style` = "none": the '
                "image holds no code and no bundle is made to bring it, so no task could run; include the "
                'project in the image, or choose copy-style "all" or "loaded-modules"'
            ]
        return []


@dataclass(frozen=True)
class HookOptions:
    """The build hook's own options (``[tool.hatch.build.targets.wheel.hooks.flyte]``)."""

    bundle_dir: OutsidePath | None = setting(
        None,
        "Also write the code bundle here (relative to the project) and name it in the wheel's manifest. "
        "Not for editable installs.",
        default_doc="none: no bundle",
    )


@dataclass(frozen=True)
class BuilderOptions:
    """The ``flyte`` target's own options (``[tool.hatch.build.targets.flyte]``)."""

    show_files: bool = setting(False, "Print the bundle's file tree.")


#: Options hatchling itself reads in every build hook's table: accepted, left to hatchling.
HATCHLING_HOOK_KEYS = frozenset(
    {"dependencies", "require-runtime-dependencies", "require-runtime-features", "enable-by-default"}
)
#: Options hatchling itself reads in every target's table (hatchling.builders.config), left to it.
HATCHLING_TARGET_KEYS = frozenset(
    {
        "artifacts", "dependencies", "dev-mode-dirs", "dev-mode-exact", "directory", "exclude",
        "force-include", "hooks", "ignore-vcs", "include", "only-include", "only-packages", "packages",
        "reproducible", "require-runtime-dependencies", "require-runtime-features", "skip-excluded-dirs",
        "sources", "versions",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Flag:
    """A command-line flag that sets a key of ``[tool.flyte]`` for one run.

    The key's field validates the value, exactly as in pyproject.toml, and gives the flag its
    choices; a path key's value is taken relative to the current directory, as on any command line.
    ``const`` makes the flag a switch that sets that value."""

    flag: str
    key: str
    commands: tuple[str, ...]
    help: str
    const: bool | str | None = None


#: Every flag that sets a key. ``hatch-flyte`` adds them to the commands named; the README's table
#: of flags is generated from here.
FLAGS: tuple[Flag, ...] = (
    Flag(
        "--root-dir",
        "root-dir",
        ("bundle", "inspect", "build"),
        "bundle root, inside PATH (default: tool.flyte.root-dir, src/ in a src layout, else PATH)",
    ),
    Flag(
        "--compression",
        "bundle.compression",
        ("bundle", "build"),
        "fast (default) or compatible (flyte's exact .tar.gz)",
    ),
    Flag(
        "--strict",
        "strict",
        ("bundle", "inspect", "build"),
        "fail on environments discovery cannot resolve, on files that look like secrets and on symlinks "
        "leading outside the root",
        const=True,
    ),
)
