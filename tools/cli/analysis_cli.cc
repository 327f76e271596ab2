// `mlops models evaluate ...` and `mlops models evaluations ...`: model analysis on the
// monitoring service (docs/analysis.md).
#include <iostream>
#include <sstream>

#include "mlops/monitoring/v1/monitoring.grpc.pb.h"
#include "services/common/strings.h"
#include "tools/cli/commands.h"
#include "tools/cli/monitoring_cli.h"

namespace mlops::cli {
namespace {

namespace mv1 = mlops::monitoring::v1;

std::string Figure(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.4f", v);
  return buffer;
}

// The headline figures of one set of metrics, as table cells.
std::vector<std::string> Cells(const std::string& task, const mv1::ModelMetrics& m) {
  if (task == "regression") {
    return {std::to_string(m.count()), Figure(m.rmse()), Figure(m.mae()), Figure(m.r2()),
            Figure(m.mape())};
  }
  return {std::to_string(m.count()),
          Figure(m.accuracy()),
          Figure(m.macro_f1()),
          m.has_roc_auc() ? Figure(m.roc_auc()) : "-",
          m.has_pr_auc() ? Figure(m.pr_auc()) : "-",
          m.has_log_loss() ? Figure(m.log_loss()) : "-",
          m.has_ece() ? Figure(m.ece()) : "-"};
}

std::vector<std::string> Header(const std::string& task) {
  if (task == "regression") return {"SLICE", "ROWS", "RMSE", "MAE", "R2", "MAPE"};
  return {"SLICE", "ROWS", "ACCURACY", "MACRO F1", "ROC AUC", "PR AUC", "LOG LOSS", "ECE"};
}

void PrintEvaluation(const mv1::Evaluation& e) {
  std::cout << "evaluation " << e.id() << ": " << e.model() << " version " << e.model_version()
            << " on " << e.dataset() << " (" << e.task() << ")";
  if (e.skipped() > 0) std::cout << ", " << e.skipped() << " rows without a label skipped";
  std::cout << "\n";
  std::vector<std::vector<std::string>> rows;
  auto row = [&](const std::string& name, const mv1::ModelMetrics& m) {
    std::vector<std::string> cells = {name};
    for (auto& c : Cells(e.task(), m)) cells.push_back(std::move(c));
    rows.push_back(std::move(cells));
  };
  row("(all)", e.overall());
  for (const auto& s : e.slices()) row(s.feature() + "=" + s.value(), s.metrics());
  PrintTable(Header(e.task()), rows);
  if (e.task() != "regression" && e.overall().classes_size() > 0) {
    std::cout << "\n";
    std::vector<std::vector<std::string>> classes;
    for (const auto& c : e.overall().classes()) {
      classes.push_back({c.label(), Figure(c.precision()), Figure(c.recall()), Figure(c.f1()),
                         std::to_string(c.support())});
    }
    PrintTable({"CLASS", "PRECISION", "RECALL", "F1", "SUPPORT"}, classes);
  }
  if (e.verdict().policy_size() > 0) {
    const auto& v = e.verdict();
    std::cout << "\n" << (v.blessed() ? "BLESSED" : "NOT BLESSED");
    if (v.champion_version() > 0) {
      std::cout << " against the champion, version " << v.champion_version();
      if (e.has_champion()) {
        std::cout << " ("
                  << (e.task() == "regression" ? "rmse " + Figure(e.champion().rmse())
                                               : "accuracy " + Figure(e.champion().accuracy()))
                  << ")";
      }
    } else {
      std::cout << " (no champion to compare with)";
    }
    std::cout << "\n";
    for (const auto& rule : v.failed()) std::cout << "  failed: " << rule << "\n";
    for (const auto& rule : v.passed()) std::cout << "  passed: " << rule << "\n";
  }
  if (!e.fairness().feature().empty()) {
    const auto& f = e.fairness();
    std::cout << "\nfairness across " << f.feature() << ": demographic parity difference "
              << Figure(f.demographic_parity_difference()) << " (ratio "
              << Figure(f.demographic_parity_ratio()) << "), equalized odds difference "
              << Figure(f.equalized_odds_difference()) << " (ratio "
              << Figure(f.equalized_odds_ratio()) << ")\n";
    std::vector<std::vector<std::string>> groups;
    for (const auto& g : f.groups()) {
      groups.push_back({g.group(), std::to_string(g.count()), Figure(g.selection_rate()),
                        Figure(g.true_positive_rate()), Figure(g.false_positive_rate())});
    }
    PrintTable({"GROUP", "ROWS", "SELECTION", "TPR", "FPR"}, groups);
  }
}

std::vector<std::string> SplitComma(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

}  // namespace

int RunAnalysisCommand(const std::string& command, Args& args,
                       std::shared_ptr<grpc::Channel> channel, bool json) {
  auto stub = mv1::MonitoringService::NewStub(channel);
  if (command == "evaluate") {
    mv1::EvaluateModelRequest request;
    std::string model = args.Positional("MODEL[@VERSION|ALIAS]");
    size_t at = model.find('@');
    request.set_model(model.substr(0, at));
    if (at != std::string::npos) request.set_version(model.substr(at + 1));
    auto dataset = args.Take("--dataset");
    if (!dataset) throw UsageError{"models evaluate needs --dataset NAME@VERSION"};
    request.set_dataset(*dataset);
    request.set_task(args.Take("--task").value_or("classification"));
    if (auto v = args.Take("--label")) request.set_label_column(*v);
    if (auto v = args.Take("--prediction")) request.set_prediction_column(*v);
    if (auto v = args.Take("--score")) request.set_score_column(*v);
    if (auto v = args.Take("--positive")) request.set_positive_class(*v);
    for (const auto& list : args.TakeAll("--slice")) {
      for (const auto& f : SplitComma(list)) request.add_slice_by(f);
    }
    for (const auto& cross : args.TakeAll("--cross")) request.add_cross(cross);
    if (auto v = args.Take("--buckets")) {
      request.set_buckets(static_cast<int32_t>(ParseInt(*v, "--buckets")));
    }
    if (auto v = args.Take("--sensitive")) request.set_sensitive_feature(*v);
    for (const auto& rule : args.TakeAll("--policy")) request.add_policy(rule);
    if (auto v = args.Take("--champion")) request.set_champion(*v);
    if (auto v = args.Take("--champion-prediction")) request.set_champion_prediction_column(*v);
    if (auto v = args.Take("--champion-score")) request.set_champion_score_column(*v);
    args.ExpectEmpty();
    auto evaluation = CallOrExit(stub.get(), &mv1::MonitoringService::Stub::EvaluateModel, request,
                                 std::chrono::minutes(30));
    const int code =
        evaluation.verdict().policy_size() > 0 && !evaluation.verdict().blessed() ? 3 : 0;
    if (json) return PrintJson(evaluation), code;
    PrintEvaluation(evaluation);
    return code;
  }
  if (command == "evaluations") {
    mv1::ListEvaluationsRequest request;
    std::string model = args.Positional("MODEL[@VERSION]");
    size_t at = model.find('@');
    request.set_model(model.substr(0, at));
    if (at != std::string::npos) request.set_version(ParseInt(model.substr(at + 1), "version"));
    if (auto n = args.Take("--max"))
      request.set_page_size(static_cast<int32_t>(ParseInt(*n, "--max")));
    args.ExpectEmpty();
    auto listed = CallOrExit(stub.get(), &mv1::MonitoringService::Stub::ListEvaluations, request,
                             std::chrono::seconds(30));
    if (json) return PrintJson(listed), 0;
    std::vector<std::vector<std::string>> rows;
    for (const auto& e : listed.evaluations()) {
      const auto& m = e.overall();
      rows.push_back({FormatTime(e.time_ms()), e.id(), std::to_string(e.model_version()),
                      e.dataset(), std::to_string(m.count()),
                      e.task() == "regression" ? "rmse " + Figure(m.rmse())
                                               : "accuracy " + Figure(m.accuracy())});
    }
    PrintTable({"TIME", "EVALUATION", "VERSION", "DATASET", "ROWS", "HEADLINE"}, rows);
    return 0;
  }
  throw UsageError{"mlops models evaluate|evaluations"};
}

}  // namespace mlops::cli
