"""The types of noderun's config keys: one dataclass per option of a config group whose keys differ, stored
in Hydra's ConfigStore as ``schema/<group>/<name>`` and named first in that option's yaml defaults list
(``- /schema/model/odenet@_here_``), so that OmegaConf refuses a key the schema lacks and a value of the
wrong type. The values live in the yaml files; ranges (positive sizes, known names) are checked by
``noderun.train.validate``.

A new key is declared here, in the dataclass of its group option (root keys: ``NoderunConfig``; the keys
of every ``train`` schedule and of conf/config.yaml's ``train:`` block: ``TrainConfig``), in the yaml's
order, with its value in the yaml file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class TrainConfig:
    epochs: int = MISSING  # the schedule: conf/train/<dataset>.yaml
    batch_size: int = MISSING
    test_batch_size: int = MISSING
    lr: float = MISSING
    lr_milestones: list[int] = MISSING
    lr_gamma: float = MISSING
    max_iters: Optional[int] = MISSING  # the rest: conf/config.yaml
    progress: bool = MISSING
    on_solver_error: str = MISSING
    fallback: Any = MISSING  # a solver node; its keys depend on its method (checked on use)
    max_bad_batches: Optional[int] = MISSING
    distributed: bool = MISSING
    end_time_jitter: float = MISSING
    keep_checkpoints: Optional[int] = MISSING


@dataclass
class LogConfig:
    every_steps: Optional[int] = MISSING


@dataclass
class NoderunConfig:
    """conf/config.yaml: the groups (typed by their options' schemas), then the root keys."""

    dataset: Any = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    model: Any = MISSING
    solver: Any = MISSING
    grad: Any = MISSING
    optimizer: Any = MISSING
    task: Any = MISSING
    regularizer: Any = MISSING
    seed: int = MISSING
    device: str = MISSING
    data_dir: str = MISSING
    resume: Optional[str] = MISSING
    threads: Optional[int] = MISSING
    objective: Optional[str] = MISSING
    log: LogConfig = field(default_factory=LogConfig)


@dataclass
class Target:
    _target_: str = MISSING


@dataclass
class MNIST(Target):
    root: str = MISSING
    download: bool = MISSING
    augment: bool = MISSING


@dataclass
class MNIST5k(Target):
    test_fraction: float = MISSING
    split_seed: int = MISSING
    augment: bool = MISSING


@dataclass
class Spirals(Target):
    kind: str = MISSING
    n_spirals: int = MISSING
    n_points: int = MISSING
    n_obs: int = MISSING
    t_window: float = MISSING
    noise_std: Optional[float] = MISSING
    angular_speed: float = MISSING
    radial_rate: float = MISSING
    test_fraction: float = MISSING
    seed: int = MISSING
    train_future: bool = MISSING


@dataclass
class Toy2D(Target):
    name: str = MISSING
    n_train: int = MISSING
    n_test: int = MISSING
    noise: Optional[float] = MISSING
    n_reference: int = MISSING
    seed: int = MISSING


@dataclass
class CNF(Target):
    width: int = MISSING
    hyper_hidden: int = MISSING
    trace: str = MISSING
    noise: str = MISSING
    t_end: float = MISSING
    base_variance: float = MISSING


@dataclass
class LatentODE(Target):
    latent_dim: int = MISSING
    rnn_hidden: int = MISSING
    dynamics_hidden: int = MISSING
    decoder_hidden: int = MISSING
    obs_noise_std: float = MISSING
    augment_dim: int = MISSING
    kl_warmup_steps: int = MISSING


@dataclass
class MLP(Target):
    hidden: int = MISSING


@dataclass
class ODENet(Target):
    channels: int = MISSING
    integration_time: float = MISSING
    augment_dim: int = MISSING


@dataclass
class PlanarNF(Target):
    layers: int = MISSING
    direction: str = MISSING
    base_variance: float = MISSING


@dataclass
class ResNet(Target):
    channels: int = MISSING
    blocks: int = MISSING


@dataclass
class GridRNN(Target):
    hidden: int = MISSING
    time_gaps: bool = MISSING


@dataclass
class StepControl:
    """What every adaptive solver's error control takes."""

    method: str = MISSING
    rtol: float = MISSING
    atol: float = MISSING
    first_step: Optional[float] = MISSING
    max_num_steps: int = MISSING
    beta: float = MISSING


@dataclass
class AdaptiveSolver(StepControl):
    per_sample: bool = MISSING
    compact: bool = MISSING
    compile: bool = MISSING


@dataclass
class FixedStepSolver:
    method: str = MISSING
    step_size: Optional[float] = MISSING
    compile: bool = MISSING
    rtol: Optional[float] = MISSING  # unused by fixed steps: a preset's tolerances when its solver is swapped
    atol: Optional[float] = MISSING


@dataclass
class NewtonSolver(FixedStepSolver):
    """Implicit Runge–Kutta methods (Newton's method on the stages)."""

    max_iters: int = MISSING
    jacobian: str = MISSING


@dataclass
class StiffSolver(StepControl):
    """Adaptive implicit methods (Newton's method on the stages, step size by the error estimate)."""

    max_iters: int = MISSING
    jacobian: str = MISSING


@dataclass
class ExplicitAdamsSolver(FixedStepSolver):
    max_order: Optional[int] = MISSING


@dataclass
class ImplicitAdamsSolver(FixedStepSolver):
    max_order: Optional[int] = MISSING
    max_iters: Optional[int] = MISSING
    rtol: Optional[float] = MISSING
    atol: Optional[float] = MISSING


@dataclass
class ScipySolver:
    method: str = MISSING
    scipy_method: str = MISSING
    rtol: float = MISSING
    atol: float = MISSING
    first_step: Optional[float] = MISSING
    max_step: Optional[float] = MISSING
    min_step: Optional[float] = MISSING


@dataclass
class AdjointGrad:
    mode: str = MISSING
    seminorm: bool = MISSING
    method: Optional[str] = MISSING
    step_size: Optional[float] = MISSING


@dataclass
class Grad:
    """grad=backprop and grad=checkpoint."""

    mode: str = MISSING


@dataclass
class Optimizer(Target):
    _partial_: bool = MISSING
    lr: float = MISSING


@dataclass
class Adam(Optimizer):
    weight_decay: float = MISSING


@dataclass
class SGD(Optimizer):
    momentum: float = MISSING
    weight_decay: float = MISSING


@dataclass
class Regularizer:
    kinetic: float = MISSING
    jacobian: float = MISSING
    noise: str = MISSING


@dataclass
class DensityMatching(Target):
    eval_samples: int = MISSING
    eval_seed: int = MISSING


SCHEMAS = {
    "dataset": {"mnist": MNIST, "mnist5k": MNIST5k, "spirals": Spirals, "toy2d": Toy2D},
    "model": {
        "cnf": CNF,
        "latent_ode": LatentODE,
        "mlp": MLP,
        "odenet": ODENet,
        "planar_nf": PlanarNF,
        "resnet": ResNet,
        "rnn": GridRNN,
    },
    "solver": {
        "adaptive": AdaptiveSolver,
        "fixed_step": FixedStepSolver,
        "newton": NewtonSolver,
        "stiff": StiffSolver,
        "explicit_adams": ExplicitAdamsSolver,
        "implicit_adams": ImplicitAdamsSolver,
        "scipy": ScipySolver,
    },
    "grad": {"adjoint": AdjointGrad, "plain": Grad},
    "optimizer": {"adam": Adam, "sgd": SGD},
    "task": {"target": Target, "density_matching": DensityMatching},
    "regularizer": {"regularizer": Regularizer},
}


def register() -> None:
    """Store the schemas in Hydra's ConfigStore: the root's as ``noderun_schema``, the others as
    ``schema/<group>/<name>``."""
    store = ConfigStore.instance()
    store.store(name="noderun_schema", node=NoderunConfig)
    for group, schemas in SCHEMAS.items():
        for name, schema in schemas.items():
            store.store(group=f"schema/{group}", name=name, node=schema)
