"""TV-L1 optical flow: PyTorch implementation, OpenCV reference, extraction jobs."""
