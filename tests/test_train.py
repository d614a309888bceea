"""End to end: `noderun train` runs, sweeps and reports; resume continues exactly; errors are clear."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import conftest
from noderun.data.mnist import MNIST, DatasetNotFoundError
from noderun.log.files import read_metrics
from noderun.train.run import run
from noderun.train.validate import ConfigError

FAST = ["train.batch_size=16", "train.test_batch_size=100", "dataset.test_fraction=0.02", "train.progress=false"]


def noderun_cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "noderun.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def compose_config(*overrides, fast=True):
    return conftest.compose_config(*(FAST if fast else []), *overrides)


def test_train_subprocess_writes_everything(tmp_path):
    run_dir = tmp_path / "run"
    result = noderun_cli("train", "experiment=mnist5k_odenet_smoke", f"hydra.run.dir={run_dir}", *FAST, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    required = [
        "status",
        "task",
        "dataset",
        "model",
        "solver",
        "grad",
        "seed",
        "params",
        "epochs",
        "nfe_forward",
        "nfe_backward",
        "peak_memory_mb",
        "wall_time_s",
        "test_error",
    ]
    assert all(key in summary for key in required)
    assert summary["status"] == "completed" and summary["steps"] == 3 and summary["nfe_backward"] > 0
    assert summary["params"] > 200_000 and 0 <= summary["test_error"] <= 100
    records = read_metrics(run_dir)
    assert records and records[-1]["nfe_forward_max"] >= records[-1]["nfe_forward_mean"] > 0
    assert records[-1]["forward_s_mean"] > 0 and records[-1]["backward_s_mean"] > 0
    assert summary["forward_s"] == pytest.approx(records[-1]["forward_s_mean"], rel=5e-3)  # 3 significant digits
    assert summary["backward_s"] > 0
    assert (run_dir / "checkpoint.pt").exists() and (run_dir / ".hydra" / "config.yaml").exists()
    assert any((run_dir / "tensorboard").iterdir())
    assert "test_error" in result.stdout


@pytest.mark.slow  # a sweep in a subprocess (11 s); test_scale's launcher sweep runs by default
def test_multirun_then_report(tmp_path):
    sweep = tmp_path / "sweep"
    result = noderun_cli(
        "train",
        "-m",
        "experiment=mnist5k_odenet_smoke",
        "solver=euler,rk4",
        "train.max_iters=1",
        f"hydra.sweep.dir={sweep}",
        *FAST,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = sorted(sweep.glob("*/summary.json"))
    assert [json.loads(p.read_text())["solver"] for p in summaries] == ["euler", "rk4"]
    report = noderun_cli("report", str(sweep), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    markdown = (sweep / "report.md").read_text()
    header = markdown.splitlines()[0]
    assert "| solver |" in header and "euler" in markdown and "rk4" in markdown and "completed" in markdown
    assert len((sweep / "report.csv").read_text().splitlines()) == 3
    grouped = noderun_cli("report", str(sweep), "--group-by", "solver", "--metrics", "status,nfe_forward", cwd=tmp_path)
    assert grouped.returncode == 0 and "1 completed" in (sweep / "report_by_solver.md").read_text()
    assert (sweep / "report.md").read_text() == markdown  # the plain report stays


@pytest.mark.slow  # three runs (12 s); test_reliability resumes an interrupted run to the same result by default
def test_resume_continues_to_the_same_result(tmp_path):
    straight = run(compose_config("train.max_iters=4", "train.epochs=1"), tmp_path / "straight")
    first = run(compose_config("train.max_iters=2", "train.epochs=1"), tmp_path / "first")
    assert first["steps"] == 2
    resumed = run(
        compose_config("train.max_iters=4", "train.epochs=1", f"resume={tmp_path / 'first'}"), tmp_path / "resumed"
    )
    assert resumed["steps"] == 4 and resumed["resumed_from"] == str(tmp_path / "first")
    assert resumed["train_loss"] == pytest.approx(straight["train_loss"], rel=1e-6)
    assert resumed["test_loss"] == pytest.approx(straight["test_loss"], rel=1e-6)


def test_same_seed_same_metrics(tmp_path):
    a = run(compose_config("train.max_iters=2", "solver=rk4", "grad=backprop"), tmp_path / "a")
    b = run(compose_config("train.max_iters=2", "solver=rk4", "grad=backprop"), tmp_path / "b")
    assert a["test_loss"] == b["test_loss"] and a["train_loss"] == b["train_loss"]


def test_missing_mnist_files_say_where_and_how(tmp_path):
    """Refused before anything is built (no run folder); MNIST itself says the same when loaded."""
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"empty/MNIST/raw lacks train-images.*data_dir.*dataset.download=true"):
        run(compose_config("dataset=mnist", f"data_dir={tmp_path / 'empty'}", fast=False), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(DatasetNotFoundError, match=r"looked in .*MNIST/raw.*dataset.download=true"):
        MNIST(str(tmp_path / "empty")).load()


def test_unknown_solver_fails_with_the_choices(tmp_path):
    result = noderun_cli("train", "solver=rk45", cwd=tmp_path)
    assert result.returncode == 2  # a config Hydra cannot compose, told apart from a failed launch
    assert "dopri5" in result.stderr and "rk45" in result.stderr
    assert not Path(tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("summary.json"))


def test_adam_trains_at_train_lr(tmp_path):
    run(compose_config("optimizer=adam", "train.lr=0.01", "model=mlp", "train.max_iters=1", "train.epochs=1"), tmp_path)
    assert [record["lr"] for record in read_metrics(tmp_path)] == [0.01]


def test_a_run_writes_its_settings_and_final_numbers_for_the_hparams_dashboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    run(compose_config("experiment=mnist5k_odenet_smoke", "model.channels=8", "train.max_iters=1"), tmp_path)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["solver.method"].string_value == "dopri5"
    assert start.hparams["model.channels"].number_value == 8
    assert start.hparams["seed"].number_value == 0
    assert not [key for key in start.hparams if key.rsplit(".", 1)[-1].startswith("_")]  # _target_, _partial_
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert "final/test_error" in {info.name.tag for info in experiment.metric_infos}


def test_a_checkpoint_saved_before_augment_dim_existed_still_resumes(tmp_path):
    import torch

    run(compose_config("train.max_iters=1", "train.epochs=1", "model.channels=8"), tmp_path / "old")
    path = tmp_path / "old" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    del state["config"]["model"]["augment_dim"]  # as runs saved before the key existed
    torch.save(state, path)
    resumed = run(
        compose_config("train.max_iters=2", "train.epochs=1", "model.channels=8", f"resume={tmp_path / 'old'}"),
        tmp_path / "new",
    )
    assert resumed["status"] == "completed" and resumed["steps"] == 2


def test_keep_checkpoints_keeps_every_epochs_model(tmp_path):
    import torch

    run(conftest.compose_config(*conftest.SMALL_SPIRALS, "train.epochs=2", "train.keep_checkpoints=1"), tmp_path)
    kept = sorted(path.name for path in tmp_path.glob("checkpoint_epoch*.pt"))
    assert kept == ["checkpoint_epoch1.pt", "checkpoint_epoch2.pt"]
    first, second = (torch.load(tmp_path / name, weights_only=True) for name in kept)
    assert first["state"]["epoch"] == 1 and second["state"]["epoch"] == 2
    assert any(not torch.equal(first["model"][key], second["model"][key]) for key in first["model"])
