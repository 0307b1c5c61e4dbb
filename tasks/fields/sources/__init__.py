"""Fields for DPF: sources that define a signal at any coordinate (images, occupancy, the sphere)."""
