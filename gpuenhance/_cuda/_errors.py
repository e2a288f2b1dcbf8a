"""The CUDA engine's own exception, in a module of its own so that the loader, the NVRTC report
and the emulator all import it without importing each other."""


class KernelError(RuntimeError):
    """A kernel failed to compile or launch; the message names the kernel and the reason."""
