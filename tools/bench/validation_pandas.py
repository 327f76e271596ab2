#!/usr/bin/python3
"""The pandas side of `mlops-bench validation`: the same checks as mlops's Validator (type,
range, domain, missing fraction, uniqueness per feature) on the same columns, already in a
DataFrame. Prints the median time of ROUNDS in seconds.

    validation_pandas.py FILE.mlcol SCHEMA.json ROUNDS

Reads the .mlcol layout of services/monitoring/table.h with numpy (reading is not timed).
"""
import json
import struct
import sys
import time

import numpy as np
import pandas as pd


def read_mlcol(path):
    data = open(path, 'rb').read()
    if data[:8] != b'MLCOL\0\0\1':
        raise SystemExit(path + ': not an .mlcol file')
    rows, ncols = struct.unpack_from('<QI', data, 8)
    offset = 24
    columns = []
    for _ in range(ncols):
        kind, name_len = struct.unpack_from('<B3xI', data, offset)
        offset += 8
        columns.append((kind, data[offset:offset + name_len].decode()))
        offset += name_len
    offset = (offset + 7) // 8 * 8
    frame = {}
    for kind, name in columns:
        if kind == 1:
            frame[name] = np.frombuffer(data, dtype='<f8', count=rows, offset=offset)
            offset += rows * 8
        else:
            lengths = np.frombuffer(data, dtype='<u4', count=rows, offset=offset)
            offset += rows * 4
            ends = np.cumsum(lengths, dtype=np.int64)
            starts = ends - lengths
            text = data[offset:offset + int(ends[-1] if rows else 0)].decode()
            offset += int(ends[-1] if rows else 0)
            values = [text[s:e] if e > s else None for s, e in zip(starts.tolist(), ends.tolist())]
            frame[name] = pd.Series(values, dtype=object)
        offset = (offset + 7) // 8 * 8
    return pd.DataFrame(frame)


def check(frame, schema):
    anomalies = []
    for feature in schema:
        name = feature['name']
        if name not in frame.columns:
            anomalies.append((name, 'missing column'))
            continue
        column = frame[name]
        rows = len(column)
        missing = column.isna()
        present = column[~missing]
        kind = feature['type']
        if kind in ('INT', 'FLOAT'):
            numbers = pd.to_numeric(present, errors='coerce')
            if numbers.isna().any():
                anomalies.append((name, 'wrong type'))
            if kind == 'INT' and (numbers != np.trunc(numbers)).any():
                anomalies.append((name, 'wrong type'))
            low = feature.get('min')
            high = feature.get('max')
            if low is not None and (numbers < low).any():
                anomalies.append((name, 'out of range'))
            if high is not None and (numbers > high).any():
                anomalies.append((name, 'out of range'))
        if feature['values']:
            if (~present.isin(feature['values'])).any():
                anomalies.append((name, 'unseen category'))
        if rows and missing.sum() / rows > feature['max_missing']:
            anomalies.append((name, 'too many missing'))
        if feature['unique'] and present.duplicated().any():
            anomalies.append((name, 'duplicate values'))
    for name in frame.columns:
        if name not in {f['name'] for f in schema}:
            anomalies.append((name, 'unexpected column'))
    return anomalies


def main():
    path, schema_path, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    frame = read_mlcol(path)
    schema = json.load(open(schema_path))
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        found = check(frame, schema)
        times.append(time.perf_counter() - start)
    print(sorted(times)[len(times) // 2])
    print(len(set(found)), file=sys.stderr)


if __name__ == '__main__':
    main()
