"""Where a run is: the time left for the epoch and the run, plain progress lines off a terminal, per-step
TensorBoard scalars, the learning rate as trained, the run folder at start, summary numbers rounded by kind,
the device used and the config's names, grouped reports in their own file, missing plugins named."""

import io
import json
import logging
import re
import subprocess
import sys

import pytest
from rich.console import Console
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import compose_config
from noderun.cli import main
from noderun.log import progress
from noderun.log.files import read_metrics
from noderun.log.precision import rounded
from noderun.log.progress import EpochProgress, Position
from noderun.report import report_command
from noderun.train.run import run

SPIRALS = [
    "experiment=spiral_latent_ode",
    "dataset.n_spirals=40",
    "train.batch_size=16",
    "train.test_batch_size=8",
    "train.epochs=2",
    "threads=1",
]


def test_summary_numbers_are_rounded_by_what_they_mean():
    summary = {
        "test_error": 2.4000000000000057,
        "test_accuracy": 97.59999999999999,
        "test_rmse_extrap": 0.0123456789,
        "train_loss": 2.2818673054377236,
        "forward_s": 0.018593443499412388,
        "wall_time_s": 1234.5678,
        "peak_rss_mb": 977.42578125,
        "nfe_forward": 26.333333333333332,
        "rtol": 1.23456789e-3,
        "steps": 7,
        "status": "completed",
        "test_nll": float("nan"),
    }
    shown = rounded(summary)
    assert shown == {
        **summary,
        "test_error": 2.4,
        "test_accuracy": 97.6,
        "test_rmse_extrap": 0.01235,
        "train_loss": 2.282,
        "forward_s": 0.0186,
        "wall_time_s": 1230.0,
        "peak_rss_mb": 977.4,
        "nfe_forward": 26.33,
        "test_nll": shown["test_nll"],
    }
    assert shown["test_nll"] != shown["test_nll"]  # NaN stays NaN


def test_the_bar_shows_the_time_left_in_the_epoch_and_the_run(monkeypatch, caplog):
    screen = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=screen, force_terminal=True, width=120))
    with (
        caplog.at_level(logging.INFO, logger="noderun"),
        EpochProgress(Position("epoch 2/3", 0, 5, 5, 15), enabled=True, every=1) as bar,
    ):
        for _ in range(3):
            bar.advance("loss 0.5")
    rows = [line for line in screen.getvalue().splitlines() if "epoch 2/3" in line or "run" in line]
    assert any("3/5" in row and "loss 0.5" in row for row in rows) and any("8/15" in row for row in rows)
    assert all(re.search(r"\d:\d\d:\d\d", row) for row in rows[-2:])  # rich's remaining-time column
    assert not caplog.records  # no plain lines on a terminal


def test_off_a_terminal_a_plain_line_every_n_steps(monkeypatch, caplog):
    monkeypatch.setattr(progress, "console", Console(file=io.StringIO()))
    with caplog.at_level(logging.INFO, logger="noderun"):
        with EpochProgress(Position("epoch 2/3", 1, 6, 11, 30), enabled=True, every=4) as bar:
            for _ in range(5):
                bar.advance("loss 0.5")
        with EpochProgress(Position("epoch 3/3", 0, 6, 16, 30), enabled=False, every=4) as bar:
            bar.advance("loss 0.5")
    lines = [record.getMessage() for record in caplog.records]
    assert [line.split(":")[0] for line in lines] == ["epoch 2/3 step 12/30", "epoch 2/3 step 16/30"]
    assert all(re.search(r"loss 0.5; \d:\d\d:\d\d left in the epoch, \d:\d\d:\d\d in the run", line) for line in lines)


def test_steps_to_tensorboard_and_the_learning_rate_as_trained(tmp_path):
    summary = run(
        compose_config(
            *SPIRALS, "train.lr_milestones=[1]", "train.lr_gamma=0.1", "log.every_steps=1", "train.progress=false"
        ),
        tmp_path,
    )
    assert [record["lr"] for record in read_metrics(tmp_path)] == [0.01, pytest.approx(0.001)]
    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    assert {"step/loss", "step/nfe_forward", "step/nfe_backward"} <= set(events.Tags()["scalars"])
    assert [event.step for event in events.Scalars("step/loss")] == list(range(1, summary["steps"] + 1))
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["device"] == "cpu" and written["model"] == "latentode"  # no Hydra: named by the class
    assert written["test_rmse_extrap"] == float(f"{summary['test_rmse_extrap']:.4g}") != summary["test_rmse_extrap"]


def test_the_command_line_says_where_the_run_is(tmp_path):
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "noderun.cli",
            "train",
            *SPIRALS,
            "train.epochs=1",
            "log.every_steps=1",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert f"run folder {run_dir}" in lines[0]
    assert "epoch 1/1 step 1/" in lines[1] and "left in the epoch" in lines[1]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["task"], summary["dataset"], summary["model"]) == ("timeseries", "spirals", "latent_ode")
    assert summary["device"] == "cpu"


def test_a_grouped_report_leaves_the_plain_report_alone(tmp_path, capsys):
    for seed, solver in ((0, "euler"), (1, "rk4")):
        run_dir = tmp_path / str(seed)
        run_dir.mkdir()
        (run_dir / "summary.json").write_text(
            json.dumps({"status": "completed", "solver": solver, "seed": seed, "nfe_forward": 4.0 * (seed + 1)})
        )
    assert report_command(str(tmp_path)) == 0
    plain = (tmp_path / "report.md").read_text()
    assert report_command(str(tmp_path), group_by="solver", metrics="status,nfe_forward") == 0
    assert (tmp_path / "report.md").read_text() == plain
    grouped = (tmp_path / "report_by_solver.md").read_text()
    assert grouped.splitlines()[0].startswith("| solver | runs |") and "1 completed" in grouped
    assert (tmp_path / "report_by_solver.csv").exists() and "report_by_solver.md" in capsys.readouterr().out


@pytest.mark.parametrize(
    "override, module",
    [
        ("hydra/launcher=joblib", "joblib"),
        ("hydra/launcher=submitit_slurm", "hydra_plugins.hydra_submitit_launcher"),
        ("hparams_search=optuna", "optuna"),
    ],
)
def test_a_missing_plugin_says_how_to_install_it(monkeypatch, capsys, override, module):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    assert main(["train", "-m", override]) == 2
    error = capsys.readouterr().err.strip()
    assert error == f'config: {override}: {module} is not installed: pip install -e ".[scale]"'


def test_work_progress_off_a_terminal_prints_each_unit_with_the_time_left(capsys):
    from noderun.log.progress import WorkProgress

    with WorkProgress("bench", 2) as progress:
        progress.advance("first case measured")
        progress.advance("second case measured")
    lines = capsys.readouterr().err.splitlines()
    assert re.fullmatch(r"\[1/2\] first case measured; \d:\d\d:\d\d left", lines[0])
    assert lines[1] == "[2/2] second case measured; 0:00:00 left"
