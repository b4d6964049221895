import numpy as np
import pandas as pd

from deepem.io.coords import X, Y
from deepem.io.micrograph import write_mrc
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


def test_low_score_negatives_are_at_most_as_many_as_the_confident_picks_left_after_outliers(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.normal(0, 1, (600, 600)).astype(np.float32)
    image[:, 450:] += 8  # thick ice on the right: confident picks there are outliers
    write_mrc(tmp_path / "m.mrc", image, 1.0)
    table = pd.DataFrame({"name": ["m"], "source": ["/d/m.mrc"], "dir": [str(tmp_path)], "scale_x": [1.0],
                          "scale_y": [1.0]}).set_index("name", drop=False)
    plain = np.column_stack([np.linspace(100, 350, 12), np.full(12, 300.0)])
    on_ice = np.column_stack([np.full(4, 520.0), np.linspace(100, 500, 4)])
    low = np.column_stack([np.linspace(100, 350, 15), np.full(15, 500.0)])
    xy = np.concatenate([plain, on_ice, low])
    scores = np.concatenate([np.full(16, 0.9), np.linspace(0.05, 0.2, 15)])
    out = verify({"m": (xy, scores)}, table, threshold=0.5, particle_px=20, diameter_px=20)
    counts = out[VERDICT].value_counts()
    assert counts["confident"] == 12 and counts["outlier"] == 4
    assert counts["low_score"] == 12  # not 16: the outliers are not confident
