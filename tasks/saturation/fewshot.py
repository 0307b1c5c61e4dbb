"""Few-shot linear probes on frozen representations: the closed-form regularised least-squares
classifier of the ViT paper and big_vision (whitening, a bias feature, {-1, 1} targets), and a
callback that runs it periodically inside any `train` run, on every layer, into TensorBoard.

The probe is exact and cheap (one eigendecomposition per fit), so a run can watch how well each
layer transfers to tasks near and far from its training task without any fine-tuning.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import gin
import numpy as np
import torch

from engine import summaries
from engine.callbacks import Callback
from engine.errors import ConfigError, require, require_int
from tasks.saturation.fewshot_sets import FewShotData, FewShotSource

#: The bias feature's value: large, so its weight is almost unregularised (as in big_vision).
BIAS_CONSTANT = 100.0
SOLVERS = ("auto", "primal", "dual")


# --- the probe ------------------------------------------------------------------------------

def whiten(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standardise both with the train mean and std (+1e-5), then append the bias feature."""
    train, test = np.asarray(train, dtype=np.float64), np.asarray(test, dtype=np.float64)
    mean, std = train.mean(axis=0, keepdims=True), train.std(axis=0, keepdims=True) + 1e-5

    def prepare(x: np.ndarray) -> np.ndarray:
        x = (x - mean) / std
        return np.concatenate([x, np.full((len(x), 1), BIAS_CONSTANT)], axis=1)

    return prepare(train), prepare(test)


def signed_one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Targets in {-1, 1}^K: +1 for the label's class, -1 elsewhere."""
    return 2.0 * np.eye(num_classes)[np.asarray(labels, dtype=np.int64)] - 1.0


def ridge_weights(x: np.ndarray, y: np.ndarray, l2_reg: float, solver: str = "auto") -> np.ndarray:
    """argmin_W |xW - y|^2 + l2_reg |W|^2 in closed form.

    primal: (x^T x + l2 I)^-1 x^T y, a (D, D) system; dual: x^T (x x^T + l2 I)^-1 y, an (N, N)
    one. Both are solved through an eigendecomposition of the Gram matrix (as big_vision does);
    'auto' takes the smaller system (primal when N >= D).
    """
    require(solver in SOLVERS, f"few-shot solver must be one of {SOLVERS}, got {solver!r}")
    require(l2_reg > 0, f"few-shot l2_reg must be > 0, got {l2_reg}")
    n, d = x.shape
    if solver == "primal" or (solver == "auto" and n >= d):
        eigs, q = np.linalg.eigh(x.T @ x)
        return (q / (eigs + l2_reg)) @ (q.T @ (x.T @ y))
    eigs, q = np.linalg.eigh(x @ x.T)
    return (x.T @ q / (eigs + l2_reg)) @ (q.T @ y)


def probe_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                   num_classes: int, *, l2_reg: float = 2.0 ** 10, solver: str = "auto") -> float:
    """Fit the least-squares probe on (train_x, train_y); accuracy of its argmax on the test set."""
    train_x, test_x = whiten(train_x, test_x)
    weights = ridge_weights(train_x, signed_one_hot(train_y, num_classes), l2_reg, solver)
    return float(np.mean((test_x @ weights).argmax(axis=1) == np.asarray(test_y)))


def sample_shots(labels: np.ndarray, num_classes: int, shots: int, seed: int) -> np.ndarray:
    """Indices of `shots` examples of every class, drawn without replacement by `seed`."""
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in range(num_classes):
        where = np.flatnonzero(labels == cls)
        if len(where) < shots:
            raise ConfigError(f"{shots}-shot probing needs {shots} examples of class {cls}, the pool has "
                              f"{len(where)}; lower the shots or raise the source's pool_per_class")
        chosen.append(rng.permutation(where)[:shots])
    return np.concatenate(chosen)


def fewshot_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                     num_classes: int, *, shots: int, seeds: int = 3, l2_reg: float = 2.0 ** 10,
                     solver: str = "auto") -> float:
    """Mean test accuracy over `seeds` draws of `shots` examples per class from the train pool."""
    accuracies = []
    for seed in range(seeds):
        chosen = sample_shots(train_y, num_classes, shots, seed)
        accuracies.append(probe_accuracy(train_x[chosen], train_y[chosen], test_x, test_y, num_classes,
                                         l2_reg=l2_reg, solver=solver))
    return float(np.mean(accuracies))


