"""How :func:`gpuenhance.batch.runner.process_files` computes batches: at once, on a thread
pool, or staged on a GPU.

:class:`SyncRunner` computes each batch when it is submitted (the emulator, and tiled runs).
:class:`PoolRunner` computes batches on worker threads (the CPU engine: OpenCV releases the
GIL). :class:`StagedRunner` keeps several batches in flight on a GPU so that transfers
overlap compute:

* each of ``depth`` slots (3: triple buffering) owns a page-locked (pinned) host buffer for
  the input, one for the output, and a device input buffer, reused while shapes allow;
* three streams: *upload* copies slot ``i``'s pinned input to the device, *compute* waits on
  the upload's event and runs the batch function, *download* waits on the compute event and
  copies the result into the slot's pinned output; events chain them, so batch ``k + 1``
  uploads while batch ``k`` computes and batch ``k - 1`` downloads;
* a slot is reused only after its previous batch's download event has completed (that is
  when its result is handed back), so no buffer is ever written while a stream may still read
  it; device arrays of a batch are kept referenced until then, so CuPy's stream-ordered pool
  cannot hand their memory to another stream early;
* decoding and encoding stay on process_files' thread pool; the host thread only copies a decoded
  batch into pinned memory and copies finished results out of it.

The runner talks to the GPU only through a small *device* object (:class:`CupyDevice` on a
GPU); the tests drive it with a fake device whose streams execute lazily and in an adversarial
order, which checks the event and buffer-reuse logic without a GPU. :class:`CupyDevice` itself
is GPU-only code and is not exercised by the CPU test suite.
"""

from __future__ import annotations

import sys
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .. import _tiles

__all__ = ["CupyDevice", "DeviceRunner", "PoolRunner", "StagedRunner", "SyncRunner"]

#: (context, result, error): what runners hand back for every submitted batch.
Finished = tuple


def _compute(compute: Callable, batch, context, fatal: tuple) -> Finished:
    """``(context, compute(batch), None)``, or ``(context, None, error)``; *fatal* propagates."""
    try:
        return (context, compute(batch), None)
    except fatal:
        raise
    except Exception as exc:  # noqa: BLE001 - reported per image by the caller
        return (context, None, exc)


class SyncRunner:
    """Computes each batch at once with ``compute(batch)``; errors are returned, not raised.

    Exceptions in *fatal* (e.g. :class:`gpuenhance.BackendUnavailableError`) propagate.
    """

    def __init__(self, compute: Callable, *, fatal: tuple = ()):
        self.compute = compute
        self.fatal = fatal

    def submit(self, batch, context) -> list[Finished]:
        return [_compute(self.compute, batch, context, self.fatal)]

    def drain(self) -> list[Finished]:
        return []


class PoolRunner:
    """Computes batches on a thread pool, at most *depth* at once (the CPU engine's filters
    release the GIL, so images are filtered in parallel); errors are returned, not raised.

    :meth:`submit` returns the batches finished so far (in submission order), blocking only
    while *depth* batches are in flight; :meth:`drain` waits for the rest.
    """

    def __init__(self, compute: Callable, pool, depth: int, *, fatal: tuple = ()):
        self.compute = compute
        self.pool = pool
        self.depth = max(1, depth)
        self.fatal = fatal
        self.pending: deque = deque()

    def _ready(self, block: bool) -> list[Finished]:
        out = []
        while self.pending and (block or self.pending[0].done()):
            out.append(self.pending.popleft().result())
        return out

    def submit(self, batch, context) -> list[Finished]:
        done = self._ready(block=False)
        while len(self.pending) >= self.depth:
            done.append(self.pending.popleft().result())
        self.pending.append(
            self.pool.submit(_compute, self.compute, batch, context, self.fatal)
        )
        return done

    def drain(self) -> list[Finished]:
        return self._ready(block=True)


# --------------------------------------------------------------------------- CUDA device


