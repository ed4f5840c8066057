"""deployer provider for Azure ML managed online endpoints (artifacts on Blob storage)."""
