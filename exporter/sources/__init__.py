"""Sources: one module per area, each a Source subclass with its own config model."""
