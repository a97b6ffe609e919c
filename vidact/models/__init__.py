"""Video classification architectures; importing this package fills the registry."""

# Each family module registers its variants on import.
# (add one import per family below)
from vidact.models import c3d, fusion, i3d, slowfast, two_stream, x3d  # noqa: F401,E402  (importing a family registers its models)  # noqa: F401,E402
from vidact.models.registry import InputSpec, create_model, get_entry, model_names, register_model

__all__ = ["InputSpec", "create_model", "get_entry", "model_names", "register_model"]
