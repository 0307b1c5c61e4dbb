"""Pointer-value retrieval: vector PVR and C-PVR (Hyper-UT), and visual PVR on digit grids."""