# --- representations ------------------------------------------------------------------------

def layer_names(module: torch.nn.Module, layers: Sequence[int] | None) -> list[str]:
    """`layer_k` for each wanted stage (all by default) plus `pre_logits`."""
    stages = getattr(module, "stages", None)
    if stages is None or not hasattr(module, "readout"):
        raise ConfigError(f"few-shot probes read per-layer features through the StagedModel interface "
                          f"(stages + readout); {type(module).__name__} does not have it")
    wanted = range(1, len(stages) + 1) if layers is None else layers
    bad = [k for k in wanted if not 1 <= k <= len(stages)]
    require(not bad, f"FewShotEvaluator.layers {bad} out of range: the model has layers 1..{len(stages)}")
    return [f"layer_{k}" for k in wanted] + ["pre_logits"]


@contextlib.contextmanager
def capture_layers(module: torch.nn.Module, names: Sequence[str]) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Record the pooled representation after each named stage while the model runs forward.

    The hooks read the stages of the plain module while the (possibly wrapped) model runs its
    usual forward, so sharded strategies (FSDP, ZeRO-3) gather their weights exactly as in
    training; `pre_logits` is the readout of the last stage, as in StagedModel.features.
    """
    stages = module.stages
    captured: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    wanted = {int(n.split("_")[1]) for n in names if n.startswith("layer_")}

    def hook_for(index: int):
        def hook(_stage, _inputs, output):
            pooled = None
            if index in wanted:
                pooled = module.readout(output).flatten(1).float().cpu()
                captured[f"layer_{index}"].append(pooled)
            if index == len(stages) and "pre_logits" in captured:
                captured["pre_logits"].append(pooled if pooled is not None
                                              else module.readout(output).flatten(1).float().cpu())
        return hook

    handles = [stage.register_forward_hook(hook_for(i)) for i, stage in enumerate(stages, start=1)]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def extract_features(model: torch.nn.Module, module: torch.nn.Module, images: np.ndarray,
                     names: Sequence[str], *, batch_size: int = 256,
                     device: torch.device | None = None) -> dict[str, np.ndarray]:
    """Pooled features {name: (N, D)} of `images` (N, C, H, W floats) from forward passes of `model`
    (the module itself, or the strategy's wrapper around it)."""
    device = device or next(module.parameters()).device
    with capture_layers(module, names) as captured:
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])).to(device)
            model(batch)
    return {name: torch.cat(parts).double().numpy() for name, parts in captured.items()}


# --- the periodic evaluator -----------------------------------------------------------------

