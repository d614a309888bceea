"""Bad input: config values are refused before training with one line naming the key and what it
accepts (exit status 2, no traceback); odeint's arguments likewise. Property-based where the space is
large, and a check that every refusal in the validation code is reached by some case here."""

import ast
import contextlib
import copy
import math
import os
import re
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

import noderun
from conftest import compose_config as config
from noderun.cli import main
from noderun.solvers import options as solver_options
from noderun.train import validate
from noderun.train.config_errors import composition_refusal, swept_groups_hint
from noderun.train.validate import ConfigError, validate_config

BAD_CONFIGS = {
    "epochs": (["train.epochs=0"], r"train.epochs=0: accepted values: a positive integer"),
    "batch_size": (["train.batch_size=-4"], r"train.batch_size=-4"),
    "test_batch_size": (["train.test_batch_size=0"], r"train.test_batch_size"),
    "max_iters": (["train.max_iters=0"], r"train.max_iters=0: accepted values: a positive integer or null"),
    "lr": (["train.lr=0"], r"train.lr=0.0: accepted values: a finite positive number"),
    "milestones": (["train.lr_milestones=[0,3]"], r"train.lr_milestones"),
    "seed": (["seed=-1"], r"seed=-1: accepted values: an integer from 0 to 4294967295"),
    "seed_too_large": (["seed=4294967296"], r"seed=4294967296: accepted values: an integer from 0 to 4294967295"),
    "optimizer_lr": (["optimizer.lr=-1"], r"optimizer.lr=-1.0: accepted values: a finite positive number"),
    "model_size": (["model.channels=0"], r"model.channels=0: accepted values: a positive integer"),
    "dataset_size": (["experiment=spiral_latent_ode", "dataset.n_obs=0"], r"dataset.n_obs=0: accepted values"),
    "fraction": (["dataset.test_fraction=1"], r"dataset.test_fraction=1.0: accepted values: a number between 0 and 1"),
    "dataset_name": (["experiment=cnf_moons", "dataset.name=foo"], r"dataset.name='foo': accepted values: circles, "),
    "model_trace": (["experiment=cnf_moons", "model.trace=foo"], r"model.trace='foo': accepted values: exact, hutch"),
    "added_key": (["+train.epoch=3"], r"train.epoch: unknown key \(did you mean train.epochs\?\); accepted keys: "),
    "policy": (["train.on_solver_error=retry"], r"train.on_solver_error='retry'.*raise, skip, fallback"),
    "fallback_method": (["train.on_solver_error=fallback", "train.fallback.method=rk45"], r"train.fallback.method"),
    "rtol": (["solver.rtol=0"], r"solver.rtol must be a finite positive number"),
    "step_size": (["solver=rk4", "solver.step_size=-0.1"], r"solver.step_size must be a finite positive number"),
    "solver_key": (["+solver.order=3"], r"solver.order: unknown key; accepted keys: method, rtol, atol"),
    "scipy_method": (
        ["solver=scipy_solver", "solver.scipy_method=rk45"],
        r"unknown solver.scipy_method 'rk45'; SciPy's solvers: RK45, RK23, DOP853, Radau, BDF, LSODA",
    ),
    "scipy_checkpoint": (
        ["solver=scipy_solver", "grad=checkpoint"],
        r"grad.mode='checkpoint'.*'scipy_solver' solves the whole problem at once.*'adjoint'",
    ),
    "tolerances_only": (
        ["solver.method=rk4"],
        r"solver.rtol without solver.step_size: the fixed-step method 'rk4' has no error control",
    ),
    "not_a_solver": (["train.on_solver_error=fallback", "train.fallback=null"], r"train.fallback: accepted"),
    "grad_mode": (["grad.mode=reverse"], r"grad.mode='reverse': accepted values: backprop, adjoint, checkpoint"),
    "seminorm_backprop": (["grad.mode=backprop", "grad.seminorm=true"], r"grad.seminorm=true applies to the adjoint"),
    "spiral_kind": (
        ["dataset=spirals", "model=latent_ode", "task=timeseries", "dataset.kind=fermat"],
        r"dataset.kind='fermat': accepted values: logarithmic, archimedean",
    ),
    "device": (["device=tpu"], r"device='tpu': unknown device"),
    "cuda": (["device=cuda:7"], r"device='cuda:7'"),
    "data_dir": (
        ["dataset=mnist", "data_dir=/nonexistent/mnist"],
        r"data_dir='/nonexistent/mnist': /nonexistent/mnist/MNIST/raw lacks train-images-idx3-ubyte, .*; "
        r"accepted values: a data_dir holding MNIST/raw .*, or dataset.download=true",
    ),
    "resume": (["resume=/nonexistent/run"], r"resume='/nonexistent/run': no checkpoint there"),
    "threads": (["threads=0"], r"threads=0: accepted values: a positive integer or null"),
    "every_steps": (["log.every_steps=0"], r"log.every_steps=0: accepted values: a positive integer or null"),
    "keep_checkpoints": (["train.keep_checkpoints=0"], r"train.keep_checkpoints=0: accepted values: a positive "),
    "regularizer_weight": (
        ["regularizer.jacobian=-1"],
        r"regularizer.jacobian=-1.0: accepted values: a finite number, ",
    ),
    "regularizer_noise": (
        ["regularizer.noise=uniform"],
        r"regularizer.noise='uniform': accepted values: gaussian, rad",
    ),
    "augment_dim": (["model.augment_dim=-1"], r"model.augment_dim=-1: accepted values: an integer, 0 or more"),
    "kl_warmup_steps": (
        ["experiment=spiral_latent_ode", "model.kl_warmup_steps=-5"],
        r"model.kl_warmup_steps=-5: accepted values: an integer, 0 or more",
    ),
    "regularizer_without_ode": (
        ["model=resnet", "regularizer=kinetic"],
        r"regularizer.kinetic=0.01 regularises an ODE's dynamics, and model ResNet solves "
        r"none: accepted models: odenet, latent_ode, cnf",
    ),
    "jitter_of_data_times": (
        ["experiment=spiral_latent_ode", "train.end_time_jitter=0.1"],
        r"model LatentODE is not one: accepted models: odenet, cnf",
    ),
    "jitter_past_start": (["train.end_time_jitter=1.0"], r"less than model.integration_time=1.0"),
}

