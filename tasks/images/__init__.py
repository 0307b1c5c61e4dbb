"""Image sources shared by tasks: scikit-learn digits, procedural shapes, and image transforms."""
