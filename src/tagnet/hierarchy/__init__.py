"""Label hierarchies: read a tree, add implied ancestors to targets, keep predictions consistent, score per level."""

from tagnet.hierarchy.metrics import hierarchical_prf, hierarchy_scores, per_depth
from tagnet.hierarchy.read import hierarchy_from_names, load_hierarchy, read_hierarchy
from tagnet.hierarchy.targets import with_implied_ancestors
from tagnet.hierarchy.tree import RULE, Tree

__all__ = ["RULE", "Tree", "hierarchical_prf", "hierarchy_from_names", "hierarchy_scores", "load_hierarchy",
           "per_depth", "read_hierarchy", "with_implied_ancestors"]
