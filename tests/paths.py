"""Where the tests' files are: the test folder (its data/ and fixtures/) and the repository root. Test modules live
in subfolders that mirror the package, so they name these instead of counting parents of ``__file__``."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
DATA = TESTS / "data"
