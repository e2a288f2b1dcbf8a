"""CUDA-on-CPU emulator: runs ``kernels/*.cu`` on the CPU (``backend="cuda-emulated"``).

The interface mirrors ``cupy.RawModule`` / ``cupy.RawKernel``::

    mod = load_module(source, ("gpuenhance_add<float>",), filename="add.cu")
    kern = mod.get_function("gpuenhance_add<float>")
    kern((blocks,), (256,), (x, y, out, np.int32(n)), shared_mem=0)

:mod:`.compiler` builds a kernel file with the system C++ compiler into a shared object
(cached on disk); :mod:`.module` loads it (:func:`load_module`, :class:`EmulatedModule`) and
probes the whole path (:func:`compiler_problem`); :mod:`.kernel` launches a kernel on real
threads and checks its arguments against the C++ signature (:class:`EmulatedKernel`).
``cuda_emu.h`` maps the CUDA built-ins onto the CPU; ``runtime.cpp`` holds the threads and
barriers. A kernel that crashes (an out-of-bounds write, say) crashes the Python process, as
it would corrupt memory on a GPU.
"""

from .compiler import cache_dir
from .kernel import EmulatedKernel
from .module import EmulatedModule, compiler_problem, load_module

__all__ = ["compiler_problem", "load_module", "EmulatedModule", "EmulatedKernel", "cache_dir"]
