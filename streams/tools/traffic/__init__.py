"""Synthetic traffic with a known ground truth (the generator) and its runner into a real broker."""