BAD_COMPOSITIONS = {  # refused by the schemas (conf/schema.py) while Hydra composes; the CLI prints this line
    "wrong_type": (["seed=1.5"], r"^seed=1.5: accepted values: an integer$"),
    "not_optional": (["train.lr=null"], r"^train.lr=null: accepted values: a number$"),
    "list_item": (["train.lr_milestones=[a]"], r"^train.lr_milestones\[0\]='a': accepted values: an integer$"),
    "list": (["train.lr_milestones=a"], r"^train.lr_milestones='a': accepted values: a list, each an integer$"),
    "unknown_key": (
        ["train.epoch=3"],
        r"^train.epoch: unknown key \(did you mean train.epochs\?\); accepted keys: "
        r"epochs, batch_size, .*distributed, end_time_jitter, keep_checkpoints$",
    ),
    "key_of_another_option": (
        ["solver=rk4", "solver.first_step=0.1"],
        r"^solver.first_step: unknown key; accepted keys: method, step_size, compile, rtol, atol$",
    ),
    "open_node": (
        ["train.fallback.rtol=1e-3"],
        r"^train.fallback.rtol: unknown key; this node takes keys added "
        r"with \+train.fallback.rtol=VALUE$",
    ),
    "unknown_option": (["model=foo"], r"^model=foo: accepted values: cnf, latent_ode, mlp, odenet, planar_nf, "),
    "other": (["+experiment=dm_nf"], r"^Multiple values for experiment"),
}

BAD_WITH_TWO_PROCESSES = {  # as under `torchrun --nproc-per-node 2`
    "global_batch": (["train.batch_size=33"], r"train.batch_size=33 is the global batch of 2 processes"),
    "policy_with_processes": (["train.on_solver_error=skip"], r"train.on_solver_error=skip with 2 processes"),
}


@pytest.fixture(scope="module")
def default_config():
    return config()


@pytest.mark.parametrize("name", BAD_CONFIGS)
def test_bad_config_is_refused_naming_the_key(name):
    overrides, message = BAD_CONFIGS[name]
    if name == "cuda" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    with pytest.raises(ConfigError, match=message):
        validate_config(config(*overrides))


@pytest.mark.parametrize("name", BAD_COMPOSITIONS)
def test_what_the_schemas_refuse_is_one_line_naming_the_key(name):
    overrides, message = BAD_COMPOSITIONS[name]
    with pytest.raises(Exception) as caught:
        config(*overrides)
    line = composition_refusal(caught.value)
    assert "\n" not in line and re.search(message, line), line


@pytest.mark.parametrize("name", BAD_WITH_TWO_PROCESSES)
def test_bad_config_for_several_processes_is_refused(name, monkeypatch):
    overrides, message = BAD_WITH_TWO_PROCESSES[name]
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match=message):
        validate_config(config(*overrides))


