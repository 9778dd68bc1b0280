"""The farm CLI: light (no torch); it parses, calls and prints."""
