"""vidact: a command-line toolkit for video action recognition."""

__version__ = "0.1.0"
