"""GIFT's objective: train on hidden representations interpolated between source and target.

Each source example is paired with a target example the teacher gives the same label; their
hidden states at a chosen (or cycled) layer are mixed as (1 - lambda) * source + lambda *
target, and the student learns the mixture from that layer on. Raising lambda's mean from
round to round builds the intermediate domains that the data lacks (Abnar et al. 2021).
"""
from __future__ import annotations

import abc
from typing import Any, Sequence

import gin
import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from engine.data import Shard, batch_rng, frozen, unwrap
from engine.errors import ConfigError, require
from engine.task import Task
from tasks.common.arrays import shuffled_batches
from tasks.common.classification import classification_loss
from tasks.adaptation.domain_shift import SOURCE, TARGET, DomainShiftTask
from tasks.adaptation.pseudo_labels import (check_confidence_settings, confidence_of, keep_confident,
                                 masked_cross_entropy, teacher_labels)

MIXED_LABELS = ("pair", "teacher")


class LambdaSchedule(abc.ABC):
    """How far towards the target round `k` (0-based) of `rounds` interpolates."""

    @abc.abstractmethod
    def mean(self, k: int, rounds: int) -> float:
        """The mean lambda of round k."""

    @abc.abstractmethod
    def sample(self, rng: np.random.Generator, n: int, k: int, rounds: int) -> np.ndarray:
        """One lambda per pair for round k."""


def ramp(k: int, rounds: int, first: float) -> float:
    """A linear ramp from `first` at round 0 to exactly 1 at the last round."""
    return 1.0 if rounds == 1 else first + (1 - first) * k / (rounds - 1)


@gin.configurable
class GiftLinearLambda(LambdaSchedule):
    """lambda = (k + 1) / rounds for every pair: a fixed, evenly spaced path ending at the target."""

    def mean(self, k, rounds):
        return (k + 1) / rounds

    def sample(self, rng, n, k, rounds):
        return np.full(n, self.mean(k, rounds))


@gin.configurable
class GiftBetaLambda(LambdaSchedule):
    """lambda ~ Beta(c m_k, c (1 - m_k)) per pair, its mean m_k ramping linearly to 1.

    With `first_mean = 0` and c = 10 this is GIFT's CIFAR-10 configuration (alpha 0 -> 9,
    beta 10 -> 0 over 5 rounds). A mean of exactly 0 or 1 gives lambda = 0 or 1 exactly.
    """

    def __init__(self, *, concentration: float = 10.0, first_mean: float | None = None) -> None:
        require(concentration > 0, f"GiftBetaLambda.concentration must be > 0, got {concentration!r}")
        require(first_mean is None or 0 <= first_mean <= 1,
                f"GiftBetaLambda.first_mean must be in [0, 1] or None, got {first_mean!r}")
        self.concentration, self.first_mean = float(concentration), first_mean

    def mean(self, k, rounds):
        return ramp(k, rounds, 1 / rounds if self.first_mean is None else self.first_mean)

    def sample(self, rng, n, k, rounds):
        m = self.mean(k, rounds)
        if m <= 0 or m >= 1:
            return np.full(n, float(m >= 1))
        return rng.beta(self.concentration * m, self.concentration * (1 - m), size=n)


def pair_by_label(source_labels: torch.Tensor, target_labels: torch.Tensor, target_usable: torch.Tensor,
                  uniform: torch.Tensor) -> torch.Tensor:
    """For each source example, the index of a usable target example with the same label, or -1.

    The candidate is chosen by `uniform` (one number in [0, 1) per source example), so the
    pairing is random but a pure function of the batch.
    """
    match = (source_labels[:, None] == target_labels[None, :]) & target_usable[None, :]
    counts = match.sum(1)
    wanted = (uniform * counts).long().clamp_max((counts - 1).clamp_min(0))  # 0-based rank among candidates
    rank = match.long().cumsum(1) - 1
    partner = ((rank == wanted[:, None]) & match).float().argmax(1)
    return torch.where(counts > 0, partner, torch.full_like(partner, -1))


