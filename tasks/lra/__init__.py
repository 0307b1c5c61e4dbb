"""Long Range Arena tasks (Tay et al. 2021): ListOps, Text, Retrieval, Image, Pathfinder, Path-X."""
