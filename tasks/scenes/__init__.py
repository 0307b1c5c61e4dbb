"""GAUDI's scenes: procedural rooms, camera paths, scene trajectories, auto-decoding and the latent prior."""
