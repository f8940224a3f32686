"""Developer tools: the tiny random Qwen3-VL, the dev server, the model double, synthetic docs."""
