"""``ModelDirectoryDataset``: a (versioned) directory holding a saved model checkpoint, and its retention.

Every ``kedro run`` that saves a model adds a catalog version (``data/06_models/<stage>/<version>/``)
and, when it trained, an entry in the finished-training store (``data/06_models/trained/<stage>-<key>/``,
:mod:`r2_write.training.reuse`). Retention keeps the disk bounded: after each save the dataset
deletes all but the newest ``keep_versions`` catalog versions of its stage and all but the
``keep_trained`` most recently used store entries of that stage (:func:`prune_versions`,
:func:`prune_trained`). :func:`clean_models` does the same for every stage at once and reports
the space (``kedro clean-models``, ``make clean-models``). Catalog versions hard-link the store's
read-only files, so sizes are counted by inode (:func:`disk_usage`): a version and the store entry it
links share one copy of the weights.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
from dataclasses import dataclass
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
    Saving from such a store entry also deletes the trainer's own final model of it
    (:func:`drop_stored_final`) and applies ``keep_versions`` / ``keep_trained`` (module docstring).

    Example catalog entry:

    .. code-block:: yaml

        sft.model:
          type: r2_write.catalog.model_directory.ModelDirectoryDataset
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
        keep_versions: int | None = None,
        keep_trained: int | None = None,
    ) -> None:
        """Create the dataset.

        Args:
            filepath: Directory of the checkpoint (with versioning: the parent of versions).
            version: Kedro version (set by ``versioned: true`` in the catalog).
            metadata: Free-form metadata (kedro-viz layer...).
            keep_versions: After each versioned save, keep this many newest versions and delete
                the older ones; None keeps every version.
            keep_trained: After saving a model from the finished-training store, keep this many
                most recently used store entries of the same stage; None keeps all.

        Raises:
            DatasetError: ``keep_versions`` or ``keep_trained`` is not a whole number >= 1 (or null).
        """
        self._keep_versions = _retention("keep_versions", keep_versions)
        self._keep_trained = _retention("keep_trained", keep_trained)
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
        if self._keep_versions is not None and self._version is not None:
            prune_versions(Path(self._filepath), self._keep_versions, protect=dst.parent)
        entry = src.resolve().parent
        if is_trained_entry(entry):
            os.utime(entry)  # used now: the newest entry of its stage
            drop_stored_final(entry)  # the store holds it now: never two copies of one training
            if self._keep_trained is not None:
                prune_trained(entry.parent, entry_stage(entry), self._keep_trained, protect=entry)

    def _exists(self) -> bool:
        try:
            path = Path(self._get_load_path())
        except DatasetError:
            return False
        return (path / "config.json").exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version, "keep_versions": self._keep_versions,
                "keep_trained": self._keep_trained}

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


RESULT_FILE = "result.json"  # written last into a finished-training store entry (r2_write.training.reuse)
_ENTRY_RE = re.compile(r"^(?P<stage>.+)-(?P<key>[0-9a-f]{8,})$")


def _retention(name: str, value: Any) -> int | None:
    """A retention count: None (keep everything) or a whole number >= 1, else one-line DatasetError."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DatasetError(f"{name} must be a whole number >= 1 (or null to keep everything), got {value!r}")
    return value


def is_trained_entry(path: Path) -> bool:
    """Whether ``path`` is a finished-training store entry: ``<stage>-<key>/`` holding ``model/`` and ``result.json``."""
    return bool(_ENTRY_RE.match(path.name)) and (path / RESULT_FILE).is_file() and (path / "model").is_dir()


def entry_stage(path: Path) -> str:
    """The stage of a store entry: ``ppo_outcome`` for ``ppo_outcome-3f2a...``."""
    m = _ENTRY_RE.match(path.name)
    if not m:
        raise ValueError(f"{path} is not named <stage>-<key>")
    return m.group("stage")


def _rmtree(path: Path) -> None:
    """Delete ``path`` even where its files were made read-only (store entries are)."""
    def onerror(func, p, _exc):
        os.chmod(os.path.dirname(p), stat.S_IRWXU)
        func(p)

    shutil.rmtree(path, onerror=onerror)


def drop_stored_final(entry: Path) -> Path | None:
    """Delete the trainer's own final model of a stored training: ``checkpoints/<stage>-<key>/final``.

    A trainer writes its final model into its checkpoint directory (``data/06_models/checkpoints``,
    beside ``trained/``) and the store keeps a copy; once the copy is stored the original is a
    second copy of the same weights. Resume checkpoints (``checkpoint-<step>``, kept only with
    ``cleanup_checkpoints: false``) are left alone; the directory goes once nothing else is in it.

    Returns:
        The deleted directory, or None.
    """
    final = entry.parent.parent / "checkpoints" / entry.name / "final"
    if not (final / "config.json").is_file():
        return None
    _rmtree(final)
    with contextlib.suppress(OSError):
        final.parent.rmdir()  # only when empty
    return final