class CupyDevice:
    """The GPU operations :class:`StagedRunner` needs, on CuPy (GPU-only; untested on CPU)."""

    def __init__(self):
        import cupy

        self.cp = cupy

    def stream(self):
        return self.cp.cuda.Stream(non_blocking=True)

    def event(self):
        return self.cp.cuda.Event(disable_timing=True)

    def pinned(self, nbytes: int) -> np.ndarray:
        """A uint8 host array of *nbytes* in page-locked memory."""
        mem = self.cp.cuda.alloc_pinned_memory(nbytes)
        return np.frombuffer(mem, dtype=np.uint8, count=nbytes)  # keeps *mem* alive

    def device_empty(self, shape, dtype, stream):
        with stream:
            return self.cp.empty(shape, dtype=dtype)

    def upload(self, dst, src: np.ndarray, stream) -> None:
        """Asynchronous host-to-device copy of contiguous pinned *src* into *dst*."""
        self.cp.cuda.runtime.memcpyAsync(
            dst.data.ptr, src.ctypes.data, src.nbytes,
            self.cp.cuda.runtime.memcpyHostToDevice, stream.ptr,
        )

    def launch(self, func: Callable, x, stream):
        """Run ``func(x)`` with *stream* current; returns a C-contiguous device array."""
        with stream:
            return self.cp.ascontiguousarray(func(x))

    def stack(self, images, stream):
        """One (N, H, W, C) device batch of same-shape device images (a device-side copy)."""
        with stream:
            return self.cp.stack(images)

    def from_host(self, img: np.ndarray, stream):
        """A device copy of host *img* (pageable; the rare path of a GPU decode that failed)."""
        with stream:
            return self.cp.asarray(img)

    def to_host(self, x, stream) -> np.ndarray:
        """*x* on the host, once *stream* has produced it (the rare path of a GPU encode that
        failed)."""
        stream.synchronize()
        return self.cp.asnumpy(x)

    def download(self, dst: np.ndarray, src, stream) -> None:
        """Asynchronous device-to-host copy of contiguous *src* into pinned *dst*."""
        if src.nbytes != dst.nbytes:
            raise ValueError(
                f"stage output has {src.nbytes} bytes ({src.shape} {src.dtype}); "
                f"expected {dst.nbytes}"
            )
        self.cp.cuda.runtime.memcpyAsync(
            dst.ctypes.data, src.data.ptr, src.nbytes,
            self.cp.cuda.runtime.memcpyDeviceToHost, stream.ptr,
        )


# --------------------------------------------------------------------------- staged runner


@dataclass
class _Slot:
    pinned_in: np.ndarray | None = None
    pinned_out: np.ndarray | None = None
    dev_in: Any = None
    events: dict = field(default_factory=dict)


@dataclass
class _Job:
    slot: _Slot
    context: Any
    shape: tuple
    dtype: np.dtype
    dev_in: Any
    dev_out: Any


def _view(buf: np.ndarray, shape, dtype) -> np.ndarray:
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return buf[:nbytes].view(dtype).reshape(shape)


