"""Triton model repository: generate ``config.pbtxt`` through Triton's protobuf and validate it."""

from costeff.serving.config import BatchingSettings
from costeff.serving.repository import BuildConfig, BuildResult, build_repository
from costeff.serving.validate import Problem, ValidationReport, validate_config

__all__ = ["BatchingSettings", "BuildConfig", "BuildResult", "Problem", "ValidationReport",
           "build_repository", "validate_config"]
