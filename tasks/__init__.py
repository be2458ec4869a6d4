"""The work of totes, one module per pipeline stage or system."""
