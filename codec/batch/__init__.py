"""Many files as one job: the plan, the coding of each file, the runners, one summary.

The CLI's `compress` and `decompress` plan here (`expand`, `plan`, `check_writable`), pick a
runner (`InProcess`, `ProcessPool`, or `aecodec.ray.RayRunner`) and `run` the job. Outputs
are written atomically (`imageio.write_atomic`), so a killed run leaves only complete files and
`skip_existing` resumes it; one bad file becomes one failed `Outcome` and the rest carry on.
`aecodec.ray` codes with the same `Coder`. Nothing here imports `aecodec.ray` or draws on the
terminal (progress and summary lines are the CLI's, codec/cli_report.py).

    fileio.py    reading inputs, writing outputs; `-` is stdin/stdout
    planning.py  which files, written where; resume (fileio)
    coder.py     `Settings`, `Coder`: one file's bytes to its output bytes (fileio)
    outcome.py   one file checked, coded, written into place: its `Outcome` (coder, fileio)
    runners.py   `Runner`, `InProcess`, `ProcessPool`, the worker processes (coder, outcome,
                 planning)
    job.py       `run`: resume, a runner's outcomes, `Summary`, Ctrl-C (coder, outcome,
                 planning, runners)
"""

from .coder import Coded, Coder, Mode, Settings, error_text, loss_notes
from .fileio import occupied, read, write
from .job import Summary, run
from .outcome import Outcome, code_file, done_line, finish, output_format
from .planning import DECODED, FILE_SUFFIXES, SUFFIX, Pair, check_writable, expand, plan, resume
from .runners import InProcess, ProcessPool, Runner, cpu_count, exit_on_sigterm, process

__all__ = [
    "DECODED", "FILE_SUFFIXES", "SUFFIX", "Coded", "Coder", "InProcess", "Mode", "Outcome", "Pair",
    "ProcessPool", "Runner", "Settings", "Summary", "check_writable", "code_file",
    "cpu_count", "done_line", "error_text", "exit_on_sigterm", "expand", "finish",
    "loss_notes", "occupied", "output_format", "plan", "process", "read", "resume", "run",
    "write",
]
