"""Layers shared by every model family: attention, feed-forward, positions, blocks, pooling."""
