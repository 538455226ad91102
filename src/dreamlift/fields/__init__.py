"""Representations: NeRF grids, 3D Gaussians."""
