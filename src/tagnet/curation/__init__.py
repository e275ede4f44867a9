"""Curation of label files: likely label errors (audit) and which items to label next (suggest)."""
