"""Engines that run a planned batch somewhere other than this process (``ray``: a Ray cluster)."""
