"""The Trainer's own state (state_dict / load_state_dict), the failure policy object and the Task protocol."""

import io

import pytest
import torch

from conftest import SMALL_SPIRALS, compose_config
from noderun.errors import SolverError
from noderun.log.files import MetricsWriter
from noderun.tasks import Task
from noderun.tasks.classification import Classification
from noderun.tasks.density import DensityEstimation, DensityMatching
from noderun.tasks.timeseries import TimeSeries
from noderun.train import validate
from noderun.train.checkpoint import restore_random_states
from noderun.train.failures import EPOCH_COUNTERS, FAILURE_POLICIES, FailurePolicy
from noderun.train.loop import REQUIRED_STATE_KEYS, STATE_KEYS
from noderun.train.run import build_trainer

SMALL = SMALL_SPIRALS


def trainer_for(output_dir, *overrides):
    cfg = compose_config(*SMALL, *overrides)
    output_dir.mkdir(parents=True, exist_ok=True)
    return build_trainer(cfg, output_dir, MetricsWriter(output_dir, tensorboard=False))


def as_on_disk(state):
    """``state`` through torch.save and torch.load, as a checkpoint file holds it (a deep copy)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def assert_same_tensors(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_state_dict_round_trip_gives_the_same_trainer_and_the_same_continuation(tmp_path):
    trainer = trainer_for(tmp_path / "a", "train.max_iters=3", "train.epochs=3")
    trainer.fit()  # stops in the middle of the second epoch: its records are part of the state
    state = as_on_disk(trainer.state_dict())
    assert tuple(state) == STATE_KEYS
    assert state["state"]["step"] == 3 and state["state"]["batch_in_epoch"] == 1 and len(state["epoch_iterations"]) == 1

    other = trainer_for(tmp_path / "b", "train.max_iters=3", "train.epochs=3")
    torch.manual_seed(12345)  # the random states come from the state dict, not from here
    other.load_state_dict(state)
    assert_same_tensors(other.model.state_dict(), trainer.model.state_dict())
    loaded, original = other.optimizer.state_dict(), trainer.optimizer.state_dict()
    assert loaded["param_groups"] == original["param_groups"]
    for index, values in original["state"].items():
        assert_same_tensors(loaded["state"][index], values)
    assert other.scheduler.state_dict() == trainer.scheduler.state_dict()
    assert other.state == trainer.state and other.epoch_iterations == trainer.epoch_iterations
    assert other.epoch_failures == trainer.epoch_failures
    assert torch.equal(torch.get_rng_state(), state["random"]["torch"])

    for continuing in (trainer, other):  # one more step each, from the same random states: bit-identical
        restore_random_states(state["random"])
        continuing.settings.max_iters = 4
        continuing.fit()
    assert_same_tensors(other.model.state_dict(), trainer.model.state_dict())
    assert other.last_record["train_loss"] == trainer.last_record["train_loss"]


def test_an_older_checkpoint_without_epoch_failures_still_loads(tmp_path):
    trainer = trainer_for(tmp_path / "a", "train.max_iters=1")
    state = as_on_disk(trainer.state_dict())
    trainer.epoch_failures["skipped_batches"] = 3
    del state["epoch_failures"]
    trainer.load_state_dict(state)
    assert trainer.epoch_failures == dict.fromkeys(EPOCH_COUNTERS, 0) == {"skipped_batches": 0, "fallback_batches": 0}


def test_the_required_keys_are_the_layout_less_what_old_checkpoints_lack():
    assert set(REQUIRED_STATE_KEYS) == set(STATE_KEYS) - {"epoch_failures"}
    assert "model" in REQUIRED_STATE_KEYS and "random" in REQUIRED_STATE_KEYS


class Refused(Exception):
    """What the fake recovery's ``stop`` raises in place of ``StopTraining``."""


