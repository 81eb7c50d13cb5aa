"""One build reads the project's wheel once, whoever asks (image labels, tags, requirements)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest


def test_wheel_metadata_is_read_once_while_the_wheel_is_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zipfile

    from hatch_flyte import wheel as wheel_module
    from hatch_flyte.image.plan import ProjectMetadata
    from hatch_flyte.image.wheelhouse import Target, wheel_requirements

    def make(version: str) -> Path:
        path = tmp_path / "orders-1.0-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr(
                "orders-1.0.dist-info/METADATA",
                f"Metadata-Version: 2.1\nName: orders\nVersion: {version}\nRequires-Dist: flyte>=2\n",
            )
        return path

    opened: list[str] = []
    real = zipfile.ZipFile

    def counting(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(os.fspath(file))
        return real(file, *args, **kwargs)

    wheel = make("1.0")
    monkeypatch.setattr(zipfile, "ZipFile", counting)
    target = Target((3, 11), "linux/amd64")
    assert [str(r) for r in wheel_requirements(wheel, target)] == ["flyte>=2"]
    assert ProjectMetadata.from_wheel(wheel).version == "1.0"  # the image's labels and tags ask again
    assert opened == [str(wheel)]
    os.utime(wheel, ns=(1, 1))  # a rebuilt wheel (another mtime) is read again
    assert wheel_module.read_metadata(wheel)["Version"] == "1.0" and len(opened) == 2
