"""Makes the op table (tests/ops/optable) importable from the tests here (pytest runs with
--import-mode=importlib, which puts no test directory on sys.path)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
