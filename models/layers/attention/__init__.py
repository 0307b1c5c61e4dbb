"""Attention: the multi-head projection wrapper and the interchangeable attention cores.

A core takes queries, keys and values shaped (batch, heads, length, head_dim) and a key
padding mask (batch, length; True = real token) and returns (batch, heads, length, head_dim).
Cores are built as `core(num_heads=..., head_dim=...)`; anything else they need comes from gin.
Class attributes declare what a core can do: `uses_queries` / `uses_keys` (False: no such
projection is built) and `cross_attention` (True: queries may attend to another sequence).
"""
from models.layers.attention.bigbird import BigBirdAttention
from models.layers.attention.dense import DenseAttention
from models.layers.attention.linear import LinearAttention
from models.layers.attention.linformer import LinformerAttention
from models.layers.attention.local import LocalAttention
from models.layers.attention.longformer import LongformerAttention
from models.layers.attention.multihead import MultiHeadAttention, can_cross_attend, cross_attention_error
from models.layers.attention.naive import NaiveSoftmaxAttention
from models.layers.attention.performer import PerformerAttention
from models.layers.attention.reformer import ReformerAttention
from models.layers.attention.sinkhorn import SinkhornAttention
from models.layers.attention.sparse import SparseAttention
from models.layers.attention.synthesizer import SynthesizerAttention

__all__ = ["MultiHeadAttention", "can_cross_attend", "cross_attention_error", "BigBirdAttention", "DenseAttention",
           "LinearAttention", "LinformerAttention",
           "LocalAttention", "LongformerAttention", "NaiveSoftmaxAttention", "PerformerAttention",
           "ReformerAttention", "SinkhornAttention", "SparseAttention", "SynthesizerAttention"]
