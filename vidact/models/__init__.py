"""Video classification architectures; importing this package fills the registry."""

from vidact.models.registry import InputSpec, create_model, get_entry, model_names, register_model

# Each family module registers its variants on import.
# (add one import per family below)
from vidact.models import fusion, two_stream, c3d, i3d  # noqa: F401,E402  (importing a family registers its models)
from vidact.models import slowfast, x3d  # noqa: F401,E402

__all__ = ["InputSpec", "create_model", "get_entry", "model_names", "register_model"]
