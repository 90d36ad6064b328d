"""cellsift.pipeline.analysis."""
