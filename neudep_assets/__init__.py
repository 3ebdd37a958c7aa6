"""neudep: neural dependencies in image classifiers, as a Dagster pipeline."""

import os

# torch's OpenMP threads spin-wait by default; with 2 cores and anything else busy that costs ~15x.
# It only takes effect if set before torch is imported, which is why it lives here.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
