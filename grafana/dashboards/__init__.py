"""Dashboard generators: one module per dashboard, `build.py` writes the committed JSON."""
