"""Run folders are never shared: a default folder of its own for each launch, a folder holding another run
refused unless the run continues it, and a refused launch leaves the folder as it found it.

Two resolvers, used by conf/config.yaml, take part in Hydra's launch: ``noderun.unique_folder`` makes the
default ``hydra.run.dir`` (``outputs/DATE/TIME``, else ``…-1``, ``…-2``: created here, atomically, so two
processes started in the same second never get the same one), and ``noderun.note_folder`` (Hydra resolves
``hydra.output_subdir`` just before it writes ``.hydra/`` into the job's folder) notes what the folder held,
so that ``undo_launch`` can put it back."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

from omegaconf import OmegaConf

from ..log.files import METRICS_NAME, SUMMARY_NAME
from .checkpoint import CHECKPOINT_NAME

RUN_FILES = (SUMMARY_NAME, CHECKPOINT_NAME, METRICS_NAME)  # a folder holding one of them holds a run


@dataclass
class FolderBefore:
    """What a job's folder held when this launch reached it: its entries, its ``.hydra`` subfolder's name and
    files (their bytes), its empty logs, and the folders this launch created for it (innermost first)."""

    entries: set[str]
    subdir: str
    hydra_files: dict[str, bytes]
    empty_logs: set[str]  # Hydra opens the job's log before the snapshot: an empty one may be this launch's
    created: list[Path] = field(default_factory=list)


_unique: dict[str, str] = {}  # requested default folder -> the one this process took
_created: dict[str, list[Path]] = {}  # absolute folder -> the folders unique_folder created for it
_before: dict[str, FolderBefore] = {}  # absolute folder -> what it held


def forget() -> None:
    """A new launch in this process (``noderun train`` called again) takes folders of its own."""
    _unique.clear()
    _created.clear()
    _before.clear()


def unique_folder(requested: str) -> str:
    """``requested``, or the first of ``requested-1``, ``requested-2``, … that does not exist yet, created
        here (``mkdir`` refuses a folder that exists, so no two processes take the same one). Under torchrun
    (``WORLD_SIZE`` > 1) ``requested`` itself: the processes of one job share their folder."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # torchrun: every process must take the same folder
        return requested
    if requested not in _unique:
        path = Path(requested)
        missing_parents = [parent for parent in path.parents if not parent.exists()]
        path.parent.mkdir(parents=True, exist_ok=True)
        for number in count():
            candidate = path if number == 0 else path.with_name(f"{path.name}-{number}")
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            break
        _unique[requested] = str(candidate)
        _created[os.path.abspath(candidate)] = [candidate, *missing_parents]
    return _unique[requested]


def note_folder(subdir: str, *, _root_) -> str:
    """Resolves ``hydra.output_subdir`` to ``subdir``; on the way, notes what the job's folder holds (once)."""
    folder = OmegaConf.select(_root_, "hydra.runtime.output_dir", default=None)
    if folder and os.path.isdir(folder) and folder not in _before:
        _before[folder] = snapshot(Path(folder), subdir)
    return subdir


def snapshot(folder: Path, subdir: str) -> FolderBefore:
    hydra_dir = folder / subdir
    hydra_files = {f"{subdir}/{p.name}": p.read_bytes() for p in hydra_dir.glob("*") if p.is_file()}
    empty_logs = {p.name for p in folder.glob("*.log") if p.stat().st_size == 0}
    return FolderBefore(set(os.listdir(folder)), subdir, hydra_files, empty_logs, _created.get(str(folder), [folder]))


def undo_launch(folder: str | Path) -> None:
    """Take back what this refused launch wrote into ``folder`` and nothing else: its ``.hydra`` files (those
    that were there before get their bytes back) and, when no run lives in the folder, the logs it created;
    then the folder itself and the parents created for it, each only if it is empty. Files of a run that
    lives there, or that another process is writing at the same moment, are never removed or cut short."""
    before = _before.pop(os.path.abspath(folder), None)
    folder = Path(folder)
    if before is None or not folder.is_dir():
        return
    hydra_dir = folder / before.subdir
    for path in hydra_dir.glob("*") if hydra_dir.is_dir() else []:
        name = f"{before.subdir}/{path.name}"
        if name in before.hydra_files:
            path.write_bytes(before.hydra_files[name])
        elif path.is_file():
            path.unlink()
    if not any((folder / name).exists() for name in RUN_FILES):
        for path in folder.glob("*.log"):
            if path.name not in before.entries or path.name in before.empty_logs:
                path.unlink()
    remove_empty([hydra_dir, folder, *before.created[1:]])


def remove_empty(folders: list[Path]) -> None:
    """Remove each of ``folders`` (innermost first) while it is empty: another run may have put its own there."""
    for path in folders:
        try:
            path.rmdir()
        except OSError:
            return


def continues_in(folder: Path, resume: str | None) -> bool:
    """Whether ``resume`` continues the run in ``folder`` itself: ``auto``, or the folder or its checkpoint."""
    if resume == "auto":
        return True
    return resume is not None and Path(resume).resolve() in (folder.resolve(), (folder / CHECKPOINT_NAME).resolve())


def claim(folder: Path, resume: str | None) -> str | None:
    """Make ``folder`` this run's by creating its summary.json (status ``running``) unless it exists; the
    refusal, or ``None``, when another run's summary, checkpoint or metrics are there and ``resume`` does not
    continue that run."""
    if continues_in(folder, resume):
        return None
    held = [name for name in RUN_FILES if (folder / name).exists()]
    try:
        if not held:
            with (folder / SUMMARY_NAME).open("x") as file:
                file.write(json.dumps({"status": "running", "output_dir": str(folder)}) + "\n")
            return None
    except FileExistsError:  # another process claimed it in between
        held = [SUMMARY_NAME]
    return (
        f"output folder {folder} holds another run ({', '.join(held)}): accepted values: a folder of its own "
        f"(leave hydra.run.dir and hydra.sweep.dir to their defaults), or resume={folder} to continue that run"
    )


OmegaConf.register_new_resolver("noderun.unique_folder", unique_folder, replace=True)
OmegaConf.register_new_resolver("noderun.note_folder", note_folder, replace=True)
