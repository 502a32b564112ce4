"""Fast forms of the layers, grouped by op family, NumPy and compiled (numba) forms side by
side; each is tested equal to its reference in :mod:`nndl.functional`.

==============================================  =============================================
module                                          what
==============================================  =============================================
:mod:`.conv`, :mod:`.im2col`                    fast convolution (Winograd or im2col GEMMs)
:mod:`.winograd`, :mod:`.winograd_transforms`,  Winograd F(2x2,3x3)/F(4x4,3x3): the driver,
:mod:`.winograd_compiled`,                      its NumPy transforms, the chunked compiled
:mod:`.numba_winograd`                          path and its numba kernels
:mod:`.max_pool`, :mod:`.pool`                  separable max pool; average and global pools
:mod:`.fused`, :mod:`.fused_numpy`,             conv output -> [pool] -> BN -> act -> [pool]
:mod:`.fused_compiled`, :mod:`.numba_fused`     in one pass, with standalone fast BN and GELU
:mod:`.conv_blocks`                             conv blocks (conv + fused passes) and the
                                                classic conv "sandwiches"
:mod:`.layout`, :mod:`.scratch`,                the (C, H, W, N) layout, per-thread scratch
:mod:`.parallel`                                buffers, the thread pool and the one switch
                                                for the numba kernels (``NNDL_NUMBA=0``)
:mod:`.allocator`                               freed memory kept for the next step (glibc)
==============================================  =============================================

The classic modules :mod:`nndl.fast_layers` and :mod:`nndl.conv_layer_utils` re-export the
public names.
"""

__all__: list[str] = []
