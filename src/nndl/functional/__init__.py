"""The layer math, one module per family: each ``*_forward(...)`` returns ``(out, cache)``
and its ``*_backward(dout, cache)`` the gradients, in the readable reference form that
:mod:`nndl.kernels`' fast forms are tested against.

========================  ===========================================================
module                    what
========================  ===========================================================
:mod:`.linear`            affine (fully connected), the residual add
:mod:`.activation`        ReLU, GELU (tanh form)
:mod:`.norm`              batch norm, spatial batch norm
:mod:`.dropout`           inverted dropout
:mod:`.loss`              softmax (with label smoothing) and SVM losses
:mod:`.conv`              the naive convolution
:mod:`.pool`              naive max and average pooling, global pooling
:mod:`.sandwiches`        affine - [batch norm] - ReLU composites
========================  ===========================================================

The classic modules :mod:`nndl.layers` and :mod:`nndl.conv_layers` re-export these names.
"""

__all__: list[str] = []
