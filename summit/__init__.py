"""summit: what an image classifier learned, class by class, at dataset scale."""
__version__ = "0.1.0"
