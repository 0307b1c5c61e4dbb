"""Installs gintrain's packages: the engine, the models, the tasks, the multi-stage programs and the launch helpers."""
from setuptools import find_packages, setup

setup(
    name="gintrain",
    version="0.1.0",
    description="A declarative, gin-configured PyTorch training engine.",
    python_requires=">=3.10",
    packages=find_packages(include=["engine*", "models*", "tasks*", "programs*", "launch*"]),
    install_requires=[
        "torch>=2.5",
        "gin-config>=0.5.0",
        "numpy",
        "pyyaml",
        "safetensors",
        "tensorboard",
        "tqdm",
    ],
    extras_require={
        # DeepSpeed's own zero_to_fp32.py (saved beside each ZeRO checkpoint) imports huggingface_hub.
        "deepspeed": ["deepspeed>=0.19", "huggingface_hub"],
        "fairscale": ["fairscale>=0.4.13"],
        "data": ["scikit-learn", "matplotlib"],
        # Only to cross-check models/clip_hf.py against transformers.CLIPModel (the loader itself needs none).
        "hf": ["transformers"],
        "test": ["pytest", "pytest-xdist"],
    },
)
