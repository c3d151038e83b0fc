"""Model families shared by domains (autoregressive, diffusion, control)."""
