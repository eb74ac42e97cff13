"""The Python package against independent answers: pede's millepede.res for the sl0 reference
problem (from the steering's files and from records read into memory), a two-plane telescope's
analytic answer, Mille files written and read back, and the errors a user meets."""
import math
import os
import pathlib
import shutil

import numpy as np
import pytest

import gpede

ROOT = pathlib.Path(__file__).resolve().parents[2]
REFERENCE = pathlib.Path(os.environ.get("GPEDE_REFERENCE_DIR", ROOT.parent / "shared" / "reference"))
SL0 = REFERENCE / "sl0"
need_sl0 = pytest.mark.skipif(not (SL0 / "pede" / "inversion" / "millepede.res").is_file(),
                              reason=f"pede's reference problems not found in {REFERENCE}")


def read_res(path):
    """label -> the numbers after it, from a millepede.res."""
    out = {}
    for line in pathlib.Path(path).read_text().splitlines()[1:]:
        fields = line.split()
        if fields:
            out[int(fields[0])] = [float(x) for x in fields[1:]]
    return out


def expect_pede_sl0(result):
    """Every label against pede's millepede.res: the value within 1 % of its error (or half a unit
    of the 5 printed digits), the error within 1e-3 relative."""
    pede = read_res(SL0 / "pede" / "inversion" / "millepede.res")
    assert sorted(pede) == result.labels.tolist()
    compared = 0
    for i, label in enumerate(result.labels):
        columns = pede[int(label)]
        printed = 5e-5 * abs(columns[0])
        if len(columns) < 4:  # fixed by the entries cut: no error column
            assert not result.variable[i]
            assert abs(result.values[i] - columns[0]) <= printed + 1e-12
            continue
        assert result.variable[i]
        assert abs(result.values[i] - columns[0]) <= max(0.01 * columns[3], printed) + 1e-12, label
        assert abs(result.errors[i] - columns[3]) <= 1.05e-3 * columns[3], label
        compared += 1
    return compared


@pytest.fixture
def sl0_folder(tmp_path):
    for name in ("mp2con.txt", "mp2tst.bin.gz"):
        (tmp_path / name).symlink_to(SL0 / name)
    shutil.copy(SL0 / "pede" / "inversion" / "steer.txt", tmp_path / "steer.txt")
    return tmp_path


@need_sl0
def test_sl0_from_the_steering_files_agrees_with_pede(sl0_folder):
    steering = gpede.Steering(sl0_folder / "steer.txt")
    assert steering.method == "inversion"
    lines = []
    result = gpede.solve(steering, threads=1, log=lines.append)
    assert result.exit_code == 1, result.message  # pede's too: "Ended with warnings (bad measurements)"
    assert result.message == "Ended with warnings (bad measurements)"
    assert expect_pede_sl0(result) > 600
    assert any(line.startswith(" it 0  fc 1") for line in lines)
    # pede's result files, written whole.
    result.write(steering, sl0_folder / "out")
    written = read_res(sl0_folder / "out" / "millepede.res")
    assert sorted(written) == result.labels.tolist()
    assert (sl0_folder / "out" / "millepede.end").read_text().split()[0] == "1"


@need_sl0
def test_sl0_from_records_in_memory_agrees_with_pede(sl0_folder):
    records = gpede.read_mille(SL0 / "mp2tst.bin.gz", fortran=True)
    assert len(records) > 1000
    # The same steering without its binary file: the records come from memory.
    (sl0_folder / "memory.txt").write_text(f"{SL0 / 'mp2con.txt'}\nmethod inversion 3 0.001\nend\n")
    steering = gpede.Steering(sl0_folder / "memory.txt")
    assert steering.binary_files == []
    result = gpede.solve(steering, records, threads=1)
    assert result.records_read == len(records)
    assert expect_pede_sl0(result) > 600
    p = result.parameter(int(result.labels[0]))
    assert p["label"] == result.labels[0] and p["value"] == result.values[0]
    with pytest.raises(KeyError):
        result.parameter(999999)


