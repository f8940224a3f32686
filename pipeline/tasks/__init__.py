"""Stage 4: task specs, the re-ask loop, reduce and merge, completeness, grounding, confidence."""
