"""nndl.backend: the array module follows the arrays."""

import numpy as np

from nndl.backend import get_array_module


def test_numpy_arrays_and_plain_values_use_numpy():
    assert get_array_module(np.zeros(3)) is np
    assert get_array_module(np.zeros(3), 1.0, None) is np
    assert get_array_module() is np
