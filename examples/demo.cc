// mlops-example: the small, deterministic ML workload of the end-to-end demo (tools/quickstart.sh,
// examples/pipeline.yaml). Every subcommand is a pure function of its inputs and flags, so the
// pipeline's steps cache and `mlops reproduce` gets the same bytes back.
//
//   generate --rows N --seed S [--shift X] --out data.csv       a two-class table
//   validate --data DIR                                          schema and range checks
//   preprocess --data DIR --train train.csv --test test.csv      80/20 split, z-scores, one-hot
//   train --train train.csv --test test.csv --lr L --epochs E --out model.txt
//                                 logistic regression by full-batch gradient descent; metrics.json
//                                 holds the loss per epoch and val_accuracy
//   evaluate --model model.txt --test test.csv --report report.txt   accuracy and AUC
//   fit --data DIR --lr L --epochs E --out model.txt             preprocess + train + evaluate
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct Flags {
  std::map<std::string, std::string> values;
  std::string Get(const std::string& name, const std::string& fallback = "") const {
    auto it = values.find(name);
    if (it != values.end()) return it->second;
    if (fallback.empty()) {
      std::cerr << "missing --" << name << "\n";
      std::exit(2);
    }
    return fallback;
  }
};

const std::vector<std::string> kHeader = {"f1", "f2", "f3", "f4", "segment", "label"};
const std::vector<std::string> kSegments = {"a", "b", "c"};

std::vector<std::string> Split(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream in(line);
  std::string field;
  while (std::getline(in, field, ',')) out.push_back(field);
  return out;
}

// The rows of every .csv file under `dir` (sorted by path), header checked.
std::vector<std::vector<std::string>> ReadRows(const std::string& path, std::string* problem) {
  std::vector<std::string> files;
  if (std::filesystem::is_directory(path)) {
    for (const auto& e : std::filesystem::recursive_directory_iterator(path)) {
      if (e.is_regular_file() && e.path().extension() == ".csv") files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
  } else {
    files.push_back(path);
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& file : files) {
    std::ifstream in(file);
    std::string line;
    if (!std::getline(in, line) || Split(line) != kHeader) {
      *problem = file + ": the header is not f1,f2,f3,f4,segment,label";
      return {};
    }
    while (std::getline(in, line)) {
      if (!line.empty()) rows.push_back(Split(line));
    }
  }
  if (files.empty()) *problem = path + ": no .csv file";
  return rows;
}

struct Example {
  std::vector<double> x;
  int label = 0;
};

// z-scores of f1..f4 (with the given means and deviations) and a one-hot segment.
Example Encode(const std::vector<std::string>& row, const std::vector<double>& mean,
               const std::vector<double>& sd) {
  Example e;
  for (int f = 0; f < 4; ++f) e.x.push_back((std::stod(row[f]) - mean[f]) / sd[f]);
  for (const auto& s : kSegments) e.x.push_back(row[4] == s ? 1.0 : 0.0);
  e.label = std::stoi(row[5]);
  return e;
}

std::vector<Example> ReadExamples(const std::string& file) {
  std::vector<Example> out;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> fields = Split(line);
    Example e;
    for (size_t i = 0; i + 1 < fields.size(); ++i) e.x.push_back(std::stod(fields[i]));
    e.label = std::stoi(fields.back());
    out.push_back(e);
  }
  return out;
}

void WriteExamples(const std::string& file, const std::vector<Example>& examples) {
  std::ofstream out(file);
  char buf[64];
  for (const auto& e : examples) {
    for (double v : e.x) {
      std::snprintf(buf, sizeof(buf), "%.9g,", v);
      out << buf;
    }
    out << e.label << "\n";
  }
}

double Sigmoid(double z) { return 1 / (1 + std::exp(-z)); }

double Score(const std::vector<double>& w, const Example& e) {
  double z = w.back();
  for (size_t i = 0; i < e.x.size(); ++i) z += w[i] * e.x[i];
  return Sigmoid(z);
}

double Accuracy(const std::vector<double>& w, const std::vector<Example>& data) {
  size_t right = 0;
  for (const auto& e : data) right += (Score(w, e) >= 0.5) == (e.label == 1);
  return data.empty() ? 0 : static_cast<double>(right) / static_cast<double>(data.size());
}

