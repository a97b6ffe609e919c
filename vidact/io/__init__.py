"""Video, frame-folder and flow file I/O."""