@gin.configurable
class FewShotEvaluator(Callback):
    """Few-shot probe accuracy on each downstream source, each shot count and each layer,
    added to the metrics of `splits` at every evaluation (so it lands in metrics.jsonl and
    TensorBoard next to the task's own), with an accuracy-vs-layer figure per source.

    Metric names: `fewshot/<source>/<shots>shot` for pre_logits (the usual few-shot score) and
    `fewshot/<source>/<shots>shot/layer_<k>` for the layers. Every rank extracts the same
    features (sharded strategies need every rank in each forward), so the values agree.

        train.callbacks = [@FewShotEvaluator()]
        FewShotEvaluator.sources = [@CoarseShapes(), @DigitsFewShot()]
        FewShotEvaluator.image_size = 16
    """

    name = "fewshot"

    def __init__(self, *, sources: Sequence[FewShotSource] = gin.REQUIRED, image_size: int = gin.REQUIRED,
                 channels: int = 3, shots: Sequence[int] = (1, 5, 10, 25), seeds: int = 3,
                 l2_reg: float = 2.0 ** 10, layers: Sequence[int] | None = None, splits: Sequence[str] = ("eval",),
                 solver: str = "auto", batch_size: int = 256, figure: bool = True) -> None:
        require(len(sources) > 0 and all(isinstance(s, FewShotSource) for s in sources),
                f"FewShotEvaluator.sources must be a non-empty list of few-shot sources such as "
                f"@CoarseShapes(), got {sources!r}")
        names = [s.name for s in sources]
        require(len(set(names)) == len(names), f"FewShotEvaluator.sources have repeated names {names}")
        require(len(shots) > 0 and all(isinstance(k, int) and k >= 1 for k in shots),
                f"FewShotEvaluator.shots must be positive integers, got {shots!r}")
        require_int(seeds, "FewShotEvaluator.seeds", low=1)
        require(l2_reg > 0, f"FewShotEvaluator.l2_reg must be > 0, got {l2_reg}")
        require(solver in SOLVERS, f"FewShotEvaluator.solver must be one of {SOLVERS}, got {solver!r}")
        require(image_size >= 1 and channels >= 1 and batch_size >= 1,
                "FewShotEvaluator.image_size, channels and batch_size must be >= 1")
        require(not isinstance(splits, str), f"FewShotEvaluator.splits must be a list, got {splits!r}")
        self.sources = list(sources)
        self.image_size, self.channels = image_size, channels
        self.shots, self.seeds, self.l2_reg, self.solver = tuple(shots), seeds, l2_reg, solver
        self.layers = None if layers is None else tuple(layers)
        self.splits, self.batch_size, self.figure = tuple(splits), batch_size, figure
        self._data: dict[str, FewShotData] | None = None

    def data(self) -> dict[str, FewShotData]:
        """The sources' images, built once per run (the sources cache them across runs too)."""
        if self._data is None:
            self._data = {}
            for source in self.sources:
                data = source.load(self.image_size, self.channels)
                for shots in self.shots:  # fail now, not after the first evaluation's forward passes
                    counts = np.bincount(data.train_labels, minlength=data.num_classes)
                    require(counts.min() >= shots, f"few-shot source {source.name!r} has {counts.min()} pool "
                                                   f"examples of some class, fewer than {shots} shots")
                self._data[source.name] = data
        return self._data

    def on_start(self, trainer: Any) -> None:
        layer_names(trainer.strategy.module, self.layers)
        self.data()

    def on_evaluate(self, trainer: Any, step: int, split: str) -> dict[str, Any]:
        if split not in self.splits:
            return {}
        module = trainer.strategy.module
        return self.evaluate(trainer.model, module, device=trainer.strategy.device,
                             figure=self.figure and trainer.strategy.is_main)

    def evaluate(self, model: torch.nn.Module, module: torch.nn.Module | None = None, *,
                 device: torch.device | None = None, figure: bool = False) -> dict[str, Any]:
        """The few-shot metrics of `model` (its plain `module` when `model` wraps it)."""
        module = module if module is not None else model
        names = layer_names(module, self.layers)
        metrics: dict[str, Any] = {}
        curves: dict[str, dict[str, float]] = {}
        for source_name, data in self.data().items():
            train = extract_features(model, module, data.train_images, names, batch_size=self.batch_size, device=device)
            test = extract_features(model, module, data.test_images, names, batch_size=self.batch_size, device=device)
            for shots in self.shots:
                for name in names:
                    accuracy = fewshot_accuracy(train[name], data.train_labels, test[name], data.test_labels,
                                                data.num_classes, shots=shots, seeds=self.seeds,
                                                l2_reg=self.l2_reg, solver=self.solver)
                    suffix = "" if name == "pre_logits" else f"/{name}"
                    metrics[f"fewshot/{source_name}/{shots}shot{suffix}"] = accuracy
                    if shots == max(self.shots):
                        curves.setdefault(source_name, {})[name] = accuracy
        if figure:
            metrics["fewshot/accuracy_vs_layer"] = summaries.Figure(layer_figure(curves, max(self.shots)))
        return metrics


def layer_figure(curves: dict[str, dict[str, float]], shots: int):
    """Accuracy against layer (pre_logits last) for each source: one line each."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axis = plt.subplots(figsize=(5, 3.5))
    for source, accuracy in curves.items():
        layers = [n for n in accuracy if n != "pre_logits"]
        axis.plot([int(n.split("_")[1]) for n in layers], [accuracy[n] for n in layers], marker="o", label=source)
    axis.set_xlabel("layer")
    axis.set_ylabel(f"{shots}-shot accuracy")
    axis.legend(fontsize=7)
    figure.tight_layout()
    return figure
