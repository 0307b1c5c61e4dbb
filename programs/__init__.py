"""Multi-stage programs built on engine.program.train: finetune, distill, gaudi, adaptation.

They may import tasks and models; the engine imports none of them."""
