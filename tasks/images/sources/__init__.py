"""Image sources: shipped digits, procedural shapes, image files, and the transforms between them."""
