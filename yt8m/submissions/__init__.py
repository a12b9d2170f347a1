"""Kaggle submission files: writers and validators for the video-level (2017/2018) and
segment-level (2019) formats, provenance, and the hand-off to the kaggle CLI."""
