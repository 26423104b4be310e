"""Data sources, the mixed sampler, transforms, collate, HDF5 packs and the `shapes` demo world."""
