"""cellsift.pipeline.ingest."""
