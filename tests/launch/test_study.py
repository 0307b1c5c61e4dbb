"""The study protocol on a toy study of tiny two-moons runs: budgets that differ must be declared,
claims need equal tuning and enough seeds, selection reads the validation split only and the test
split only for the selected configuration, finished runs are reused, a folder of another
configuration is refused, and runs from two machines never share a table."""
from __future__ import annotations

import dataclasses
import json
import os

import pytest

from launch import study as protocol
from launch import tables
from launch.study import Arm, Budget, Claim, Study, StudyError

FILES = ("gin/gift/moons.gin",)
TINY = ("RotatedMoons.pool_size = 128", "RotatedMoons.intermediate_pool_size = 8", "RotatedMoons.test_size = 200",
        "RotatedMoons.validation_size = 200", "RotatedMoons.intermediate_domains = 0", "train.steps = 40",
        "train.batch_size = 32", "train.eval_every = 1000", "train.log_every = 1000",
        "train.eval_splits = ['target', 'target_validation']", "WarmupCosine.warmup_steps = 2")
SWEEP = {"AdamW.lr": ("1e-3", "3e-2")}


def toy(*, arms=None, budgets=None, claims=None) -> Study:
    arms = arms or (Arm("small", "MLP (2,)", ("gin/gift/source_only.gin",), bindings=("MLP.hidden = (2,)",), tune=("AdamW.lr",)),
                    Arm("large", "MLP (32, 32)", ("gin/gift/source_only.gin",), bindings=("MLP.hidden = (32, 32)",),
                        tune=("AdamW.lr",)))
    budgets = budgets or {"smoke": Budget("smoke", seeds=(0, 1), bindings=TINY, sweep=SWEEP, tune_seeds=1)}
    claims = claims if claims is not None else (Claim("width", "wider beats narrower", "large", "small"),)
    return Study(name="toy/moons", title="toy", arms=arms, budgets=budgets, claims=claims, metric="accuracy",
                 select_split="target_validation", report_split="target", files=FILES, proportion=True, scale=100)


def test_arms_that_differ_in_budget_must_declare_it(tmp_path):
    # Without train.steps in the budget, the gin files' SOURCE_STEPS (1000) sizes the toy arms, and
    # an arm that binds its own steps differs from them.
    budgets = {"smoke": Budget("smoke", seeds=(0, 1), bindings=tuple(b for b in TINY if not b.startswith("train.steps")),
                               sweep=SWEEP)}
    longer = Arm("longer", "longer", ("gin/gift/source_only.gin",), bindings=("train.steps = 80",), tune=("AdamW.lr",))
    with pytest.raises(StudyError, match=r"differ in budget without declaring it \(Arm.declared\):\n  steps: small 1000, large 1000, "
                                         r"longer 80"):
        protocol.Plan(toy(arms=toy().arms + (longer,), budgets=budgets), "smoke", str(tmp_path), "cmd")
    declared = Arm("longer", "longer", longer.gin, bindings=longer.bindings, tune=longer.tune,
                   declared={"steps": "fewer steps, on purpose"})
    plan = protocol.Plan(toy(arms=toy().arms + (declared,), budgets=budgets), "smoke", str(tmp_path), "cmd")
    assert (plan.measured["longer"]["steps"], plan.measured["small"]["steps"]) == (80, 1000)
    assert plan.measured["longer"]["batch"] == plan.measured["small"]["batch"] == 32


def test_declaration_rules():
    untuned = Arm("plain", "plain", ("gin/gift/source_only.gin",))
    with pytest.raises(StudyError, match="same sweep"):
        toy(arms=toy().arms + (untuned,), claims=(Claim("c", "tuned beats untuned", "large", "plain"),))
    with pytest.raises(StudyError, match="cannot judge a claim"):
        toy(budgets={"cpu": Budget("cpu", seeds=(0, 1, 2), bindings=TINY, sweep=SWEEP)})
    with pytest.raises(StudyError, match="gives no values"):
        toy(budgets={"smoke": Budget("smoke", seeds=(0, 1), bindings=TINY)})
    with pytest.raises(StudyError, match="same split"):
        Study(name="x", title="x", arms=toy().arms, budgets=toy().budgets, claims=(), metric="accuracy",
              select_split="target", report_split="target")


