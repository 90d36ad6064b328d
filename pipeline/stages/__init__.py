"""cellsift.pipeline.stages."""
