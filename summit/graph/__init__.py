"""Attribution graphs from a run: settings and defaults (options), dense matrices, a class's
full graph (edges), Summit's PageRank rule and our top-N rule (build), exports (including Summit's
own data folder, summit_data), the stored
default graphs (cache), the class embedding and SVG drawing.
"""
from __future__ import annotations

from ..lazy import exports

_HOMES = {
    "GraphOptions": "options", "DEFAULTS": "options", "METHODS": "options", "defaults": "options",
    "graph_options": "options",
    "ClassGraph": "build", "class_graph": "build", "compare_graph": "build", "graph_channels": "build",
    "pagerank": "build", "class_images": "build", "part_sizes": "build", "mistaken_for": "build",
    "Dense": "matrices", "dense": "matrices",
    "compose_max_min": "edges", "class_edges": "edges",
    "FORMATS": "formats", "write_graph": "export", "to_json": "export", "to_summit": "export",
    "to_dot": "export", "safe_filename": "export",
    "SummitData": "summit_data", "write_summit_data": "summit_data", "summit_layer_names": "summit_data",
    "target_classes": "summit_data", "imagenet_json": "summit_data",
    "GraphCache": "cache", "store_graphs": "cache", "build_in_background": "cache", "is_fresh": "cache",
    "graph_bytes": "cache",
    "EMBEDDING_METHODS": "embedding", "class_embedding": "embedding", "class_vectors": "embedding",
    "write_embedding": "embedding", "load_embedding": "embedding",
    "graph_svg": "svg",
    "RunDiff": "diff", "ClassDiff": "diff", "ChannelRole": "diff", "diff_runs": "diff", "diff_json": "diff",
    "write_diff_json": "diff", "diff_svg": "diff", "write_diff_svg": "diff", "check_comparable": "diff",
    "channel_roles": "diff", "mistakes_diff": "diff", "side_names": "diff",
}
__all__ = sorted(_HOMES)
__getattr__, __dir__ = exports(__name__, _HOMES)
