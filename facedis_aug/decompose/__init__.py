"""decompose stage."""