// Area under the ROC curve: the probability that a positive scores above a negative (ties half).
double Auc(const std::vector<double>& w, const std::vector<Example>& data) {
  std::vector<std::pair<double, int>> scored;
  for (const auto& e : data) scored.emplace_back(Score(w, e), e.label);
  std::sort(scored.begin(), scored.end());
  double positives = 0, negatives = 0, rank_sum = 0;
  for (size_t i = 0; i < scored.size();) {
    size_t j = i;
    while (j < scored.size() && scored[j].first == scored[i].first) ++j;
    double rank = (static_cast<double>(i) + static_cast<double>(j) + 1) / 2;  // 1-based, ties
    for (size_t k = i; k < j; ++k) {
      if (scored[k].second == 1) {
        rank_sum += rank;
        ++positives;
      } else {
        ++negatives;
      }
    }
    i = j;
  }
  if (positives == 0 || negatives == 0) return 0.5;
  return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives);
}

int Generate(const Flags& flags) {
  long rows = std::stol(flags.Get("rows", "50000"));
  std::mt19937_64 rng(std::stoull(flags.Get("seed", "7")));
  double shift = std::stod(flags.Get("shift", "0"));
  std::normal_distribution<double> normal(0, 1);
  std::ofstream out(flags.Get("out"));
  out << "f1,f2,f3,f4,segment,label\n";
  char buf[160];
  for (long i = 0; i < rows; ++i) {
    double f1 = normal(rng) + shift, f2 = normal(rng) * (1 + shift / 2), f3 = normal(rng) * 2 + 1,
           f4 = normal(rng);
    int segment = static_cast<int>(rng() % 3);
    double z = 1.5 * f1 - 2 * f2 + 0.5 * f3 + (segment == 1 ? 0.7 : 0) + 0.8 * normal(rng);
    std::snprintf(buf, sizeof(buf), "%.6f,%.6f,%.6f,%.6f,%s,%d\n", f1, f2, f3, f4,
                  kSegments[segment].c_str(), z > 0 ? 1 : 0);
    out << buf;
  }
  return 0;
}

int Validate(const Flags& flags) {
  std::string problem;
  auto rows = ReadRows(flags.Get("data"), &problem);
  std::vector<std::string> errors;
  if (!problem.empty()) errors.push_back(problem);
  if (problem.empty() && rows.size() < 100) errors.push_back("fewer than 100 rows");
  size_t reported = 0;
  for (size_t i = 0; i < rows.size() && reported < 10; ++i) {
    std::string error;
    if (rows[i].size() != 6) {
      error = "expected 6 fields";
    } else {
      for (int f = 0; f < 4 && error.empty(); ++f) {
        char* end = nullptr;
        double v = std::strtod(rows[i][f].c_str(), &end);
        if (*end != '\0' || rows[i][f].empty())
          error = kHeader[f] + " is not a number";
        else if (!(std::fabs(v) < 100))
          error = kHeader[f] + " out of range (-100, 100)";
      }
      if (error.empty() &&
          std::find(kSegments.begin(), kSegments.end(), rows[i][4]) == kSegments.end()) {
        error = "segment '" + rows[i][4] + "' is not a, b or c";
      }
      if (error.empty() && rows[i][5] != "0" && rows[i][5] != "1") error = "label is not 0 or 1";
    }
    if (!error.empty()) {
      errors.push_back("row " + std::to_string(i + 2) + ": " + error);
      ++reported;
    }
  }
  if (!errors.empty()) {
    std::cerr << "validation failed:\n";
    for (const auto& e : errors) std::cerr << "  " << e << "\n";
    return 1;
  }
  std::cout << "schema ok: " << rows.size() << " rows, 6 columns, values in range\n";
  std::ofstream("metrics.json") << "{\"rows\": " << rows.size() << "}\n";
  return 0;
}

// Split (every fifth row is test) and encode with the training rows' statistics.
bool Prepare(const std::string& data, std::vector<Example>* train, std::vector<Example>* test) {
  std::string problem;
  auto rows = ReadRows(data, &problem);
  if (!problem.empty()) {
    std::cerr << problem << "\n";
    return false;
  }
  std::vector<double> sum(4, 0), sq(4, 0);
  size_t n = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (i % 5 == 0) continue;
    for (int f = 0; f < 4; ++f) {
      double v = std::stod(rows[i][f]);
      sum[f] += v;
      sq[f] += v * v;
    }
    ++n;
  }
  std::vector<double> mean(4), sd(4);
  for (int f = 0; f < 4; ++f) {
    mean[f] = sum[f] / static_cast<double>(n);
    sd[f] = std::sqrt(std::max(1e-12, sq[f] / static_cast<double>(n) - mean[f] * mean[f]));
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    (i % 5 == 0 ? test : train)->push_back(Encode(rows[i], mean, sd));
  }
  return true;
}

