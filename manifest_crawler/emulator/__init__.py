"""Local emulator of the CivitAI and Hugging Face model-listing APIs (twisted.web).

See docs/DESIGN.md ("Emulator interface") and /work/shared/docs/api-notes.md for what is
emulated; :class:`Emulator` is the entry point.
"""

from .catalogue import Catalogue, QueryError
from .faults import FaultConfig
from .server import Emulator, EmulatorConfig
from .web import RequestRecord

__all__ = ["Catalogue", "Emulator", "EmulatorConfig", "FaultConfig", "QueryError", "RequestRecord"]
