"""Failures during training, interruption and resume, corrupt checkpoints, and a sweep that diverges."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from conftest import SMALL_SPIRALS, compose_config
from noderun.errors import SolverError
from noderun.log.files import read_metrics, write_json_atomic
from noderun.report import report_command
from noderun.train import checkpoint as checkpoints
from noderun.train.failures import StopTraining
from noderun.train.loop import Trainer
from noderun.train.run import run

SMALL = SMALL_SPIRALS
NO_SOLVE = "solver.max_num_steps=1"  # every adaptive solve runs out of steps: a SolverError on every batch


def config(*overrides):
    return compose_config(*SMALL, *overrides)


def cli(*args, cwd, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "noderun.cli", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def finished(process, timeout=600):
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout + stderr


def test_raise_stops_cleanly_and_keeps_what_reproduces_the_step(tmp_path):
    with pytest.raises(StopTraining, match="max_num_steps"):
        run(config(NO_SOLVE, "train.epochs=1"), tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and "max_num_steps" in summary["error"] and summary["steps"] == 0
    failure = json.loads((tmp_path / "failure.json").read_text())
    assert failure["seed"] == 0 and failure["step"] == 0 and len(failure["batch_indices"]) == 16
    assert failure["config"]["solver"]["max_num_steps"] == 1
    state = torch.load(tmp_path / "failure.pt", weights_only=True)
    assert set(state) == {"model", "batch"}
    assert not (tmp_path / "checkpoint.pt").exists()  # nothing good to keep yet


def test_skip_drops_every_failing_batch_and_counts_it_and_a_run_that_trained_none_fails(tmp_path):
    cfg = config(NO_SOLVE, "train.epochs=2", "train.on_solver_error=skip", "train.max_bad_batches=null")
    with pytest.raises(StopTraining, match="no batch trained: all 4 were skipped"):
        run(cfg, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["skipped_batches"] == 4 and "test_rmse_extrap" not in summary
    assert [r["skipped_batches"] for r in read_metrics(tmp_path)] == [2, 2]
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert checkpoint["optimizer"]["state"] == {}  # no optimiser step was taken
    events = [json.loads(line) for line in (tmp_path / "failures.jsonl").read_text().splitlines()]
    assert [e["action"] for e in events] == ["skip", "skip", "skip, in evaluation"] * 2
    assert all(len(e["batch_indices"]) == 16 for e in events if e["action"] == "skip")
    assert "max_num_steps" in read_metrics(tmp_path)[-1]["test_skipped"]  # the evaluation's solves failed too


def test_fallback_retries_with_the_stated_solver(tmp_path):
    cfg = config(NO_SOLVE, "train.epochs=1", "train.on_solver_error=fallback", "train.fallback.step_size=0.1")
    summary = run(cfg, tmp_path)
    record = read_metrics(tmp_path)[-1]
    assert summary["status"] == "completed" and record["fallback_batches"] == 2 and record["skipped_batches"] == 0
    assert summary["fallback_batches"] == 2 and summary["fallback_solver"] == "method=rk4 step_size=0.1"
    assert record["test_fallback"] and record["test_rmse_extrap"] > 0
    assert record["nfe_forward_mean"] == 4 * record["steps_accepted_mean"] > 0  # rk4: 4 evaluations a step


@pytest.mark.parametrize("outcome", ["nan", "skipped"])
def test_a_run_without_a_finite_test_metric_is_not_completed(tmp_path, monkeypatch, outcome):
    def evaluate(trainer):
        if outcome == "skipped":
            raise SolverError("max_num_steps=1 reached")
        return {"test_rmse_extrap": float("nan")}

    monkeypatch.setattr(Trainer, "evaluate", evaluate)
    message = (
        "the final test_rmse_extrap is nan"
        if outcome == "nan"
        else r"no test_rmse_extrap from the last evaluation \(skipped: SolverError"
    )
    with pytest.raises(StopTraining, match=message):
        run(config("train.max_iters=1", "train.on_solver_error=skip"), tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == ("diverged" if outcome == "nan" else "failed") and summary["steps"] == 1
    assert (tmp_path / "checkpoint.pt").exists()  # what was trained is kept


def test_too_many_bad_batches_stop_the_run(tmp_path):
    with pytest.raises(StopTraining, match="max_bad_batches=1"):
        run(config(NO_SOLVE, "train.epochs=3", "train.on_solver_error=skip", "train.max_bad_batches=1"), tmp_path)
    assert json.loads((tmp_path / "failure.json").read_text())["step"] == 1


def test_a_diverging_run_says_so(tmp_path):
    with pytest.raises(StopTraining):
        run(config("optimizer.lr=1e6", "train.epochs=5"), tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["steps"] >= 1


def test_parameters_made_non_finite_stop_the_run_whatever_the_policy(tmp_path, monkeypatch):
    adam_step = torch.optim.Adam.step

    def overflowing_step(self, *args, **kwargs):  # as an update too large for float32 would
        result = adam_step(self, *args, **kwargs)
        with torch.no_grad():
            self.param_groups[0]["params"][0].fill_(float("inf"))
        return result

    monkeypatch.setattr(torch.optim.Adam, "step", overflowing_step)
    with pytest.raises(StopTraining, match="no later batch can train"):
        run(config("train.on_solver_error=skip", "train.epochs=2"), tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "diverged"
    assert json.loads((tmp_path / "failure.json").read_text())["step"] == 0


def test_sweep_with_a_diverging_job_completes_and_reports_it(tmp_path):
    sweep = tmp_path / "sweep"
    code, output = finished(
        cli("train", "-m", *SMALL, "train.epochs=1", "optimizer.lr=0.001,1e6", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    )
    assert code == 1, output[-3000:]
    statuses = [json.loads((sweep / str(job) / "summary.json").read_text())["status"] for job in (0, 1)]
    assert statuses == ["completed", "diverged"]
    assert report_command(str(sweep)) == 0
    report = (sweep / "report.md").read_text()
    assert "completed" in report and "diverged" in report


# SIGTERM (a cluster's preemption) by default; SIGINT takes the same path and runs with -m slow (12 s)
@pytest.mark.parametrize("signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_interrupted_then_resumed_ends_like_an_uninterrupted_run(tmp_path, signum):
    settings = [*SMALL, "train.epochs=12"]
    straight = run(config("train.epochs=12"), tmp_path / "straight")
    first = tmp_path / "first"
    process = cli("train", *settings, f"hydra.run.dir={first}", cwd=tmp_path)
    deadline = time.monotonic() + 300
    while not (first / "checkpoint.pt").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signum)
    code, output = finished(process)
    assert code == 128 + signum, output[-3000:]
    summary = json.loads((first / "summary.json").read_text())
    assert summary["status"] == "interrupted" and 0 < summary["steps"] < 24
    resumed = tmp_path / "resumed"
    code, output = finished(cli("train", *settings, f"resume={first}", f"hydra.run.dir={resumed}", cwd=tmp_path))
    assert code == 0, output[-3000:]
    final = json.loads((resumed / "summary.json").read_text())
    assert final["status"] == "completed" and final["steps"] == 24
    last = read_metrics(resumed)[-1]  # full precision (summary.json is rounded)
    for key in ("train_loss", "test_rmse_extrap"):
        assert last[key] == pytest.approx(straight[key], rel=1e-6)


def test_corrupt_truncated_or_mismatched_checkpoints_are_refused(tmp_path):
    run(config("train.max_iters=1"), tmp_path / "good")
    good = (tmp_path / "good" / "checkpoint.pt").read_bytes()
    cases = {"corrupt": b"not a checkpoint", "truncated": good[: len(good) // 2]}
    for name, content in cases.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "checkpoint.pt").write_bytes(content)
        with pytest.raises(ValueError, match="not a readable noderun checkpoint"):
            run(config("train.max_iters=2", f"resume={tmp_path / name}"), tmp_path / f"resume_{name}")
    with pytest.raises(ValueError, match="trained with model"):
        run(config("train.max_iters=2", "model.latent_dim=6", f"resume={tmp_path / 'good'}"), tmp_path / "other")
    incomplete = torch.load(tmp_path / "good" / "checkpoint.pt", weights_only=True)
    del incomplete["optimizer"]
    torch.save(incomplete, tmp_path / "incomplete.pt")
    with pytest.raises(ValueError, match="missing optimizer"):
        run(config("train.max_iters=2", f"resume={tmp_path / 'incomplete.pt'}"), tmp_path / "incomplete")


def test_a_crash_while_writing_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    target = tmp_path / "checkpoint.pt"
    checkpoints.save_checkpoint(target, {"step": 1})

    def crash(state, path):
        Path(path).write_bytes(b"half")
        raise OSError("disk gone")

    monkeypatch.setattr(checkpoints.torch, "save", crash)
    with pytest.raises(OSError):
        checkpoints.save_checkpoint(target, {"step": 2})
    assert checkpoints.load_checkpoint(target) == {"step": 1}
    summary = tmp_path / "summary.json"
    write_json_atomic(summary, {"status": "completed"})
    monkeypatch.setattr(os, "replace", lambda *args: (_ for _ in ()).throw(OSError("disk gone")))
    with pytest.raises(OSError):
        write_json_atomic(summary, {"status": "failed"})
    assert json.loads(summary.read_text()) == {"status": "completed"}


def test_report_on_nothing_or_on_a_corrupt_summary(tmp_path, capsys):
    assert report_command(str(tmp_path)) == 1
    assert "no runs" in capsys.readouterr().err
    run(config("train.max_iters=1"), tmp_path / "good")
    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / "summary.json").write_text('{"status": "compl')
    assert report_command(str(tmp_path)) == 0
    output = capsys.readouterr().err
    assert "torn" in output and "unreadable summary.json" in output
    report = (tmp_path / "report.md").read_text()
    assert "completed" in report and "unreadable summary" in report


def test_a_cluster_warning_signal_checkpoints_then_goes_to_the_handler_that_had_it(tmp_path):
    """As under submitit: SIGUSR2's own handler (which requeues the job and exits) runs only after the run
    saved its checkpoint at the end of the batch in progress."""
    seen = []

    def requeue(signum, frame):
        seen.append(torch.load(tmp_path / "checkpoint.pt", weights_only=True)["state"]["step"])
        raise SystemExit(0)

    def warn_when_training():
        deadline = time.monotonic() + 120
        while not (tmp_path / "checkpoint.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGUSR2)

    previous = signal.signal(signal.SIGUSR2, requeue)
    try:
        threading.Thread(target=warn_when_training, daemon=True).start()
        with pytest.raises(SystemExit):
            run(config("train.epochs=20"), tmp_path)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "interrupted" and seen == [summary["steps"]] and summary["steps"] >= 2


@pytest.mark.slow  # two runs in subprocesses (17 s)
def test_killed_while_checkpointing_leaves_a_whole_checkpoint_to_resume_from(tmp_path):
    """SIGKILL (no handler runs) at moments spread over a run that checkpoints every epoch: whatever
    checkpoint.pt is left always loads, and the run resumes from it."""
    for attempt, delay in enumerate((0.0, 0.03, 0.07, 0.13)):
        run_dir = tmp_path / f"killed{attempt}"
        process = cli("train", *SMALL, "train.epochs=50", f"hydra.run.dir={run_dir}", cwd=tmp_path)
        deadline = time.monotonic() + 300
        while not (run_dir / "checkpoint.pt").exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.01)
        time.sleep(delay)
        process.kill()
        finished(process)
        checkpoint = checkpoints.load_checkpoint(run_dir)
        assert checkpoint["state"]["step"] >= 2
    step = checkpoint["state"]["step"]
    resumed = run(config("train.epochs=50", f"train.max_iters={step + 2}", f"resume={run_dir}"), tmp_path / "resumed")
    assert resumed["status"] == "completed" and resumed["steps"] == step + 2
