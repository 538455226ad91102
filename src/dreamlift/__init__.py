"""dreamlift: lift 2D diffusion models into 3D."""

__version__ = "0.1.0"
