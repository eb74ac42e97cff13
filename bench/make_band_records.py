#!/usr/bin/env python3
"""Writes a Mille C binary file (single precision) of broken-lines-like records for timing the
local fits: 4 track parameters on every measurement (the border), a band of 3 scatterer offsets,
one global derivative (label 1..700) on every third measurement; 2 (locals - 4) + 10
measurements per record.

    bench/make_band_records.py LOCALS RECORDS OUT.bin
"""
import random
import struct
import sys


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    n_local, records, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    if n_local < 5 or records < 1:
        print("LOCALS must be at least 5 and RECORDS at least 1", file=sys.stderr)
        return 2
    rng = random.Random(n_local)
    with open(out, "wb") as f:
        for _ in range(records):
            values, indices = [0.0], [0]
            for i in range(2 * (n_local - 4) + 10):
                values.append(rng.gauss(0.0, 0.01))  # the measurement
                indices.append(0)
                for k in range(4):
                    values.append(rng.uniform(-1.0, 1.0))
                    indices.append(k + 1)
                for k in (-1, 0, 1):
                    index = 4 + min(n_local - 5, i // 2) + k - 1
                    if 4 <= index < n_local:
                        values.append(rng.uniform(-1.0, 1.0))
                        indices.append(index + 1)
                values.append(0.01)  # its error
                indices.append(0)
                if i % 3 == 0:
                    values.append(rng.uniform(-1.0, 1.0))
                    indices.append(rng.randint(1, 700))
            n = len(values)
            f.write(struct.pack("<i", 2 * n))
            f.write(struct.pack(f"<{n}f", *values))
            f.write(struct.pack(f"<{n}i", *indices))
    return 0


if __name__ == "__main__":
    sys.exit(main())
