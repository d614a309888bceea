"""Run folders are never shared, a refused launch leaves none behind, ``resume=RUN_DIR`` continues with the
run's own config, and a checkpoint is loaded as data (one carrying a pickled object is refused unloaded)."""

import json
import os
import pathlib
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import SMALL_SPIRALS, compose_config
from noderun.cli import main
from noderun.errors import ConfigError
from noderun.log.files import read_metrics
from noderun.train import checkpoint as checkpoints
from noderun.train import folders
from noderun.train.run import run

SMALL = [*SMALL_SPIRALS, "train.max_iters=2"]
SAME_DEFAULT = "hydra.run.dir=${noderun.unique_folder:outputs/same}"  # as two runs started in the same second
REPOSITORY = pathlib.Path(__file__).parents[1]  # the noderun the processes import: this one


def run_folders(root):
    return sorted(path.parent for path in root.rglob("summary.json"))


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two `noderun train` processes started together, asking for the same default folder."""
    root = tmp_path_factory.mktemp("concurrent")
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "noderun.cli", "train", *SMALL, f"seed={seed}", SAME_DEFAULT],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
        )
        for seed in (1, 2)
    ]
    outputs = [process.communicate(timeout=600)[0] for process in processes]
    return root, [process.returncode for process in processes], outputs


def test_concurrent_runs_end_with_two_complete_separate_folders(two_runs):
    root, codes, outputs = two_runs
    assert codes == [0, 0], outputs
    folders = run_folders(root)
    assert [folder.name for folder in folders] == ["same", "same-1"]
    summaries = [json.loads((folder / "summary.json").read_text()) for folder in folders]
    assert sorted(summary["seed"] for summary in summaries) == [1, 2]
    assert all(summary["status"] == "completed" and summary["steps"] == 2 for summary in summaries)
    for folder, summary in zip(folders, summaries):
        assert [record["step"] for record in read_metrics(folder)] == [2]  # one run's lines, not interleaved
        assert checkpoints.load_checkpoint(folder)["config"]["seed"] == summary["seed"]


def test_a_folder_holding_a_run_is_refused_and_left_as_it_was(two_runs, monkeypatch):
    root, _, _ = two_runs
    folder = root / "outputs" / "same"
    before = {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    monkeypatch.chdir(root)
    assert main(["train", *SMALL, "seed=3", f"hydra.run.dir={folder}"]) == 2
    after = {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    log = folder / "train.log"  # the refusal's lines are added to the log the run shares; nothing is cut
    assert after.pop(log).startswith(before.pop(log)) and after == before


def test_a_refused_launch_never_removes_what_another_run_wrote_meanwhile(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    folders.note_folder(".hydra", _root_=OmegaConf.create({"hydra": {"runtime": {"output_dir": str(folder)}}}))
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "config.yaml").write_text("mine")  # this launch's
    for name in ("summary.json", "metrics.jsonl", "train.log"):  # another run, started at the same moment
        (folder / name).write_text("theirs")
    folders.undo_launch(folder)
    assert sorted(path.name for path in folder.iterdir()) == ["metrics.jsonl", "summary.json", "train.log"]
    assert all(path.read_text() == "theirs" for path in folder.iterdir())


def test_resume_from_a_run_folder_continues_with_its_own_config(two_runs, monkeypatch):
    """Only resume= and a new budget on the command line: the model, data and seed are the run's."""
    root, _, _ = two_runs
    first = root / "outputs" / "same"
    seed = json.loads((first / "summary.json").read_text())["seed"]
    monkeypatch.chdir(root)
    resumed = root / "resumed"
    assert main(["train", f"resume={first}", "train.max_iters=3", f"hydra.run.dir={resumed}"]) == 0
    summary = json.loads((resumed / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 3 and summary["seed"] == seed
    assert summary["model"] == "latent_ode" and len(read_metrics(resumed)) == 2  # the first run's record carried over
    saved = (resumed / ".hydra" / "config.yaml").read_text()
    assert "n_spirals: 40" in saved and "max_iters: 3" in saved  # what a resume from this run composes


def test_resume_refuses_an_override_of_the_model_and_leaves_no_folder(two_runs, monkeypatch):
    root, _, _ = two_runs
    monkeypatch.chdir(root)
    before = sorted(root.rglob("*"))
    assert main(["train", f"resume={root / 'outputs' / 'same'}", "model.latent_dim=6"]) == 2
    assert main(["train", f"resume={root / 'outputs' / 'same'}", "dataset.n_spirals=80"]) == 2
    assert sorted(root.rglob("*")) == before


def test_resume_in_its_own_folder_is_not_refused(tmp_path):
    run(compose_config(*SMALL), tmp_path)
    summary = run(compose_config(*SMALL, "train.max_iters=3", f"resume={tmp_path}"), tmp_path)
    assert summary["steps"] == 3 and len(read_metrics(tmp_path)) == 2
    with pytest.raises(ConfigError, match="holds another run"):
        run(compose_config(*SMALL, "train.max_iters=4"), tmp_path)


def test_a_refused_launch_leaves_no_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "train.epochs=0"]) == 2  # the default folder
    assert main(["train", "train.epochs=0", f"hydra.run.dir={tmp_path / 'explicit'}"]) == 2
    assert list(tmp_path.iterdir()) == []


class Trap:
    """Unpickling it creates ``marker``: a checkpoint carrying it must be refused without building it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def test_a_checkpoint_carrying_a_pickled_object_is_refused_unrun(tmp_path):
    run(compose_config(*SMALL), tmp_path / "good")
    checkpoint = checkpoints.load_checkpoint(tmp_path / "good")  # tensors and plain data only
    assert isinstance(checkpoint["random"]["numpy"]["keys"], torch.Tensor)
    marker = tmp_path / "ran"
    checkpoint["state"]["extra"] = Trap(marker)
    torch.save(checkpoint, tmp_path / "trap.pt")
    with pytest.raises(ConfigError, match=r"trap.pt: trap.pt holds a pickled object \(\w+\), not only tensors"):
        run(compose_config(*SMALL, f"resume={tmp_path / 'trap.pt'}"), tmp_path / "resumed")
    assert main(["figure3", str(tmp_path / "trap.pt")]) == 2
    assert not marker.exists() and not (tmp_path / "resumed" / "summary.json").exists()


def test_the_random_states_round_trip_as_plain_data(tmp_path):
    torch.manual_seed(3)
    states = checkpoints.random_states()
    checkpoints.save_checkpoint(tmp_path / "states.pt", {"random": states})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    checkpoints.restore_random_states(torch.load(tmp_path / "states.pt", weights_only=True)["random"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_resuming_a_finished_run_reports_its_final_metrics(tmp_path):
    first = run(compose_config(*SMALL, "train.epochs=1"), tmp_path / "first")
    again = run(compose_config(*SMALL, "train.epochs=1", f"resume={tmp_path / 'first'}"), tmp_path / "again")
    assert (
        again["status"] == "completed"
        and again["steps"] == 2
        and again["test_rmse_extrap"] == first["test_rmse_extrap"]
    )
