"""gintrain's engine: gin plumbing, the training loop, strategies, checkpoints and logging.

The engine knows nothing about any paper; it meets models and tasks only through the
contracts in docs/design.md (a model is an nn.Module, a task yields batches and computes its loss).
"""
