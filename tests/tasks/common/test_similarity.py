"""Linear CKA: 1 for a representation with itself, blind to rotations and scale, low for
unrelated representations; student-teacher comparison of whole models."""
from __future__ import annotations

import torch

from engine.data import Shard
from models.mlp import MLP
from tasks.images.digits_canvas import DigitsOnCanvas
from tasks.common.similarity import cka_matrix, compare_models, linear_cka


def test_cka_of_a_representation_with_itself_is_one():
    x = torch.randn(200, 30, generator=torch.Generator().manual_seed(0))
    assert abs(linear_cka(x, x) - 1.0) < 1e-12


def test_cka_is_invariant_to_orthogonal_transforms_and_isotropic_scaling():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(150, 20, generator=generator)
    y = torch.tanh(x @ torch.randn(20, 12, generator=generator))  # some other representation of x
    q, _ = torch.linalg.qr(torch.randn(20, 20, generator=generator, dtype=torch.float64))
    rotated = (x.double() @ q) * 3.5
    assert abs(linear_cka(rotated, x) - 1.0) < 1e-10
    assert abs(linear_cka(rotated, y) - linear_cka(x, y)) < 1e-10
    assert abs(linear_cka(x, y) - linear_cka(y, x)) < 1e-12


def test_cka_of_unrelated_representations_is_small_and_not_invariant_to_any_linear_map():
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(2000, 10, generator=generator)
    assert linear_cka(x, torch.randn(2000, 10, generator=generator)) < 0.05
    stretched = x * torch.tensor([10.0] + [1.0] * 9)  # not orthogonal: CKA drops below 1
    assert linear_cka(x, stretched) < 0.9


def test_a_model_compared_with_itself_agrees_everywhere_with_cka_one():
    task = DigitsOnCanvas(canvas=10, train_shift=1, max_shift=1, scale_range=(1.0, 1.2))
    torch.manual_seed(0)
    model = MLP(input_dim=100, num_classes=10, hidden=(16, 8)).eval()
    metrics = compare_models(model, model, task, "translated", Shard(batch_size=32), max_batches=2)
    assert metrics["teacher_agreement"].value == 1.0
    assert abs(metrics["cka/pre_logits"] - 1.0) < 1e-9
    matrix, rows, columns = cka_matrix(metrics)
    assert rows == columns == [1, 2] and abs(matrix[0, 0] - 1.0) < 1e-9 and abs(matrix[1, 1] - 1.0) < 1e-9
