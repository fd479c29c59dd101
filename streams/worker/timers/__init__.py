"""The worker's timers: the sweep that ticks silent users, model checkpoints, and the report of the
partitions held."""
