#!/usr/bin/python3
"""The reference values of tests/monitoring/evaluation_test.cc: scikit-learn's metrics (Debian
python3-sklearn) of a CSV of labels, predictions and scores, overall and per slice, and group
fairness by Fairlearn's published definitions (Fairlearn is not packaged for Debian: its
selection rate, true and false positive rates per group, their max - min and min / max are
computed here with numpy). Prints one JSON object.

    sklearn_metrics.py FILE.csv classification|regression [SLICE_FEATURE] [SENSITIVE_FEATURE]

Columns: label, prediction, and for classification score (the probability of class 1).
"""
import csv
import json
import sys

import numpy as np
from sklearn import metrics
from sklearn.calibration import calibration_curve


def classification(frame):
    y = np.array(frame['label'])
    yhat = np.array(frame['prediction'])
    labels = sorted(set(y) | set(yhat), key=lambda v: float(v))
    p, r, f, s = metrics.precision_recall_fscore_support(
        y, yhat, labels=labels, zero_division=0)
    out = {
        'count': len(y),
        'accuracy': metrics.accuracy_score(y, yhat),
        'classes': [{'label': l, 'precision': p[i], 'recall': r[i], 'f1': f[i],
                     'support': int(s[i])} for i, l in enumerate(labels)],
        'confusion': metrics.confusion_matrix(y, yhat, labels=labels).ravel().tolist(),
    }
    for average in ('macro', 'weighted'):
        ap, ar, af, _ = metrics.precision_recall_fscore_support(
            y, yhat, labels=labels, average=average, zero_division=0)
        out[average + '_precision'] = ap
        out[average + '_recall'] = ar
        out[average + '_f1'] = af
    if 'score' in frame:
        truth = (y == '1').astype(int)
        score = np.array(frame['score'], dtype=float)
        if 0 < truth.sum() < len(truth):
            out['roc_auc'] = metrics.roc_auc_score(truth, score)
        if truth.sum() > 0:
            out['pr_auc'] = metrics.average_precision_score(truth, score)
        out['log_loss'] = metrics.log_loss(truth, score, labels=[0, 1])
        out['brier'] = metrics.brier_score_loss(truth, score, pos_label=1)
        prob_true, prob_pred = calibration_curve(truth, score, n_bins=10, strategy='uniform')
        # The bins calibration_curve keeps are the non-empty ones; their counts, for the ECE.
        bins = np.linspace(0.0, 1.0, 11)
        ids = np.searchsorted(bins[1:-1], score)
        counts = np.bincount(ids, minlength=10)
        counts = counts[counts > 0]
        out['ece'] = float(np.sum(counts / len(score) * np.abs(prob_true - prob_pred)))
        out['calibration_bins'] = len(counts)
    return out


def regression(frame):
    y = np.array(frame['label'], dtype=float)
    yhat = np.array(frame['prediction'], dtype=float)
    return {
        'count': len(y),
        'rmse': metrics.mean_squared_error(y, yhat) ** 0.5,
        'mae': metrics.mean_absolute_error(y, yhat),
        'r2': metrics.r2_score(y, yhat),
        'mape': metrics.mean_absolute_percentage_error(y, yhat),
    }


def fairness(frame, feature):
    groups = {}
    truth = np.array(frame['label']) == '1'
    predicted = np.array(frame['prediction']) == '1'
    values = np.array(frame[feature])
    selection, tpr, fpr = [], [], []
    for group in sorted(set(values)):
        rows = values == group
        t, p = truth[rows], predicted[rows]
        rates = {'count': int(rows.sum()), 'selection_rate': p.mean()}
        selection.append(rates['selection_rate'])
        if t.sum() > 0:
            rates['true_positive_rate'] = (p & t).sum() / t.sum()
            tpr.append(rates['true_positive_rate'])
        if (~t).sum() > 0:
            rates['false_positive_rate'] = (p & ~t).sum() / (~t).sum()
            fpr.append(rates['false_positive_rate'])
        groups[group] = rates

    def spread(v):
        return max(v) - min(v) if v else 0.0

    def ratio(v):
        return min(v) / max(v) if v and max(v) > 0 else 1.0
    return {
        'groups': groups,
        'demographic_parity_difference': spread(selection),
        'demographic_parity_ratio': ratio(selection),
        'equalized_odds_difference': max(spread(tpr), spread(fpr)),
        'equalized_odds_ratio': min(ratio(tpr), ratio(fpr)),
    }


def main():
    path, task = sys.argv[1], sys.argv[2]
    slice_feature = sys.argv[3] if len(sys.argv) > 3 else ''
    sensitive = sys.argv[4] if len(sys.argv) > 4 else ''
    with open(path, newline='') as f:
        rows = list(csv.DictReader(f))
    frame = {key: [row[key] for row in rows] for key in rows[0]}
    compute = classification if task == 'classification' else regression
    out = {'overall': compute(frame), 'slices': {}}
    if slice_feature:
        for value in sorted(set(frame[slice_feature])):
            keep = [i for i, v in enumerate(frame[slice_feature]) if v == value]
            out['slices'][value] = compute({k: [col[i] for i in keep] for k, col in frame.items()})
    if sensitive:
        out['fairness'] = fairness(frame, sensitive)

    def plain(v):
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, (np.integer,)):
            return int(v)
        if isinstance(v, (np.floating, float)):
            return float(v)
        return v
    print(json.dumps(plain(out)))


if __name__ == '__main__':
    main()
