"""keepalived.conf language: tokenizer, preprocessor, block tree, typed model."""

from __future__ import annotations