def telescope(n, step=0.01):
    """Two planes seen by each track (y = t + s_plane, sigma 1); plane 1 fixed by the steering."""
    records = gpede.Records()
    differences = []
    for r in range(n):
        t = step * r - 0.2
        d = 0.3 + 0.002 * ((r * 7) % 11 - 5)
        records.add_record(measurements=[t, t + d], sigmas=[1.0, 1.0], local=np.ones((2, 1)),
                           global_derivatives=np.array([[1.0, 0.0], [0.0, 1.0]]), labels=[1, 2])
        differences.append(d)
    return records, np.mean(differences)


def test_a_two_plane_telescope_gives_the_analytic_answer(tmp_path):
    (tmp_path / "steer.txt").write_text("Parameter\n1 0.0 -1.0\n2 0.0 0.0\nmethod inversion 1 0.1\nend\n")
    n = 50
    records, mean = telescope(n)
    result = gpede.solve(gpede.Steering(tmp_path / "steer.txt"), records, threads=1)
    assert result.exit_code < 10, result.message
    assert result.labels.tolist() == [1, 2]
    assert not result.variable[0]
    assert result.values[1] == pytest.approx(mean, abs=1e-12)
    assert result.errors[1] == pytest.approx(math.sqrt(2.0 / n), abs=1e-12)  # each track adds 1/2


def test_mille_files_written_and_read_back(tmp_path):
    records = gpede.Records()
    records.add_measurement([1.0, 0.5], [2.0, 0.0, -1.0], [10, 11, 12], 0.25, 0.1)
    records.add_measurement([1.0, -0.5], [], [], -0.5, 0.2)
    records.end_record()
    records.add_record([0.1], [0.3], np.array([[2.0]]), np.array([[1.5]]), [7])
    for precision in ("single", "double"):
        path = tmp_path / f"records-{precision}.bin"
        gpede.write_mille(path, records, precision=precision)
        back = gpede.read_mille(path)
        assert len(back) == 2 and back.measurements == 3
        first = back.record(0)
        assert first["labels"].tolist() == [10, 12]  # the zero derivative is left out
        tolerance = 1e-7 if precision == "single" else 0.0
        np.testing.assert_allclose(first["global_derivatives"], [[2.0, -1.0], [0.0, 0.0]], atol=tolerance)
        np.testing.assert_allclose(first["local"], [[1.0, 0.5], [1.0, -0.5]], atol=tolerance)
        np.testing.assert_allclose(first["measurements"], [0.25, -0.5], atol=tolerance)
        np.testing.assert_allclose(first["sigmas"], [0.1, 0.2], rtol=1e-7)
        assert back.record(-1)["labels"].tolist() == [7]
    with pytest.raises(IndexError):
        records.record(2)


def test_bad_records_are_refused_with_the_record_named():
    records = gpede.Records()
    records.add_record([0.1], [1.0], np.ones((1, 1)), np.ones((1, 1)), [3])
    with pytest.raises(gpede.InputError) as refused:
        records.add_record([0.1, 0.2], [1.0, 0.0], np.ones((2, 1)), np.ones((2, 1)), [3])
    assert "record 2, measurement 2: sigma 0.000000 is not positive and finite" in str(refused.value)
    assert refused.value.exit_code == 20
    with pytest.raises(gpede.InputError, match="label -4 is not positive"):
        records.add_measurement([1.0], [1.0], [-4], 0.0, 1.0)
    with pytest.raises(gpede.InputError, match="record 2 has no measurements"):
        records.end_record()
    with pytest.raises(ValueError, match="labels must have shape"):
        records.add_record([0.1], [1.0], np.ones((1, 1)), np.ones((1, 2)), [3])
    assert len(records) == 1


def test_steering_and_run_errors(tmp_path):
    with pytest.raises(gpede.InputError, match="does not exist"):
        gpede.Steering(tmp_path / "missing.txt")
    (tmp_path / "steer.txt").write_text("method inversion 1 0.1\nend\n")
    steering = gpede.Steering(tmp_path / "steer.txt")
    with pytest.raises(ValueError, match="backend must be"):
        gpede.solve(steering, gpede.Records(), backend="tpu")


def test_the_log_callback_can_stop_a_run(tmp_path):
    (tmp_path / "steer.txt").write_text("Parameter\n1 0.0 -1.0\nmethod inversion 1 0.1\nend\n")
    records, _ = telescope(50)
    steering = gpede.Steering(tmp_path / "steer.txt")
    with pytest.raises(gpede.Interrupted):
        gpede.solve(steering, records, log=lambda line: True)

    def fails(line):
        raise KeyError("from the callback")

    with pytest.raises(KeyError, match="from the callback"):
        gpede.solve(steering, records, log=fails)


