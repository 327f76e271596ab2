// Model analysis: the metrics of a model's predictions against labels, over the rows of a dataset
// version's tables (docs/analysis.md): classification (accuracy; precision, recall and F1 per
// class, macro and weighted; with a binary score ROC AUC, average precision, log loss, Brier
// score and calibration; the confusion matrix) or regression (RMSE, MAE, R², MAPE); the same per
// slice; group fairness across a sensitive feature. Every definition is scikit-learn's (Fairlearn's
// for fairness), and the tests check the values against scikit-learn's. Pure functions over
// tables: no storage, no gRPC.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "mlops/monitoring/v1/monitoring.pb.h"
#include "services/monitoring/table.h"

namespace mlops::monitoring {

// The evaluation of `tables` (rows concatenated) as `request` says (its task, columns, slices,
// sensitive feature; defaults filled): overall, slices, fairness and `skipped`, nothing else.
// INVALID_ARGUMENT for an unknown task, a column no table has (naming it), a score outside
// [0, 1], a score or a sensitive feature on other than binary classification (more than two
// labels, or a positive class that is neither), a regression label or prediction that is not a
// number, no row to evaluate.
absl::StatusOr<v1::Evaluation> EvaluatePredictions(const std::vector<const Table*>& tables,
                                                   const v1::EvaluateModelRequest& request);

}  // namespace mlops::monitoring
