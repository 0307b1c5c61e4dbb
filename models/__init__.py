"""Models: plain nn.Modules registered with gin; no training logic."""
