"""Stage 2: the prompt layout, token counting, packing and the planner (windows and segments)."""