def test_every_refusal_in_the_validation_code_is_reached(tmp_path, monkeypatch):
    """Each ``raise ConfigError`` line of train/validate.py is the origin of some case above (the unwritable
    data_dir case needs a non-root user, so it is reached here through a stand-in for ``os.access``)."""
    source = Path(validate.__file__)
    raise_lines = {
        node.lineno
        for node in ast.walk(ast.parse(source.read_text()))
        if isinstance(node, ast.Raise)
        and isinstance(node.exc, ast.Call)
        and getattr(node.exc.func, "id", None) == "ConfigError"
    }
    reached = set()
    cases = [(overrides, 1) for overrides, _ in BAD_CONFIGS.values()]
    cases += [(overrides, 2) for overrides, _ in BAD_WITH_TWO_PROCESSES.values()]
    cases.append((["dataset=mnist", "dataset.download=true", f"data_dir={tmp_path}/new"], 1))
    for overrides, processes in cases:
        unwritable = "dataset.download=true" in overrides
        monkeypatch.setattr(validate.os, "access", (lambda *args: False) if unwritable else os.access)
        monkeypatch.setenv("WORLD_SIZE", str(processes))
        try:
            validate_config(config(*overrides))
        except ConfigError as error:
            frames = [frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename == str(source)]
            reached.add(frames[-1].lineno)
    assert raise_lines - reached == set()


def test_the_default_config_and_every_preset_pass(tmp_path):
    validate_config(config())
    presets = sorted((Path(__file__).parents[1] / "conf" / "experiment").glob("*.yaml"))
    assert len(presets) > 10
    for preset in presets:
        validate_config(config(f"experiment={preset.stem}", f"data_dir={tmp_path}"))