class FakeRecovery:
    """A ``failures.Recovery`` that writes down what the policy asked of it."""

    def __init__(self, bad_batches=0):
        self.calls, self.bad_batches = [], bad_batches

    def log(self, failure, action):
        self.calls.append(("log", action))

    def stop(self, failure, why):
        self.calls.append(("stop", why))
        raise Refused(why)

    def count_bad_batch(self):
        self.bad_batches += 1
        return self.bad_batches

    def tally(self, counter):
        self.calls.append(("tally", counter))

    def retry(self, fallback):
        self.calls.append(("retry", fallback))
        return {"loss": 1.0}


FAILURE = SolverError("max_num_steps=1 reached")
FALLBACK = object()  # the solver settings are opaque to the policy


def test_the_policy_names_are_one_tuple_and_an_unknown_name_is_refused():
    assert FAILURE_POLICIES == ("raise", "skip", "fallback")
    assert validate.FAILURE_POLICIES is FAILURE_POLICIES
    with pytest.raises(ValueError, match=r"'retry'.*raise, skip, fallback"):
        FailurePolicy(action="retry")
    with pytest.raises(ValueError, match="fallback solver"):
        FailurePolicy(action="fallback")


def test_raise_stops_at_a_batch_and_at_an_evaluation():
    policy, recovery = FailurePolicy("raise"), FakeRecovery()
    with pytest.raises(Refused):
        policy.on_batch(FAILURE, recovery)
    with pytest.raises(Refused):
        policy.on_evaluation(FAILURE, recovery)
    assert recovery.calls == [
        ("log", "raise"),
        ("stop", "train.on_solver_error=raise"),
        ("log", "raise, in evaluation"),
        ("stop", "in evaluation, train.on_solver_error=raise"),
    ]
    assert recovery.bad_batches == 0


def test_skip_drops_the_batch_and_leaves_the_test_metrics_out():
    policy, recovery = FailurePolicy("skip"), FakeRecovery()
    assert policy.on_batch(FAILURE, recovery) is None
    assert policy.on_evaluation(FAILURE, recovery) == {"test_skipped": "SolverError: max_num_steps=1 reached"}
    assert recovery.calls == [("log", "skip"), ("tally", "skipped_batches"), ("log", "skip, in evaluation")]
    assert recovery.bad_batches == 1


def test_fallback_retries_the_batch_and_the_evaluation_with_its_solver():
    policy, recovery = FailurePolicy("fallback", fallback=FALLBACK), FakeRecovery()
    assert policy.on_batch(FAILURE, recovery) == {"loss": 1.0}
    assert policy.on_evaluation(FAILURE, recovery) == {"loss": 1.0, "test_fallback": True}
    assert recovery.calls == [
        ("log", "fallback"),
        ("tally", "fallback_batches"),
        ("retry", FALLBACK),
        ("log", "fallback, in evaluation"),
        ("retry", FALLBACK),
    ]
    assert recovery.bad_batches == 1


@pytest.mark.parametrize("action", ["skip", "fallback"])
def test_one_bad_batch_too_many_stops_the_run(action):
    policy = FailurePolicy(action, fallback=FALLBACK, max_bad_batches=2)
    counted = ("tally", f"{'skipped' if action == 'skip' else 'fallback'}_batches")
    second = FakeRecovery(bad_batches=1)
    policy.on_batch(FAILURE, second)  # the second bad batch is tolerated
    assert counted in second.calls
    third = FakeRecovery(bad_batches=2)
    with pytest.raises(Refused, match="more than train.max_bad_batches=2 batches skipped or retried"):
        policy.on_batch(FAILURE, third)
    assert counted not in third.calls and ("retry", FALLBACK) not in third.calls


def test_every_task_provides_what_the_trainer_uses(tmp_path):
    tasks = [Classification(), TimeSeries(), DensityEstimation(), DensityMatching(lambda x: -x.pow(2).sum(-1))]
    assert all(isinstance(task, Task) for task in tasks)
    assert [task.headline for task in tasks] == ["test_error", "test_rmse_extrap", "test_nll", "test_kl"]
    assert not isinstance(object(), Task)
    assert isinstance(trainer_for(tmp_path, "train.max_iters=1").task, Task)
