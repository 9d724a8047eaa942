"""The meshrag command line."""
