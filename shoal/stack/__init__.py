"""Compose-format stack files to cluster specs (`shoal stack deploy -c FILE [-c FILE2...] NAME`).

Exports:
    load_stack(paths, env) -> StackSpec             read, interpolate, merge, validate (all or nothing)
    load_stack_sources([(name, text)], env, project_dir) -> StackSpec
    to_service_specs(stack, name) -> [ServiceSpec]  in deploy order (depends_on honoured)
    to_network_specs / to_volume_specs / to_secret_specs / to_config_specs(stack, name)
    external_names(stack), check_stack_name(name), NAMESPACE_LABEL, IMAGE_LABEL
    interpolate(text, env)
    StackSpec and its parts (shoal.stack.model); StackError, StackFileError, Problem
"""

from shoal.stack.convert import (
    IMAGE_LABEL, NAMESPACE_LABEL, check_stack_name, external_names, network_name, service_name,
    to_config_specs, to_network_specs, to_secret_specs, to_service_specs, to_volume_specs,
)
from shoal.stack.errors import Problem, StackError, StackFileError
from shoal.stack.interpolate import interpolate
from shoal.stack.loader import load_stack, load_stack_sources
from shoal.stack.model import ServiceDef, StackSpec

__all__ = [
    "IMAGE_LABEL", "NAMESPACE_LABEL", "Problem", "ServiceDef", "StackError", "StackFileError",
    "StackSpec", "check_stack_name", "external_names", "interpolate", "load_stack",
    "load_stack_sources", "network_name", "service_name", "to_config_specs", "to_network_specs",
    "to_secret_specs", "to_service_specs", "to_volume_specs",
]
