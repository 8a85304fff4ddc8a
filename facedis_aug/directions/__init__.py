"""directions stage."""
