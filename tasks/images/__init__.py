"""Image problems and their sources: digits (plain, on a canvas), textured shapes, byte images and image files."""
