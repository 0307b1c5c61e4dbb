"""Gradual domain adaptation: shifted domains, pseudo-label self-training and GIFT's objective."""
