"""Placeholder: filled in by its page work."""

from __future__ import annotations
