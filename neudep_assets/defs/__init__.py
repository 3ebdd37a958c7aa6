"""Dagster wiring of neudep: assets, checks, resources, partitions, sensors, jobs (no maths here)."""

import warnings

import dagster as dg

# Output(data_version=...) is beta and partitioned asset checks are preview in Dagster 1.13; both
# are what we want, so their warnings would only be noise in every run log.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
