"""Tasks: what a run optimises and measures."""
