"""Reading training data from local disk, S3 and Azure Blob/ADLS, and fingerprinting it for lineage."""
