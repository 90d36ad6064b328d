"""cellsift.pipeline.classify."""
