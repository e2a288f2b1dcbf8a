"""Stand-ins for the GPU, used to test the CUDA batch paths on machines without one."""

from __future__ import annotations

import threading

import numpy as np


class FakeGPU:
    """A stand-in for :class:`gpuenhance.batch.staging.CupyDevice` whose streams run lazily
    and adversarially.

    Work is queued per stream and only runs when an event is synchronised (or a fake codec
    needs its stream's results); the scheduler then runs the streams in a random interleaving
    that respects the event waits. A missing wait or a buffer reused too early therefore shows
    up as a wrong result. Device arrays are NumPy arrays wrapped in :class:`Buf` (filled with
    garbage when allocated). Thread-safe: the device runner encodes on its own thread.
    """

    class Buf:
        def __init__(self, shape, dtype):
            self.shape, self.dtype = tuple(shape), np.dtype(dtype)
            garbage = 0xAB if self.dtype.kind in "ui" else np.nan
            self.data = np.full(shape, garbage, dtype=dtype)
            self.nbytes = self.data.nbytes

        def __getitem__(self, i):  # an image of a batch: a view, as on a GPU
            view = FakeGPU.Buf.__new__(FakeGPU.Buf)
            view.data = self.data[i]
            view.shape, view.dtype, view.nbytes = view.data.shape, self.dtype, view.data.nbytes
            return view

    class _Event:
        def __init__(self, gpu):
            self.gpu, self.token = gpu, None

        def record(self, stream):
            token = {"done": False}
            self.token = token
            stream.push(("mark", token))

        def synchronize(self):
            token = self.token
            self.gpu.run_until(lambda: token is None or token["done"])

    class _Stream:
        def __init__(self, gpu, name):
            self.gpu, self.name, self.ops = gpu, name, []

        def push(self, op):
            with self.gpu.lock:
                self.ops.append(op)

        def wait_event(self, event):
            self.push(("wait", event.token))

        def synchronize(self):
            token = {"done": False}
            self.push(("mark", token))
            self.gpu.run_until(lambda: token["done"])

    NAMES = ("up", "comp", "down", "s3", "s4", "s5", "s6", "s7")

    def __init__(self, seed=0):
        self.streams = []
        self.log = []
        self.pinned_bytes = 0
        self.random = np.random.default_rng(seed)
        self.lock = threading.RLock()

    def stream(self):
        s = self._Stream(self, self.NAMES[len(self.streams)])
        self.streams.append(s)
        return s

    def event(self):
        return self._Event(self)

    def pinned(self, nbytes):
        self.pinned_bytes += nbytes
        return np.zeros(nbytes, np.uint8)

    def device_empty(self, shape, dtype, stream):
        return self.Buf(shape, dtype)

    def upload(self, dst, src, stream):
        stream.push(("run", lambda: (np.copyto(dst.data, src), self.log.append("up"))))

    def launch(self, func, x, stream):
        out = self.Buf(x.shape, x.dtype)
        stream.push(("run", lambda: (np.copyto(out.data, func(x.data)), self.log.append("comp"))))
        return out

    def download(self, dst, src, stream):
        stream.push(("run", lambda: (np.copyto(dst, src.data), self.log.append("down"))))

    def stack(self, images, stream):
        n = len(images)
        out = self.Buf((n,) + tuple(images[0].shape), images[0].dtype)

        def run():
            for i, img in enumerate(images):
                out.data[i] = img.data
            self.log.append("stack")

        stream.push(("run", run))
        return out

    def from_host(self, img, stream):
        out = self.Buf(img.shape, img.dtype)
        copy = np.array(img)
        stream.push(("run", lambda: np.copyto(out.data, copy)))
        return out

    def to_host(self, x, stream):
        stream.synchronize()
        return np.array(x.data)

    def run_until(self, done):
        with self.lock:
            while not done():
                runnable = [
                    s for s in self.streams
                    if s.ops and not (s.ops[0][0] == "wait" and s.ops[0][1] is not None
                                      and not s.ops[0][1]["done"])
                ]
                if not runnable:
                    raise AssertionError("deadlock: no stream can make progress")
                s = runnable[self.random.integers(len(runnable))]  # any order the waits allow
                kind, arg = s.ops.pop(0)
                if kind == "mark":
                    arg["done"] = True
                elif kind == "run":
                    arg()


class FakeJpegCodec:
    """A stand-in for :class:`gpuenhance.batch.codecs.NvImageCodec` on a :class:`FakeGPU`:
    decodes with OpenCV into lazily filled device buffers on the decode stream, and encodes
    with OpenCV once the encode stream has produced the images.

    *decode_fails* / *encode_fails*: file contents (bytes) whose decode / encode returns None,
    as nvImageCodec does for an image it cannot handle; *ignore_orientation*: return images as
    stored (a decoder that does not apply EXIF orientation).
    """

    def __init__(self, gpu, *, decode_fails=(), encode_fails=(), ignore_orientation=False):
        self.gpu = gpu
        self.decode_fails = set(decode_fails)
        self.encode_fails = list(encode_fails)  # images (arrays) whose encode fails
        self.ignore_orientation = ignore_orientation
        self.decoded = 0
        self.encoded = 0

    @staticmethod
    def accepts(encoded):
        from gpuenhance.batch.codecs import NvImageCodec

        return NvImageCodec.accepts(encoded)

    def decode(self, datas, stream):
        import cv2

        from gpuenhance._metadata import read_metadata, upright

        out = []
        for data in datas:
            data = bytes(data)
            if data in self.decode_fails:
                out.append(None)
                continue
            img = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR),
                               cv2.COLOR_BGR2RGB)
            if not self.ignore_orientation:
                img = upright(img, read_metadata(data).orientation)
            buf = FakeGPU.Buf(img.shape, img.dtype)
            stream.push(("run", lambda buf=buf, img=img: np.copyto(buf.data, img)))
            out.append(buf)
            self.decoded += 1
        return out

    def encode(self, images, quality, stream):
        import cv2

        stream.synchronize()
        out = []
        for img in images:
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img.data, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
            data = buf.tobytes()
            out.append(None if self.encode_fails and self._fails(img) else data)
            self.encoded += 1
        return out

    def _fails(self, img):
        return any(np.array_equal(img.data, f) for f in self.encode_fails)
