"""YouTube-8M TFRecord shards: schema, readers, writers, the sample competition, downloads."""
