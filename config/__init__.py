"""Typed settings and the default policy files."""

from config.policy import DetectorPolicy, Level, Policy, load_policy
from config.settings import Settings

__all__ = ["DetectorPolicy", "Level", "Policy", "Settings", "load_policy"]
