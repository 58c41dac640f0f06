"""Loaded by every pytest run in this checkout, whichever paths it is given: the notebooks under
test (nbval kernels inherit this environment) write their results and figures into a temporary
folder, never into the user's results/ and figures/, and always compute."""
import os
import tempfile

_SCRATCH = tempfile.mkdtemp(prefix="lshkit-tests-")
os.environ.setdefault("LSHKIT_RESULTS_DIR", os.path.join(_SCRATCH, "results"))
os.environ.setdefault("LSHKIT_FIGURES_DIR", os.path.join(_SCRATCH, "figures"))
