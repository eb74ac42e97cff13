#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets into tests/fuzz/corpus/{mille,steering,solve}.

The Mille files are straight-line tracks through six planes (two local parameters, offset and
slope; per measurement a shift label 10+i with derivative 1 and a scale label 20+i with the
track's position as derivative, plus two more labels in some files), written record by record as
Millepede II's Mille.cc writes C files and as gfortran writes Fortran unformatted records. The
output is deterministic (fixed random seed, gzip without a time stamp): running the script again
gives the same bytes.

    python3 tests/fuzz/make_seeds.py            # rewrites the corpus
"""

import gzip
import io
import os
import random
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
PLANES = [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]
SHIFT = [0.02, -0.01, 0.015, 0.0, -0.02, 0.005]  # misalignment of labels 11..16
SCALE = [0.001, -0.002, 0.0, 0.002, -0.001, 0.0]  # of labels 21..26
SIGMA = 0.01


def gzip_bytes(data):
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:
        f.write(data)
    return buf.getvalue()


class Record:
    """One Mille record: (value, index) pairs, pair 0 the writer's error counter."""

    def __init__(self):
        self.values = [0.0]
        self.indices = [0]

    def measurement(self, residual, local, globals_, sigma):
        self.values.append(residual)
        self.indices.append(0)
        for k, d in enumerate(local):
            if d != 0.0:
                self.values.append(d)
                self.indices.append(k + 1)
        self.values.append(sigma)
        self.indices.append(0)
        for label, d in globals_:
            if d != 0.0:
                self.values.append(d)
                self.indices.append(label)

    def special(self, floats, ints):
        """A special block: (0, 0), (-n, 0), then n pairs of user data."""
        self.values += [0.0, -float(len(floats))] + list(floats)
        self.indices += [0, 0] + list(ints)

    def c_bytes(self, double=False):
        m = len(self.values)
        n = -2 * m if double else 2 * m
        fmt = "d" if double else "f"
        return struct.pack("<i", n) + struct.pack("<%d%s" % (m, fmt), *self.values) + struct.pack(
            "<%di" % m, *self.indices)

    def fortran_bytes(self):
        m = len(self.values)
        payload = struct.pack("<i", 2 * m) + struct.pack("<%df" % m, *self.values) + struct.pack(
            "<%di" % m, *self.indices)
        return struct.pack("<i", len(payload)) + payload + struct.pack("<i", len(payload))


def tracks(n, rng, extra_globals=False):
    """n straight tracks through the misaligned planes."""
    records = []
    for _ in range(n):
        a = rng.uniform(-1.0, 1.0)
        b = rng.uniform(-0.02, 0.02)
        r = Record()
        for i, z in enumerate(PLANES):
            y = a + b * z
            measured = y * (1.0 + SCALE[i]) + SHIFT[i] + rng.gauss(0.0, SIGMA)
            globals_ = [(11 + i, 1.0), (21 + i, round(y, 4))]
            if extra_globals:
                globals_ += [(31 + i, round(b, 4)), (100, 0.5)]
            r.measurement(round(measured - y, 6), [1.0, z], globals_, SIGMA)
        records.append(r)
    return records


def write(folder, name, data):
    path = os.path.join(CORPUS, folder, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def mille_seeds():
    rng = random.Random(1)
    float_tracks = b"".join(r.c_bytes() for r in tracks(4, rng))
    write("mille", "c_float_tracks.bin", float_tracks)
    write("mille", "c_double_tracks.bin", b"".join(r.c_bytes(double=True) for r in tracks(3, rng)))
    write("mille", "c_mixed_four_globals.bin",
          b"".join(r.c_bytes(double=k % 2 == 1) for k, r in enumerate(tracks(4, rng, extra_globals=True))))
    fortran = b"".join(r.fortran_bytes() for r in tracks(3, rng))
    write("mille", "fortran_tracks.bin", fortran)
    write("mille", "c_float_tracks.bin.gz", gzip_bytes(float_tracks))
    write("mille", "fortran_tracks.bin.gz", gzip_bytes(fortran))
    special = tracks(2, rng)
    special[0].special([1.5, 2.5, 3.5], [7, 8, 9])
    write("mille", "c_special_block.bin", b"".join(r.c_bytes() for r in special))
    one = Record()
    one.measurement(0.5, [1.0], [(1, 1.0)], 0.1)
    write("mille", "c_one_measurement.bin", one.c_bytes())
    local_only = Record()
    local_only.measurement(0.1, [1.0, 2.0], [], 0.2)
    local_only.measurement(-0.1, [1.0, 3.0], [(5, 1.0)], 0.2)
    write("mille", "c_local_only_measurement.bin", local_only.c_bytes(double=True))
    counter = Record()
    counter.values[0] = 3.0  # the writer's error counter
    counter.measurement(0.2, [], [(2147483647, 1.0), (1, -1.0)], 1.0)
    write("mille", "c_error_counter_big_label.bin", counter.c_bytes())
    return float_tracks


STEERING = {
    "basic.txt": """* a comment line
Cfiles
mp.bin
method inversion 3 0.001
end
""",
    "methods.txt": """mp.bin ! the binary file
method diagonalization 2 0.1
method decomposition 1
method fullLAPACK 2 0.01
LAPACKwitherrors
method unpackedLAPACK 1
method sparseMINRES 1 0.1
method fullMINRES-QLP 1
METHD Inversion 3 0.001   ! approximate keyword
""",
    "blocks.txt": """mp.bin
Parameter
11 0.0 -1.0
12 0.01 0.0
21 0.0 0.05
Parameter 13 0.0 0.1
Constraint 0.0
11 1.0 12 1.0 13 1.0
14 1.0 15 1.0 16 1.0
Constraint 0.0 0.001
21 1.0
22 1.0
Measurement 0.01 0.001
11 1.0 12 -1.0
end
""",
    "cuts.txt": """mp.bin
method inversion 5 0.0001
chisqcut 30.0 6.0
hugecut 50
outlierdownweighting 3
dwfractioncut 0.1
linesearch 2
wolfe 1.0E-4 0.9
matiter 2
""",
    "parameters.txt": """mp.bin
presigma 0.01
regularisation 1.0 0.01
regularization 0.5
entries 10 5 2
iterateentries 3
countrecords
scaleerrors 2.0 1.5
""",
    "constraints.txt": """mp.bin
withmultipliers
withelimination
withLAPACKelimination
skipemptycons
weightedcons 1
nofeasiblestart
Constraint 0.5
11 1.0
weightedcons 0
Constraint 0
12 2.5D0 13 -1.E-1
""",
    "output.txt": """mp.bin
printcounts 2
globalcorr
printrecord 1 -1
checkinput 2
threads 2 1
maxrecord 100
subito
force
""",
    "files.txt": """fortranfiles
mp.bin -- 2.5
Cfiles
mp.bin -- 0.5
steer.txt
method inversion 1 0.1
""",
    "ignored_keywords.txt": """mp.bin
bandwidth 6
cache 1000000 0.5
monitorresiduals 1
monitorpulls
pairentries 2
compress
errlabels 1 2
mrestol 1.0E-8
histprint
readerroraseof
memorydebug 1
closeandreopen
""",
    "comments_and_numbers.txt": """! only a comment
   mp.bin   ! trailing comment
method inversion 3 0.001 % pede stops reading at the percent sign
* Parameter blocks with Fortran numbers
Parameter
11 +1.5d-3 .5E+1
12 -0.0 1
13 1. -1
end
method diagonalization 1
""",
    "text_file.txt": """mp.bin
steer.txt
Parameter
11 0.0 -1.0
Constraint 0
12 1.0 13 1.0
""",
    "bad_lines.txt": """mp.bin
method nosuchmethod 3
entries -1 1.5e3 99999999999
Constraint
11 1.0 2
Measurement 0.0 -1
11 x
""",
}


def steering_seeds():
    for name, text in STEERING.items():
        write("steering", name, text.encode())


def solve_input(steering, data, flags=0):
    text = steering.encode()
    return bytes([flags]) + struct.pack("<H", len(text)) + text + data


CONSTRAINTS = """Constraint 0.0
11 1.0 12 1.0 13 1.0 14 1.0 15 1.0 16 1.0
Constraint 0.0
11 0.0 12 10.0 13 20.0 14 30.0 15 40.0 16 50.0
Constraint 0.0
21 1.0 22 1.0 23 1.0 24 1.0 25 1.0 26 1.0
"""

SOLVE = [
    ("inversion_c_float", "method inversion 3 0.001\nentries 1\n" + CONSTRAINTS, "float", 0),
    ("diagonalization_c_double", "method diagonalization 2 0.001\nentries 1\n" + CONSTRAINTS, "double", 0),
    ("decomposition_multipliers", "method decomposition 2\nwithmultipliers\nentries 1\n" + CONSTRAINTS, "float", 0),
    ("fulllapack_with_errors", "method fullLAPACK 2 0.01\nLAPACKwitherrors\nwithmultipliers\nentries 1\n" + CONSTRAINTS,
     "float", 0),
    ("fortran_file", "method inversion 2 0.001\nentries 1\n" + CONSTRAINTS, "fortran", 1),
    ("gzip_c_file", "method inversion 1 0.001\nentries 1\n" + CONSTRAINTS, "gzip", 0),
    ("cuts_and_downweighting",
     "method inversion 3 0.0001\nentries 1\nchisqcut 30 6\nhugecut 20\noutlierdownweighting 3\n"
     "dwfractioncut 0.2\n" + CONSTRAINTS, "float", 0),
    ("presigma_regularisation",
     "method inversion 2 0.001\nentries 2 1\npresigma 0.1\nregularisation 1.0 0.05\nParameter\n11 0.0 -1.0\n"
     "12 0.0 -1.0\n21 0.0 -1.0\n", "float", 0),
    ("checkinput_2", "checkinput 2\nentries 1\n" + CONSTRAINTS, "float", 0),
    ("printrecord_batches_no_cache",
     "method inversion 2 0.001\nentries 1\nprintrecord 2 3\nglobalcorr\nprintcounts\n" + CONSTRAINTS, "float", 6),
    ("measurement_and_fixed",
     "method diagonalization 1 0.001\nentries 1\nParameter\n11 0.0 -1.0\n12 0.0 -1.0\n21 0.0 -1.0\n"
     "Measurement 0.02 0.001\n13 1.0 14 -1.0\n", "double", 0),
    ("file_weights", "mp.bin -- 2.0\nmethod inversion 1 0.001\nentries 1\nmaxrecord 5\n" + CONSTRAINTS, "float", 0),
    ("entries_iterated",
     "method inversion 2 0.001\nentries 6 2 2\ncountrecords\nscaleerrors 1.5 1.0\n" + CONSTRAINTS, "float", 0),
    ("options_mix",
     "method unpackedLAPACK 2 0.01\nentries 1\nlinesearch 3\nwolfe 1e-4 0.5\nmatiter 2\nforce\n"
     "nofeasiblestart\nskipemptycons\nweightedcons\n" + CONSTRAINTS + "Constraint 1.0\n99 1.0\n", "float", 2),
    ("minres_subito", "method sparseMINRES 1 0.1\nentries 1\nsubito\n" + CONSTRAINTS, "double", 0),
]


def solve_seeds():
    for name, steering, kind, flags in SOLVE:
        rng = random.Random(name)
        records = tracks(11 if kind != "double" else 7, rng)
        if kind == "double":
            data = b"".join(r.c_bytes(double=True) for r in records)
        elif kind == "fortran":
            data = b"".join(r.fortran_bytes() for r in records)
        else:
            data = b"".join(r.c_bytes() for r in records)
            if kind == "gzip":
                data = gzip_bytes(data)
        seed = solve_input(steering, data, flags)
        assert len(seed) <= 4096, (name, len(seed))
        write("solve", name, seed)


def main():
    for folder in ("mille", "steering", "solve"):
        path = os.path.join(CORPUS, folder)
        if os.path.isdir(path):
            for f in os.listdir(path):
                os.remove(os.path.join(path, f))
    mille_seeds()
    steering_seeds()
    solve_seeds()


if __name__ == "__main__":
    main()