def noderun_cli(*args, cwd):
    """``noderun *args`` in a subprocess, importing this checkout's noderun."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    return subprocess.run(
        [sys.executable, "-m", "noderun.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "overrides, line",
    [
        (["train.epochs=0"], "config: train.epochs=0: accepted values: a positive integer"),  # validate_config
        (["seed=1.5"], "config: seed=1.5: accepted values: an integer"),  # the schema, while composing
        (
            ["hydra.run.dir=/proc/x"],
            "config: hydra.run.dir: cannot create or write /proc/x (No such file or "
            "directory); accepted values: a folder that can be created and written",
        ),
        (  # the multirun's first composition has the default dataset, which declares no train_future
            ["-m", "experiment=spiral_latent_ode,spiral_rnn", "dataset.train_future=true"],
            "config: dataset.train_future: unknown key; accepted keys: _target_, test_fraction, split_seed, augment"
            " (a multirun composes once before its sweep over experiment: a key that only a swept option declares"
            " needs that option named too, as in `dataset=spirals dataset.train_future=true`)",
        ),
    ],
)
def test_cli_exits_2_with_one_line_and_no_traceback(tmp_path, overrides, line):
    result = noderun_cli("train", *overrides, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert line in result.stderr and "accepted values" not in result.stdout, output  # errors on stderr
    assert "Traceback" not in output and "HYDRA_FULL_ERROR" not in output, output
    assert not list(tmp_path.rglob("checkpoint.pt"))


def test_the_multirun_hint_names_swept_groups_only():
    refusal = "dataset.train_future: unknown key; accepted keys: _target_"
    assert "sweep over experiment, model" in swept_groups_hint(
        refusal, ["-m", "experiment=a,b", "model=c,d", "seed=0,1"]
    )
    assert swept_groups_hint(refusal, ["-m", "seed=0,1", "dataset.n_obs=30,50"]) == ""  # no group is swept
    assert swept_groups_hint(refusal, ["experiment=a,b"]) == ""  # not a multirun
    assert swept_groups_hint("seed=1.5: accepted values: an integer", ["-m", "experiment=a,b"]) == ""


@pytest.mark.parametrize("rtol", ["-1", "0", "nan", "abc"])
def test_demo_refuses_a_bad_rtol_in_one_line(rtol, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["demo", "--rtol", rtol])
    assert caught.value.code == 2
    assert f"argument --rtol: {rtol!r}: accepted values: a finite positive number" in capsys.readouterr().err


@settings(max_examples=40, deadline=None)
@given(
    key=st.sampled_from(["train.epochs", "train.batch_size", "train.test_batch_size"]),
    value=st.one_of(
        st.integers(-(10**6), 10**6), st.floats(allow_nan=True), st.booleans(), st.text(alphabet="ab1-", max_size=3)
    ),
)
def test_sizes_are_accepted_exactly_when_positive_integers(default_config, key, value):
    """The schema refuses what is not an integer (converting integer strings, as OmegaConf does), validation
    what is not positive."""
    cfg = copy.deepcopy(default_config)
    integer = (
        value
        if type(value) is int
        else int(value)
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value)
        else None
    )
    if integer is None:
        with pytest.raises(ValidationError):
            OmegaConf.update(cfg, key, value)
        return
    OmegaConf.update(cfg, key, value)
    if integer > 0:
        validate_config(cfg)
    else:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            validate_config(cfg)


@settings(max_examples=40, deadline=None)
@given(
    rtol=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5)),
    atol=st.floats(min_value=1e-12, max_value=1.0),
)
def test_solver_tolerances_are_accepted_exactly_when_finite_and_positive(default_config, rtol, atol):
    cfg = copy.deepcopy(default_config)
    OmegaConf.update(cfg, "solver.rtol", rtol)
    OmegaConf.update(cfg, "solver.atol", atol)
    if math.isfinite(rtol) and rtol > 0:
        validate_config(cfg)
    else:
        with pytest.raises(ConfigError, match="rtol"):
            validate_config(cfg)


@settings(max_examples=60, deadline=None)
@given(
    rtol=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.none(), st.text(max_size=2)),
    max_num_steps=st.one_of(st.integers(-3, 50), st.floats(0.5, 50.0)),
    beta=st.floats(-0.5, 0.5),
)
def test_odeint_accepts_exactly_the_documented_settings(rtol, max_num_steps, beta):
    options = {"max_num_steps": max_num_steps, "beta": beta}
    valid = (
        isinstance(rtol, float)
        and math.isfinite(rtol)
        and rtol > 0
        and isinstance(max_num_steps, int)
        and max_num_steps > 0
        and 0 <= beta <= 0.1
    )
    y0, t = torch.tensor([1.0]), torch.tensor([0.0, 0.1])
    if valid:
        with contextlib.suppress(noderun.SolverError):  # a valid setting may still be too tight for its step budget
            noderun.odeint(lambda t, y: -y, y0, t, rtol=rtol, atol=1e-6, options=options)
    else:
        with pytest.raises(ValueError, match="rtol|max_num_steps|beta"):
            noderun.odeint(lambda t, y: -y, y0, t, rtol=rtol, atol=1e-6, options=options)


def test_every_refusal_in_the_option_parser_is_reached():
    """Each ``raise ValueError`` of solvers/options.py is the origin of one of these calls."""
    source = Path(solver_options.__file__)
    raise_lines = {
        node.lineno
        for node in ast.walk(ast.parse(source.read_text()))
        if isinstance(node, ast.Raise)
        and isinstance(node.exc, ast.Call)
        and getattr(node.exc.func, "id", None) == "SettingError"
    }
    bad = [
        {"rtol": 0},
        {"options": {"bogus": 1}},
        {"options": {"dfactor": 2.0}},
        {"options": {"beta": 1.0}},
        {"options": {"norm": "seminorm"}},
        {"options": {"norm": "max"}},
        {"options": {"per_sample": 1}},
        {"options": {"per_sample": True, "norm": "rms"}},
        {"options": {"compact": True}},
        {"grad": "adjoint", "adjoint_params": (), "adjoint_options": {"per_sample": True}},
        {"options": {"compile": 1}},
        {"options": {"compile": True, "per_sample": True}},
        {"grad": "adjoint", "adjoint_params": (), "adjoint_options": {"compile": True}},
        {"options": {"min_step": -1}},
        {"options": {"min_step": 2, "max_step": 1}},
        {"method": "euler", "options": {"grid_constructor": 3}},
        {"method": "euler", "options": {"step_size": 0.1, "grid_constructor": lambda f, y, t: t}},
        {"method": "euler", "options": {"perturb": 1}},
        {"options": {"step_t": "ab"}},
        {"options": {"step_t": [float("nan")]}},
        {"options": {"step_t": [0.5], "jump_t": [0.5]}},
        {"options": {"per_sample": True, "step_t": [0.5]}},
        {"method": "euler", "options": {"compile": True, "perturb": True}},
        {"method": "rk4", "options": {"interp": "quadratic"}},
        {"options": {"jump_t": [0.5]}, "event_fn": lambda t, y: y.sum() - 1.0},
        {"method": "implicit_euler", "options": {"compile": True}},
        {"method": "implicit_euler", "options": {"max_iters": 0}},
        {
            "method": "kvaerno5",
            "grad": "adjoint",
            "adjoint_params": (),
            "adjoint_options": {"jacobian": "batch_diagonal"},
        },
        {"method": "kvaerno5", "options": {"per_sample": True}},
    ]
    reached = set()
    for kwargs in bad:
        with pytest.raises(ValueError) as caught:
            noderun.odeint(lambda t, y: -y, torch.ones(2, 1), torch.tensor([0.0, 1.0]), **kwargs)
        frames = [f for f in traceback.extract_tb(caught.value.__traceback__) if f.filename == str(source)]
        reached.add(frames[-1].lineno)
    assert raise_lines - reached == set()
