"""The feature cache: shards decoded once into memory-mappable arrays, fold assignment, loaders."""
