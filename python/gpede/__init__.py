"""gpede: the Millepede II solver (pede's drop-in replacement) for Python.

    import gpede
    steering = gpede.Steering("steer.txt")
    result = gpede.solve(steering)                  # records from the steering's binary files
    result.values, result.errors                    # numpy arrays, one entry per label
    result.parameter(label)                         # one label's result as a dict
    result.write(steering, "out")                   # millepede.res, .log, .end, gpede.json

Records can come from memory instead, with Mille's calls or whole records from arrays:

    records = gpede.Records()
    records.add_record(measurements, sigmas, local, global_derivatives, labels)
    result = gpede.solve(steering, records)

Errors: gpede.InputError (bad steering, files or records; `exit_code` is pede's class of the
fault), gpede.Interrupted (the log callback asked to stop), gpede.Error (the others).
"""
from ._gpede import (  # noqa: F401
    Error,
    InputError,
    Interrupted,
    Records,
    Result,
    Steering,
    read_mille,
    solve,
    version,
    write_mille,
)

__version__ = version()
__all__ = [
    "Error",
    "InputError",
    "Interrupted",
    "Records",
    "Result",
    "Steering",
    "read_mille",
    "solve",
    "version",
    "write_mille",
]
