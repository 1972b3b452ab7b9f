"""Issue 13, item 9: the retraining workflow tells a real change of the metrics from seed noise.

On fabricated summaries: the committed dcgan FID 58.7 +- 15 against 56.9 +- 12 (another CPU type, same data)
is within seed noise; a strategy that moves by many standard errors is a real change.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aegan.metrics_diff import GONE, NEW, NO_SPREAD, REAL, WITHIN, judge, main


def summary(fid: dict[str, tuple[float, float, int]], floor: float) -> dict:
    out = {s: {"fid": {"mean": m, "std": sd, "n": n}, "fid_minus_dcgan": {"mean": m - fid["dcgan"][0]}}
           for s, (m, sd, n) in fid.items()}  # fmt: skip
    out["reference"] = {"real_vs_real": {"fid": floor}}
    return out


BEFORE = summary({"dcgan": (58.7, 15.0, 3), "ae_init": (30.0, 1.0, 3), "vaegan": (80.0, 5.0, 1),
                  "ae_disc": (10.0, 0.0, 3), "gone": (1.0, 1.0, 3)}, 3.75)  # fmt: skip
AFTER = summary({"dcgan": (56.9, 12.0, 3), "ae_init": (50.0, 1.5, 3), "vaegan": (70.0, 6.0, 3),
                 "ae_disc": (10.0, 0.0, 3), "new": (5.0, 1.0, 3)}, 3.83)  # fmt: skip


def dvc_diff(before: dict, after: dict, file: str = "reports/summary.json") -> dict:
    """What `dvc metrics diff --all --json` prints: flattened keys, old/new/diff."""

    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            out |= flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
        return out

    old, new = flat(before), flat(after)
    return {file: {k: {"old": old.get(k), "new": new.get(k),
                       "diff": None if old.get(k) is None or new.get(k) is None else new[k] - old[k]}
                   for k in old.keys() | new.keys()}}  # fmt: skip


def test_each_mean_is_labelled_noise_or_real_change():
    judged, unjudged = judge(dvc_diff(BEFORE, AFTER))
    verdicts = {v.metric.split(": ")[1]: v for v in judged}
    assert {k: v.verdict for k, v in verdicts.items()} == {
        "dcgan.fid": WITHIN, "ae_init.fid": REAL, "vaegan.fid": NO_SPREAD, "ae_disc.fid": WITHIN,
        "gone.fid": GONE, "new.fid": NEW}  # fmt: skip
    # 2 x sqrt(15^2/3 + 12^2/3): the noise a re-run on another CPU type may show
    assert verdicts["dcgan.fid"].noise == pytest.approx(2 * ((225 + 144) / 3) ** 0.5)
    changed = {v.metric.split(": ")[1] for v in unjudged}
    assert "reference.real_vs_real.fid" in changed and "dcgan.fid.std" not in changed
    assert "ae_disc.fid_minus_dcgan.mean" in changed  # a difference of means, without a spread of its own


def test_the_border_is_z_standard_errors():
    before = summary({"dcgan": (10.0, 3.0, 3)}, 1.0)
    se = (2 * 9 / 3) ** 0.5
    for delta, verdict in [(1.99 * se, WITHIN), (2.01 * se, REAL), (-2.01 * se, REAL)]:
        after = summary({"dcgan": (10.0 + delta, 3.0, 3)}, 1.0)
        assert judge(dvc_diff(before, after))[0][0].verdict == verdict
    after = summary({"dcgan": (10.0 + 1.5 * se, 3.0, 3)}, 1.0)
    assert judge(dvc_diff(before, after), z=1.0)[0][0].verdict == REAL


def test_cli_prints_a_table_and_refuses_other_input(tmp_path, capsys):
    path = tmp_path / "diff.json"
    path.write_text(json.dumps(dvc_diff(BEFORE, AFTER)))
    assert main([str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("**1 real change(s), 2 within seed noise**")
    assert "| reports/summary.json: ae_init.fid | 30 | 50 | 20 |" in out and "**real change**" in out
    assert "| reports/summary.json: reference.real_vs_real.fid | 3.75 | 3.83 |" in out
    path.write_text("[1, 2]")
    assert main([str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {path}: not the output of `dvc metrics diff --json`")


def test_on_real_dvc_metrics_diff_output(tmp_path):
    """The format as DVC itself prints it: two commits of a summary.json declared as metrics."""
    env = dict(os.environ, DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t", PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])  # fmt: skip

    def sh(*cmd):
        return subprocess.run(cmd, cwd=tmp_path, env=env, check=True, capture_output=True, text=True).stdout

    sh("git", "init", "-q")
    sh("dvc", "init", "-q")
    (tmp_path / "dvc.yaml").write_text("metrics:\n  - reports/summary.json\n")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "summary.json").write_text(json.dumps(BEFORE))
    sh("git", "add", "-A")
    sh("git", "commit", "-qm", "before")
    (tmp_path / "reports" / "summary.json").write_text(json.dumps(AFTER))
    judged, _ = judge(json.loads(sh("dvc", "metrics", "diff", "HEAD", "--all", "--json")))
    assert {v.metric: v.verdict for v in judged}["reports/summary.json: dcgan.fid"] == WITHIN
    assert {v.metric: v.verdict for v in judged}["reports/summary.json: ae_init.fid"] == REAL
