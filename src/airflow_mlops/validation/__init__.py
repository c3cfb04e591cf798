"""Data validation with great-expectations, driven by the config's ``expectations`` list."""
