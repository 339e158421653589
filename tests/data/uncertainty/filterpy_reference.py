#!/usr/bin/env python3
"""Generates filterpy_reference.json: sigma points and unscented transforms computed by
filterpy 2.0.0 (an independent implementation) for the Rust tests of
src/uncertainty/sigma.rs.

Run from the repository root (pip install filterpy numpy scipy):
    python3 tests/data/uncertainty/filterpy_reference.py

The nonlinear function must match `reference_function` in src/uncertainty/sigma.rs (tests):
    y0 = wind power curve of x0: 0 below 3, (x0^3 - 27) / (12^3 - 27) up to 12, 1 up to 25,
         0 above (a cubic branch with kinks, as eq. 21)
    y1 = exp(x1) * sin(x2)
    y2 = x3^2 + x0 * x1
filterpy orders points as [x, x + U[0], ..., x + U[n-1], x - U[0], ..., x - U[n-1]] where
U = scipy.linalg.cholesky((lambda + n) P) is the UPPER factor: its rows are the columns of
the lower factor, the same order as the Rust code.
"""
import json
import os

import filterpy
import numpy as np
from filterpy.kalman import JulierSigmaPoints, MerweScaledSigmaPoints, unscented_transform


def power(v):
    if v < 3.0:
        return 0.0
    if v < 12.0:
        return (v**3 - 27.0) / (12.0**3 - 27.0)
    if v < 25.0:
        return 1.0
    return 0.0


def f(x):
    return np.array([power(x[0]), np.exp(x[1]) * np.sin(x[2]), x[3] ** 2 + x[0] * x[1]])


MEAN = np.array([8.0, 0.5, 1.0, -0.3])
STD = np.array([2.5, 0.2, 0.6, 0.4])
CORR = np.array(
    [
        [1.0, 0.3, 0.0, 0.2],
        [0.3, 1.0, -0.4, 0.0],
        [0.0, -0.4, 1.0, 0.1],
        [0.2, 0.0, 0.1, 1.0],
    ]
)
P = np.diag(STD) @ CORR @ np.diag(STD)
N = len(MEAN)

CASES = [
    ("merwe", {"alpha": 1.0, "beta": 2.0, "kappa": 0.0}, MerweScaledSigmaPoints(N, 1.0, 2.0, 0.0)),
    ("merwe", {"alpha": 0.5, "beta": 2.0, "kappa": 3.0 - N}, MerweScaledSigmaPoints(N, 0.5, 2.0, 3.0 - N)),
    ("julier", {"kappa": 1.0}, JulierSigmaPoints(N, 1.0)),
    ("julier", {"kappa": 3.0 - N}, JulierSigmaPoints(N, 3.0 - N)),
]


def main():
    cases = []
    for form, params, points in CASES:
        sigmas = points.sigma_points(MEAN, P)
        outputs = np.array([f(s) for s in sigmas])
        mean, cov = unscented_transform(outputs, points.Wm, points.Wc)
        cases.append(
            {
                "form": form,
                "params": params,
                "points": sigmas.tolist(),
                "wm": points.Wm.tolist(),
                "wc": points.Wc.tolist(),
                "outputs": outputs.tolist(),
                "mean": mean.tolist(),
                "cov": cov.tolist(),
            }
        )
    out = {
        "generator": "tests/data/uncertainty/filterpy_reference.py",
        "filterpy": filterpy.__version__,
        "numpy": np.__version__,
        "input_mean": MEAN.tolist(),
        "input_cov": P.tolist(),
        "cases": cases,
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "filterpy_reference.json")
    with open(path, "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
