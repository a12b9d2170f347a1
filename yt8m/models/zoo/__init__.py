"""Model builders, one module per family. Each exposes `build(num_classes, **architecture)`."""
