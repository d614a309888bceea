"""Scaling out for real on this machine: sweeps through the joblib and submitit_local launchers, an
Optuna search, a requeued job resuming by itself, and one run on two processes (DDP, gloo)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from noderun.log.files import read_metrics
from noderun.report import report_command

SPIRALS = [
    "experiment=spiral_latent_ode",
    "dataset.n_spirals=40",
    "train.batch_size=16",
    "train.test_batch_size=8",
    "train.epochs=1",
    "train.progress=false",
]
CNF = [
    "experiment=cnf_moons",
    "dataset.n_train=64",
    "dataset.n_test=64",
    "dataset.n_reference=64",
    "model.width=8",
    "model.hyper_hidden=8",
    "train.test_batch_size=64",
    "train.max_iters=2",
    "train.epochs=1",
    "train.progress=false",
    "threads=1",
]
# Fixed steps: an adaptive solver would choose each process's steps from its own half of the batch, so the
# two runs would agree only to the solver's tolerance.
FIXED_STEPS = ["solver=rk4", "solver.step_size=0.5"]


def noderun(*args, cwd, launcher=(sys.executable, "-m", "noderun.cli")):
    result = subprocess.run([*launcher, *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result


def summaries(sweep):
    return [json.loads((sweep / str(job) / "summary.json").read_text()) for job in range(2)]


@pytest.mark.parametrize(
    "launcher, threads",
    [
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], max(1, (os.cpu_count() or 1) // 2)),
        pytest.param(  # submitit's local executor: 11 s more, with -m slow
            ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "hydra.launcher.cpus_per_task=1"],
            1,
            marks=pytest.mark.slow,
        ),
    ],
)
def test_two_job_sweep_through_a_launcher(tmp_path, launcher, threads):
    sweep = tmp_path / "sweep"
    noderun("train", "-m", *SPIRALS, "optimizer.lr=0.001,0.01", *launcher, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    runs = summaries(sweep)
    assert [run["status"] for run in runs] == ["completed", "completed"]
    assert [run["threads"] for run in runs] == [threads, threads]  # the jobs share the cores
    assert runs[0]["test_rmse_extrap"] != runs[1]["test_rmse_extrap"]
    assert report_command(str(sweep)) == 0
    report = (sweep / "report.md").read_text()
    assert "optimizer.lr" in report.splitlines()[0] and "0.01" in report and "0.001" in report


def test_optuna_search_minimises_the_headline(tmp_path):
    sweep = tmp_path / "search"
    noderun(
        "train",
        "-m",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=3",
        *SPIRALS,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    values = [read_metrics(sweep / str(job))[-1]["test_rmse_extrap"] for job in range(3)]  # full precision
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(min(values))
    assert set(results["best_params"]) == {"optimizer.lr", "solver.rtol"}


@pytest.mark.slow  # two submitit jobs (15 s)
def test_a_requeued_job_resumes_from_its_own_checkpoint(tmp_path):
    noderun("train", *SPIRALS, "train.epochs=4", f"hydra.run.dir={tmp_path / 'straight'}", cwd=tmp_path)
    job = tmp_path / "job"
    noderun("train", *SPIRALS, "train.epochs=2", "resume=auto", f"hydra.run.dir={job}", cwd=tmp_path)
    assert json.loads((job / "summary.json").read_text())["resumed_from"] is None  # nothing there yet
    noderun("train", *SPIRALS, "train.epochs=4", "resume=auto", f"hydra.run.dir={job}", cwd=tmp_path)
    requeued = json.loads((job / "summary.json").read_text())
    straight = json.loads((tmp_path / "straight" / "summary.json").read_text())
    assert requeued["resumed_from"] == str(job) and requeued["steps"] == straight["steps"] == 8
    assert read_metrics(job)[-1]["test_rmse_extrap"] == pytest.approx(
        read_metrics(tmp_path / "straight")[-1]["test_rmse_extrap"], rel=1e-6
    )  # full precision (summary.json is rounded)


# the adjoint by default; checkpoint (20 s more) with -m slow, to keep the default run well under 10 minutes
@pytest.mark.parametrize("grad", ["adjoint", pytest.param("checkpoint", marks=pytest.mark.slow)])
def test_two_processes_match_one_on_the_same_global_batch(tmp_path, grad):
    torchrun = (
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "noderun.cli",
    )
    settings = [*CNF, *FIXED_STEPS, f"grad={grad}"]
    noderun(
        "train", *settings, "train.batch_size=32", f"hydra.run.dir={tmp_path / 'ddp'}", cwd=tmp_path, launcher=torchrun
    )
    noderun("train", *settings, "train.batch_size=32", f"hydra.run.dir={tmp_path / 'one'}", cwd=tmp_path)
    noderun("train", *settings, "train.batch_size=16", f"hydra.run.dir={tmp_path / 'half'}", cwd=tmp_path)
    params = {
        name: torch.load(tmp_path / name / "checkpoint.pt", weights_only=False)["model"]
        for name in ("ddp", "one", "half")
    }

    def gap(a, b):
        return max((params[a][key] - params[b][key]).abs().max().item() for key in params[a])

    assert gap("ddp", "one") < 1e-5
    assert gap("half", "one") > 1e-4  # one process's half of the batch alone would train elsewhere
    ddp = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert ddp["processes"] == 2 and ddp["status"] == "completed" and ddp["nfe_backward"] > 0
    assert len((tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()) == 1  # written by one process


def test_a_signal_to_one_process_stops_both_after_the_same_batch(tmp_path):
    run_dir = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "noderun.cli",
        "train",
        *CNF,
        *FIXED_STEPS,
        "train.batch_size=32",
        "train.max_iters=100000",
        "train.epochs=100000",
        f"hydra.run.dir={run_dir}",
    ]
    agent = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while not (run_dir / "checkpoint.pt").exists() and time.monotonic() < deadline and agent.poll() is None:
        time.sleep(0.05)
    workers = subprocess.run(["pgrep", "-f", f"hydra.run.dir={run_dir}"], capture_output=True, text=True).stdout
    worker_pids = sorted(int(pid) for pid in workers.split() if int(pid) != agent.pid)
    assert len(worker_pids) == 2
    os.kill(worker_pids[-1], signal.SIGTERM)
    output, _ = agent.communicate(timeout=300)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["processes"] == 2, output[-3000:]
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    assert checkpoint["state"]["step"] == summary["steps"] > 0
    assert len(checkpoint["random"]["ranks"]) == 2  # each process's own random streams


def test_diverging_trials_do_not_stop_the_search(tmp_path):
    sweep = tmp_path / "search"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "noderun.cli",
            "train",
            "-m",
            "hparams_search=optuna",
            "hydra.sweeper.n_trials=2",
            "optimizer.lr=tag(log, interval(1e5, 1e6))",
            *SPIRALS,
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 1  # no trial completed
    statuses = [json.loads((sweep / str(job) / "summary.json").read_text())["status"] for job in range(2)]
    assert statuses == ["diverged", "diverged"]
    assert yaml.safe_load((sweep / "optimization_results.yaml").read_text())["best_value"] == float("inf")
