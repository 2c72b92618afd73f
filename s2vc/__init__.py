"""S²VC: single-step diffusion video codec."""

__version__ = "0.1.0"
