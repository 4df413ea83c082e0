"""What a builder is given: a `DataSpec` (from the data pipeline) or plain arguments."""

from __future__ import annotations

from collections.abc import Sequence

from zoo.data.spec import DataSpec


def model_inputs(
    builder: str,
    spec: DataSpec | None,
    input_shape: Sequence[int] | None,
    num_classes: int | None,
    default_shape: Sequence[int] | None = None,
) -> tuple[tuple[int, ...], int]:
    """`(input_shape, num_classes)` from `spec`, or from the plain arguments.

    The Hydra configs call builders with the data's spec; people call them with
    `num_classes=` (and `input_shape=` where the network has no fixed input). One or the
    other, not both, so that a spec cannot be silently overridden.
    """
    if spec is not None:
        if input_shape is not None or num_classes is not None:
            raise ValueError(
                f"{builder}: pass a DataSpec or input_shape=/num_classes=, not both "
                f"(got spec {spec.name!r} and input_shape={input_shape}, "
                f"num_classes={num_classes})."
            )
        return tuple(spec.input_shape), int(spec.num_classes)
    shape = input_shape if input_shape is not None else default_shape
    if num_classes is None or shape is None:
        example = "num_classes=10" + ("" if default_shape else ", input_shape=(28, 28, 1)")
        raise ValueError(
            f"{builder} needs num_classes{'' if default_shape else ' and input_shape'} "
            f"(or a DataSpec), got input_shape={input_shape}, num_classes={num_classes}; "
            f"e.g. {builder}({example})."
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"{builder}: num_classes must be a positive integer, got {num_classes!r}")
    return tuple(int(size) for size in shape), num_classes
