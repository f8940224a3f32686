"""Stage 4: task specs, the re-ask loop, reduce and merge, completeness and rows cut by page
breaks, grounding (text views, locating, records), confidence."""
