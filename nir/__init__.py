"""nir: named-tensor programs, checked by name while tracing, compiled to TVM and XLA."""
from .types import NamedShapeError, TensorType
from .ir import Program, Builder, verify, VerifyError
from .text import parse_program as parse
from .interpret import interpret