def test_a_generative_study_pairs_seed_and_draw_units():
    # 2 seeds x 3 draws = 6 units: enough to judge a claim where 2 seeds alone are not.
    cpu = {"cpu": Budget("cpu", seeds=(0, 1), bindings=TINY, sweep=SWEEP)}
    with pytest.raises(StudyError, match="2 seeds x 1 draw"):
        toy(budgets=cpu)
    study = dataclasses.replace(toy(), budgets=cpu, draws=3)
    runs = [{"seed": s, "metrics": {"t/m": 9.0}, "extra": {"draws": {"t/m": [s + 0.1 * d for d in range(3)]}}}
            for s in (0, 1)]
    assert study.unit_values(runs, "t/m") == {(s, d): s + 0.1 * d for s in (0, 1) for d in range(3)}
    assert toy().unit_values(runs, "t/m") == {0: 9.0, 1: 9.0}  # one draw: the run's own metric per seed
    # From 5 seeds on the seed is the unit again (its draws share one trained model): the draws' mean.
    five = [{"seed": s, "metrics": {"t/m": s + 0.1}, "extra": {"draws": {"t/m": [s + 0.1 * d for d in range(3)]}}}
            for s in range(5)]
    assert study.units(5) == "seed" and study.units(4) == "seed x draw"
    assert study.unit_values(five, "t/m") == {s: s + 0.1 for s in range(5)}


@pytest.mark.slow
def test_selection_on_validation_then_the_test_split_once(tmp_path):
    root, out = str(tmp_path / "runs"), str(tmp_path / "results")
    logged = []
    runner = protocol.Runner(log=logged.append)
    [results] = protocol.run_studies([toy()], "smoke", root=root, out=out, runner=runner, command="toy command")
    assert sum("run(s) to train" in line for line in logged) == 2  # the sweep, then the selected on seed 1

    def record(arm, lr, seed):
        path = os.path.join(root, "toy/moons/smoke", arm, f"lr={lr}", f"seed_{seed}", protocol.RECORD)
        return json.load(open(path)) if os.path.exists(path) else None

    for arm in results["arms"]:
        # The selected learning rate is the one with the better validation accuracy on seed 0.
        scores = {lr: record(arm["name"], lr, 0)["metrics"]["target_validation/accuracy"] for lr in SWEEP["AdamW.lr"]}
        best = max(SWEEP["AdamW.lr"], key=lambda lr: (scores[lr], -SWEEP["AdamW.lr"].index(lr)))
        assert arm["selected"] == {"AdamW.lr": best}
        other = next(lr for lr in SWEEP["AdamW.lr"] if lr != best)
        assert record(arm["name"], other, 1) is None  # the losing candidate never ran on seed 1
        # The JSON keeps only the validation score of the losing candidate: its test accuracy is not read.
        losing = next(s for s in arm["selection"] if s["candidate"] == {"AdamW.lr": other})
        assert set(losing) == {"candidate", "name", "seeds", "target_validation/accuracy", "mean"}
        assert [r["report"] for r in arm["runs"]] == [record(arm["name"], best, s)["metrics"]["target/accuracy"]
                                                       for s in (0, 1)]
        assert arm["runs"][0]["provenance"]["config_hash"] and arm["runs"][0]["provenance"]["command"] == "toy command"
    claim = results["claims"][0]
    large = {r["seed"]: r["report"] for r in results["arms"][1]["runs"]}
    small = {r["seed"]: r["report"] for r in results["arms"][0]["runs"]}
    assert claim["differences"] == pytest.approx([large[s] - small[s] for s in (0, 1)])
    assert claim["verdict"] == "inconclusive" and "2 paired seed(s)" in claim["reason"]
    assert "resolution" not in claim  # the default measure counts no evaluation examples
    # The written files: the JSON as returned, and its markdown rendering.
    assert json.load(open(os.path.join(out, "toy/moons/smoke.json"))) == json.loads(json.dumps(results))
    assert open(os.path.join(out, "toy/moons/smoke.md")).read() == tables.render([results], "full")

    # Again: every run is reused (nothing to train) and the results are the same.
    logged.clear()
    [again] = protocol.run_studies([toy()], "smoke", root=root, out=out, runner=runner, command="toy command")
    assert not any("run(s) to train" in line for line in logged) and again == results

    # A run folder that holds another configuration is refused, not silently reused.
    changed = {"smoke": Budget("smoke", seeds=(0, 1), bindings=TINY + ("RotatedMoons.noise = 0.2",), sweep=SWEEP,
                               tune_seeds=1)}
    with pytest.raises(StudyError, match="another configuration"):
        protocol.run_studies([toy(budgets=changed)], "smoke", root=root, out=out, runner=runner, command="c")

    # Runs from two machines never share a table.
    path = os.path.join(root, "toy/moons/smoke/small", f"lr={results['arms'][0]['selected']['AdamW.lr']}", "seed_1",
                        protocol.RECORD)
    moved = json.load(open(path))
    moved["provenance"]["device"] = {"type": "cuda", "name": "NVIDIA H100 80GB HBM3"}
    json.dump(moved, open(path, "w"))
    with pytest.raises(StudyError, match="different machines"):
        protocol.run_studies([toy()], "smoke", root=root, out=out, runner=runner, command="toy command")


