"""What crosses a process boundary: wire formats and their validation, settings and the topic registry,
metrics, time helpers, pseudonyms and erasure records. Imports nothing else of Forewarn's."""
