"""``make bench``: totes beside the pipeline it replaces and beside the physical limit, on this machine."""
