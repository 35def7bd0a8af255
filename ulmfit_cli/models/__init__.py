"""Backbones. Each module owns its shapes, its default dropouts and its layer groups."""
