"""Demonstration data sets in robomimic's HDF5 layout: writing, reading, generating."""
