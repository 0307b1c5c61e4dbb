"""Learning-rate schedules: each matches its closed form at every step (warmup, decay, past the
end), and a resumed run continues the exact sequence an uninterrupted one would have seen."""
import math

import pytest
import torch

from engine.optim import Constant, WarmupCosine, WarmupLinear, WarmupRsqrt, make_schedule

TOTAL = 20


def warmup(step, w):
    return (step + 1) / w


def progress(step, w):
    return min((step - w) / max(TOTAL - w, 1), 1.0)


CASES = [
    (lambda: Constant(warmup_steps=4), lambda s, w: warmup(s, w) if s < w else 1.0),
    (lambda: Constant(), lambda s, w: 1.0),
    (lambda: WarmupCosine(warmup_steps=4, final_ratio=0.1),
     lambda s, w: warmup(s, w) if s < w else 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress(s, w)))),
    (lambda: WarmupCosine(),
     lambda s, w: 0.5 * (1 + math.cos(math.pi * progress(s, w)))),
    (lambda: WarmupLinear(warmup_steps=5, final_ratio=0.2),
     lambda s, w: warmup(s, w) if s < w else 1 - 0.8 * progress(s, w)),
    (lambda: WarmupRsqrt(warmup_steps=4), lambda s, w: warmup(s, w) if s < w else math.sqrt(w / (s + 1))),
    (lambda: WarmupRsqrt(), lambda s, w: math.sqrt(1 / (s + 1))),
]


@pytest.mark.parametrize("make, closed_form", CASES)
def test_every_step_matches_the_closed_form(make, closed_form):
    schedule = make().for_steps(TOTAL)
    for step in range(TOTAL + 5):  # past the end the decay holds its last value
        assert schedule(step) == pytest.approx(closed_form(step, schedule.warmup_steps), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("make, _", CASES)
def test_a_resumed_schedule_continues_the_same_learning_rates(make, _):
    def fresh():
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        return optimizer, make_schedule(make(), optimizer, TOTAL)

    optimizer, scheduler = fresh()
    straight = []
    for _ in range(TOTAL):
        straight.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()

    optimizer, scheduler = fresh()
    resumed = []
    for _ in range(7):
        resumed.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    state = scheduler.state_dict(), optimizer.state_dict()
    optimizer, scheduler = fresh()
    scheduler.load_state_dict(state[0])
    optimizer.load_state_dict(state[1])
    for _ in range(TOTAL - 7):
        resumed.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert resumed == straight
