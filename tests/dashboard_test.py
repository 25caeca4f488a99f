"""Optuna's dashboard (``optuna-dashboard``, the ``dashboard`` extra) on a finished digits
sweep's study: started on its journal file on a free loopback port, it serves each stage's
study (``sweep.stage<s>``) with every trial and its params over its HTTP API, as trials.csv
holds them; then it is stopped."""

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

import pytest
from absl.testing import absltest

from configs import digits_sweep
from lib import search
from tests.distributed_test import clean_env, free_port

pytestmark = pytest.mark.slow  # whole experiments in several processes


WAIT_S = 60  # for the dashboard to answer


def _sweep(workdir: str) -> None:
    """A small digits sweep: 8 trials of 1 epoch, then 4 of 2."""
    c = digits_sweep.get_config()
    c.train.batch_size, c.train.train_eval_size = 100, 200
    c.search.stages, c.search.trials_per_batch = "8x1,4x2", 4
    search.run_search(c, workdir)


class DashboardTest(absltest.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if shutil.which("optuna-dashboard", path=os.path.dirname(sys.executable)) is None:
            if os.environ.get("CI") == "true":
                raise AssertionError('optuna-dashboard is missing: pip install -e ".[test]"')
            raise unittest.SkipTest('optuna-dashboard is missing: pip install -e ".[dashboard]"')
        cls.workdir = tempfile.mkdtemp(prefix="dashboard_")
        _sweep(cls.workdir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.workdir, ignore_errors=True)
        super().tearDownClass()

    def _serve(self, storage: str) -> str:
        """Starts the dashboard on ``storage`` (stopped at the end of the test); its URL."""
        port = free_port()
        program = os.path.join(os.path.dirname(sys.executable), "optuna-dashboard")
        with open(os.path.join(self.workdir, "dashboard.log"), "w") as log:
            proc = subprocess.Popen(
                [program, storage, "--host", "127.0.0.1", "--port", str(port)],
                env=clean_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.addCleanup(proc.wait, timeout=WAIT_S)
        self.addCleanup(proc.terminate)
        url, deadline = f"http://127.0.0.1:{port}", time.time() + WAIT_S
        while True:
            try:
                self._get(url, "/api/studies")
                return url
            except (urllib.error.URLError, ConnectionError):
                self.assertIsNone(proc.poll(), self._log())
                self.assertLess(time.time(), deadline, self._log())
                time.sleep(0.2)

    def _log(self) -> str:
        with open(os.path.join(self.workdir, "dashboard.log")) as f:
            return f.read()[-3000:]

    def _get(self, url: str, path: str) -> dict:
        with urllib.request.urlopen(url + path, timeout=10) as response:
            return json.load(response)

    def test_the_dashboard_serves_each_stages_trials_and_params(self):
        url = self._serve(os.path.join(self.workdir, "study.journal"))
        studies = self._get(url, "/api/studies")["study_summaries"]
        self.assertEqual([s["study_name"] for s in studies], ["sweep.stage0", "sweep.stage1"])
        with open(os.path.join(self.workdir, "trials.csv")) as f:
            rows = list(csv.DictReader(f))
        for stage, summary in enumerate(studies):
            detail = self._get(url, f"/api/studies/{summary['study_id']}")
            served = {
                t["number"]: {p["name"]: p["param_internal_value"] for p in t["params"]}
                for t in detail["trials"]
                if t["state"] == "Complete"
            }
            expected = {
                int(r["trial"]): {k: float(r[k]) for k in ("learning_rate", "reg")}
                for r in rows
                if int(r["stage"]) == stage
            }
            self.assertLen(expected, (8, 4)[stage])
            self.assertEqual(served, expected, stage)


if __name__ == "__main__":
    absltest.main()
