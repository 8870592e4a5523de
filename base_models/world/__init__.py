"""The procedural art world: attributes, rendering, captions, data sets with ground truth, and the
simulated raters who judge its images through the oracle (`raters`, `rater_ceiling`)."""
