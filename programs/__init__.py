"""Multi-stage programs built on engine.program.train: finetune, distill, gaudi, adaptation, and
field_scores (DPF: train or fit a field model, then score its samples).

They may import tasks and models; the engine imports none of them."""