class StagedRunner:
    """Keeps up to *depth* batches in flight on a GPU (see the module docstring).

    Parameters
    ----------
    func : callable
        Maps a device batch to a device batch of the same shape and dtype (kernels launched on
        the current stream).
    device : object
        :class:`CupyDevice` or a stand-in with the same methods.
    depth : int
        Slots (2: double buffering, 3: triple buffering).
    fallback : callable, optional
        ``fallback(batch)`` computes a batch synchronously (e.g. with batch splitting and
        tiling); used when staging it runs out of device memory. Without it the error is
        returned for the batch.
    release : callable, optional
        Frees cached device memory before the fallback runs.
    fatal : tuple of exception types
        Errors that propagate instead of being returned per batch.
    """

    def __init__(self, func: Callable, device, *, depth: int = 3, fallback=None,
                 release: Callable[[], None] | None = None, fatal: tuple = ()):
        if depth < 1:
            raise ValueError(f"depth must be >= 1; got {depth}")
        self.func = func
        self.device = device
        self.depth = depth
        self.fallback = fallback
        self.release = release or (lambda: None)
        self.fatal = fatal
        self.up, self.comp, self.down = device.stream(), device.stream(), device.stream()
        self.slots = [_Slot() for _ in range(depth)]
        for slot in self.slots:
            slot.events = {k: device.event() for k in ("uploaded", "computed", "downloaded")}
        self.inflight: deque[_Job] = deque()
        self.pinned_allocations = 0

    # -- host buffers

    def _pinned(self, slot: _Slot, which: str, nbytes: int) -> np.ndarray:
        buf = getattr(slot, which)
        if buf is None or buf.nbytes < nbytes:
            buf = self.device.pinned(nbytes)
            self.pinned_allocations += 1
            setattr(slot, which, buf)
        return buf

    # -- public

    def submit(self, batch: np.ndarray, context) -> list[Finished]:
        """Start *batch* (an (N, H, W, C) NumPy array); return the batches that finished."""
        finished = []
        if len(self.inflight) >= self.depth:
            finished.append(self._finish(self.inflight.popleft()))
        busy = {id(job.slot) for job in self.inflight}
        slot = next(s for s in self.slots if id(s) not in busy)
        try:
            self.inflight.append(self._start(slot, batch, context))
        except self.fatal:
            raise
        except Exception as exc:  # noqa: BLE001
            if not _tiles.is_oom(exc) or self.fallback is None:
                finished.append((context, None, exc))
                return finished
            # Out of device memory with batches in flight: let them finish, free the pool,
            # and compute this batch on its own (the fallback splits and tiles as needed).
            finished.extend(self.drain())
            self.release()
            finished.append(_compute(self.fallback, batch, context, self.fatal))
        return finished

    def drain(self) -> list[Finished]:
        """Wait for every batch in flight; return them in submission order."""
        out = []
        while self.inflight:
            out.append(self._finish(self.inflight.popleft()))
        return out

    # -- internals

    def _start(self, slot: _Slot, batch: np.ndarray, context) -> _Job:
        dev, ev = self.device, slot.events
        shape, dtype = tuple(batch.shape), np.dtype(batch.dtype)
        nbytes = batch.nbytes
        # The slot's previous batch has finished (downloaded and handed back), so its pinned
        # buffers and device input are free: nothing in any stream still reads them.
        host_in = _view(self._pinned(slot, "pinned_in", nbytes), shape, dtype)
        np.copyto(host_in, batch)
        host_out = _view(self._pinned(slot, "pinned_out", nbytes), shape, dtype)
        dev_in = slot.dev_in
        if dev_in is None or tuple(dev_in.shape) != shape or np.dtype(dev_in.dtype) != dtype:
            slot.dev_in = None
            dev_in = dev.device_empty(shape, dtype, self.up)
            slot.dev_in = dev_in
        dev.upload(dev_in, host_in, self.up)
        ev["uploaded"].record(self.up)
        self.comp.wait_event(ev["uploaded"])
        dev_out = dev.launch(self.func, dev_in, self.comp)
        ev["computed"].record(self.comp)
        self.down.wait_event(ev["computed"])
        dev.download(host_out, dev_out, self.down)
        ev["downloaded"].record(self.down)
        return _Job(slot, context, shape, dtype, dev_in, dev_out)

    def _finish(self, job: _Job) -> Finished:
        try:
            job.slot.events["downloaded"].synchronize()
            result = np.array(_view(job.slot.pinned_out, job.shape, job.dtype), copy=True)
        except self.fatal:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. a kernel fault surfacing at the sync
            return (job.context, None, exc)
        finally:
            job.dev_out = None  # only now may the pool reuse the output's memory
        return (job.context, result, None)


# --------------------------------------------------------------------------- device-resident


@dataclass
class _DeviceJob:
    context: Any
    encoded: Any  # Future of [bytes or Exception, ...], one per image


