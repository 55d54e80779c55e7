"""Built-in tools, each written with the same API a user tool uses."""
