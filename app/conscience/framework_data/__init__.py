"""Built-in ethical frameworks (YAML data)."""
