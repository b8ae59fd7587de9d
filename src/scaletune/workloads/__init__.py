"""What a trial runs: one small interface (`Workload`) and three kinds.

- `LMWorkload`: the built-in transformer LM (``workload = "lm"``, `scaletune.train.run_lm`);
- `FunctionWorkload`: a Python function ``fn(config, report) -> dict`` (``workload = "package.module:fn"``);
- `CommandWorkload`: any program, from a command template (``[workload] command = "..."``); it reports
  through `scaletune.reporting` or its stdout.

A study calls ``validate(configs)``, ``count_params(scale)``, ``run(config, report, label)``,
``schedule_spec(config)`` and reads ``resources`` (CPUs and GPUs per trial). Workloads know nothing of
studies; `scaletune.study` imports this package, never the reverse.

    >>> from scaletune.workloads import CommandWorkload
    >>> CommandWorkload("python train.py --lr={lr} --tokens={D}").render({"lr": 0.001, "D": 2e5})
    'python train.py --lr=0.001 --tokens=200000'
"""

from scaletune.workloads._base import Report, Resources, Workload, import_function
from scaletune.workloads._command import CommandWorkload
from scaletune.workloads._devices import detect_devices, device_groups
from scaletune.workloads._function import FunctionWorkload
from scaletune.workloads._lm import LMWorkload

__all__ = [
    "CommandWorkload",
    "FunctionWorkload",
    "LMWorkload",
    "Report",
    "Resources",
    "Workload",
    "detect_devices",
    "device_groups",
    "import_function",
]
