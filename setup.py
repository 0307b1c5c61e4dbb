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
        # Only for `python launch/bench.py attention --peers` (our attentions against the public packages),
        # with the packages they pull in pinned too; all accept the pinned torch as it is.
        "peers": ["linear-attention-transformer==0.19.1", "sinkhorn-transformer==0.11.4", "linformer==0.2.3",
                  "performer-pytorch==1.1.4", "reformer-pytorch==1.4.4", "local-attention==1.11.2",
                  "axial-positional-embedding==0.3.12", "product-key-memory==0.3.0", "colt5-attention==0.11.2",
                  "hyper-connections==0.4.11", "torch-einops-utils==0.2.0", "einops==0.8.2"],
    },
)
