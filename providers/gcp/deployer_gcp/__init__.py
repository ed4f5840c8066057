"""deployer provider for Google Cloud: GCS artifacts, Vertex AI endpoints, Cloud Monitoring gates."""
