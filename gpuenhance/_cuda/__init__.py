"""CUDA engine: host code for the kernels in ``kernels/*.cu``.

Every function here takes a kernel context first (see :mod:`gpuenhance._cuda._loader`) and
is written against ``ctx.xp`` and ``ctx.kernel(file, name)``, so that it runs unchanged with
(cupy, cupy.RawModule) on a GPU and with (numpy, the emulator's module) on a CPU.
"""
