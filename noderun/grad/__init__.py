"""Gradient modes that are not plain autograd: the adjoint method and step checkpointing."""
