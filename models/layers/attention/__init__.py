"""Attention: the multi-head projection wrapper and the interchangeable attention cores.

A core takes queries, keys and values shaped (batch, heads, length, head_dim) and a key
padding mask (batch, length; True = real token) and returns (batch, heads, length, head_dim).
Cores are built as `core(num_heads=..., head_dim=...)`; anything else they need comes from gin.
"""
