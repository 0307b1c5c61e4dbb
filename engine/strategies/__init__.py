"""Distributed strategies behind one interface; each heavy backend is imported only when chosen."""
import importlib

#: strategy name (as written in checkpoint metadata) -> module that defines it
STRATEGY_MODULES = {
    "single": "engine.strategies.single",
    "ddp": "engine.strategies.ddp",
    "fsdp": "engine.strategies.fsdp",
    "deepspeed": "engine.strategies.deepspeed",
    "fairscale": "engine.strategies.fairscale",
}


def consolidate(checkpoint_dir: str, name: str):
    """The full model state dict of a checkpoint written by strategy `name`, in one process."""
    module = importlib.import_module(STRATEGY_MODULES[name])
    return module.consolidate(checkpoint_dir)
