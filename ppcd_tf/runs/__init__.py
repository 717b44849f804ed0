"""Run directories: their layout, readers, the run lock and checkpoints."""