std::vector<double> Fit(const std::vector<Example>& train, const std::vector<Example>& test,
                        double lr, int epochs, std::ostream& metrics) {
  size_t d = train.front().x.size();
  std::vector<double> w(d + 1, 0.0);
  metrics << "[";
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    std::vector<double> grad(d + 1, 0.0);
    double loss = 0;
    for (const auto& e : train) {
      double p = Score(w, e);
      double err = p - e.label;
      for (size_t i = 0; i < d; ++i) grad[i] += err * e.x[i];
      grad[d] += err;
      loss -= e.label ? std::log(std::max(p, 1e-12)) : std::log(std::max(1 - p, 1e-12));
    }
    for (size_t i = 0; i <= d; ++i) w[i] -= lr * grad[i] / static_cast<double>(train.size());
    char buf[128];
    std::snprintf(buf, sizeof(buf), "{\"key\": \"loss\", \"value\": %.9g, \"step\": %d}, ",
                  loss / static_cast<double>(train.size()), epoch);
    metrics << buf;
  }
  char buf[160];
  std::snprintf(buf, sizeof(buf),
                "{\"key\": \"val_accuracy\", \"value\": %.9g, \"step\": %d}, "
                "{\"key\": \"train_accuracy\", \"value\": %.9g, \"step\": %d}]\n",
                Accuracy(w, test), epochs, Accuracy(w, train), epochs);
  metrics << buf;
  return w;
}

void WriteModel(const std::string& file, const std::vector<double>& w) {
  std::ofstream out(file);
  char buf[64];
  for (double v : w) {
    std::snprintf(buf, sizeof(buf), "%.17g\n", v);
    out << buf;
  }
}

std::vector<double> ReadModel(const std::string& file) {
  std::vector<double> w;
  std::ifstream in(file);
  double v;
  while (in >> v) w.push_back(v);
  return w;
}

int Preprocess(const Flags& flags) {
  std::vector<Example> train, test;
  if (!Prepare(flags.Get("data"), &train, &test)) return 1;
  WriteExamples(flags.Get("train"), train);
  WriteExamples(flags.Get("test"), test);
  std::cout << "split: " << train.size() << " train rows, " << test.size() << " test rows\n";
  return 0;
}

int Train(const Flags& flags) {
  auto train = ReadExamples(flags.Get("train")), test = ReadExamples(flags.Get("test"));
  if (train.empty()) return 1;
  std::ofstream metrics("metrics.json");
  auto w =
      Fit(train, test, std::stod(flags.Get("lr")), std::stoi(flags.Get("epochs", "30")), metrics);
  WriteModel(flags.Get("out"), w);
  std::cout << "lr " << flags.Get("lr") << ": validation accuracy " << Accuracy(w, test) << "\n";
  return 0;
}

int Evaluate(const Flags& flags) {
  auto w = ReadModel(flags.Get("model"));
  auto test = ReadExamples(flags.Get("test"));
  if (w.empty() || test.empty()) return 1;
  double accuracy = Accuracy(w, test), auc = Auc(w, test);
  char buf[128];
  std::snprintf(buf, sizeof(buf), "{\"accuracy\": %.9g, \"auc\": %.9g}\n", accuracy, auc);
  std::ofstream("metrics.json") << buf;
  std::ofstream(flags.Get("report"))
      << "test rows " << test.size() << "\naccuracy " << accuracy << "\nauc " << auc << "\n";
  std::cout << "test accuracy " << accuracy << ", AUC " << auc << "\n";
  return 0;
}

int FitAll(const Flags& flags) {
  std::vector<Example> train, test;
  if (!Prepare(flags.Get("data"), &train, &test)) return 1;
  std::ofstream metrics("metrics.json");
  auto w =
      Fit(train, test, std::stod(flags.Get("lr")), std::stoi(flags.Get("epochs", "30")), metrics);
  WriteModel(flags.Get("out"), w);
  std::cout << "trained on " << train.size() << " rows: validation accuracy " << Accuracy(w, test)
            << ", AUC " << Auc(w, test) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: mlops-example generate|validate|preprocess|train|evaluate|fit [--flag "
                 "value]...\n";
    return 2;
  }
  Flags flags;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string name = argv[i];
    if (name.rfind("--", 0) != 0) {
      std::cerr << "expected --flag value, got " << name << "\n";
      return 2;
    }
    flags.values[name.substr(2)] = argv[i + 1];
  }
  std::string command = argv[1];
  if (command == "generate") return Generate(flags);
  if (command == "validate") return Validate(flags);
  if (command == "preprocess") return Preprocess(flags);
  if (command == "train") return Train(flags);
  if (command == "evaluate") return Evaluate(flags);
  if (command == "fit") return FitAll(flags);
  std::cerr << "unknown command " << command << "\n";
  return 2;
}
