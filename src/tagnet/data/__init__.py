"""Label files, splits, image/text/tabular datasets and the built-in synthetic demo data."""
