"""Where a run's numbers go: the console (rich), TensorBoard, metrics.jsonl and summary.json."""
