"""The built-in recipe configurations (TOML files, one per ``--config`` name)."""
