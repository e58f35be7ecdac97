"""The render farm: flipbook's jobs on Ray actors, one per GPU (or a chosen number of CPU actors).

- :mod:`flipbook.farm.segments`: where a job splits (pure).
- :mod:`flipbook.farm.worker`: :class:`FrameWorker`, the actor: renders a run of a job's frames with its
  loaded model kept between tasks, streaming each frame back as PNG bytes.
- :mod:`flipbook.farm.farm`: :class:`Farm`, the driver on the head node: connects to (or starts) Ray, keeps
  the actors and sends a job's segments to them, preferring an actor that has the job's checkpoint loaded;
  writes every frame into the run folder (atomically, once), re-runs the unfinished frames of an actor that
  died, aggregates progress and cancels through the job's ``Events``, and finishes the run (outputs) with
  ``resume()``, which finds every frame on disk. Work that is not a spec's render but splits the same way
  (a still request's batches) runs through :meth:`Farm.run_units`: the actor calls the function the work
  names, and the head receives each unit.

Ray is imported only here (the ``farm`` extra).
"""