def mix(source: torch.Tensor, target: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """(1 - lambda) * source + lambda * target, one lambda per example."""
    lam = lam.to(source.dtype).reshape(-1, *[1] * (source.dim() - 1))
    return (1 - lam) * source + lam * target


@gin.configurable
class GiftTask(Task):
    """One GIFT round: labelled source batches, unlabelled target batches, mixed hidden states.

    Per step the frozen teacher labels the target batch and each source example is paired with
    a target example of its class. At layer l (cycled over `mix_layers` by batch index),
    h = (1 - lambda) h_source(student) + lambda h_target(teacher), the gradient stopped there
    (`stop_gradient`), and the student learns resume(h, l) against:
      - `mixed_labels = 'pair'`: the pair's shared class, pairing only among the targets left
        after dropping the least confident `drop_fraction` (lambda = 0 is source training);
      - `'teacher'` (GIFT's code): the teacher's hard label of h, dropping the least confident
        `drop_fraction` of the mixed states.
    `source_weight` adds plain source cross-entropy (GIFT's `ground_truth_factor`, 0 there).
    """

    def __init__(self, domains: DomainShiftTask, teacher: torch.nn.Module, *, round_index: int, rounds: int,
                 lambdas: LambdaSchedule | None = None, mix_layers: Sequence[int] = (0,),
                 mixed_labels: str = "pair", drop_fraction: float = 0.1, confidence: str = "max_prob",
                 source_weight: float = 0.0, mix_weight: float = 1.0, stop_gradient: bool = True) -> None:
        check_confidence_settings(drop_fraction, confidence, "GiftTask")
        require(mixed_labels in MIXED_LABELS, f"GiftTask.mixed_labels must be one of {MIXED_LABELS}, "
                f"got {mixed_labels!r}")
        require(isinstance(mix_layers, (list, tuple)) and len(mix_layers) > 0
                and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in mix_layers),
                f"GiftTask.mix_layers must be a non-empty list of layer indices >= 0, got {mix_layers!r}")
        require(source_weight >= 0 and mix_weight >= 0 and source_weight + mix_weight > 0,
                f"GiftTask.source_weight ({source_weight!r}) and mix_weight ({mix_weight!r}) must be >= 0 "
                "and not both 0")
        require(0 <= round_index < rounds, f"GiftTask round {round_index} is outside 0..{rounds - 1}")
        self.domains = domains
        self.teacher = frozen(teacher)
        self.source = domains.labelled_pool(SOURCE)
        self.target = domains.unlabelled_pool(TARGET)
        self.round_index, self.rounds = round_index, rounds
        self.lambdas = lambdas or GiftBetaLambda()
        self.mix_layers = tuple(mix_layers)
        self.mixed_labels, self.drop_fraction, self.confidence = mixed_labels, drop_fraction, confidence
        self.source_weight, self.mix_weight, self.stop_gradient = source_weight, mix_weight, stop_gradient

    @property
    def lambda_mean(self) -> float:
        return self.lambdas.mean(self.round_index, self.rounds)

    def batches(self, split: str, shard: Shard):
        """This rank's source (inputs, labels) and the whole global batch of target inputs, plus this
        batch's lambdas, pairing draws and layer. Every rank pairs its sources among all the targets
        of the step and drops the same least confident ones, so 2 ranks train as 1 rank does with
        the whole batch (without accumulation: micro-batches split the targets too)."""
        key = self.domains.input_key
        sources = shuffled_batches(self.source, f"{SOURCE}/labelled", shard)
        targets = shuffled_batches(self.target, f"{TARGET}/unlabelled", shard.replace(rank=0, world_size=1))
        index = shard.start
        for source, target in zip(sources, targets):
            # Drawn for the global batch, then sliced, so any number of ranks sees the same draws.
            rng = batch_rng(shard.seed, f"gift/round_{self.round_index}", index)
            lam = self.lambdas.sample(rng, shard.batch_size, self.round_index, self.rounds)
            uniform = rng.random(shard.batch_size)
            yield {key: source[key], "label": source["label"], "target_" + key: target[key],
                   "lambda": torch.from_numpy(lam[shard.local_slice].astype(np.float32)),
                   "pair_uniform": torch.from_numpy(uniform[shard.local_slice].astype(np.float32)),
                   "mix_layer": self.mix_layers[index % len(self.mix_layers)]}
            index += 1

    def check_model(self, model: torch.nn.Module) -> None:
        """Raise a ConfigError unless `model` exposes hidden states at every mixing layer (through
        forward's `to_layer` / `from_layer`, which any distributed wrapper passes on)."""
        module = unwrap(model)
        if not (hasattr(module, "hidden") and hasattr(module, "resume") and hasattr(module, "num_stages")):
            raise ConfigError(f"GIFT mixes hidden states, so the model must be a StagedModel (MLP, SmallCNN, "
                              f"ViT); {type(module).__name__} is not")
        deepest = max(self.mix_layers)
        if deepest > module.num_stages:
            raise ConfigError(f"GiftTask.mix_layers = {list(self.mix_layers)} but {type(module).__name__} has "
                              f"{module.num_stages} stages: layers go from 0 (after the stem) to {module.num_stages}")
        if (self.stop_gradient and not self.source_weight and isinstance(model, DistributedDataParallel)
                and not model.find_unused_parameters):
            raise ConfigError("GIFT with GiftTask.stop_gradient leaves the layers below the mixing layer without "
                              "gradients, which DDP must be told: bind DDP.find_unused_parameters = True "
                              "(gin/gift/gift.gin does)")

    def loss(self, model, batch):
        self.check_model(model)
        key = self.domains.input_key
        layer = int(batch["mix_layer"])
        source, labels, target = batch[key], batch["label"], batch["target_" + key]
        target_labels, target_kept, _ = teacher_labels(self.teacher, target, self.drop_fraction, self.confidence)
        if self.mixed_labels == "teacher":
            target_kept = torch.ones_like(target_kept)  # GIFT's code filters the mixed points instead
        partner = pair_by_label(labels, target_labels, target_kept, batch["pair_uniform"])
        paired = partner >= 0
        with torch.no_grad():
            target_hidden = self.teacher.hidden(target, layer)[partner[paired]]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.stop_gradient):
            source_hidden = model(source, to_layer=layer)[paired]
            mixed = mix(source_hidden, target_hidden, batch["lambda"][paired])
        if self.mixed_labels == "pair":
            mixed_labels, weights = labels[paired], torch.ones_like(labels[paired], dtype=torch.bool)
        else:
            with torch.no_grad():
                teacher_logits = self.teacher.resume(mixed, layer)["logits"]
            mixed_labels = teacher_logits.argmax(-1)
            weights = keep_confident(confidence_of(teacher_logits, self.confidence), self.drop_fraction)
        mixed_logits = model(mixed, from_layer=layer)["logits"]
        mix_loss = masked_cross_entropy(mixed_logits, mixed_labels, weights)
        metrics = {"mix_loss": mix_loss.detach(), "paired_fraction": paired.float().mean(),
                   "lambda": batch["lambda"].float().mean(), "mix_layer": torch.tensor(float(layer))}
        loss = self.mix_weight * mix_loss
        if self.source_weight:
            source_loss, source_metrics = classification_loss(model(source), labels)
            loss = loss + self.source_weight * source_loss
            metrics["source_accuracy"] = source_metrics["accuracy"]
        return loss, metrics

    def evaluate(self, model, split, shard) -> dict[str, Any]:
        return self.domains.evaluate(model, split, shard)
