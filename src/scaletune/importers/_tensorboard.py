"""TensorBoard event files -> `RawRun` records, read with TensorBoard's own `EventAccumulator`.

A run is a folder holding event files (found recursively). Folders with event files nested inside a run
belong to it: `SummaryWriter.add_hparams` writes its hparams (and metric) into such a sub-folder. Scalars
are read in both encodings (``simple_value``, as PyTorch and tensorboardX write them, and scalar tensors, as
TF2 and `tensorboard.summary.Writer` write them). Hyperparameters come from the hparams plugin data and
from a ``config.json`` / ``hparams.yaml`` (or ``.yml``, ``config.yaml``, ``hparams.json``) beside the events.
The metrics given to ``add_hparams`` are final values (the summary), not curves.
"""

from __future__ import annotations

import json
from pathlib import Path

from scaletune.errors import ScaletuneError
from scaletune.importers._core import RawRun, flatten, series_from_points

CONFIG_FILES = ("config.json", "hparams.json", "config.yaml", "config.yml", "hparams.yaml", "hparams.yml")


def _is_event_file(path: Path) -> bool:
    return path.is_file() and "tfevents" in path.name


def discover(paths) -> list[tuple[str, Path, list[Path]]]:
    """(run id, run folder, event folders) for every run under ``paths``; the id is the folder's path relative
    to the PATH it was found under (prefixed with that PATH's name when several are given)."""
    runs = []
    for given in map(Path, paths):
        if not given.exists():
            raise ScaletuneError(f"{given}: no such file or directory")
        if given.is_file():
            if not _is_event_file(given):
                raise ScaletuneError(f"{given}: not a TensorBoard event file (events.out.tfevents.*)")
            given = given.parent
            folders = [given]
        else:
            folders = sorted({f.parent for f in given.rglob("*tfevents*") if f.is_file()})
        if not folders:
            raise ScaletuneError(f"{given}: no TensorBoard event files (events.out.tfevents.*) under it")
        roots: dict[Path, list[Path]] = {}
        for folder in folders:  # sorted, so a run folder comes before the folders nested in it
            owner = next((r for r in roots if r in folder.parents), None)
            roots.setdefault(owner or folder, []).append(folder)
        for root, members in roots.items():
            rel = root.relative_to(given).as_posix()
            name = given.resolve().name if rel == "." else rel
            if len(paths) > 1 and rel != ".":
                name = f"{given.resolve().name}/{rel}"
            runs.append((name, root, members))
    return runs


def _read_config_file(path: Path, notes: list[str]) -> dict:
    text = path.read_text(errors="replace")
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            class _Loader(yaml.SafeLoader):
                """Safe loading that reads python-specific tags (Lightning's hparams.yaml) as plain values."""

            _Loader.add_multi_constructor(
                "",
                lambda loader, suffix, node: (
                    loader.construct_mapping(node)
                    if isinstance(node, yaml.MappingNode)
                    else loader.construct_sequence(node)
                    if isinstance(node, yaml.SequenceNode)
                    else loader.construct_scalar(node)
                ),
            )
            data = yaml.load(text, Loader=_Loader)
    except Exception as exc:  # noqa: BLE001 -- any parse error: the run's logged values are still good
        notes.append(f"{path.name} not read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
        return {}
    if not isinstance(data, dict):
        notes.append(f"{path.name} not read (not a mapping)")
        return {}
    return flatten(data)


def _read_folder(folder: Path, config: dict, series: dict, metrics: set, walls: list, notes: list[str]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata as hp_metadata
    from tensorboard.util import tensor_util

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    try:
        acc.Reload()
    except Exception as exc:  # noqa: BLE001 -- tensorboard's DataLossError, protobuf errors for corrupt files
        raise ScaletuneError(f"{folder}: cannot read its event files ({type(exc).__name__}: {exc})") from None
    tags = acc.Tags()
    found: dict[str, list] = {}
    for tag in tags.get("scalars", []):
        events = acc.Scalars(tag)
        found[tag] = [(e.step, e.value) for e in events]
        walls += [e.wall_time for e in events]
    for tag in tags.get("tensors", []):
        if acc.SummaryMetadata(tag).plugin_data.plugin_name != "scalars":
            continue
        events = acc.Tensors(tag)
        found[tag] = [(e.step, float(tensor_util.make_ndarray(e.tensor_proto).item())) for e in events]
        walls += [e.wall_time for e in events]
    for tag, points in found.items():
        if tag in series:
            notes.append(f"{tag} logged in {folder.name} and an enclosing folder: the enclosing one kept")
            continue
        series[tag] = series_from_points(points)
    try:
        content = acc.PluginTagToContent(hp_metadata.PLUGIN_NAME)
    except KeyError:
        return
    for tag, blob in content.items():
        if tag == hp_metadata.EXPERIMENT_TAG:  # add_hparams' metric_dict: final values, logged once at step 0
            metrics.update(m.name.tag for m in hp_metadata.parse_experiment_plugin_data(blob).metric_infos)
        if tag != hp_metadata.SESSION_START_INFO_TAG:
            continue
        info = hp_metadata.parse_session_start_info_plugin_data(blob)
        for name, value in info.hparams.items():
            kind = value.WhichOneof("kind")
            config[name] = None if kind in (None, "null_value") else getattr(value, kind)


def read_runs(paths, mapping: dict[str, str]) -> list[RawRun]:
    """Every TensorBoard run under ``paths`` as a `RawRun` (scalars as series; hparams and config files as config)."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise ScaletuneError("reading TensorBoard logs needs tensorboard: pip install 'scaletune[importers]'") from None
    if "step" in mapping:
        raise ScaletuneError("mapping step=...: does not apply to TensorBoard, where each scalar carries its own step")
    runs = []
    for run_id, root, folders in discover(paths):
        notes: list[str] = []
        config: dict = {}
        for name in CONFIG_FILES:
            if (root / name).is_file():
                config.update(_read_config_file(root / name, notes))
        series: dict = {}
        metrics: set[str] = set()
        walls: list[float] = []
        for folder in folders:
            _read_folder(folder, config, series, metrics, walls, notes)
        summary = {tag: float(series.pop(tag)[1][-1]) for tag in metrics if tag in series}
        run = RawRun(run_id=run_id, source=str(root), config=config, summary=summary, series=series, notes=notes)
        if len(walls) > 1:
            run.seconds, run.seconds_from = max(walls) - min(walls), "derived:wall time from first to last scalar"
        runs.append(run)
    return runs