def test_a_sweep_that_changes_the_budget_is_refused(tmp_path):
    arms = tuple(Arm(a.name, a.label, a.gin, a.bindings, tune=("train.batch_size",)) for a in toy().arms)
    budgets = {"smoke": Budget("smoke", seeds=(0, 1), bindings=TINY, sweep={"train.batch_size": ("16", "32")})}
    with pytest.raises(StudyError, match="changes the budget"):
        protocol.Plan(toy(arms=arms, budgets=budgets), "smoke", str(tmp_path), "cmd")


def test_a_claim_on_its_own_metric_and_declared_unequal_tuning(tmp_path):
    """A claim may judge another metric (lower loss) at its own scale; arms tuned differently are
    compared only with a stated reason; extra columns summarise another report metric per arm."""
    untuned = Arm("plain", "MLP (32, 32), default lr", ("gin/gift/source_only.gin",), bindings=("MLP.hidden = (32, 32)",))
    with pytest.raises(StudyError, match="tuning_note"):
        toy(arms=toy().arms + (untuned,), claims=(Claim("c", "tuned beats untuned", "large", "plain"),))
    with pytest.raises(StudyError, match="direction must be one of"):
        toy(claims=(Claim("c", "x", "large", "small", metric="loss", direction="smaller"),))
    claims = (Claim("lower_loss", "wider has lower test loss", "large", "small", metric="loss", direction="lower",
                    scale=1.0),
              Claim("vs_untuned", "tuned beats the default", "large", "plain", tuning_note="the default is the gin file's"))
    study = dataclasses.replace(toy(arms=toy().arms + (untuned,), claims=claims), columns=(("test loss", "loss", 1.0),))
    [results] = protocol.run_studies([study], "smoke", root=str(tmp_path / "runs"), out=str(tmp_path / "out"),
                                     runner=protocol.Runner(log=lambda line: None), command="c")
    arms = {a["name"]: a for a in results["arms"]}
    loss = {name: {r["seed"]: r["metrics"]["target/loss"] for r in arm["runs"]} for name, arm in arms.items()}
    lower, untuned_claim = results["claims"]
    assert lower["metric"] == "loss" and lower["direction"] == "lower" and lower["scale"] == 1.0
    assert lower["differences"] == pytest.approx([loss["small"][s] - loss["large"][s] for s in (0, 1)])
    assert "resolution" not in lower  # the binomial SE is for the accuracy, not a loss
    assert untuned_claim["tuning_note"] == "the default is the gin file's"
    assert arms["small"]["columns"]["test loss"]["mean"] == pytest.approx(sum(loss["small"].values()) / 2)
    text = tables.render([results], "full")
    assert "the default is the gin file's" in text and " | test loss | seeds |" in text


@pytest.mark.slow
def test_sigterm_to_the_driver_stops_its_workers(tmp_path):
    """A study under --jobs stopped with SIGTERM leaves no worker training on through the queue."""
    import signal
    import subprocess
    import sys
    import time
    script = tmp_path / "driver.py"
    script.write_text(f"""
import dataclasses
from launch import study as protocol
from launch.study import Budget
from tests.launch.test_study import TINY, toy
long = Budget("smoke", seeds=(0, 1, 2, 3),
              bindings=tuple("train.steps = 100000" if b.startswith("train.steps") else b for b in TINY))
arms = tuple(dataclasses.replace(arm, tune=()) for arm in toy().arms)
study = dataclasses.replace(toy(), budgets={{"smoke": long}}, arms=arms, claims=())
if __name__ == "__main__":
    protocol.run_studies([study], "smoke", root={str(tmp_path / "runs")!r}, out={str(tmp_path / "out")!r},
                         runner=protocol.Runner(jobs=2, stop_grace_s=15), command="c")
""")
    env = {**os.environ, "PYTHONPATH": protocol.REPO_ROOT}
    driver = subprocess.Popen([sys.executable, str(script)], cwd=protocol.REPO_ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    logs = []
    while time.time() < deadline and len(logs) < 2:  # both workers are training
        logs = [p for p in (tmp_path / "runs").rglob("metrics.jsonl")]
        time.sleep(0.5)
    assert len(logs) == 2, driver.communicate()[0]
    workers = subprocess.run(["pgrep", "-P", str(driver.pid)], capture_output=True, text=True).stdout.split()
    driver.send_signal(signal.SIGTERM)
    driver.wait(timeout=120)
    time.sleep(2)
    alive = [pid for pid in workers if os.path.exists(f"/proc/{pid}") and
             "spawn_main" in open(f"/proc/{pid}/cmdline").read()]
    assert not alive
    # The two runs in progress saved a checkpoint before they stopped.
    for log in logs:
        assert "received SIGTERM: saved a checkpoint" in (log.parent / "log.txt").read_text()
