"""media_service: out-of-band uploads to object storage with signed URLs."""