class DeviceRunner:
    """Runs batches of encoded images (JPEG bytes) through a GPU codec and a batch function
    without their pixels visiting the host: decode on the *decode* stream, stack and compute on
    the *compute* stream, encode on the *encode* stream, each stream waiting on the previous
    one's event. Decoding happens in the caller's thread, encoding on a single *encoder* thread,
    so batch ``k + 1`` decodes while ``k`` computes and ``k - 1`` encodes; at most *depth*
    batches are in flight, and a batch's device arrays live until its encode is done.

    ``submit(datas, context, shape=..., host_decoders=..., quality=...)`` returns the batches
    finished so far as ``(context, [bytes or Exception per image], error)``. An image the GPU
    decoder rejects, or returns in another shape than *shape* (the upright (H, W, C) the file
    declares), is decoded by its ``host_decoders[i]()`` and uploaded; one the GPU encoder
    rejects is downloaded and encoded by ``host_encode(img, quality)``.
    """

    def __init__(self, func: Callable, device, codec, encoder_pool, *, host_encode: Callable,
                 depth: int = 3, fatal: tuple = ()):
        self.func = func
        self.device = device
        self.codec = codec
        self.pool = encoder_pool
        self.host_encode = host_encode
        self.depth = max(1, depth)
        self.fatal = fatal
        self.dec, self.comp, self.enc = device.stream(), device.stream(), device.stream()
        self.inflight: deque[_DeviceJob] = deque()

    def _done(self, job: _DeviceJob) -> Finished:
        try:
            return (job.context, job.encoded.result(), None)
        except self.fatal:
            raise
        except Exception as exc:  # noqa: BLE001 - the whole batch failed to encode
            return (job.context, None, exc)

    def submit(self, datas, context, *, shape, host_decoders, quality: int = 95
               ) -> list[Finished]:
        finished = []
        while self.inflight and (len(self.inflight) >= self.depth
                                 or self.inflight[0].encoded.done()):
            finished.append(self._done(self.inflight.popleft()))
        dev = self.device
        failed: dict[int, Exception] = {}  # images that neither decoder could decode
        try:
            images = self.codec.decode(datas, self.dec)
            for i, img in enumerate(images):
                if img is None or tuple(img.shape) != tuple(shape):
                    # e.g. a JPEG feature the GPU decoder lacks: OpenCV decodes this one
                    try:
                        images[i] = dev.from_host(host_decoders[i](), self.dec)
                    except self.fatal:
                        raise
                    except Exception as exc:  # noqa: BLE001 - reported for that image
                        failed[i] = exc
            kept = [img for i, img in enumerate(images) if i not in failed]
            if not kept:
                finished.append((context, [failed[i] for i in range(len(datas))], None))
                return finished
            decoded = dev.event()
            decoded.record(self.dec)
            self.comp.wait_event(decoded)
            batch = dev.stack(kept, self.comp)
            result = dev.launch(self.func, batch, self.comp)
            computed = dev.event()
            computed.record(self.comp)
        except self.fatal:
            raise
        except Exception as exc:  # noqa: BLE001 - reported for the batch's images
            finished.append((context, None, exc))
            return finished
        fut = self.pool.submit(self._encode, result, batch, computed, quality, failed,
                               len(datas))
        self.inflight.append(_DeviceJob(context, fut))
        return finished

    def _encode(self, result, batch, computed, quality, failed, count):
        # *batch* is held until here: its memory stays allocated while the compute stream
        # may still read it.
        self.enc.wait_event(computed)
        images = [result[i] for i in range(result.shape[0])]
        encoded = self.codec.encode(images, quality, self.enc)
        for i, data in enumerate(encoded):
            if data is None:
                try:
                    encoded[i] = self.host_encode(self.device.to_host(images[i], self.enc),
                                                  quality)
                except Exception as exc:  # noqa: BLE001 - reported for that image
                    encoded[i] = exc
        del batch
        produced = iter(encoded)
        return [failed[i] if i in failed else next(produced) for i in range(count)]

    def drain(self) -> list[Finished]:
        out = []
        while self.inflight:
            out.append(self._done(self.inflight.popleft()))
        return out


def cuda_device_or_none():
    """A :class:`CupyDevice` when CuPy is loaded and works, else None."""
    if sys.modules.get("cupy") is None:
        return None
    try:
        return CupyDevice()
    except Exception:  # noqa: BLE001
        return None
