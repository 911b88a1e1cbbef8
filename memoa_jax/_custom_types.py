"""Type aliases shared by the package (jaxtyping; checked at run time only under pytest)."""

from jaxtyping import Array, ArrayLike, Bool, Float, Key, Real, UInt32, UInt64

RealScalarLike = Real[ArrayLike, ""]
Scalar = Float[Array, ""]
PRNGKeyArray = Key[Array, ""]

__all__ = [
    "Array",
    "Bool",
    "Float",
    "Key",
    "PRNGKeyArray",
    "RealScalarLike",
    "Scalar",
    "UInt32",
    "UInt64",
]
