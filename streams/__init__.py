"""Forewarn stream processing: event contracts, per-user state, triggers and the Faust app."""
