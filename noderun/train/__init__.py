"""The training loop, its metering (NFE, memory, time) and checkpoints."""