def prune_versions(root: Path, keep: int, protect: Path | None = None) -> list[Path]:
    """Delete all but the ``keep`` newest version directories of a versioned dataset at ``root``.

    Kedro names versions by their UTC save time, so the newest sort last; ``protect`` (the version
    just saved) is never deleted. Returns the deleted directories.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    versions = sorted(p for p in root.iterdir() if p.is_dir())
    old = [p for p in versions[: max(len(versions) - keep, 0)] if protect is None or p.resolve() != Path(protect).resolve()]
    for p in old:
        _rmtree(p)
    return old


def prune_trained(root: Path, stage: str, keep: int, protect: Path | None = None) -> list[Path]:
    """Delete all but the ``keep`` most recently used store entries of ``stage`` under ``root``.

    "Used" is the entry directory's modification time (set when it is stored or reused, see
    :meth:`ModelDirectoryDataset.save`); ``protect`` is never deleted. Catalog versions that
    hard-link a deleted entry's files keep them. Returns the deleted entries.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    entries = [p for p in root.iterdir() if p.is_dir() and _ENTRY_RE.match(p.name) and entry_stage(p) == stage]
    entries.sort(key=lambda p: p.stat().st_mtime_ns, reverse=True)
    old = [p for p in entries[keep:] if protect is None or p.resolve() != Path(protect).resolve()]
    for p in old:
        _rmtree(p)
    return old


def disk_usage(*paths: Path) -> int:
    """Bytes on disk under ``paths``, each hard-linked file counted once (by device and inode)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root in paths:
        root = Path(root)
        if not root.exists():
            continue
        files = [root] if root.is_file() else (p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
        for p in files:
            st = p.stat()
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


@dataclass
class StageUsage:
    """One stage's models on disk: catalog versions, store entries and their bytes (shared files once)."""

    stage: str
    versions: int
    trained: int
    bytes: int


def models_usage(models_root: Path, trained_root: Path | None = None) -> list[StageUsage]:
    """Per stage under ``models_root`` (``data/06_models``): catalog versions, store entries, bytes.

    A stage's bytes count its catalog versions and store entries together, shared files once.
    The store itself (``trained/``), ``base_model`` and other unversioned folders are not stages.
    """
    models_root = Path(models_root)
    trained_root = Path(trained_root) if trained_root else models_root / "trained"
    entries = [p for p in trained_root.iterdir() if p.is_dir() and _ENTRY_RE.match(p.name)] if trained_root.is_dir() else []
    stages = sorted({p.name for p in models_root.iterdir() if p.is_dir() and _is_versioned_root(p)} | {entry_stage(p) for p in entries}) \
        if models_root.is_dir() else []
    out = []
    for stage in stages:
        vroot = models_root / stage
        versions = [p for p in vroot.iterdir() if p.is_dir()] if _is_versioned_root(vroot) else []
        mine = [p for p in entries if entry_stage(p) == stage]
        out.append(StageUsage(stage, len(versions), len(mine), disk_usage(*versions, *mine)))
    return out


def _is_versioned_root(path: Path) -> bool:
    """A versioned model dataset's folder: ``<version>/<name>/config.json`` inside (not a checkpoint itself)."""
    return path.is_dir() and not (path / "config.json").exists() and any(
        (v / path.name).is_dir() for v in path.iterdir() if v.is_dir()
    )


def clean_models(models_root: Path, keep_versions: int, keep_trained: int, dry_run: bool = False,
                 trained_root: Path | None = None) -> dict[str, Any]:
    """Apply retention to every stage under ``models_root`` at once; report what it frees.

    Keeps each stage's ``keep_versions`` newest catalog versions and ``keep_trained`` most
    recently used store entries, and removes store entries left half-written (``*.partial``).

    Returns:
        ``{"before": bytes, "after": bytes, "freed": bytes, "deleted": [paths], "stages": [StageUsage]}``
        (bytes over all of ``models_root``, shared files once; with ``dry_run`` nothing is
        deleted and ``after`` is what would remain).
    """
    keep_versions = _retention("keep_versions", keep_versions)
    keep_trained = _retention("keep_trained", keep_trained)
    models_root = Path(models_root)
    trained_root = Path(trained_root) if trained_root else models_root / "trained"
    before = disk_usage(models_root)
    doomed: list[Path] = []
    for usage in models_usage(models_root, trained_root):
        vroot = models_root / usage.stage
        if _is_versioned_root(vroot):
            versions = sorted(p for p in vroot.iterdir() if p.is_dir())
            doomed += versions[: max(len(versions) - keep_versions, 0)]
        entries = [p for p in trained_root.iterdir() if p.is_dir() and _ENTRY_RE.match(p.name) and entry_stage(p) == usage.stage] \
            if trained_root.is_dir() else []
        entries.sort(key=lambda p: p.stat().st_mtime_ns, reverse=True)
        doomed += entries[keep_trained:]
    if trained_root.is_dir():
        doomed += [p for p in trained_root.iterdir() if p.is_dir() and p.name.endswith(".partial")]
        stored = [p for p in trained_root.iterdir() if p.is_dir() and is_trained_entry(p)]
        doomed += [f for p in stored if ((f := models_root / "checkpoints" / p.name / "final") / "config.json").is_file()]
    if dry_run:
        kept = [p for p in models_root.iterdir()] if models_root.is_dir() else []
        after = disk_usage(*_without(kept, doomed))
    else:
        for p in doomed:
            _rmtree(p)
        after = disk_usage(models_root)
    return {"before": before, "after": after, "freed": before - after, "deleted": doomed,
            "stages": models_usage(models_root, trained_root)}


def _without(roots: list[Path], doomed: list[Path]) -> list[Path]:
    """Every file under ``roots`` except those under a ``doomed`` directory."""
    doomed_set = {p.resolve() for p in doomed}
    files = []
    for root in roots:
        candidates = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
        for f in candidates:
            if not any(parent in doomed_set for parent in f.resolve().parents):
                files.append(f)
    return files


def format_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``.

    >>> format_bytes(0), format_bytes(1536), format_bytes(3 * 1024**3)
    ('0 B', '1.5 KiB', '3.0 GiB')
    """
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
