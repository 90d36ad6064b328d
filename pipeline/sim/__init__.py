"""cellsift.pipeline.sim."""
