"""Mixture planning and materialisation: recipes -> per-document repeats -> tokenised Arrow shards."""
