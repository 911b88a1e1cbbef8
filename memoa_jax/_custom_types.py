"""Type aliases shared by the package (jaxtyping; checked at run time only under pytest)."""

from jaxtyping import Array, ArrayLike, Float, Key, Real, UInt32

RealScalarLike = Real[ArrayLike, ""]
Scalar = Float[Array, ""]
PRNGKeyArray = Key[Array, ""]

__all__ = ["Array", "Float", "Key", "PRNGKeyArray", "RealScalarLike", "Scalar", "UInt32"]
