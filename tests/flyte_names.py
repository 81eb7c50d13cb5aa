"""Independent oracle for bundle names: flyte 2.12.1's own file listing and digest, in-process."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def flyte_bundle_name(root: Path, additional_files: Sequence[Path] = ()) -> str:
    """``fast<digest>.tar.gz`` as flyte computes it for ``root`` (``copy_style="all"``).

    ``additional_files`` are passed as flyte passes ``Environment.include`` entries.
    """
    from flyte._code_bundle._ignore import FlyteIgnore, GitIgnore, StandardIgnore
    from flyte._code_bundle._packaging import list_files_to_bundle

    _, digest = list_files_to_bundle(
        root.resolve(),
        True,
        StandardIgnore,
        GitIgnore,
        FlyteIgnore,
        copy_style="all",
        additional_files=[str(p) for p in additional_files] or None,
    )
    return f"fast{digest}.tar.gz"
