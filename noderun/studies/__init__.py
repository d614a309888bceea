"""Studies of trained or freshly built models: the paper's Figure 3 and the memory-versus-depth check."""
