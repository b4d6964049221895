import numpy as np
import pandas as pd

from deepem.io.coords import X, Y
from deepem.verification import NEGATIVE, POSITIVE, VERDICT, modified_z, verify


def test_user_corrections_decide_the_verdicts():
    table = pd.DataFrame({"name": ["m"], "source": ["/d/m.mrc"]}).set_index("name", drop=False)
    picks = np.array([[100.0, 100.0], [300.0, 300.0], [500.0, 500.0]])
    scores = np.array([0.9, 0.8, 0.1])
    corrected = np.array([[102.0, 99.0], [700.0, 700.0]])  # kept the first pick, added one, removed the second
    out = verify({"m": (picks, scores)}, table, threshold=0.5, particle_px=32, diameter_px=60,
                 corrections={"m": corrected})
    verdicts = dict(zip(map(tuple, out[[X, Y]].to_numpy()), out[VERDICT]))
    assert verdicts[(300.0, 300.0)] == "removed_by_user"  # above threshold, no corrected coordinate near
    assert verdicts[(102.0, 99.0)] == "confirmed" and verdicts[(700.0, 700.0)] == "added_by_user"
    assert verdicts[(500.0, 500.0)] == "uncertain"  # below threshold: neither kept nor used
    assert set(out[VERDICT]) - {"uncertain"} <= set(POSITIVE) | set(NEGATIVE)


def test_modified_z_flags_only_outliers():
    reference = np.random.default_rng(0).normal(10, 1, 500)
    z = modified_z(np.array([10.0, 11.0, 20.0]), reference)
    assert z[0] < 0.2 and 0.8 < z[1] < 1.2 and z[2] > 3.5  # one sigma is z ~ 1
