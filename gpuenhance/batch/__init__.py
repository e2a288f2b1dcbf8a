"""The batch layer: image files in, image files out.

It sits above the public ops and below the command line and :mod:`gpuenhance.dask`:

- :mod:`~gpuenhance.batch.plan` — before any work: the engine, the output folder's checks, the
  inputs and their outputs (refusing unsafe ones), tile and encoder settings;
- :mod:`~gpuenhance.batch.outdir` — the output folder's lock and the sweep of gpuenhance's own
  temporary files;
- :mod:`~gpuenhance.batch.codecs` — decoding and encoding: OpenCV on CPU threads, nvImageCodec on
  the GPU;
- :mod:`~gpuenhance.batch.staging` — how batches are computed: at once, on a thread pool, or
  staged through pinned memory and streams on a GPU;
- :mod:`~gpuenhance.batch.runner` — the read, batch, compute, write loop and a whole run;
- :mod:`~gpuenhance.batch.manifest` and :mod:`~gpuenhance.batch.report` — what finished, for
  ``--resume``, and what a run did.

:meth:`gpuenhance.Pipeline.run_files` is the public entry point.
"""
