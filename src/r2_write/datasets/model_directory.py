"""``ModelDirectoryDataset``: a (versioned) directory holding a saved model checkpoint."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io.core import AbstractVersionedDataset, DatasetError, Version


class ModelDirectoryDataset(AbstractVersionedDataset[str, str]):
    """A model checkpoint directory (``save_pretrained`` layout) as a catalog dataset.

    ``save`` takes the path of a directory a trainer wrote and copies it into the
    dataset's (versioned) location; ``load`` returns the path of that directory, which
    ``from_pretrained`` and every backend accept. Versioning keeps every trained model.

    A read-only source file (a finished training kept by :mod:`r2_write.training.reuse`,
    frozen there) is hard-linked instead of copied, so a rerun that reuses a training adds
    a catalog version without adding its weights to the disk; writable files are copied.

    Example catalog entry:

    .. code-block:: yaml

        sft.model:
          type: r2_write.datasets.model_directory.ModelDirectoryDataset
          filepath: data/06_models/sft
          versioned: true

    Example:

    >>> ds = ModelDirectoryDataset(filepath="data/06_models/base_model")
    >>> ds.load()  # doctest: +SKIP
    'data/06_models/base_model'
    """

    def __init__(
        self,
        *,
        filepath: str,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Create the dataset.

        Args:
            filepath: Directory of the checkpoint (with versioning: the parent of versions).
            version: Kedro version (set by ``versioned: true`` in the catalog).
            metadata: Free-form metadata (kedro-viz layer...).
        """
        super().__init__(
            filepath=PurePosixPath(filepath),
            version=version,
            exists_function=lambda p: Path(p).exists(),
            glob_function=lambda pattern: [str(p) for p in Path().glob(pattern)] if not Path(pattern).is_absolute()
            else [str(p) for p in Path("/").glob(pattern.lstrip("/"))],
        )
        self.metadata = metadata

    def load(self) -> str:
        path = Path(self._get_load_path())
        if not (path / "config.json").exists():
            raise DatasetError(f"no model checkpoint (config.json) in {path}; run the stage that trains it first")
        return str(path)

    def save(self, data: str) -> None:
        src, dst = Path(data), Path(self._get_save_path())
        if not (src / "config.json").exists():
            raise DatasetError(f"{src} is not a saved model directory (no config.json)")
        tmp = dst.with_name(dst.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp, copy_function=link_or_copy)
        tmp.rename(dst)  # atomic: no half-written checkpoint is ever visible

    def _exists(self) -> bool:
        try:
            path = Path(self._get_load_path())
        except DatasetError:
            return False
        return (path / "config.json").exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version}

    def preview(self) -> dict:
        """The checkpoint's config.json, for kedro-viz."""
        import json

        return json.loads((Path(self.load()) / "config.json").read_text())


def link_or_copy(src: str, dst: str) -> str:
    """Hard-link ``src`` to ``dst`` when it is read-only (nobody can change it under the link), else copy it.

    Falls back to a copy where a link is impossible (another filesystem, no hard links).
    """
    if not os.stat(src).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        try:
            os.link(src, dst)
            return dst
        except OSError:
            pass
    return shutil.copy2(src, dst)
