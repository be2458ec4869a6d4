"""On the path of the benchmark's totes processes only: totes as installed has no pandas (the dev
extra carries it for the baseline), and Arrow imports it when present, adding ~0.5 s to every run."""

raise ImportError("pandas is not installed with totes")
