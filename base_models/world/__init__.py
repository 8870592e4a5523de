"""The procedural art world: attributes, rendering, captions, data sets with ground truth."""
