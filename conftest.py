"""Loaded by every pytest run in this checkout, whichever paths it is given: the notebooks under
test (nbval kernels inherit this environment) write their results and figures into a temporary
folder, never into the user's results/ and figures/, and always compute."""
import os
import tempfile

_SCRATCH = tempfile.mkdtemp(prefix="lshkit-tests-")
os.environ.setdefault("LSHKIT_RESULTS_DIR", os.path.join(_SCRATCH, "results"))
os.environ.setdefault("LSHKIT_FIGURES_DIR", os.path.join(_SCRATCH, "figures"))


def pytest_collection_modifyitems(config, items):
    """A notebook that trains on real data at its stored default names it in its metadata
    (``"lshkit": {"data": ["ptb"]}``). Where that data can be neither found nor downloaded, its
    cells are skipped with the reason, so the README's test command passes offline without the
    data setting; CI sets it, and they run."""
    import json
    from pathlib import Path

    import pytest

    reasons = {}
    for item in items:
        path = Path(str(item.fspath))
        if path.suffix != ".ipynb":
            continue
        if path not in reasons:
            needs = json.loads(path.read_text(encoding="utf-8"))["metadata"].get("lshkit", {}).get("data", [])
            reasons[path] = _unavailable(needs)
        if reasons[path]:
            item.add_marker(pytest.mark.skip(reason=reasons[path]))


def _unavailable(names) -> str:
    from lshkit.data import DATA_DIR_ENV, load_corpus

    for name in names:
        try:
            load_corpus(name)
        except FileNotFoundError as err:
            return f"{name} is neither found nor downloadable (set {DATA_DIR_ENV}): {str(err).splitlines()[0]}"
    return ""
