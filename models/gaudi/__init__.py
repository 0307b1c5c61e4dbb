"""GAUDI (Bautista et al. 2022): per-trajectory latents decoded into a tri-plane radiance field and a
camera path, rendered by volume rendering; a diffusion prior over the latents generates scenes."""
