"""Stage 3: the one ``ModelBackend`` seam, its backends, processor loading, constrained decoding."""
