"""Prompt learning for CLIP-style models: generated image-text pairs and base-to-new prompt tasks."""
