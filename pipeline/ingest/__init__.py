"""Stage 1: sniff, load (PDFs, slides, images), text layer and words, page geometry, rendering."""
