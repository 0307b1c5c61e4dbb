"""Cost of distillation: steady-state steps/s of a student trained on the Distillation objective
(frozen teacher forward + KD loss each step) against the same student trained plainly.

Both runs go through the engine's `train` in this process with the same task, batches, model,
optimizer and threads, interleaved; the ratio is distilled / plain. Beside it, the ratio the
teacher's forward pass alone predicts, 1 / (1 + teacher forward time / plain step time), with
the teacher's forward timed on its own (torch's FLOP counter does not see LSTM kernels).

    python launch/bench.py distill [--steps 200] [--repeats 3]
"""
from __future__ import annotations

import argparse
import tempfile
import time

import gin
import torch

from engine import config, program
from engine.callbacks import Callback
from launch.benchmarks._record import Record, table
from launch.benchmarks._timing import interleaved
from launch.experiment import gin_path

#: name -> (the student's plain gin file, its task, its model, the teacher's model)
SETTINGS = {
    "digits: MLP <- CNN": ("gin/kd/kd_mlp.gin", "DigitsOnCanvas", "MLP", "SmallCNN"),
    "agreement: Transformer <- LSTM": ("gin/kd/kd_transformer.gin", "SubjectVerbAgreement", "TransformerClassifier",
                                       "LSTMClassifier"),
}


class Clock(Callback):
    """Wall-clock marks at the end of the warm-up and of the last step."""

    name = "clock"
    #: on the class: gin hands `train` a copy of the bound callback, the marks must outlive it
    marks: dict[int, float] = {}

    def __init__(self, warm_steps: int, total_steps: int) -> None:
        self.warm_steps, self.total_steps = warm_steps, total_steps
        Clock.marks.clear()

    def on_step_end(self, trainer, step: int) -> None:
        if step in (self.warm_steps, self.total_steps):
            Clock.marks[step] = time.perf_counter()


def steps_per_second(gin_file: str, task, warm_steps: int, steps: int) -> float:
    clock = Clock(warm_steps, warm_steps + steps)
    config.reset()
    config.parse([gin_path(gin_file)], [f"train.steps = {warm_steps + steps}", "train.eval_every = 0",
                                        "train.checkpoint_every = 0", "train.log_every = 1000"])
    with gin.unlock_config():
        gin.bind_parameter("train.task", task)
        gin.bind_parameter("train.callbacks", [clock])
    with tempfile.TemporaryDirectory() as workdir:
        program.main(workdir)
    config.reset()
    return steps / (Clock.marks[warm_steps + steps] - Clock.marks[warm_steps])


def build(gin_file: str, task_name: str, student_name: str, teacher_name: str):
    """The setting's task and its Distillation objective with a teacher of random weights
    (speed does not depend on them)."""
    from tasks.common.distillation import Distillation
    config.import_packages()
    config.reset()
    config.parse([gin_path(gin_file)], [])
    task = gin.get_configurable(task_name)()
    torch.manual_seed(0)
    teacher = gin.get_configurable(teacher_name)()
    config.reset()
    return task, Distillation(task=task, teacher=teacher, temperature=5.0, compare_batches=0)


def teacher_seconds(objective, batch_size: int, batches: int = 50) -> float:
    """Seconds per batch of the teacher's forward pass (what distillation adds to a step)."""
    from engine.data import Shard
    stream = objective.batches("train", Shard(batch_size=batch_size))
    data = [next(stream) for _ in range(batches)]
    objective.teacher_logits(data[0])
    start = time.perf_counter()
    for batch in data:
        objective.teacher_logits(batch)
    return (time.perf_counter() - start) / batches


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warm-steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    record = Record(__name__, parser, argv)
    args = record.args
    torch.set_num_threads(1)
    print(f"threads: {torch.get_num_threads()}, {args.steps} timed steps x {args.repeats} repeats, interleaved")
    rows = []
    for name, (gin_file, *names) in SETTINGS.items():
        task, objective = build(gin_file, *names)
        rates = interleaved({"plain": lambda: steps_per_second(gin_file, task, args.warm_steps, args.steps),
                             "distill": lambda: steps_per_second(gin_file, objective, args.warm_steps, args.steps)},
                            args.repeats)
        config.parse([gin_path(gin_file)], [])
        batch_size = gin.query_parameter("train.batch_size")
        config.reset()
        predicted = 1 / (1 + teacher_seconds(objective, batch_size) * rates["plain"])
        print(f"{name}: plain {rates['plain']:.1f} steps/s, distilled {rates['distill']:.1f} steps/s, "
              f"ratio {rates['distill'] / rates['plain']:.3f} (the teacher's forward alone predicts {predicted:.3f})")
        rows.append({"setting": name, "plain": rates["plain"], "distilled": rates["distill"],
                     "ratio": rates["distill"] / rates["plain"], "predicted": predicted})
    record.save({"steps": args.steps, "repeats": args.repeats},
                {"settings": table([("setting", "{setting}"), ("plain steps/s", "{plain:.1f}"),
                                    ("distilled steps/s", "{distilled:.1f}"), ("ratio", "{ratio:.3f}"),
                                    ("predicted by the teacher's forward alone", "{predicted:.3f}")], rows)})
    return 0
