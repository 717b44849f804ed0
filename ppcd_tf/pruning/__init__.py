"""Progressive channel pruning: differentiable masks and bound schedules."""
