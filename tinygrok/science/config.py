"""One source of truth for a run's settings: a frozen, validated dataclass and its named presets.

The CLI options, the saved `config.json` and the README's tables are all generated from `Config`'s fields.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field

from tinygrok.science import interventions
from tinygrok.science.data import OPERATIONS, is_prime, pair_count, split_sizes


class ConfigError(ValueError):
    """A setting is out of range; the message names the option and what is allowed."""


# Fields added after runs were first recorded (docs/records): a config without them had their defaults' behaviour.
ADDED_SINCE_RECORDS = ("snapshot_layers", "snapshot_dtype")


def _opt(default, help):  # help: the word the CLI uses
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Config:
    """Everything that determines a run. Defaults are the paper's fast regime (docs/paper.md §1-3); batch_shards is
    tinygrok's own (the reference takes one gradient of the whole batch: the same mathematics, other float32
    rounding), and the snapshot, theta and probe cadences are what a run records."""

    op: str = _opt("add", "binary operation mod p: " + ", ".join(OPERATIONS))
    p: int = _opt(97, "prime modulus (= vocabulary size)")
    seed: int = _opt(42, "seed of every random stream (init, split, batches, probes)")
    train_frac: float = _opt(0.5, "fraction of all pairs used for training, in (0, 1)")
    n_layers: int = _opt(2, "transformer blocks")
    d_model: int = _opt(128, "residual-stream width")
    n_heads: int = _opt(4, "attention heads (must divide d_model)")
    d_ff: int = _opt(256, "hidden width of the MLP")
    shared_init: bool = _opt(True, "start every block from the same weights, as PyTorch's deep copy does")
    lr: float = _opt(1e-3, "AdamW learning rate")
    weight_decay: float = _opt(1.0, "decoupled weight decay on all parameters")
    beta1: float = _opt(0.9, "AdamW first-moment decay")
    beta2: float = _opt(0.98, "AdamW second-moment decay")
    eps: float = _opt(1e-8, "AdamW epsilon")
    clip_norm: float = _opt(1.0, "global gradient-norm clipping threshold (0 = off)")
    hook: str = _opt(
        "none",
        "intervention around each optimizer step: none, or NAME:KEY=VALUE,... "
        "(tinygrok/science/interventions.py), e.g. weight_noise:sigma=0.001,every=50",
    )
    batch_size: int = _opt(512, "training batch, sampled with replacement")
    batches: str = _opt(
        "own",
        "the training batches: own (the seed's stream), shifted (the seed's stream, two "
        "batches skipped per probe sample, as the reference's probes take them: an intervention "
        "run's default, docs/differences.md; without probes the same as own) or sibling "
        "(another stream: other batches)",
    )
    batch_shards: int = _opt(
        2,
        "the batch gradient is the size-weighted mean over this many contiguous shards, "
        "on one core or side by side on several: the numbers never depend on --threads",
    )
    max_steps: int = _opt(200_000, "stop here if the run has not grokked")
    eval_every: int = _opt(100, "steps between full train/test evaluations")
    stop_acc: float = _opt(0.98, "grokking = test accuracy at least this ...")
    stop_patience: int = _opt(3, "... on this many consecutive evaluations")
    extra_steps: int = _opt(0, "keep training this many steps after grokking is detected")
    dtype: str = _opt("float32", "float32 (as the paper) or float64")
    engine: str = _opt(
        "auto",
        "which code trains: readable (model.py and optim.py, by autograd), fast (the "
        "accelerated engine) or auto (fast once checked equal to readable, else readable)",
    )
    snapshot_every: int = _opt(100, "steps between snapshots of the attention weights, for PCA (0 = off)")
    snapshot_layers: int = _opt(0, "the snapshots hold the attention matrices of this many last layers (0 = all)")
    snapshot_dtype: str = _opt("same", "the snapshots' numbers: same (as dtype) or float16 (half float32's bytes)")
    theta_every: int = _opt(0, "steps between snapshots of all parameters, for curvature analysis (0 = off)")
    probe_every: int = _opt(0, "steps between commutator-defect probes, a multiple of eval-every (0 = off)")
    probe_samples: int = _opt(5, "commutator samples per probe (median and quartiles are recorded)")
    onset_floor: float = _opt(20.0, "curvature onset needs the defect above this too (§7.1; slow regime: 5)")

    def __post_init__(self):
        checks = [
            ("op", self.op in OPERATIONS, f"one of {', '.join(OPERATIONS)}"),
            ("p", is_prime(self.p), "a prime number"),
            ("seed", self.seed >= 0, "zero or positive"),
            (
                "train-frac",
                0 < self.train_frac < 1
                and self.op in OPERATIONS
                and split_sizes(self.op, self.p, self.train_frac)[0] >= 1,
                "strictly between 0 and 1, leaving the training split an example"
                + (
                    f" ({self.op} mod {self.p} has {pair_count(self.op, self.p)} pairs)"
                    if self.op in OPERATIONS
                    else ""
                ),
            ),
            ("n-layers", self.n_layers >= 1, "at least 1"),
            ("d-model", self.d_model >= 1, "at least 1"),
            (
                "n-heads",
                self.n_heads >= 1 and self.d_model % self.n_heads == 0,
                f"a positive divisor of d-model ({self.d_model})",
            ),
            ("d-ff", self.d_ff >= 1, "at least 1"),
            ("lr", 0 < self.lr < math.inf, "positive and finite"),
            (
                "weight-decay",
                0 <= self.weight_decay and self.lr * self.weight_decay < 1,
                f"zero or positive, with lr * weight-decay < 1 (lr = {self.lr})",
            ),
            ("beta1", 0 <= self.beta1 < 1, "in [0, 1)"),
            ("beta2", 0 <= self.beta2 < 1, "in [0, 1)"),
            ("eps", self.eps > 0, "positive"),
            ("clip-norm", self.clip_norm >= 0, "zero (off) or positive"),
            ("batch-size", self.batch_size >= 1, "at least 1"),
            ("batches", self.batches in BATCH_STREAMS, " or ".join(BATCH_STREAMS)),
            (
                "batch-shards",
                1 <= self.batch_shards <= self.batch_size,
                f"between 1 and batch-size ({self.batch_size})",
            ),
            ("max-steps", self.max_steps >= 1, "at least 1"),
            ("eval-every", self.eval_every >= 1, "at least 1"),
            ("stop-acc", 0 < self.stop_acc <= 1, "in (0, 1]"),
            ("stop-patience", self.stop_patience >= 1, "at least 1"),
            ("extra-steps", self.extra_steps >= 0, "zero or positive"),
            ("dtype", self.dtype in ("float32", "float64"), "float32 or float64"),
            ("engine", self.engine in ENGINE_NAMES, " or ".join(ENGINE_NAMES)),
            ("snapshot-every", self.snapshot_every >= 0, "zero (off) or positive"),
            ("snapshot-layers", 0 <= self.snapshot_layers <= self.n_layers, f"0 (all) to n-layers ({self.n_layers})"),
            ("snapshot-dtype", self.snapshot_dtype in ("same", "float16"), "same or float16"),
            (
                "theta-every",
                self.theta_every >= 0 and self.eval_every >= 1 and self.theta_every % self.eval_every == 0,
                f"zero (off) or a multiple of eval-every ({self.eval_every})",
            ),
            (
                "probe-every",
                self.probe_every >= 0 and self.eval_every >= 1 and self.probe_every % self.eval_every == 0,
                f"zero (off) or a multiple of eval-every ({self.eval_every})",
            ),
            ("probe-samples", self.probe_samples >= 1, "at least 1"),
            ("onset-floor", self.onset_floor >= 0, "zero or positive"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ConfigError(f"--{name}={getattr(self, name.replace('-', '_'))!r} is invalid: must be {allowed}")
        try:
            hook = interventions.parse(self.hook)
        except ValueError as err:
            raise ConfigError(f"--hook={self.hook!r} is invalid: {err}") from None
        if hook.first_update() > self.max_steps:
            raise ConfigError(
                f"--max-steps={self.max_steps} ends before the hook first acts (update {hook.first_update()}): it "
                "would never act"
            )
        object.__setattr__(self, "hook", hook.spec)  # one text per hook: "weight_noise:every=50" is written out

    def adamw(self) -> dict:
        """AdamW's settings, as optim.adamw_step takes them."""
        return dict(lr=self.lr, beta1=self.beta1, beta2=self.beta2, eps=self.eps, weight_decay=self.weight_decay)

    def replace(self, **changes) -> Config:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        """The Config saved as `d` (config.json): every field (but those ADDED_SINCE_RECORDS, which take their
        defaults), each of its type, or a ConfigError naming them."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        d = {**{name: fields[name].default for name in ADDED_SINCE_RECORDS}, **d}
        unknown, missing = sorted(set(d) - set(fields)), sorted(set(fields) - set(d))
        if unknown or missing:
            raise ConfigError(
                ", ".join(
                    ([f"unknown field(s) {', '.join(unknown)}"] if unknown else [])
                    + ([f"missing field(s) {', '.join(missing)}"] if missing else [])
                )
                + " (written by another version of tinygrok?)"
            )
        for name, value in d.items():
            if not _is_a(value, fields[name].type):
                raise ConfigError(f"{name} is {json.dumps(value)}: must be {_KINDS[fields[name].type]}")
        return cls(**d)


# Config.batches -> the data.stream the training batches are drawn from. The intervention protocols (§8.1) differ
# in what the baseline's execution basis B is to the run: on "own" batches B is the run's own future path; on
# "shifted" ones (the reference's: its probes draw their batches from the training stream) the run's update k
# trains on the baseline's batch k + 2K ceil(k / probe_every), so B is a closely related path; on "sibling"
# batches B is an independent run's path.
BATCH_STREAMS = {"own": "batches", "shifted": "batches", "sibling": "sibling batches"}

ENGINE_NAMES = ("auto", "readable", "fast")  # engine/engines.py: which code trains
_KINDS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}


def _is_a(value, kind: str) -> bool:
    """Whether a JSON value is of the field type `kind` (an int will do for a float; a bool is not a number)."""
    if isinstance(value, bool):
        return kind == "bool"
    if kind == "float":
        return isinstance(value, (int, float))
    return isinstance(value, {"int": int, "str": str, "bool": bool}[kind])


PRESETS: dict[str, dict] = {
    # docs/paper.md §1-3: the fast regime, add mod 97 groks near step 3,000.
    "paper": {},
    # docs/paper.md §9: 3 layers, small lr and wd, beta2 0.999; ~600k steps (hours a seed), evaluated every 1,000,
    # attention snapshots every 2,000; the curvature onset floor is 5 there, not 20.
    "slow": dict(
        n_layers=3,
        lr=5e-5,
        weight_decay=0.1,
        beta2=0.999,
        max_steps=800_000,
        eval_every=1000,
        snapshot_every=2000,
        onset_floor=5.0,
    ),
    # CPU-sized: groks within 2,000 steps of a small model (docs/speed.md), the model the lessons and tests train.
    "classroom": dict(p=59, d_model=64, d_ff=128, lr=3e-3, batch_size=256, max_steps=10_000),
}


def preset(name: str, **overrides) -> Config:
    """The named preset with `overrides` applied (None values are ignored)."""
    if name not in PRESETS:
        raise ConfigError(f"--preset={name!r} is invalid: must be one of {', '.join(PRESETS)}")
    chosen = {k: v for k, v in overrides.items() if v is not None}
    return Config(**{**PRESETS[name], **chosen})
