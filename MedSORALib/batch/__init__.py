"""Cohort scoring behind ``medsora batch``: many (CT, segmentation, symptom) rows, on one machine or a Dask cluster.

- :mod:`.manifest`: the CSV manifest, its rows grouped by CT (a CT's organs are
  read and measured once, on one worker, for all of its rows);
- :mod:`.rows`: one CT's rows, the unit of work (skip the rows already done,
  score the others through the process's scoring session, write each row's
  files and its record);
- :mod:`.runner`: runs the groups in this process or on Dask ``distributed``
  (a local cluster or an existing scheduler) and reports progress;
- :mod:`.lock`: one batch per output folder at a time;
- :mod:`.summary`: ``summary.csv`` (spreadsheet-safe), ``summary.parquet`` and
  ``summary.json``.

The output folder holds, next to the row files and the summaries, a hidden
folder ``.medsora-batch/`` with the lock, one record per finished row (input
checksums, model version, files) and a staging area for files being written.
"""

#: Hidden folder of a batch's bookkeeping inside its output folder.
STATE_DIR = ".medsora-batch"
