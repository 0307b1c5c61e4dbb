"""The two-stage GAUDI program: stage 'autodecoder' fits per-trajectory latents and the scene,
radiance-field and camera decoders to the scenes; stage 'prior' fits a diffusion model to the
frozen latents and generates new scenes through the frozen decoders.

    run.program = @gaudi
    gaudi.task = @SceneAutoDecoding()
    autodecoder/train.model = @GAUDI()
    prior/train.model = @LatentDenoiser()

Each stage is a call to `engine.program.train` in its own gin scope and sub-folder, so it logs,
checkpoints and resumes like any run; a restarted program resumes the stage it stopped in.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import gin
import numpy as np

from engine.errors import ConfigError
from engine.program import TrainResult, stage, staged_report, train
from tasks.scenes.latent_prior import LatentPrior
from tasks.scenes.autodecoding import SPLIT, SceneAutoDecoding

AUTODECODER, PRIOR = "autodecoder", "prior"


@dataclasses.dataclass
class GaudiResult:
    """Both stages' results (prior is None when the first stage was stopped early)."""

    autodecoder: TrainResult
    prior: TrainResult | None
    latents: np.ndarray | None = None

    @property
    def report(self) -> str | None:
        """Under a dry run, both stages' reports."""
        if not self.autodecoder.dry_run:
            return None
        return staged_report({AUTODECODER: self.autodecoder, PRIOR: self.prior})


@gin.configurable
def gaudi(*, task: Any = gin.REQUIRED, autodecoder_workdir: str | None = None) -> GaudiResult:
    """Stage 1 trains on `task` (a SceneAutoDecoding); stage 2 builds a LatentPrior (configured in
    gin) over the latents stage 1 learned, with the frozen stage-1 model as its decoder.

    `autodecoder_workdir` puts stage 1 in a folder of its own, so several priors (unconditional,
    conditional, other guidance scales) share one trained auto-decoder: a finished one is reused.
    """
    if callable(task) and not isinstance(task, SceneAutoDecoding):
        task = task()
    if not isinstance(task, SceneAutoDecoding):
        raise ConfigError(f"gaudi.task must be @SceneAutoDecoding(), got {type(task).__name__}")
    with stage(AUTODECODER) as folder:
        first = train(task=task, eval_splits=[SPLIT], workdir=autodecoder_workdir or folder)
    if not first.finished and not first.dry_run:
        return GaudiResult(first, None)  # stopped by a signal: the same command resumes it
    decoder = first.frozen_model()  # after a dry run, untrained: the prior's stage is still checked
    if not callable(getattr(decoder, "latents", None)):
        raise ConfigError(f"the {AUTODECODER} stage's model {type(decoder).__name__} has no latents(): bind "
                          f"{AUTODECODER}/train.model = @GAUDI()")
    latents = decoder.latents().detach().cpu().numpy()
    with stage(PRIOR):
        prior = train(task=LatentPrior(latents=latents, decoder=decoder, scenes=task.scenes), eval_splits=[SPLIT])
    return GaudiResult(first, prior, latents)
