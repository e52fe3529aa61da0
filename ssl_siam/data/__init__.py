"""Data I/O: rasters, tile sources and tiles, band statistics, sampling, transforms and the xBD layout."""
