"""Reports: plots, star pictures (the paper's Fig. 2), Fig. 3, graph export (GraphML / JSON)."""

from neudep_assets.lib.report.graph_export import dependency_graph, write_graph
from neudep_assets.lib.report.pictures import fig3_png, star_pictures, write_dependency_graph

__all__ = ["dependency_graph", "write_graph", "fig3_png", "star_pictures", "write_dependency_graph"]