def test_version():
    assert gpede.__version__ == gpede.version()
    assert gpede.version().count(".") == 2


def three_plane_records(n):
    """Planes 1, 2, 3 seen by every track (y = t + s_plane, sigma 1)."""
    records = gpede.Records()
    for r in range(n):
        t = 0.01 * r
        y = [t, t + 0.1 + 0.001 * ((2 * r) % 5 - 2), t - 0.1 + 0.001 * ((3 * r) % 5 - 2)]
        records.add_record(y, [1.0] * 3, np.ones((3, 1)), np.eye(3), [1, 2, 3])
    return records


@pytest.mark.parametrize("method", ["inversion", "diagonalization", "decomposition"])
def test_the_covariance_block_is_the_analytic_one(tmp_path, method):
    # With plane 1 fixed, N tracks give (s2, s3) the covariance [[2, 1], [1, 2]] / N.
    (tmp_path / "steer.txt").write_text(f"Parameter\n1 0.0 -1.0\nmethod {method} 1 0.1\nend\n")
    n = 40
    result = gpede.solve(gpede.Steering(tmp_path / "steer.txt"), three_plane_records(n), covariance=[3, 2])
    labels, matrix = result.covariance
    assert labels.tolist() == [3, 2]
    np.testing.assert_allclose(matrix, np.array([[2.0, 1.0], [1.0, 2.0]]) / n, atol=1e-12)
    np.testing.assert_allclose(result.correlations, [[1.0, 0.5], [0.5, 1.0]], atol=1e-12)
    everything = gpede.solve(gpede.Steering(tmp_path / "steer.txt"), three_plane_records(n), covariance=True)
    assert everything.covariance[0].tolist() == [2, 3]


def test_diagonalization_gives_its_eigenvectors(tmp_path):
    (tmp_path / "steer.txt").write_text("Parameter\n1 0.0 -1.0\nmethod diagonalization 1 0.1\nend\n")
    n = 40
    result = gpede.solve(gpede.Steering(tmp_path / "steer.txt"), three_plane_records(n))
    # The global matrix of (s2, s3) is N [[2, -1], [-1, 2]] / 3: eigenvalues N/3 and N.
    np.testing.assert_allclose(np.sort(result.eigenvalues), [n / 3.0, n], rtol=1e-12)
    which, vectors = result.eigenvectors
    assert result.variable_labels.tolist() == [2, 3]
    assert vectors.shape == (len(which), 2)
    for k, v in zip(which, vectors):
        if result.eigenvalues[k] == pytest.approx(n / 3.0):
            np.testing.assert_allclose(abs(v), [2 ** -0.5, 2 ** -0.5], atol=1e-12)


def test_progress_reports_each_phase_and_can_stop_the_run(tmp_path):
    (tmp_path / "steer.txt").write_text("Parameter\n1 0.0 -1.0\nmethod inversion 2 0.1\nend\n")
    steering = gpede.Steering(tmp_path / "steer.txt")
    records = three_plane_records(40)
    calls = []
    result = gpede.solve(steering, records, progress=calls.append)
    assert result.exit_code < 10
    finished = [c for c in calls if c["finished"]]
    phases = [c["phase"] for c in finished]
    assert phases[0] == "reading" and "matrix" in phases and "solving" in phases
    for c in finished:
        if c["phase"] in ("reading", "matrix", "local fits"):
            assert c["records_done"] == 40
        assert c["seconds_left"] == 0.0
    with pytest.raises(gpede.Interrupted, match="progress callback"):
        gpede.solve(steering, records, progress=lambda p: p["phase"] == "matrix")


@need_sl0
def test_a_steering_written_back_gives_the_same_answer(sl0_folder):
    original = gpede.Steering(sl0_folder / "steer.txt")
    (sl0_folder / "again").mkdir()
    original.write(sl0_folder / "again" / "steer.txt")
    again = gpede.Steering(sl0_folder / "again" / "steer.txt")
    assert "Constraint" in again.text() and again.method == "inversion"
    assert expect_pede_sl0(gpede.solve(again, threads=1)) > 600
