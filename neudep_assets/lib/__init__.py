"""The science of neudep (no Dagster here). Imports run one way, bottom to top:

specs, config, store (files, code_version)  ←  data  ←  models  ←  covlasso  ←  analysis  ←  report

(`analysis` never imports `models`; `covlasso` needs only numpy/numba/torch.)
"""
